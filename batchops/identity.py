"""Content-addressed remote IDs and the ownership mark. Pure; the planner and apply call it.

Every machine computes the same IDs from the same manifests and bytes, so two applies converge on
the same resources (a create answering 409 is success once the resource is confirmed ours and
identical). Fireworks IDs are lowercase ``[a-z0-9-]``, at most 63 characters; manifest names are at
most 40, which leaves room for the 11-character hash and the ``-t<k>-r<j>-out`` suffixes.

Job ID grammar: ``<name>-<10 hex>`` (the *base*), then optionally ``-t<k>`` (attempt k: a row retry
or a ``--retry-failed`` retry), then optionally ``-r<j>`` (the j-th continuation of an expired job);
its output dataset is the job ID plus ``-out``.

Each provider caps the IDs we name (``Provider.max_id_length``: Fireworks 63). A job ID whose
output dataset ID would pass the cap (a canary's ``<name>-canary``, or large ``-t``/``-r``
numbers, after a 40-character name) keeps its hash and suffixes and shortens its name part to
``<head>-<6 hex of the whole name>`` (``job_key``): deterministic, unique through both hashes,
and found again by ``same_base`` / ``name_matches``. IDs that fit are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

MARK_PREFIX = "batchops:"
HASH_LEN = 10
NAME_HASH_LEN = 6  # a shortened name part ends with this much of its whole name's hash
DEFAULT_ID_LIMIT = 63  # Fireworks: resource IDs of at most 63 characters
OUTPUT_SUFFIX = "-out"
_ID_SAFE = re.compile(r"[a-z0-9][a-z0-9-]*")
_MARK_RE = re.compile(r"\[batchops:([a-z0-9][a-z0-9-]*)\]$")
_JOB_ID_RE = re.compile(
    rf"^(?P<base>(?P<name>[a-z0-9-]+)-[0-9a-f]{{{HASH_LEN}}})(?:-t(?P<t>[0-9]+))?(?:-r(?P<r>[0-9]+))?$"
)


def slugify(text: str) -> str:
    """Lowercase ``[a-z0-9-]``, runs of anything else collapsed into one dash, ends trimmed."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "default"


def id_name(name: str) -> str:
    """A manifest name as the head of an ID: unchanged when already ID-safe (the manifest schema
    ensures it), slugified otherwise, so two valid names never collapse into one."""
    return name if _ID_SAFE.fullmatch(name) else slugify(name)


def project_from_root(root: Path) -> str:
    """The default project: the root folder's basename, slugified."""
    return slugify(root.resolve().name)


def mark(project: str) -> str:
    return f"[{MARK_PREFIX}{project}]"


def mark_filter(project: str) -> str:
    """The list filter (AIP-160, ``:`` = contains) for the resources marked for ``project``."""
    return f'display_name:"{mark(project)}"'


def marked_display_name(base: str, project: str) -> str:
    """The user's display name (or the manifest name) followed by the visible ownership mark."""
    return f"{base} {mark(project)}"


def owner_of(display_name: str | None) -> str | None:
    """The project whose mark ends ``display_name``, or None for resources batchops did not make."""
    match = _MARK_RE.search((display_name or "").rstrip())
    return match.group(1) if match else None


def is_ours(display_name: str | None, project: str) -> bool:
    """``owner_of(display_name) == project``, without a regex: the planner asks it of every
    listed resource."""
    return (display_name or "").rstrip().endswith(mark(project))


def _digest(*parts: str) -> str:
    # A NUL separator cannot occur in any part, so ("ab", "c") and ("a", "bc") hash differently.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:HASH_LEN]


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)  # NaN is no JSON: the manifest refuses it, and it must never reach a request body


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def dataset_id(project: str, name: str, content_sha256: str) -> str:
    return f"{id_name(name)}-{_digest('dataset', project, name, content_sha256)}"


def job_id(
    project: str,
    name: str,
    *,
    model: str,
    input_dataset_id: str,
    inference_parameters: Mapping[str, Any],
    precision: str | None,
    provider: str = "fireworks",
) -> str:
    """Hashes only what changes what the job computes (not display name, output path, labels).
    The provider counts too, but not the default one, so that IDs made before providers existed
    stay the same."""
    params = canonical_json(dict(inference_parameters))
    parts = ("job", project, name, model, input_dataset_id, params, precision or "")
    digest = _digest(*parts) if provider == "fireworks" else _digest(*parts, "provider", provider)
    return f"{id_name(name)}-{digest}"


def attempt_id(base: str, attempt: int) -> str:
    """Attempt 0 is the base job; attempt k > 0 is a ``--retry-failed`` resubmission."""
    return base if attempt == 0 else f"{base}-t{attempt}"


def continuation_id(attempt_job_id: str, resume: int) -> str:
    return attempt_job_id if resume == 0 else f"{attempt_job_id}-r{resume}"


def output_dataset_id(job: str) -> str:
    return f"{job}{OUTPUT_SUFFIX}"


def job_key(base: str, *, attempt: int = 0, resume: int = 0, limit: int = DEFAULT_ID_LIMIT) -> str:
    """The remote ID of ``attempt`` (continuation ``resume``) of the job whose full base ID is
    ``base``: ``<base>[-t<k>][-r<j>]``, or, when that and its output dataset ID would pass
    ``limit`` characters, the same with its name part shortened (the module's docstring)."""
    full = continuation_id(attempt_id(base, attempt), resume)
    if len(full) + len(OUTPUT_SUFFIX) <= limit:
        return full
    name, digest, suffix = base[: -HASH_LEN - 1], base[-HASH_LEN:], full[len(base) :]
    room = limit - len(OUTPUT_SUFFIX) - len(suffix) - HASH_LEN - NAME_HASH_LEN - 2
    head = name[: max(room, 1)].rstrip("-") or name[:1]
    return f"{head}-{name_digest(name)}-{digest}{suffix}"


def name_digest(name: str) -> str:
    """The hash that ends a shortened name part of ``name`` (``job_key``)."""
    return hashlib.sha256(f"name\0{name}".encode()).hexdigest()[:NAME_HASH_LEN]


CANARY_SUFFIX = "-canary"  # a job's canary runs under ``<name>-canary`` (batchops.plan.canary)


def runs_of(name: str) -> Callable[[str], bool]:
    """Whether a job ID is one of the runs of the declared job ``name``: any spec, attempt,
    resume or row retry of it, or of its canary. Memoized per ID (results merges ask per line)."""
    memo: dict[str, bool] = {}
    names = (name, name + CANARY_SUFFIX)

    def test(job_id: str) -> bool:
        found = memo.get(job_id)
        if found is None:
            parts = parse_job_id(job_id)
            found = parts is not None and any(name_matches(parts.name, n) for n in names)
            memo[job_id] = found
        return found

    return test


def name_matches(part: str, name: str) -> bool:
    """Whether ``part``, the name part of one of our job IDs, is that of ``name`` (an ID-safe
    manifest name): the name itself, or its shortened form (``job_key``)."""
    if part == name:
        return True
    cut = NAME_HASH_LEN + 1
    return (
        len(part) > cut
        and part[-cut] == "-"
        and name.startswith(part[:-cut])
        and part[-NAME_HASH_LEN:] == name_digest(name)
    )


class JobIdParts(NamedTuple):
    """Ordered as a tuple: by base, then attempt, then resume (the order a lineage runs in)."""

    base: str
    name: str
    attempt: int
    resume: int

    @property
    def digest(self) -> str:
        """The base's hash: what every ID of one job family shares, shortened or not."""
        return self.base[-HASH_LEN:]

    def of_base(self, base: str) -> bool:
        """Whether this ID belongs to the family of the full base ID ``base`` (``job_key``)."""
        return self.base == base or (
            self.digest == base[-HASH_LEN:] and name_matches(self.name, base[: -HASH_LEN - 1])
        )


def parse_job_id(remote_id: str) -> JobIdParts | None:
    """Split a job ID we made into base, attempt and resume; None for IDs of another shape."""
    match = _JOB_ID_RE.match(remote_id)
    if not match:
        return None
    base, name, attempt, resume = match.groups()
    return JobIdParts(base, name, int(attempt or 0), int(resume or 0))
