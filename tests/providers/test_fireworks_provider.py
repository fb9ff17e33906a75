"""The Fireworks provider's edge: wire jobs and datasets -> the neutral model (issue 13)."""

from __future__ import annotations

import pytest

from batchops.identity import marked_display_name
from batchops.providers import JobState, Rows, Tokens
from batchops.providers.fireworks.provider import input_from_wire, job_from_wire, job_state
from batchops.providers.fireworks.wire import (
    BatchInferenceJob,
    Dataset,
    InferenceParameters,
    JobProgress,
    Status,
)


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("JOB_STATE_VALIDATING", JobState.WAITING),
        ("JOB_STATE_PENDING", JobState.WAITING),
        ("JOB_STATE_CREATING", JobState.WAITING),
        ("JOB_STATE_RUNNING", JobState.RUNNING),
        ("JOB_STATE_WRITING_RESULTS", JobState.RUNNING),
        ("JOB_STATE_COMPLETED", JobState.FINISHED),
        ("JOB_STATE_FAILED", JobState.FAILED),
        ("JOB_STATE_CANCELLED", JobState.CANCELLED),
        ("JOB_STATE_EXPIRED", JobState.EXPIRED),
        ("JOB_STATE_DELETING", JobState.DELETING),
        ("JOB_STATE_ARCHIVED", JobState.DELETING),
        ("JOB_STATE_SOMETHING_NEW", JobState.RUNNING),
        (None, JobState.RUNNING),
    ],
)
def test_states_map_to_the_reconcilers_and_unknown_ones_mean_running(
    raw: str | None, state: JobState
) -> None:
    assert job_state(raw) is state


def test_a_wire_job_becomes_a_remote_job() -> None:
    wire = BatchInferenceJob(
        name="accounts/a/batchInferenceJobs/j-abc-r1",
        display_name=marked_display_name("j", "p"),
        state="JOB_STATE_EXPIRED",
        status=Status(code="DEADLINE_EXCEEDED", message="too slow"),
        model="m",
        input_dataset_id="accounts/a/datasets/d-1",
        output_dataset_id="accounts/a/datasets/j-abc-r1-out",
        inference_parameters=InferenceParameters(max_tokens=9, extra_body="{}"),
        create_time="t1",
        update_time="t2",
        expire_time="t3",
        continued_from_job_name="accounts/a/batchInferenceJobs/j-abc",
        job_progress=JobProgress(
            percent=50,
            total_input_requests=4,
            successfully_processed_requests=2,
            failed_requests=1,
            input_tokens=40,
            output_tokens=8,
            cached_input_token_count=5,
        ),
    )
    job = job_from_wire(wire)
    assert (job.key, job.remote_id, job.owner, job.provider) == (
        "j-abc-r1",
        "j-abc-r1",
        "p",
        "fireworks",
    )
    assert (job.state, job.raw_state, job.message) == (
        JobState.EXPIRED,
        "JOB_STATE_EXPIRED",
        "too slow",
    )
    assert (job.model, job.input_id, job.output_id, job.continued_from) == (
        "m",
        "d-1",
        "j-abc-r1-out",
        "j-abc",
    )
    assert dict(job.parameters) == {"maxTokens": 9, "extraBody": "{}"}
    assert job.rows == Rows(total=4, succeeded=2, failed=1, percent=50)
    assert job.tokens == Tokens(input=40, output=8, cached=5)
    assert (job.created, job.updated, job.expires) == ("t1", "t2", "t3")


def test_a_job_without_progress_reports_no_rows_and_a_foreign_one_no_owner() -> None:
    job = job_from_wire(BatchInferenceJob(name="x/y/z", display_name="by hand"))
    assert (job.key, job.owner, job.rows, job.raw_state) == (
        "z",
        None,
        None,
        "JOB_STATE_UNSPECIFIED",
    )
    assert dict(job.parameters) == {}


def test_a_wire_dataset_becomes_a_remote_input() -> None:
    wire = Dataset(
        name="accounts/a/datasets/d-1",
        display_name=marked_display_name("d", "p"),
        state="READY",
        example_count="12",
        source_job_name="accounts/a/batchInferenceJobs/j",
    )
    item = input_from_wire(wire, "fw-eu")
    assert (item.key, item.owner, item.ready, item.rows, item.source_job, item.provider) == (
        "d-1",
        "p",
        True,
        12,
        "j",
        "fw-eu",
    )
    stuck = input_from_wire(Dataset(name="d-2", state="UPLOADING"))
    assert (stuck.ready, stuck.raw_state, stuck.rows) == (False, "UPLOADING", None)
