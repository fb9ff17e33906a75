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
from batchops.providers.openai.states import is_live, neutral_state
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
    state = JobState(neutral_state(batch.status))
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


def remote_job(key: str, batches: list[Batch], provider: str, files: Set[str]) -> RemoteJob:
    kept = part_keepers(batches)
    first = min(batches, key=lambda b: (b.created_at, b.id))
    meta = first.metadata or {}
    slot = own.slot_of(first)
    total_parts = slot.parts if slot else 1
    states = {_state(b) for b in kept.values()}
    if len(kept) < total_parts:
        states.add(JobState.WAITING)
    state = next(s for s in _ORDER if s in states)
    gone = len(kept) == total_parts and deleted(kept.values(), files)
    state = JobState.DELETING if gone else state
    if stalled(kept, total_parts, batches):
        state = JobState.INCOMPLETE
    counts = [b.request_counts for b in kept.values() if b.request_counts]
    total = sum(int(b.metadata.get(own.ROWS, 0)) for b in kept.values() if b.metadata)
    done = sum(c.completed for c in counts)
    failed = sum(c.failed for c in counts)
    message = "; ".join(b.error_message for b in kept.values() if b.error_message)
    if len(kept) < total_parts:
        message = f"{len(kept)}/{total_parts} parts submitted; the rest wait for the quota"
    if state is JobState.INCOMPLETE:
        message = f"{len(kept)}/{total_parts} parts submitted and none running"
    raw = "deleted" if gone else ",".join(sorted({b.status for b in kept.values()})) or "pending"
    ids = [b.id for _, b in sorted(kept.items())]
    usage = [b.usage for b in kept.values() if b.usage]
    tokens = Tokens(
        sum(u.input_tokens for u in usage),
        sum(u.output_tokens for u in usage),
        sum(u.input_tokens_details.cached_tokens for u in usage if u.input_tokens_details),
    )
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
        rows=Rows(
            total=total,
            succeeded=done,
            failed=failed,
            percent=int(100 * (done + failed) / total) if total else 0,
            processed=done + failed,
        ),
        tokens=tokens,
        created=_stamp(first.created_at),
        updated=_stamp(max((b.updated_at for b in kept.values()), default=0)),
        expires=_stamp(max((b.expires_at or 0 for b in kept.values()), default=0)),
        continued_from=meta.get(own.FROM) or None,
        display_name=meta.get(own.JOB, ""),
        # One batch is never a duplicate (the common case: skip the per-slot sort).
        duplicates=tuple(dup.id for dup, _ in own.duplicates(batches)) if len(batches) > 1 else (),
    )


def remote_jobs(batches: Iterable[Batch], provider: str, files: Set[str]) -> list[RemoteJob]:
    """One ``RemoteJob`` per job key; ``files`` are the IDs of the files that still exist."""
    by_key: dict[str, list[Batch]] = defaultdict(list)
    for batch in batches:
        slot = own.slot_of(batch)
        if slot is not None:
            by_key[slot.key].append(batch)
    return [remote_job(key, group, provider, files) for key, group in sorted(by_key.items())]
