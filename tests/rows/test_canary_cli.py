"""apply --canary-only and the step summary under GitHub Actions (issue 14): the CLI in this
process against a local backend on a loopback socket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_apply_cli import WAIT, InProcess, inproc, make_repo, write_manifests

__all__ = ["inproc"]  # the fixture


def test_canary_only_then_the_full_job_with_the_outcome_in_the_step_summary(
    tmp_path: Path, inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path, jobs={"answers": {"canary": {"rows": 3}}})
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    plan = inproc(root, "plan", "--canary-only")
    assert "canary: 3 of 12 rows to send run first" in plan.stdout, plan.stdout
    first = inproc(root, *WAIT, "--canary-only")
    assert first.returncode == 0, first.stderr
    passed = "canary of 3 rows passed; the full job runs after it, 0 failed rows"
    assert passed in summary.read_text()
    assert not (root / "results" / "answers.jsonl").exists()  # the full spend waits
    assert (
        "canary of answers: passed (0 of 3 rows failed); `batchops apply` without "
        "--canary-only sends the full job"
    ) in first.stdout
    status = inproc(root, "status")
    (row,) = [line for line in status.stdout.splitlines() if line.startswith("answers ")]
    assert "answers-canary-" in row and "CANARY PASSED" in row and "3/0" in row, row
    described = inproc(root, "describe", "answers")
    assert "(canary)" in described.stdout and "History (1 job" in described.stdout
    summary.write_text("")
    full = inproc(root, *WAIT)
    assert full.returncode == 0, full.stderr
    text = summary.read_text()
    assert passed in text
    answers = [line for line in text.splitlines() if line.startswith("  - ")]
    assert len(answers) == 3 and all("question" in line for line in answers)  # echo answers
    assert "9 new rows, 3 reused from answers-canary" in full.stdout


def test_a_canary_must_reuse(tmp_path: Path, inproc: InProcess) -> None:
    root = make_repo(tmp_path, jobs={"answers": {"canary": {"rows": 3}, "reuse": False}})
    result = inproc(root, "plan")
    assert result.returncode == 1 and "canary needs reuse" in result.stderr + result.stdout


def test_status_counts_the_merged_rows_and_calls_a_fully_reused_job_reused(
    tmp_path: Path, inproc: InProcess
) -> None:
    """OK/FAILED is the merged results' (reused answers included) once they are current, and a
    job whose every row was answered before has no job of its own: REUSED, not ABSENT."""
    root = make_repo(tmp_path, jobs={"a": {}})
    assert inproc(root, *WAIT).returncode == 0
    write_manifests(root, jobs={"a": {}, "b": {}})
    second = inproc(root, *WAIT)
    assert second.returncode == 0
    assert "Apply complete: 1 completed, 1 reused." in second.stdout, second.stdout
    rows = {
        line.split()[0]: line.split()
        for line in inproc(root, "status").stdout.splitlines()
        if line.startswith(("a ", "b "))
    }
    assert rows["a"][2:5] == ["COMPLETED", "100%", "12/0"], rows
    assert rows["b"][1:6] == ["-", "REUSED", "100%", "12/0", "0/0"], rows  # a's tokens, not b's
    assert rows["a"][5] != "0/0", rows


def test_a_canary_failed_by_its_response_format_says_so_in_apply_and_status(
    tmp_path: Path, inproc: InProcess
) -> None:
    """The echo engine's answers are not JSON: every canary row breaks the responseFormat."""
    schema = {"schema": {"type": "object", "required": ["verdict"]}}
    jobs = {"answers": {"canary": {"rows": 3}, "responseFormat": schema}}
    root = make_repo(tmp_path, jobs=jobs)
    first = inproc(root, *WAIT, "--canary-only")
    assert first.returncode == 3, first.stdout + first.stderr
    assert "canary of answers: failed (3 of 3 rows failed); the full job is not sent" in (
        first.stdout
    )
    status = inproc(root, "status")
    (row,) = [line for line in status.stdout.splitlines() if line.startswith("answers ")]
    assert "CANARY FAILED" in row and "0/3" in row, row


def test_status_tokens_are_those_spent_prices_after_a_partial_reuse(
    tmp_path: Path, inproc: InProcess
) -> None:
    """After an edit of 2 of 12 rows, the results hold 10 answers of the older spec's job and 2
    of the new one, all this job's own runs: TOKENS IN/OUT counts all 12, as SPENT does."""
    root = make_repo(tmp_path)
    assert inproc(root, *WAIT).returncode == 0
    data = root / "jobs" / "data" / "prompts.jsonl"
    data.write_text(
        data.read_text()
        .replace("question 3", "question three")
        .replace("question 7", "question seven")
    )
    assert inproc(root, *WAIT).returncode == 0
    usage = [
        json.loads(line)["usage"]
        for line in (root / "results" / "answers.jsonl").read_text().splitlines()
    ]
    assert len(usage) == 12
    tokens = f"{sum(u['input_tokens'] for u in usage)}/{sum(u['output_tokens'] for u in usage)}"
    (row,) = [
        line.split()
        for line in inproc(root, "status").stdout.splitlines()
        if line.startswith("answers ")
    ]
    assert row[4:6] == ["12/0", tokens], row
