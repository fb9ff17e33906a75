"""A job of one batch (most jobs) is built by a shorter path than a job of parts and attempts;
both must say the same thing about it, whatever its status, counts, usage, errors and files."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import example, given
from hypothesis import strategies as st

from batchops.providers.model import JobState
from batchops.providers.openai import ownership as own
from batchops.providers.openai.aggregate import one_batch_job, remote_job, remote_jobs
from batchops.providers.openai.wire import Batch
from batchops.wire_openai import ERR_TOKEN_LIMIT

STATUSES = (
    "validating",
    "in_progress",
    "finalizing",
    "cancelling",
    "completed",
    "failed",
    "expired",
    "cancelled",
    "COMPLETED",
    "something_new",
    "",
)
FILE_IDS = ("file-in", "file-out", "file-err")
maybe_file = st.sampled_from([None, "", "file-out", "file-err", "file-other"])
counts = st.fixed_dictionaries(
    {"total": st.integers(0, 5), "completed": st.integers(0, 5), "failed": st.integers(0, 5)}
)
usage = st.fixed_dictionaries(
    {"input_tokens": st.integers(0, 9), "output_tokens": st.integers(0, 9)},
    optional={"input_tokens_details": st.fixed_dictionaries({"cached_tokens": st.integers(0, 9)})},
)
errors = st.lists(
    st.fixed_dictionaries(
        {"code": st.sampled_from([ERR_TOKEN_LIMIT, "invalid_request", None]), "message": st.text()}
    ),
    max_size=4,
)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    meta = own.metadata(
        draw(st.sampled_from(["p", "q"])),
        "job",
        own.Slot("k", 0, 1, draw(st.integers(0, 2))),
        tokens=10,
        rows=draw(st.integers(0, 5)),
        input_key="ds",
        model="m",
        continued_from=draw(st.sampled_from([None, "k-parent"])),
        parameters=draw(st.sampled_from([None, {"maxTokens": 8}])),
    )
    fields: dict[str, Any] = {
        "id": "batch_1",
        "status": draw(st.sampled_from(STATUSES)),
        "input_file_id": draw(st.sampled_from(["file-in", ""])),
        "output_file_id": draw(maybe_file),
        "error_file_id": draw(maybe_file),
        "created_at": draw(st.integers(0, 100)),
        "completed_at": draw(st.one_of(st.none(), st.integers(0, 200))),
        "expires_at": draw(st.one_of(st.none(), st.integers(0, 200))),
        "model": draw(st.sampled_from([None, "", "gpt"])),
        "metadata": meta,
        "request_counts": draw(st.one_of(st.none(), counts)),
        "usage": draw(st.one_of(st.none(), usage)),
        "errors": draw(st.one_of(st.none(), st.builds(lambda d: {"data": d}, errors))),
    }
    return msgspec.convert(fields, Batch)


def _batch(status: str, **fields: Any) -> Batch:
    slot = own.Slot("k", 0, 1, 0)
    meta = own.metadata(
        "p", "job", slot, tokens=1, rows=3, input_key="ds", model="m", continued_from=None
    )
    wire = {"id": "b", "status": status, "input_file_id": "file-in", "metadata": meta, **fields}
    return msgspec.convert(wire, Batch)


REFUSED = {"errors": {"data": [{"code": ERR_TOKEN_LIMIT, "message": "over the quota"}]}}
RAN = {"request_counts": {"total": 3, "completed": 2, "failed": 1}}


@given(batches(), st.sets(st.sampled_from(FILE_IDS)))
@example(_batch("failed", **REFUSED), {"file-in"})  # refused for quota: its submitter stopped
@example(_batch("failed", **REFUSED), set())
@example(_batch("failed", errors={"data": [{"code": "invalid_request", "message": "m"}]}), set())
@example(_batch("expired", **RAN), {"file-in"})  # its window closed after its last row
@example(_batch("expired", **RAN, output_file_id="file-out"), {"file-out"})
@example(_batch("in_progress"), set())  # running, whatever files are listed
def test_a_one_batch_job_is_the_same_by_either_path(batch: Batch, files: set[str]) -> None:
    assert one_batch_job("k", batch, "openai", files) == remote_job("k", [batch], "openai", files)


def test_the_listing_takes_the_short_path_only_for_a_lone_batch_of_a_one_part_job() -> None:
    def batch(bid: str, status: str, part: int, total: int) -> Batch:
        slot = own.Slot("k", part, total, 0)
        meta = own.metadata(
            "p", "job", slot, tokens=1, rows=1, input_key="ds", model="m", continued_from=None
        )
        return Batch(id=bid, status=status, created_at=1, input_file_id="file-in", metadata=meta)

    (half,) = remote_jobs([batch("b1", "completed", 0, 2)], "openai", {"file-in"})
    assert half.state is JobState.INCOMPLETE  # part 2 of 2 never submitted, none running
    pair = [batch("b1", "in_progress", 0, 1), batch("b2", "in_progress", 0, 1)]
    (duplicated,) = remote_jobs(pair, "openai", {"file-in"})
    assert duplicated.duplicates == ("b2",)  # a concurrent apply's copy, to be cancelled
