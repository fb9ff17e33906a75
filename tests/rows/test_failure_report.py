"""Failed rows split into transient and permanent, with their reasons, in `status`, `describe`
and `batchops results` (issue 14): the same classification as the plan and the step summary.
The CLI in this process against a local backend on a loopback socket."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.plan.rowerrors import summarize
from batchops.render.status import summary_lines
from tests.e2e.test_apply_cli import WAIT, InProcess, inproc, make_repo

__all__ = ["inproc"]  # the fixture


def failing_repo(tmp_path: Path) -> Path:
    """12 rows: row-3 and row-4 fail for a passing reason (INTERNAL) every time, row-5 for good
    (INVALID_ARGUMENT) with a control character in its message's row text."""
    root = make_repo(tmp_path, fail={3, 4}, jobs={"answers": {"maxFailedRows": 3, "rowRetries": 0}})
    data = root / "jobs" / "data" / "prompts.jsonl"
    lines = data.read_text().splitlines()
    row = json.loads(lines[5])
    row["body"]["messages"][0]["content"] = "five __invalid__"
    lines[5] = json.dumps(row)
    data.write_text("\n".join(lines) + "\n")
    return root


def results_cmd(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> subprocess.CompletedProcess[str]:
    """`batchops results` finds the project from the working folder, as git does."""
    monkeypatch.chdir(root)
    capsys.readouterr()
    code = main(["results", *args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def test_status_describe_and_results_split_failed_rows(
    tmp_path: Path,
    inproc: InProcess,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = failing_repo(tmp_path)
    applied = inproc(root, *WAIT)
    assert applied.returncode == 0, applied.stderr

    status = json.loads(inproc(root, "status", "--output", "json").stdout)
    (job,) = status["jobs"]
    failed = job["failedRows"]
    assert failed["transient"]["rows"] == 2 and failed["permanent"]["rows"] == 1
    assert failed["transient"]["reasons"] == {"INTERNAL": 2}
    assert failed["permanent"]["reasons"] == {"INVALID_ARGUMENT": 1}
    assert [e.split(":")[0] for e in failed["transient"]["examples"]] == ["row-3", "row-4"]
    assert failed["permanent"]["examples"][0].startswith("row-5: ")

    text = inproc(root, "status").stdout
    assert (
        "answers: 3 failed rows: 2 transient (INTERNAL x2), 1 permanent "
        "(INVALID_ARGUMENT x1)" in text
    )
    assert "    permanent: row-5: " in text

    described = json.loads(inproc(root, "describe", "answers", "--output", "json").stdout)
    assert described["failedRows"] == failed
    assert "failed rows: 3 failed rows: 2 transient" in inproc(root, "describe", "answers").stdout

    shown = results_cmd(root, capsys, monkeypatch, "answers")
    assert "answers: 3 failed rows: 2 transient (INTERNAL x2)" in shown.stdout
    as_json = results_cmd(root, capsys, monkeypatch, "answers", "-o", "json")
    json.loads(as_json.stdout)  # the rows alone on stdout
    assert "1 permanent (INVALID_ARGUMENT x1)" in as_json.stderr


def test_no_failed_rows_no_breakdown(tmp_path: Path, inproc: InProcess) -> None:
    root = make_repo(tmp_path)
    assert inproc(root, *WAIT).returncode == 0
    (job,) = json.loads(inproc(root, "status", "--output", "json").stdout)["jobs"]
    assert job["failedRows"] is None
    assert "failed row" not in inproc(root, "status").stdout


def test_the_summary_uses_the_one_classifier_and_keeps_text_inert() -> None:
    rows = [
        ("a", "429: slow down"),
        ("b", "INVALID_ARGUMENT: bad\x1b[31m"),
        ("c", "the request timed out"),
        ("d", None),
        ("e", "503: upstream"),
    ]
    summary = summarize(rows, examples=1)
    assert (summary.transient, summary.permanent) == (3, 2)
    assert summary.reasons == (
        ("transient", "(no code)", 1),
        ("transient", "429", 1),
        ("transient", "503", 1),
        ("permanent", "(no code)", 1),
        ("permanent", "INVALID_ARGUMENT", 1),
    )
    assert [kind for kind, _ in summary.examples] == ["transient", "permanent"]
    lines = summary_lines("j", summarize(rows))
    assert all("\x1b" not in line for line in lines)


def test_the_step_summary_splits_failed_rows_with_their_reasons(
    tmp_path: Path, inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = failing_repo(tmp_path)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    applied = inproc(root, *WAIT, "--output", "json")
    assert applied.returncode == 0, applied.stderr
    text = summary.read_text()
    head = next(line for line in text.splitlines() if "3 of 12 rows failed" in line)
    assert head.endswith(
        "(maxFailedRows allows 3): 2 transient (`INTERNAL` x2), 1 permanent (`INVALID_ARGUMENT` x1)"
    ), head
    examples = [line for line in text.splitlines() if line.startswith("  - ")]
    assert [line.split(":")[0] for line in examples] == [
        "  - transient",
        "  - transient",
        "  - permanent",
    ]
    assert "row&#45;5" in examples[2]
    # the closing lines on stderr and the JSON document say the same
    assert "1 permanent (INVALID_ARGUMENT x1)" in applied.stderr
    assert "    permanent: row-5: " in applied.stderr
    (rows,) = json.loads(applied.stdout)["rowFailures"]
    assert rows["failedRows"]["permanent"]["reasons"] == {"INVALID_ARGUMENT": 1}
