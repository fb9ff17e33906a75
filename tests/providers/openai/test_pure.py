"""The OpenAI provider's pure parts: request lines, validation rules, states, ownership and
duplicates, parts and waves under caps and quotas."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchops.providers.model import JobState
from batchops.providers.openai import ownership as own
from batchops.providers.openai import parts, rules
from batchops.providers.openai.aggregate import remote_jobs
from batchops.providers.openai.lines import RequestShape, render, request_line, rows_of
from batchops.providers.openai.states import neutral_state
from batchops.providers.openai.wire import Batch

SHAPE = RequestShape("gpt-4o-mini", {"max_tokens": 16})
FILES = frozenset({"file-in"})


def _row(cid: str = "r1", text: str = "hi") -> dict[str, Any]:
    return {"custom_id": cid, "body": {"messages": [{"role": "user", "content": text}]}}


def test_request_line_from_a_chat_row() -> None:
    line = json.loads(render(_row(), SHAPE))
    assert line == {
        "custom_id": "r1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}],
        },
    }


def test_request_line_from_a_completion_row_and_manifest_parameters() -> None:
    shape = RequestShape.from_manifest(
        "m", {"maxTokens": 8, "topP": 0.5, "extraBody": '{"stop": ["\\n"]}'}
    )
    line = request_line({"custom_id": "c", "body": {"prompt": "x"}}, shape)
    assert line["url"] == "/v1/completions"
    assert line["body"] == {
        "model": "m",
        "max_tokens": 8,
        "top_p": 0.5,
        "stop": ["\n"],
        "prompt": "x",
    }


def test_rules_report_every_row_problem_with_its_line() -> None:
    raw = [
        json.dumps(_row("ok-1")).encode(),
        b"",
        json.dumps(_row("x" * 65)).encode(),
        json.dumps(_row("has space")).encode(),
        json.dumps({"custom_id": "s", "body": {"messages": [], "stream": True}}).encode(),
        json.dumps(_row("big", "y" * 400)).encode(),
    ]
    problems = rules.row_problems(rows_of(raw), SHAPE, max_bytes=300)
    found = [(p.line, p.message.split(" ")[0]) for p in problems]
    assert found == [(3, "custom_id"), (4, "custom_id"), (5, "body.stream:"), (6, "the")]
    diags = rules.diagnostics("data/x.jsonl", problems)
    assert str(diags[0]).startswith("data/x.jsonl:3:1: custom_id is 65 characters")


def test_rules_reject_parameters_openai_does_not_accept() -> None:
    spec = {"inferenceParameters": {"topK": 5}, "precision": "FP8"}
    fields = [f for f, _ in rules.spec_problems(spec, RequestShape("m", {"stream": True}))]
    assert fields == [
        "inferenceParameters.topK",
        "precision",
        "inferenceParameters.extraBody.stream",
    ]


def test_states_map_to_neutral_ones_and_unknown_is_running() -> None:
    assert [
        neutral_state(s)
        for s in (
            "validating",
            "IN_PROGRESS",
            "finalizing",
            "completed",
            "failed",
            "expired",
            "cancelling",
            "cancelled",
            "brand_new",
        )
    ] == [
        "waiting",
        "running",
        "running",
        "finished",
        "failed",
        "expired",
        "running",
        "cancelled",
        "running",
    ]


def _batch(
    bid: str,
    created: int,
    status: str,
    *,
    key: str = "k",
    part: int = 0,
    total: int = 1,
    attempt: int = 0,
    project: str = "p",
    **extra: Any,
) -> Batch:
    slot = own.Slot(key, part, total, attempt)
    meta = own.metadata(
        project, "job", slot, tokens=10, rows=5, input_key="ds", model="m", continued_from=None
    )
    extra.setdefault("input_file_id", "file-in")
    return Batch(id=bid, status=status, created_at=created, metadata=meta, **extra)


def test_metadata_fits_openai_limits_and_round_trips() -> None:
    meta = _batch("b", 1, "completed", key="k" * 60, part=2, total=3, attempt=1).metadata
    assert meta is not None and len(meta) <= 16
    assert all(len(k) <= 64 and len(v) <= 512 for k, v in meta.items())
    assert own.slot_of(Batch(id="b", metadata=meta)) == own.Slot("k" * 60, 2, 3, 1)
    assert own.slot_of(Batch(id="b", metadata={"team": "x"})) is None


def test_duplicates_keep_the_oldest_live_batch_whatever_the_order() -> None:
    batches = [
        _batch("b3", 30, "validating"),
        _batch("b1", 10, "in_progress"),
        _batch("b2", 10, "validating"),
        _batch("other", 5, "in_progress", key="k2"),
    ]
    for ordering in (batches, batches[::-1]):
        found = [(dup.id, kept.id) for dup, kept in own.duplicates(ordering)]
        assert found == [("b2", "b1"), ("b3", "b1")]


def test_a_finished_batch_is_kept_over_a_live_duplicate() -> None:
    batches = [
        _batch("late", 5, "in_progress"),
        _batch("done", 9, "completed"),
        _batch("gone", 1, "cancelled"),
    ]
    assert [(d.id, k.id) for d, k in own.duplicates(batches)] == [("late", "done")]


def test_parts_of_one_job_are_one_remote_job() -> None:
    counts = {"total": 5, "completed": 5, "failed": 0}
    batches = [
        _batch("a", 1, "completed", part=0, total=2, request_counts=counts),
        _batch("b", 2, "in_progress", part=1, total=2, request_counts=counts),
    ]
    (job,) = remote_jobs(batches, "openai", FILES)
    assert (job.key, job.state, job.rows.total, job.rows.succeeded) == (
        "k",
        JobState.RUNNING,
        10,
        10,
    )
    (done,) = remote_jobs([batches[0]], "openai", FILES)  # part 2 never submitted, none runs
    assert done.state is JobState.INCOMPLETE and "1/2 parts submitted" in done.message
    running = _batch("r", 1, "in_progress", part=0, total=2)
    (submitting,) = remote_jobs([running], "openai", FILES)  # the submitter waits on its part
    assert submitting.state is JobState.RUNNING and "1/2 parts" in submitting.message
    refused = _batch(
        "c",
        3,
        "failed",
        part=1,
        total=2,
        errors={"data": [{"code": "token_limit_exceeded", "message": "quota"}]},
    )
    (waiting,) = remote_jobs([running, refused], "openai", FILES)
    assert waiting.state is JobState.RUNNING  # part 2 waits for the quota part 1 holds
    (stopped,) = remote_jobs([batches[0], refused], "openai", FILES)
    assert stopped.state is JobState.INCOMPLETE  # refused, and nobody left to submit it again
    bad = _batch("d", 3, "failed", part=1, total=2, errors={"data": [{"code": "url_mismatch"}]})
    assert remote_jobs([batches[0], bad], "openai", FILES)[0].state is JobState.FAILED


# -- parts and waves ------------------------------------------------------------------------------

sizes = st.lists(
    st.builds(parts.RowSize, st.integers(1, 200), st.integers(1, 60)), min_size=1, max_size=300
)


@given(
    sizes, st.integers(1, 50), st.integers(200, 3000), st.one_of(st.none(), st.integers(60, 2000))
)
def test_parts_cover_every_row_once_under_every_cap(
    rows: list[parts.RowSize], max_requests: int, max_bytes: int, quota: int | None
) -> None:
    limits = parts.Limits(max_requests, max_bytes, quota, headroom=0.0)
    split = parts.split(rows, limits)
    assert [p.start for p in split] == [0] + [p.stop for p in split[:-1]]
    assert split[-1].stop == len(rows)
    for part in split:
        assert part.requests <= max_requests and part.size <= max_bytes
        assert part.tokens <= (quota or 10**9)
    grouped = parts.waves(split, limits)
    assert [p for wave in grouped for p in wave] == split
    for wave in grouped:
        assert quota is None or sum(p.tokens for p in wave) <= quota


def test_a_job_past_the_request_cap_splits_and_waves_fill_the_quota() -> None:
    rows = [parts.RowSize(100, 20)] * 150_000
    limits = parts.Limits(max_requests=50_000, enqueued_tokens=1_500_000, headroom=0.0)
    split = parts.split(rows, limits)
    assert [p.requests for p in split] == [37_500] * 4  # two parts fill one quota's worth
    grouped = parts.waves(split, limits)
    assert [len(w) for w in grouped] == [2, 2]
    assert all(sum(p.tokens for p in w) == 1_500_000 for w in grouped)
    unbounded = parts.split(rows, parts.Limits(max_requests=50_000))
    assert [p.requests for p in unbounded] == [50_000] * 3
    assert len(parts.waves(unbounded, parts.Limits())) == 1


def test_a_row_no_part_can_hold_is_an_error() -> None:
    try:
        parts.split(
            [parts.RowSize(10, 5), parts.RowSize(10, 500)],
            parts.Limits(enqueued_tokens=100, headroom=0),
        )
    except parts.LimitError as exc:
        assert "row 2" in str(exc)
    else:
        raise AssertionError("expected LimitError")


def test_estimated_tokens_count_message_text() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "abcdefgh"},
            {"role": "user", "content": [{"type": "text", "text": "abcd"}]},
        ]
    }
    assert parts.estimate_tokens(body) == 3
    assert parts.estimate_tokens({"prompt": ["abcde", "a"]}) == 3


def test_an_ended_job_whose_files_are_all_gone_is_being_deleted() -> None:
    done = _batch("a", 1, "completed", output_file_id="file-out")
    assert remote_jobs([done], "openai", {"file-out"})[0].state is JobState.FINISHED
    gone = remote_jobs([done], "openai", set())[0]
    assert (gone.state, gone.raw_state) == (JobState.DELETING, "deleted")
    live = _batch("b", 1, "in_progress")
    assert remote_jobs([live], "openai", set())[0].state is JobState.RUNNING


def test_output_and_error_lines_in_the_shared_results_shape() -> None:
    from batchops.providers.model import result_row
    from batchops.providers.openai.outputs import neutral, never_ran

    ok = {
        "custom_id": "a",
        "error": None,
        "response": {
            "status_code": 200,
            "body": {
                "choices": [{"message": {"content": "Paris"}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": 1,
                    "prompt_tokens_details": {"cached_tokens": 2},
                },
            },
        },
    }
    row = result_row(neutral(ok, "job-1"))
    assert (row.text, row.finish_reason, row.error, row.job) == ("Paris", "stop", None, "job-1")
    assert (row.usage.input, row.usage.output, row.usage.cached) == (5, 1, 2)
    http = {
        "custom_id": "b",
        "error": None,
        "response": {
            "status_code": 400,
            "body": {"error": {"message": "too long", "code": "context_length_exceeded"}},
        },
    }
    failed = result_row(neutral(http, "job-1"))
    assert (failed.text, failed.error, failed.error_code) == (
        None,
        "too long",
        "context_length_exceeded",
    )
    expired = {
        "custom_id": "c",
        "response": None,
        "error": {"code": "batch_expired", "message": "not run"},
    }
    assert never_ran(expired) and not never_ran(http)
    assert result_row(neutral(expired, "job-1")).error_code == "batch_expired"


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (500, {"message": "boom", "type": "server_error", "code": None}, "transient"),
        (429, {"message": "slow down", "type": "rate_limit_error", "code": None}, "transient"),
        (503, "upstream unavailable", "transient"),
        (400, {"message": "bad", "type": "invalid_request_error", "code": None}, "permanent"),
        (500, None, "transient"),
    ],
)
def test_an_http_error_without_a_code_is_classified_by_its_status(
    status: int, error: object, kind: str
) -> None:
    """OpenAI's error bodies often carry ``code: null``: a 5xx row must still be retried."""
    from batchops.plan.rowerrors import classify
    from batchops.providers.model import result_row
    from batchops.providers.openai.outputs import neutral
    from batchops.row_retries import _error_text

    body = {"error": error} if error is not None else {}
    line = {"custom_id": "x", "error": None, "response": {"status_code": status, "body": body}}
    row = result_row(neutral(line, "job-1"))
    assert row.error_code == str(status)
    assert classify(_error_text(row.error_code, row.error)).value == kind


def test_an_expired_batch_whose_rows_all_ran_is_finished() -> None:
    ran = {"total": 5, "completed": 4, "failed": 1}
    done = _batch("a", 1, "expired", request_counts=ran)
    assert remote_jobs([done], "openai", FILES)[0].state is JobState.FINISHED
    short = _batch("b", 1, "expired", request_counts={"total": 5, "completed": 3, "failed": 0})
    assert remote_jobs([short], "openai", FILES)[0].state is JobState.EXPIRED
