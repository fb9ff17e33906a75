"""Rows an expired job never reached (its resumes used up) are retried as transient failures,
spec.rowRetries times at most, and reported as such until then (issue 14). Against the local
backend served on a loopback socket, with jobs that expire after half a second."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.identity import parse_job_id
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider
from tests.conftest import ids_in
from tests.reliability.conftest import APPLY, GatedServer, gated, write_project

__all__ = ["gated"]  # the fixture

ROWS = 120  # 20 rows a batch, 0.2 s each: a job expires after 2 or 3 batches


def expiring_project(root: Path, settings: str) -> None:
    write_project(root, rows=ROWS, jobs=1)
    manifest = root / "jobs" / "all.yaml"
    text = manifest.read_text()
    manifest.write_text(
        text.replace("inputDataset: prompts,", f"inputDataset: prompts, {settings},")
    )


def test_rows_an_expired_job_never_reached_are_sent_again(
    tmp_path: Path, gated: Callable[..., GatedServer]
) -> None:
    server = gated(row_delay=0.01, max_job_duration=0.5)
    root = tmp_path / "p"
    expiring_project(root, "maxResumes: 0, rowRetries: 10")
    assert main([*APPLY, "--root", str(root), "--base-url", server.base_url]) == 0
    results = root / "results" / "job0.jsonl"
    assert sorted(ids_in(results)) == sorted(f"r{i}" for i in range(ROWS))  # every row answered
    assert ids_in(results.with_name("job0.errors.jsonl")) == []
    with FireworksClient(base_url=server.base_url, account_id="local", api_key=None) as client:
        jobs = sorted(FireworksProvider(client).list_jobs(), key=lambda j: j.key)
        sent = {
            d.name.rsplit("/", 1)[-1]: int(d.example_count or 0) for d in client.list_datasets()
        }
    parts = [parse_job_id(j.key) for j in jobs]
    assert all(p is not None and p.resume == 0 for p in parts)  # maxResumes: 0
    attempts = sorted((p.attempt, j) for p, j in zip(parts, jobs, strict=True) if p is not None)
    assert attempts[0][0] == 0 and len(attempts) >= 2  # the first job expired
    answered = 0
    for attempt, job in attempts:  # each follow-up sends exactly the rows not answered yet
        assert sent[job.input_id] == ROWS - answered, (attempt, job.key)
        answered += job.rows.succeeded if job.rows is not None else 0
    assert answered == ROWS  # no row answered twice


def test_until_then_they_are_reported_as_transient(
    tmp_path: Path, gated: Callable[..., GatedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --wait: the pass that merges the partial results says the rows it never reached
    are failed rows of a passing reason (EXPIRED), and the next plan sends them again."""
    server = gated(row_delay=0.01, max_job_duration=0.5)
    root = tmp_path / "p"
    expiring_project(root, "maxResumes: 0, rowRetries: 1")
    args = ["--root", str(root), "--base-url", server.base_url]
    for _ in range(400):  # passes without --wait, until the one that merges
        capsys.readouterr()
        main(["apply", *args])
        if (root / "results" / "job0.jsonl").exists():
            break
        threading.Event().wait(0.05)
    capsys.readouterr()
    assert main(["status", *args, "--output", "json"]) == 0
    (job,) = json.loads(capsys.readouterr().out)["jobs"]
    unreached = ROWS - len(ids_in(root / "results" / "job0.jsonl"))
    assert unreached > 0
    assert job["failedRows"]["transient"]["reasons"] == {"EXPIRED": unreached}
    assert main(["plan", *args]) in (0, 2)
    planned = capsys.readouterr().out
    assert (
        f"{unreached} row{'s' if unreached != 1 else ''} failed for a passing reason: "
        "send again (row retry 1 of 1)" in planned
    )
