"""`batchops watch` with a job on an OpenAI-compatible provider, as a subprocess against a shared
local backend's /v1 API: the daemon submits the batch, resumes it when it expires with rows left,
merges the lineage, and submits the new spec when the manifest changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from tests.e2e.test_watch_cli import Daemon, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

ROWS = 12


def write_project(root: Path, url: str, *, max_tokens: int) -> None:
    (root / "jobs" / "data").mkdir(parents=True, exist_ok=True)
    rows = [
        json.dumps(
            {"custom_id": f"r{i:02d}", "body": {"messages": [{"role": "user", "content": f"q{i}"}]}}
        )
        for i in range(ROWS)
    ]
    (root / "jobs" / "data" / "p.jsonl").write_text("\n".join(rows) + "\n")
    (root / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: w}\n"
        f'spec:\n  providers:\n    oai: {{kind: openai, baseUrl: "{url}/v1"}}\n'
    )
    (root / "jobs" / "m.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: data/p.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: alpha}\n"
        "spec: {provider: oai, model: gpt-4o-mini, inputDataset: p, onExpired: resume, "
        f"maxResumes: 5, inferenceParameters: {{maxTokens: {max_tokens}}}}}\n"
    )


def batches(url: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=f"{url}/v1", timeout=10) as client:
        data: list[dict[str, Any]] = client.get("/batches", params={"limit": 100}).json()["data"]
    return data


def keys_of(found: list[dict[str, Any]]) -> set[str]:
    return {b["metadata"]["batchops.key"] for b in found}


def jobs_in(root: Path) -> set[str]:
    """The jobs that answered the rows of the results file."""
    lines = (root / "results" / "alpha.jsonl").read_text().splitlines()
    return {json.loads(line)["job"] for line in lines}


def answered(root: Path) -> list[str]:
    path = root / "results" / "alpha.jsonl"
    if not path.exists():
        return []
    return sorted(json.loads(line)["custom_id"] for line in path.read_text().splitlines())


def test_watch_submits_resumes_and_follows_a_change_on_openai(tmp_path: Path) -> None:
    # 12 rows at 0.15 s each need two 1-second windows: the first batch expires part-way.
    config = BackendConfig(data_dir=tmp_path / "server", row_delay=0.15, max_job_duration=1.0)
    with EmbeddedServer(config) as server:
        root = tmp_path / "proj"
        write_project(root, server.base_url, max_tokens=8)
        daemon = Daemon(root, server.base_url)
        try:
            assert eventually(lambda: answered(root) == [f"r{i:02d}" for i in range(ROWS)], 90)
            first = batches(server.base_url)
            assert "expired" in {b["status"] for b in first}, first  # at least one resume
            assert all(b["metadata"]["batchops.job"] == "alpha" for b in first)
            done = sum(b["request_counts"]["completed"] for b in first)
            assert done == ROWS  # the resumes sent only the rows still unfinished
            keys = keys_of(first)
            assert len(jobs_in(root)) > 1 and jobs_in(root) <= keys  # the lineage, merged

            write_project(root, server.base_url, max_tokens=9)  # a changed spec: a new key
            assert eventually(lambda: keys_of(batches(server.base_url)) - keys, 30)
            # Every row answered again by the new spec's jobs (a parameter changes every request).
            assert eventually(lambda: jobs_in(root) and not jobs_in(root) & keys, 90)
            assert answered(root) == [f"r{i:02d}" for i in range(ROWS)]
        finally:
            assert daemon.terminate() == 0
