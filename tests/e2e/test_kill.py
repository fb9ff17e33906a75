"""Interrupted applies converge: SIGKILL real `batchops apply` processes at different moments, then
`apply --wait` again, and check the server (no duplicates, every job completed once) and the disk
(every custom_id exactly once, no stray temp files where users look).

Eight repositories (eight projects) share one `batchops serve` process. Their applies start
together and are killed at spread-out delays, so the kills land in different phases (upload,
between creates, while jobs run, mid-download, mid-merge). Repository 0 also gets a second,
concurrent apply that is not killed: two applies of the same manifests must converge too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from batchops.api import FireworksClient
from batchops.cli import main
from batchops.identity import owner_of, parse_job_id, project_from_root
from batchops.wire import JOB_STATE_COMPLETED, resource_id

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 400


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    args = [sys.executable, "-m", "batchops", "serve", "--port", "0",
            "--data-dir", str(tmp_path / "backend"), "--row-delay", "0.003",
            "--latency", "0.05"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    match = re.search(r"(http://\S+)", proc.stdout.readline())
    try:
        assert match, "serve did not start"
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def make_repo(root: Path) -> None:
    data = root / "jobs" / "data"
    data.mkdir(parents=True)
    rows = (
        json.dumps({"custom_id": f"r{i}", "body": {"messages": [
            {"role": "user", "content": f"{root.name} question {i} " + "x" * 200}]}})
        for i in range(ROWS)
    )  # fmt: skip
    (data / "prompts.jsonl").write_text("\n".join(rows) + "\n")
    docs = ["apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: prompts}\n"
            "spec: {path: data/prompts.jsonl}\n"]  # fmt: skip
    for name, tokens in (("first", 16), ("second", 32)):
        docs.append(
            "apiVersion: batchops/v1\nkind: BatchInferenceJob\n"
            f"metadata: {{name: {name}}}\nspec: {{model: accounts/fireworks/models/m, "
            f"inputDataset: prompts, inferenceParameters: {{maxTokens: {tokens}}}}}\n"
        )
    (root / "jobs" / "all.yaml").write_text("---\n".join(docs))


def spawn_apply(root: Path, url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FIREWORKS_BASE_URL": url}
    env.pop("FIREWORKS_API_KEY", None)
    return subprocess.Popen([sys.executable, "-m", "batchops", "apply", "--wait",
                             "--poll-interval", "0.2"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


@dataclass
class Snapshot:
    """One repository's world at one instant: remote states (by manifest name) and disk."""

    root: Path
    datasets: list[str]  # states of this project's datasets
    jobs: dict[str, str]  # job manifest name -> state
    output: dict[str, str] = field(default_factory=dict)

    def has(self, pattern: str) -> bool:
        return any(self.root.joinpath(".batchops").glob(pattern))


# Kill points, one per repository, each named after the phase it interrupts.
KILL_POINTS: list[tuple[str, Callable[[Snapshot], bool]]] = [
    ("mid-upload", lambda s: s.datasets == ["UPLOADING"]),
    ("dataset ready, no job yet", lambda s: s.datasets == ["READY"] and not s.jobs),
    ("first results written", lambda s: s.root.joinpath("results").is_dir()),
    ("jobs running", lambda s: len(s.jobs) == 2 and JOB_STATE_COMPLETED not in s.jobs.values()),
    ("jobs done, nothing downloaded", lambda s: set(s.jobs.values()) == {JOB_STATE_COMPLETED}),
    ("mid-download", lambda s: s.has("downloads/*/*")),
    ("mid-merge", lambda s: s.has("tmp/*")),
    ("between the two merges", lambda s: s.has("results/*.json")),
]


def snapshot(client: FireworksClient, roots: list[Path]) -> list[Snapshot]:
    jobs, datasets = client.list_jobs(), client.list_datasets()
    shots = []
    for root in roots:
        project = project_from_root(root)
        mine = [j for j in jobs if owner_of(j.display_name) == project]
        names = {parse_job_id(resource_id(j.name or "")).name: j.state or "" for j in mine}  # type: ignore[union-attr]
        states = [d.state or "" for d in datasets if owner_of(d.display_name) == project]
        shots.append(Snapshot(root, states, names))
    return shots


def kill_at_points(procs: list[subprocess.Popen[bytes]], roots: list[Path], url: str) -> list[str]:
    """Poll the world; SIGKILL process i when kill point i is reached. Returns the points hit."""
    hit: list[str] = []
    deadline = time.monotonic() + 45
    with FireworksClient(base_url=url, account_id="local", api_key=None) as client:
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            for (name, reached), proc, shot in zip(KILL_POINTS, procs, snapshot(client, roots),
                                                   strict=True):  # fmt: skip
                if proc.poll() is None and reached(shot):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    hit.append(name)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return hit


def assert_converged(root: Path, url: str) -> None:
    project = project_from_root(root)
    with FireworksClient(base_url=url, account_id="local", api_key=None) as client:
        jobs = [j for j in client.list_jobs() if owner_of(j.display_name) == project]
        datasets = [d for d in client.list_datasets() if owner_of(d.display_name) == project]
    per_name = Counter(parse_job_id(resource_id(j.name or "")).name for j in jobs)  # type: ignore[union-attr]
    assert per_name == Counter({"first": 1, "second": 1}), [j.name for j in jobs]
    assert all(j.state == JOB_STATE_COMPLETED for j in jobs)
    assert [resource_id(d.name or "").rsplit("-", 1)[0] for d in datasets] == ["prompts"]
    expected = sorted(f"r{i}" for i in range(ROWS))
    for name in ("first", "second"):
        got = _ids(root / "results" / f"{name}.jsonl") + _ids(
            root / "results" / f"{name}.errors.jsonl"
        )
        assert sorted(got) == expected, f"{root.name}/{name}: {len(got)} rows"
    assert sorted(p.name for p in (root / "results").iterdir()) == [
        "first.errors.jsonl", "first.jsonl", "second.errors.jsonl", "second.jsonl"]  # fmt: skip
    assert sorted(p.name for p in root.iterdir()) == [".batchops", "jobs", "results"]


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines()]


def test_killed_applies_converge_without_duplicates(
    tmp_path: Path, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots = [tmp_path / f"repo{i}" for i in range(len(KILL_POINTS))]
    for root in roots:
        make_repo(root)
    procs = [spawn_apply(root, server_url) for root in roots]
    concurrent = spawn_apply(roots[0], server_url)  # never killed: races repo0's killed apply
    hit = kill_at_points(procs, roots, server_url)
    assert concurrent.wait(60) == 0
    # Most points must really be hit (a point missed only means that process finished first).
    assert len(hit) >= len(KILL_POINTS) // 2, hit
    monkeypatch.setenv("FIREWORKS_BASE_URL", server_url)
    for root in roots:
        code = main(["apply", "--root", str(root), "--wait", "--timeout", "40",
                     "--poll-interval", "0.1"])  # fmt: skip
        assert code == 0, root.name
        assert_converged(root, server_url)
