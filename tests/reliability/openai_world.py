"""The reliability suite's OpenAI-compatible side: a project whose jobs run on an ``openai``
provider, and the converged world read back from the backend's /v1/batches.

Batch IDs are server-assigned, so an interrupted or concurrent create can leave a second batch
for one part; the next pass cancels it (the oldest is kept). "No unbounded duplicates" is: at
least one completed batch per part of each declared job, none still running, and at most
``extra_allowed`` batches beyond one per part. Used by test_kill, test_faults, test_concurrent and
test_serve_restart, parametrized over the provider kind.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from batchops.identity import project_from_root

PROVIDERS = ("fireworks", "openai")


def write_provider(root: Path, openai_url: str, *, cap: int | None = None) -> None:
    """Declare the ``oai`` provider at ``openai_url`` (``.../v1``); the project's name stays the
    folder's (``project_from_root``), as without a project file."""
    limits = f", limits: {{maxRequestsPerBatch: {cap}}}" if cap else ""
    (root / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\n"
        f"metadata: {{name: {project_from_root(root)}}}\n"
        f'spec:\n  providers:\n    oai: {{kind: openai, baseUrl: "{openai_url}"{limits}}}\n'
    )


def batches(openai_url: str) -> list[dict[str, Any]]:
    """Every batch on the server, newest first, read past injected faults (asked again)."""
    found: list[dict[str, Any]] = []
    after: str | None = None
    with httpx.Client(base_url=openai_url, timeout=10) as client:
        while True:
            page = _page(client, {"limit": 100, **({"after": after} if after else {})})
            found += page["data"]
            if not page["has_more"]:
                return found
            after = page["data"][-1]["id"]


def _page(client: httpx.Client, params: dict[str, Any]) -> dict[str, Any]:
    for _ in range(50):  # bounded: the fault rates are well under one in two
        try:
            answer = client.get("/batches", params=params)
        except httpx.TransportError:
            continue
        if answer.status_code == 200:
            page: dict[str, Any] = answer.json()
            return page
    raise AssertionError("the batch list kept failing")


def assert_batches_converged(
    openai_url: str, root: Path, *, jobs: list[str], extra_allowed: int
) -> None:
    """Per declared job: every part has a completed batch, nothing runs, duplicates bounded."""
    project = project_from_root(root)
    deadline = time.monotonic() + 30  # a cancelled batch ends once its in-flight rows are done
    while True:
        ours = [
            b
            for b in batches(openai_url)
            if (b.get("metadata") or {}).get("batchops.project") == project
        ]
        if time.monotonic() > deadline or all(b["status"] != "cancelling" for b in ours):
            break
        time.sleep(0.1)
    meta = [(b["metadata"], b["status"]) for b in ours]
    # A job whose every row was answered already (reuse) has no batch of its own.
    assert {m["batchops.job"] for m, _ in meta} <= set(jobs)
    slots = Counter((m["batchops.job"], m["batchops.part"]) for m, _ in meta)
    completed = {(m["batchops.job"], m["batchops.part"]) for m, s in meta if s == "completed"}
    assert completed == set(slots), sorted(set(slots) - completed)
    running = [(m, s) for m, s in meta if s not in ("completed", "cancelled")]
    assert not running, running
    assert len(ours) - len(slots) <= extra_allowed, {k: n for k, n in slots.items() if n > 1}


def result_ids(root: Path, job: str) -> list[str]:
    path = root / "results" / f"{job}.jsonl"
    return sorted(json.loads(line)["custom_id"] for line in path.read_text().splitlines())
