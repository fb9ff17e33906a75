"""The batches of one job key (its parts and attempts) seen as one neutral ``RemoteJob``.

Called by ``provider.list_jobs``. Per part the slot's keeper counts (``ownership.keeper``); a part
whose keeper failed for quota (``token_limit_exceeded``) is waiting, not failed, since the
provider submits it again. The job is failed if any part failed for another reason, running
while any part runs or waits, expired if a part expired, cancelled if one was, else finished.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Iterable, Set

from batchops.providers.model import JobState, RemoteJob, Rows, Tokens
from batchops.providers.openai import ownership as own
from batchops.providers.openai.states import ENDED, is_live, neutral_state
from batchops.providers.openai.wire import Batch
from batchops.wire_openai import ERR_TOKEN_LIMIT

_ORDER = (
    JobState.FAILED,
    JobState.RUNNING,
    JobState.WAITING,
    JobState.EXPIRED,
    JobState.CANCELLED,
    JobState.FINISHED,
)


_JOB_STATES = {state.value: state for state in JobState}  # a lookup, not an Enum call per batch


def quota_refused(batch: Batch) -> bool:
    return neutral_state(batch.status) == "failed" and ERR_TOKEN_LIMIT in batch.error_codes


def part_keepers(batches: Iterable[Batch]) -> dict[int, Batch]:
    """Part index -> the batch that stands for it (the latest attempt's keeper)."""
    by_part: dict[int, dict[int, list[Batch]]] = defaultdict(lambda: defaultdict(list))
    for batch in batches:
        slot = own.slot_of(batch)
        if slot is not None:
            by_part[slot.part][slot.attempt].append(batch)
    kept: dict[int, Batch] = {}
    for part, attempts in by_part.items():
        chosen = own.keeper(attempts[max(attempts)])
        if chosen is not None:
            kept[part] = chosen
    return kept


def _state(batch: Batch) -> JobState:
    if quota_refused(batch):
        return JobState.WAITING
    return _unrefused_state(batch, neutral_state(batch.status))


def _unrefused_state(batch: Batch, neutral: str) -> JobState:
    """The state of a batch not refused for quota, from its neutral state."""
    state = _JOB_STATES[neutral]
    counts = batch.request_counts
    if (
        state is JobState.EXPIRED
        and counts
        and counts.completed + counts.failed >= counts.total > 0
    ):
        return JobState.FINISHED  # the window closed after its last row: nothing is left to run
    return state


@functools.lru_cache(maxsize=4096)
def _stamp(seconds: int) -> str:
    if not seconds:
        return ""
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deleted(kept: Iterable[Batch], files: Set[str]) -> bool:
    """Ended, and none of its files is left: ``delete_job`` ran (the API keeps batch records)."""
    batches = list(kept)
    ids = {f for b in batches for f in (b.input_file_id, b.output_file_id, b.error_file_id) if f}
    return all(not is_live(b.status) for b in batches) and not (ids & files)


def stalled(kept: dict[int, Batch], total_parts: int, batches: list[Batch]) -> bool:
    """Parts missing (or refused for quota) while none of the job's batches runs: whoever was
    submitting them stopped (a killed apply, a create whose answer was lost), so nobody will.
    A job whose submitter waits for quota held by its own parts still has one running."""
    missing = len(kept) < total_parts or any(quota_refused(b) for b in kept.values())
    return missing and not any(is_live(b.status) for b in batches)


class _Sums:
    """What a job adds up over its kept parts, in one loop (a pass does this for every job)."""

    def __init__(self, parts: Iterable[Batch]) -> None:
        self.rows = self.done = self.failed = self.updated = self.expires = 0
        self.input_tokens = self.output_tokens = self.cached_tokens = 0
        self.messages: list[str] = []
        self.statuses: set[str] = set()
        for b in parts:
            self._add(b)

    def _add(self, b: Batch) -> None:
        if b.metadata:
            self.rows += int(b.metadata.get(own.ROWS, 0))
        if counts := b.request_counts:
            self.done += counts.completed
            self.failed += counts.failed
        if message := b.error_message:
            self.messages.append(message)
        self.statuses.add(b.status)
        if usage := b.usage:
            self.input_tokens += usage.input_tokens
            self.output_tokens += usage.output_tokens
            if usage.input_tokens_details:
                self.cached_tokens += usage.input_tokens_details.cached_tokens
        self.updated = max(self.updated, b.updated_at)
        self.expires = max(self.expires, b.expires_at or 0)


def remote_job(key: str, batches: list[Batch], provider: str, files: Set[str]) -> RemoteJob:
    if len(batches) == 1:  # the common case: a one-part job tried once keeps its only batch
        first = batches[0]
        slot = own.slot_of(first)
        kept = {slot.part: first} if slot else {}
    else:
        kept = part_keepers(batches)
        first = min(batches, key=lambda b: (b.created_at, b.id))
        slot = own.slot_of(first)
    meta = first.metadata or {}
    total_parts = slot.parts if slot else 1
    states = {_state(b) for b in kept.values()}
    if len(kept) < total_parts:
        states.add(JobState.WAITING)
    state = next(s for s in _ORDER if s in states)
    gone = len(kept) == total_parts and deleted(kept.values(), files)
    state = JobState.DELETING if gone else state
    if stalled(kept, total_parts, batches):
        state = JobState.INCOMPLETE
    sums = _Sums(kept.values())
    total, done, failed = sums.rows, sums.done, sums.failed
    message = "; ".join(sums.messages)
    if len(kept) < total_parts:
        message = f"{len(kept)}/{total_parts} parts submitted; the rest wait for the quota"
    if state is JobState.INCOMPLETE:
        message = f"{len(kept)}/{total_parts} parts submitted and none running"
    raw = "deleted" if gone else ",".join(sorted(sums.statuses)) or "pending"
    ids = [b.id for _, b in sorted(kept.items())]
    tokens = Tokens(sums.input_tokens, sums.output_tokens, sums.cached_tokens)
    return RemoteJob(
        key=key,
        remote_id=ids[0] + (f" +{len(ids) - 1} parts" if len(ids) > 1 else "") if ids else "",
        owner=meta.get(own.PROJECT),
        state=state,
        raw_state=raw,
        provider=provider,
        message=message,
        model=first.model or meta.get(own.MODEL, ""),
        input_id=meta.get(own.INPUT, ""),
        parameters=own.parameters_of(first),
        rows=_rows(total, done, failed),
        tokens=tokens,
        created=_stamp(first.created_at),
        updated=_stamp(sums.updated),
        expires=_stamp(sums.expires),
        continued_from=meta.get(own.FROM) or None,
        display_name=meta.get(own.JOB, ""),
        # One batch is never a duplicate (the common case: skip the per-slot sort).
        duplicates=tuple(dup.id for dup, _ in own.duplicates(batches)) if len(batches) > 1 else (),
    )


def _rows(total: int, done: int, failed: int) -> Rows:
    processed = done + failed
    percent = int(100 * processed / total) if total else 0
    return Rows(total=total, succeeded=done, failed=failed, percent=percent, processed=processed)


def one_batch_job(key: str, batch: Batch, provider: str, files: Set[str]) -> RemoteJob:
    """``remote_job`` of a job of one part tried once (most jobs), in fewer steps: no keepers,
    sums or duplicates to work out. A pass builds one for every such job it lists."""
    status, meta = batch.status, batch.metadata or {}
    counts, usage = batch.request_counts, batch.usage
    neutral = neutral_state(status)
    refused = neutral == "failed" and ERR_TOKEN_LIMIT in batch.error_codes
    ended = neutral in ENDED
    ids = (batch.input_file_id, batch.output_file_id, batch.error_file_id)
    gone = ended and not any(f and f in files for f in ids)
    message = batch.error_message
    if refused:  # refused for quota and nothing runs: its submitter stopped (``stalled``)
        state, message = JobState.INCOMPLETE, "1/1 parts submitted and none running"
    else:
        state = JobState.DELETING if gone else _unrefused_state(batch, neutral)
    total = int(meta.get(own.ROWS, 0))
    done, failed = (counts.completed, counts.failed) if counts else (0, 0)
    details = usage.input_tokens_details if usage else None
    return RemoteJob(
        key=key,
        remote_id=batch.id,
        owner=meta.get(own.PROJECT),
        state=state,
        raw_state="deleted" if gone else status or "pending",
        provider=provider,
        message=message,
        model=batch.model or meta.get(own.MODEL, ""),
        input_id=meta.get(own.INPUT, ""),
        parameters=own.parameters_of(batch),
        rows=_rows(total, done, failed),
        tokens=Tokens(
            usage.input_tokens if usage else 0,
            usage.output_tokens if usage else 0,
            details.cached_tokens if details else 0,
        ),
        created=_stamp(batch.created_at),
        updated=_stamp(batch.updated_at),
        expires=_stamp(batch.expires_at or 0),
        continued_from=meta.get(own.FROM) or None,
        display_name=meta.get(own.JOB, ""),
    )


def remote_jobs(batches: Iterable[Batch], provider: str, files: Set[str]) -> list[RemoteJob]:
    """One ``RemoteJob`` per job key; ``files`` are the IDs of the files that still exist."""
    by_key: dict[str, list[Batch]] = defaultdict(list)
    single: set[str] = set()  # keys of one-part jobs (``one_batch_job`` when tried once)
    for batch in batches:
        slot = own.slot_of(batch)
        if slot is not None:
            by_key[slot.key].append(batch)
            if slot.parts == 1:
                single.add(slot.key)
    return [
        one_batch_job(key, group[0], provider, files)
        if len(group) == 1 and key in single
        else remote_job(key, group, provider, files)
        for key, group in sorted(by_key.items())
    ]
