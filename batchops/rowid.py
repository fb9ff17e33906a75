"""Request identity: the hash of everything that determines an answer (issue 14, DESIGN.md 4a).

A request is one dataset row sent to one provider and model with one set of inference
parameters. Its identity is a 16-byte BLAKE2b digest over the provider's name, the model, the
parameters (canonical JSON, keys sorted, unset ones left out) and the row's body bytes in
canonical form (the row without its ``custom_id``, keys sorted, no spaces). ``custom_id`` is only
the row's name in this dataset: two rows asking the same thing in two datasets are one request.
Any other change (a word of a prompt, a parameter, the model, the provider) is a new request:
answers are never stale. Pure; ``batchops.reuse`` and the planner (``batchops.plan.rows``) call it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

DIGEST_SIZE = 16  # bytes: compact per-row state (DESIGN.md section 10), 2**-64 collision odds
_ENCODER = msgspec.json.Encoder(order="sorted")
_DECODER = msgspec.json.Decoder()


def request_prefix(provider: str, model: str, parameters: Mapping[str, Any]) -> bytes:
    """The part of every request of one job that does not depend on the row."""
    params = {k: v for k, v in parameters.items() if v is not None}
    return b"\0".join((provider.encode(), model.encode(), _ENCODER.encode(params), b""))


def canonical_body(row: Mapping[str, Any]) -> bytes:
    """A row's request body as canonical bytes: everything but ``custom_id``, keys sorted."""
    return _ENCODER.encode({k: v for k, v in row.items() if k != "custom_id"})


def request_hash(prefix: bytes, body: bytes) -> bytes:
    """The identity of one request: ``prefix`` from ``request_prefix``, ``body`` canonical."""
    return hashlib.blake2b(prefix + body, digest_size=DIGEST_SIZE).digest()


def row_requests(prefix: bytes, lines: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
    """(custom_id, request hash) of each non-blank JSONL line (lines validated beforehand)."""
    for line in lines:
        if not line.strip():
            continue
        row = _DECODER.decode(line)
        yield str(row.get("custom_id", "")), request_hash(prefix, canonical_body(row))


def file_requests(prefix: bytes, files: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    """``row_requests`` over a dataset's files, streamed, in file then line order."""
    for path in files:
        with path.open("rb") as handle:
            yield from row_requests(prefix, handle)
