"""Failures are never hidden: failed rows (spec.maxFailedRows, exit 3), failed jobs with the
server's reason, ::error annotations under GitHub Actions, the step summary and the closing line.
The CLI runs in this process against a real local backend on a loopback socket."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from batchops.providers.fireworks.wire import Dataset
from batchops.textsafe import md_code
from tests.e2e.test_apply_cli import WAIT, InProcess, inproc, make_repo

__all__ = ["inproc"]  # the fixture, imported to be used here

pytestmark = [pytest.mark.e2e]


def test_failed_rows_exit_3_with_counts_and_first_errors(
    tmp_path: Path, inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path, fail={2, 5})
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = inproc(root, *WAIT)
    assert result.returncode == 3, result.stderr
    assert "failed: answers: 2 of 12 rows failed (maxFailedRows allows 0)" in result.stderr
    assert "    transient: row-2: echo: failure requested" in result.stderr
    assert re.search(
        r"^::error file=jobs/work.yaml,line=\d+,col=\d+::job answers: 2 of 12 rows "
        r"failed \(maxFailedRows allows 0\): 2 transient \(INTERNAL x2\); first: row-2: echo",
        result.stderr,
        re.M,
    )
    assert result.stdout.splitlines()[-1] == (
        "Apply failed: answers 2 of 12 rows failed (first: row-2: echo: failure requested); "
        "1 completed (3 job(s) submitted)."  # two row retries of the transient (INTERNAL) rows
    )
    text = summary.read_text()
    assert "#### Failures" in text and "answers: 2 of 12 rows failed" in text
    assert md_code("row-5: echo: failure requested") in text  # dataset text, escaped
    again = inproc(root, "apply")  # nothing left to do, still not "complete": still exit 3
    assert again.returncode == 3 and "Apply failed" in again.stdout


@pytest.mark.parametrize(("limit", "code"), [(2, 0), ("20%", 0), ("10%", 3), (1, 3)])
def test_max_failed_rows_as_a_count_or_a_share(
    tmp_path: Path, inproc: InProcess, limit: int | str, code: int
) -> None:
    root = make_repo(tmp_path, fail={2, 5}, jobs={"answers": {"maxFailedRows": limit}})
    result = inproc(root, *WAIT)
    assert result.returncode == code, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith("Apply complete with failed rows" if code == 0 else "Apply failed")
    assert ("warning: " if code == 0 else "failed: ") + "answers: 2 of 12 rows" in result.stderr


def test_a_job_failing_during_wait_prints_the_servers_reason_everywhere(
    tmp_path: Path, inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"custom_id": "x", "body": {"messages": [{"role": "bananas", "content": "hi"}]}})
        + "\n"
    )
    with inproc.client() as client:
        client.create_dataset("bad", Dataset(example_count="1", user_uploaded={}))
        client.upload_dataset_files("bad", [bad])
    root = make_repo(tmp_path, jobs={"answers": {"inputDatasetId": "bad", "inputDataset": None}})
    work = root / "jobs" / "work.yaml"
    work.write_text(work.read_text().replace(', "inputDataset": null', ""))
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = inproc(root, *WAIT)
    assert result.returncode == 3, result.stderr
    assert re.search(
        r"^failed: job answers \[answers-\w+\]: failed: .*invalid role bananas", result.stderr, re.M
    )
    assert re.search(
        r"^::error file=jobs/work.yaml,line=\d+,col=\d+::job answers .*bananas", result.stderr, re.M
    )
    assert "invalid role bananas" in summary.read_text()
    (shown,) = [line for line in result.stdout.splitlines() if line.startswith("  ✗ job answers")]
    assert "failed: Dataset has a syntax error" in shown  # as the wait saw it, once
    summary.write_text("")
    planned = inproc(root, "plan")
    assert planned.returncode == 0
    assert "#### Failures" in summary.read_text() and "bananas" in summary.read_text()
    assert re.search(
        r"^::error file=jobs/work.yaml,line=\d+,col=\d+::job answers .*bananas",
        planned.stderr,
        re.M,
    )


def test_results_on_disk_without_their_record_say_record_missing(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_repo(tmp_path)
    assert inproc(root, *WAIT).returncode == 0
    shutil.rmtree(root / ".batchops")
    planned = inproc(root, "plan")
    assert "record missing" in planned.stdout and "not on disk" not in planned.stdout


def test_invalid_input_in_plan_and_apply_is_annotated_under_actions(
    tmp_path: Path, inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path, jobs={"answers": {"maxFailedRows": "lots"}})
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    for command in ("plan", "apply"):
        result = inproc(root, command)
        assert result.returncode == 1
        assert re.search(
            r"^::error file=jobs/work.yaml,line=\d+,col=\d+::spec.maxFailedRows: maxFailedRows "
            r"must be a count",
            result.stderr,
            re.M,
        )
