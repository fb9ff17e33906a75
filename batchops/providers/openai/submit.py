"""Rendering a job's rows into part files, and submitting parts in waves under the quota.

Called by ``provider.create_job``. The rows are the dataset's (or, for a continuation after an
expiry, the ones the lineage never ran), rendered once into one file per part in a scratch
folder; a part goes out when its tokens plus those of the provider's live batches for the model
fit the usable quota, else the submitter waits (list calls, ``poll`` seconds apart) for earlier
waves to end; its file is uploaded before the wait (uploads cost no quota), so the quota a
finished part frees is taken again within one poll. A part whose slot already has a batch (live,
finished or expired) is not sent again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchops.errors import ApiError, BatchopsError
from batchops.providers.openai import ownership as own
from batchops.providers.openai import parts as parts_mod
from batchops.providers.openai.aggregate import part_keepers, quota_refused
from batchops.providers.openai.client import OpenAIBatchClient
from batchops.providers.openai.lines import RequestShape, endpoint_of, render
from batchops.providers.openai.parts import Limits, Part, RowSize
from batchops.providers.openai.states import is_live
from batchops.providers.openai.wire import Batch

MAX_QUOTA_RETRIES = 5


class NothingToSubmit(BatchopsError):
    """A continuation whose lineage already ran every row."""


# a part refused for quota is submitted again, this many times at most


@dataclass(frozen=True)
class Rendered:
    endpoint: str
    parts: list[Part]
    files: list[Path]


def dataset_rows(files: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for path in files:
        with path.open("rb") as handle:
            for raw in handle:
                if raw.strip():
                    yield orjson.loads(raw)


def render_parts(
    rows: Iterable[Mapping[str, Any]], shape: RequestShape, limits: Limits, folder: Path
) -> Rendered:
    """Render every row once, split into parts, and write one input file per part."""
    lines = [render(row, shape) for row in rows]
    if not lines:
        raise NothingToSubmit("nothing to submit: every row of the job already ran")
    bodies = [orjson.loads(line)["body"] for line in lines]
    sizes = [
        RowSize(len(line), parts_mod.estimate_tokens(body))
        for line, body in zip(lines, bodies, strict=True)
    ]
    try:
        split = parts_mod.split(sizes, limits)
    except parts_mod.LimitError as exc:
        raise ApiError(str(exc)) from exc
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for part in split:
        path = folder / f"part-{part.index + 1:04d}.jsonl"
        path.write_bytes(b"".join(lines[part.start : part.stop]))
        files.append(path)
    return Rendered(endpoint_of(bodies[0]), split, files)


def in_flight_tokens(batches: Iterable[Batch], model: str) -> int:
    """Estimated tokens the provider holds for ``model`` in live batches (ours, by metadata)."""
    return sum(
        own.tokens_of(b)
        for b in batches
        if is_live(b.status) and (b.metadata or {}).get(own.MODEL) == model
    )


@dataclass
class Submitter:
    client: OpenAIBatchClient
    limits: Limits
    poll: float
    stop: threading.Event
    observe: Callable[[], list[Batch]]

    def submit(
        self,
        rendered: Rendered,
        *,
        key: str,
        model: str,
        meta: Callable[[own.Slot, Part], dict[str, str]],
    ) -> list[Batch]:
        """Every part of ``rendered`` not yet on the server, in waves under the quota."""
        created: list[Batch] = []
        for part, path in zip(rendered.parts, rendered.files, strict=True):
            upload_id: str | None = None
            while True:
                batches = self.observe()
                slot = self._slot(batches, key, part, len(rendered.parts))
                if slot is None:
                    break  # this part is already there
                if upload_id is None:  # uploading costs no quota: do it before waiting
                    upload_id = self.client.upload_file(path, filename=f"{key}-{path.name}").id
                    continue  # the upload took a while: look again
                if parts_mod.fits(in_flight_tokens(batches, model), part, self.limits):
                    created.append(
                        self.client.create_batch(
                            input_file_id=upload_id,
                            endpoint=rendered.endpoint,
                            metadata=meta(slot, part),
                        )
                    )
                    break
                if self.stop.wait(self.poll):
                    raise ApiError("stopped while waiting for the enqueued-token quota")
        return created

    def _slot(self, batches: list[Batch], key: str, part: Part, total: int) -> own.Slot | None:
        """The slot to fill for ``part``, or None when a batch already stands for it."""
        mine = [
            b for b in batches if (s := own.slot_of(b)) and s.key == key and s.part == part.index
        ]
        attempts = [own.slot_of(b) for b in mine]
        latest = max((s.attempt for s in attempts if s), default=-1)
        kept = part_keepers(mine).get(part.index)
        if kept is not None and not quota_refused(kept):
            return None  # live, ended, or failed for a reason a resubmit would not fix
        if latest + 1 > MAX_QUOTA_RETRIES:
            raise ApiError(f"part {part.index + 1} of {key} was refused {latest + 1} times")
        return own.Slot(key, part.index, total, latest + 1)
