"""`status` rows over a job's whole lineage (the latest attempt and its continuations). Pure."""

from __future__ import annotations

from pathlib import Path

from batchops.identity import JobIdParts
from batchops.manifest.desired import JobDecl, Source
from batchops.plan import JobView
from batchops.providers.fireworks.provider import job_from_wire
from batchops.providers.fireworks.wire import BatchInferenceJob, JobProgress
from batchops.render.status import status_json, status_row

BASE = "j-0123456789"


def link(
    attempt: int, resume: int, state: str, **progress: int
) -> tuple[JobIdParts, BatchInferenceJob]:
    suffix = (f"-t{attempt}" if attempt else "") + (f"-r{resume}" if resume else "")
    job = BatchInferenceJob(
        name=f"accounts/a/batchInferenceJobs/{BASE}{suffix}",
        state=state,
        job_progress=JobProgress(**progress),
    )
    return JobIdParts(BASE, "j", attempt, resume), job


def view(*links: tuple[JobIdParts, BatchInferenceJob]) -> JobView:
    family = tuple((parts, job_from_wire(job)) for parts, job in links)
    decl = JobDecl(
        name="j",
        model="m",
        source=Source("jobs/j.yaml"),
        input_dataset="p",
        output_path=Path("/r/results/j.jsonl"),
        output_display="results/j.jsonl",
    )
    return JobView(decl, BASE, "p-1", family, None, None)


def progress(total: int, ok: int, failed: int, percent: int) -> dict[str, int]:
    return {
        "total_input_requests": total,
        "successfully_processed_requests": ok,
        "failed_requests": failed,
        "total_processed_requests": ok + failed,
        "percent": percent,
        "input_tokens": 10,
        "output_tokens": 5,
    }


def test_a_resumed_job_running_counts_rows_over_its_lineage() -> None:
    row = status_row(
        view(
            link(0, 0, "JOB_STATE_FAILED", **progress(12, 3, 9, 100)),  # an earlier attempt
            link(1, 0, "JOB_STATE_EXPIRED", **progress(12, 5, 1, 50)),
            link(1, 1, "JOB_STATE_RUNNING", **progress(7, 2, 0, 28)),  # the 7 rows left, 2 done
        )
    )
    assert row.remote_id == f"{BASE}-t1-r1" and row.state == "RUNNING"
    assert (row.total, row.succeeded, row.failed, row.lineage) == (12, 7, 0, 2)
    assert row.percent == 58  # (5 + 2) of 12, not the continuation's own 28%
    assert row.succeeded + row.failed <= row.total
    assert (row.tokens_in, row.tokens_out) == (30, 15)  # every job billed, failed attempts too
    assert status_json([row])["jobs"][0]["total"] == 12


def test_a_resumed_job_finished_is_consistent() -> None:
    row = status_row(
        view(
            link(0, 0, "JOB_STATE_EXPIRED", **progress(12, 5, 1, 50)),
            link(0, 1, "JOB_STATE_EXPIRED", **progress(7, 3, 0, 42)),
            link(0, 2, "JOB_STATE_COMPLETED", **progress(4, 3, 1, 100)),
        )
    )
    assert (row.total, row.succeeded, row.failed, row.percent, row.lineage) == (12, 11, 1, 100, 3)
    assert row.succeeded + row.failed == row.total
