"""status, describe, plan and results on a two-stage pipeline, through the CLI (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipelines.test_chain_e2e import write_repo


def batchops(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchops", *argv],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_stages_are_shown_while_waiting_and_once_done(tmp_path: Path) -> None:
    write_repo(tmp_path, {"a": "one", "b": "two"})
    plan = batchops(tmp_path, "plan", "--local")
    assert plan.returncode == 0, plan.stderr
    assert "… job judge-alpha: waits on generate" in plan.stdout
    assert "  2. judge (2 jobs): waiting, waits on generate" in plan.stdout

    submitted = batchops(tmp_path, "apply", "--local")  # submits stage 1 only
    assert submitted.returncode == 0, submitted.stderr
    status = json.loads(batchops(tmp_path, "status", "--local", "-o", "json").stdout)
    by = {j["name"]: j for j in status["jobs"]}
    assert by["judge-alpha"]["state"] == "WAITING" and by["judge-alpha"]["waitsOn"] == ["generate"]
    assert by["generate-alpha"]["matrix"] == "generate"
    assert [(s["name"], s["state"]) for s in status["stages"]][1] == ("judge", "waiting")
    text = batchops(tmp_path, "status", "--local").stdout
    assert "2. judge (2 jobs): waiting, waits on generate" in text
    described = batchops(tmp_path, "describe", "judge-beta", "--local")
    assert "stage 2 of 2 (judge): waiting, waits on generate" in described.stdout, described

    done = batchops(tmp_path, "apply", "--local", "--wait", "--poll-interval", "0.2")
    assert done.returncode == 0, done.stderr
    status = json.loads(batchops(tmp_path, "status", "--local", "-o", "json").stdout)
    assert {s["state"] for s in status["stages"]} == {"done"}
    side = json.loads(batchops(tmp_path, "results", "judge", "-o", "json").stdout)
    assert side[0]["judge-alpha.answer"].startswith("judge generate-alpha: ")
    assert side[0]["judge-beta.answer"].startswith("judge generate-beta: ")
    matrix = batchops(tmp_path, "describe", "generate", "--local")
    assert matrix.returncode == 1 and "generate-alpha, generate-beta" in matrix.stderr
