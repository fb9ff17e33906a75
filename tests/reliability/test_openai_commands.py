"""Every command on an OpenAI-compatible provider beside a Fireworks job, through the CLI as a
subprocess against a real backend's /v1/files + /v1/batches: plan, apply --wait, status, describe,
results, prune, and an expiry resumed with only its unfinished rows.

Faults, kill -9 at many points, concurrent applies and a backend restart run over both provider
kinds in test_faults, test_kill, test_concurrent and test_serve_restart (parametrized).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchops.local.server import EmbeddedServer
from tests.reliability.conftest import APPLY, env_for
from tests.reliability.openai_world import batches as batches_at


def batches(url: str) -> list[dict[str, Any]]:
    return batches_at(f"{url}/v1")


pytestmark = pytest.mark.timeout(300)

ROWS = 24


JOBS = {
    "on-openai": "{provider: oai, model: gpt-4o-mini, inputDataset: qs, "
    "inferenceParameters: {maxTokens: 8}}",
    "on-fireworks": "{model: accounts/fireworks/models/x, inputDataset: qs, "
    "inferenceParameters: {maxTokens: 8}}",
}


def write_jobs(root: Path, names: tuple[str, ...] = tuple(JOBS)) -> None:
    docs = [
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: qs}\n"
        "spec: {path: data/qs.jsonl, format: CHAT}\n"
    ]
    docs += [
        f"apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {{name: {n}}}\n"
        f"spec: {JOBS[n]}\n"
        for n in names
    ]
    (root / "jobs" / "jobs.yaml").write_text("---\n".join(docs))


def write_project(root: Path, url: str, *, cap: int = 10) -> None:
    (root / "jobs" / "data").mkdir(parents=True)
    rows = [
        {"custom_id": f"q{i:03d}", "body": {"messages": [{"role": "user", "content": f"q {i}"}]}}
        for i in range(ROWS)
    ]
    (root / "jobs" / "data" / "qs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "batchops.yaml").write_text(f"""\
apiVersion: batchops/v1
kind: Project
metadata: {{name: rely}}
spec:
  providers:
    oai: {{kind: openai, baseUrl: "{url}/v1", limits: {{maxRequestsPerBatch: {cap}}}}}
""")
    write_jobs(root)


def cli(root: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchops", *args],
        cwd=root,
        text=True,
        env=env_for(url),
        capture_output=True,
        timeout=240,
    )


def assert_converged(root: Path, url: str, *, extra_allowed: int) -> None:
    """Every row answered once on both providers; on the OpenAI one at least one completed batch
    per part, no batch left running, and at most ``extra_allowed`` duplicates (cancelled, or
    completed before the cancel arrived: one pass's worth of duplicate work)."""
    for job in ("on-openai", "on-fireworks"):
        lines = (root / "results" / f"{job}.jsonl").read_text().splitlines()
        ids = sorted(json.loads(line)["custom_id"] for line in lines)
        assert ids == [f"q{i:03d}" for i in range(ROWS)]
    ours = [b for b in batches(url) if (b.get("metadata") or {}).get("batchops.project") == "rely"]
    meta = [(b["metadata"], b["status"]) for b in ours]
    parts = {m["batchops.part"] for m, _ in meta}  # type: ignore[index]
    completed = Counter(m["batchops.part"] for m, s in meta if s == "completed")  # type: ignore[index]
    assert set(completed) == parts, meta
    assert all(s in ("completed", "cancelled", "cancelling") for _, s in meta), meta
    assert len(ours) - len(parts) <= extra_allowed, meta
    plan = cli(root, url, "plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr


def apply_until_done(root: Path, url: str, passes: int = 5) -> None:
    """``apply --wait`` until it succeeds, then one more pass, as CI's next run would be: it
    cancels a duplicate the last pass saw only after planning."""
    for _ in range(passes):
        done = cli(root, url, *APPLY)
        if done.returncode == 0:
            break
    else:
        raise AssertionError(done.stdout + done.stderr)
    again = cli(root, url, "apply")
    assert again.returncode == 0, again.stdout + again.stderr
    deadline = time.monotonic() + 30  # a cancelled batch ends once its in-flight rows are done
    while any(b["status"] == "cancelling" for b in batches(url)) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_plan_apply_status_describe_prune_on_both_providers(
    tmp_path: Path, make_server: Callable[..., EmbeddedServer]
) -> None:
    server = make_server()
    write_project(tmp_path, server.base_url)
    plan = cli(tmp_path, server.base_url, "plan")
    assert "+ job on-openai" in plan.stdout and "+ job on-fireworks" in plan.stdout
    apply_until_done(tmp_path, server.base_url)
    assert_converged(tmp_path, server.base_url, extra_allowed=0)
    status = cli(tmp_path, server.base_url, "status")
    assert status.returncode == 0 and status.stdout.count("(verified)") == 2, status.stdout
    assert "+2 parts" in status.stdout  # 24 rows under a 10-request cap
    describe = cli(tmp_path, server.base_url, "describe", "on-openai")
    assert describe.returncode == 0 and "24 succeeded" in describe.stdout, describe.stdout
    text = {
        json.loads(line)["custom_id"]: json.loads(line)["text"]
        for line in (tmp_path / "results" / "on-openai.jsonl").read_text().splitlines()
    }
    assert text["q003"] == "q 3"  # the echo engine, through the neutral results shape
    shown = cli(
        tmp_path, server.base_url, "results", "on-openai", "on-fireworks", "--output", "json"
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    rows = {row["custom_id"]: row for row in json.loads(shown.stdout)}  # both lined up
    assert rows["q003"]["on-openai.answer"] == rows["q003"]["on-fireworks.answer"] == "q 3"
    write_jobs(tmp_path, ("on-fireworks",))
    pruned = cli(tmp_path, server.base_url, "apply", "--prune", "--auto-approve")
    assert pruned.returncode == 0 and "on-openai" in pruned.stdout, pruned.stdout + pruned.stderr
    again = cli(tmp_path, server.base_url, "plan", "--prune", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout  # pruned once: the batch records stay, deleted


def test_an_expired_batch_resumes_with_its_unfinished_rows_through_the_cli(
    tmp_path: Path, make_server: Callable[..., EmbeddedServer]
) -> None:
    server = make_server(row_delay=0.1, max_job_duration=1.5)  # 24 rows need two windows
    write_project(tmp_path, server.base_url, cap=100)
    done = cli(tmp_path, server.base_url, *APPLY)
    assert done.returncode == 0, done.stdout + done.stderr
    ours = [b for b in batches(server.base_url) if b["metadata"]]  # type: ignore[index]
    statuses = [b["status"] for b in ours]
    assert "expired" in statuses and len(ours) >= 2, statuses  # at least one resume
    sent = sum(int(b["metadata"]["batchops.rows"]) for b in ours)  # type: ignore[index]
    finished = [b["request_counts"]["completed"] for b in ours]  # type: ignore[index]
    assert sum(finished) == ROWS  # no row answered twice
    assert sent < ROWS * len(ours)  # a resume sent only the rows still unfinished
    lines = (tmp_path / "results" / "on-openai.jsonl").read_text().splitlines()
    ids = sorted(json.loads(line)["custom_id"] for line in lines)
    assert ids == [f"q{i:03d}" for i in range(ROWS)]


def test_rows_that_failed_for_a_passing_reason_are_retried_on_openai(
    tmp_path: Path, make_server: Callable[..., EmbeddedServer]
) -> None:
    """A 5xx row (OpenAI's body says ``code: null``) is sent again; an invalid one never is."""
    server = make_server()
    write_project(tmp_path, server.base_url, cap=100)
    data = tmp_path / "jobs" / "data" / "qs.jsonl"
    lines = data.read_text().splitlines()
    lines[1] = lines[1].replace('"q 1"', '"q 1 __transient__"')
    lines[2] = lines[2].replace('"q 2"', '"q 2 __invalid__"')
    data.write_text("\n".join(lines) + "\n")
    write_jobs(tmp_path, ("on-openai",))
    done = cli(tmp_path, server.base_url, *APPLY)
    assert done.returncode in (0, 3), done.stdout + done.stderr  # 3: the failed row reported
    answered = {
        json.loads(line)["custom_id"]
        for line in (tmp_path / "results" / "on-openai.jsonl").read_text().splitlines()
    }
    assert "q001" in answered and "q002" not in answered
    errors = (tmp_path / "results" / "on-openai.errors.jsonl").read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in errors] == ["q002"]
    sent = Counter(b["request_counts"]["total"] for b in batches(server.base_url))
    assert sent == Counter({ROWS: 1, 1: 1}), sent  # the whole job, then the transient row once
    status = cli(tmp_path, server.base_url, "status", "--output", "json")
    (job,) = json.loads(status.stdout)["jobs"]
    assert job["failedRows"]["permanent"]["rows"] == 1, job
    assert job["failedRows"]["transient"]["rows"] == 0, job


def test_apply_cancels_a_duplicate_batch_and_keeps_the_finished_one(
    tmp_path: Path, make_server: Callable[..., EmbeddedServer]
) -> None:
    """A concurrent apply's duplicate (same metadata slot) still running after the job finished
    is cancelled by the next ``apply``, not only shown in its plan; the finished batch is kept."""
    server = make_server(row_delay=0.01)
    write_project(tmp_path, server.base_url, cap=100)
    write_jobs(tmp_path, ("on-openai",))
    done = cli(tmp_path, server.base_url, *APPLY)
    assert done.returncode == 0, done.stdout + done.stderr
    (kept,) = batches(server.base_url)
    slow = "".join(  # the duplicate's own input: long enough to be running when apply comes
        json.dumps(
            {
                "custom_id": f"d{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
            }
        )
        + "\n"
        for i in range(6000)
    )
    with httpx.Client(base_url=f"{server.base_url}/v1", timeout=30) as client:
        upload = client.post(
            "/files", data={"purpose": "batch"}, files={"file": ("dup.jsonl", slow.encode())}
        )
        body = {"input_file_id": upload.json()["id"], "endpoint": kept["endpoint"]}
        body |= {"completion_window": "24h", "metadata": kept["metadata"]}
        duplicate = client.post("/batches", json=body).json()
    again = cli(tmp_path, server.base_url, "apply")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 duplicate to cancel" in again.stdout, again.stdout
    status = {b["id"]: b["status"] for b in batches(server.base_url)}
    assert status[duplicate["id"]] in ("cancelling", "cancelled"), status
    assert status[kept["id"]] == "completed", status
    deadline = time.monotonic() + 30
    while batches(server.base_url)[0]["status"] == "cancelling" and time.monotonic() < deadline:
        time.sleep(0.1)
    plan = cli(tmp_path, server.base_url, "plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr  # nothing left to cancel or wait for
