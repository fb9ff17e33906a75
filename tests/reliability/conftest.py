"""Fixtures for the fault, kill, concurrency and restart tests: a local backend behind a *gate*
(an ASGI wrapper that can hold one chosen request of one account forever, so a test can SIGKILL
the client at exactly that point), project folders, `batchops` subprocesses, and the checks of a
converged world (what the server holds, what is on disk, what `status --output json` says).

The gate replaces a seam (the HTTP server in front of the backend's own app), not our methods.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from batchops.cli import main
from batchops.identity import owner_of, parse_job_id, project_from_root
from batchops.local.app import create_app
from batchops.local.backend import Backend
from batchops.local.config import BackendConfig
from batchops.local.worker import Worker
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.wire import JOB_STATE_COMPLETED, resource_id
from tests.conftest import ids_in
from tests.reliability.openai_world import assert_batches_converged, write_provider

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Hold:
    """Hold the ``nth`` request of ``account`` matching ``method`` and ``path`` (a regex).

    ``when``: ``before`` (the backend never sees it), ``after`` (the backend did it; the answer
    is lost), ``half-body`` (half the request body was sent), ``half-answer`` (half the response
    body was received)."""

    account: str
    method: str
    path: str
    nth: int = 1
    when: str = "before"
    seen: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)  # the client is dead

    def matches(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        return (
            scope.get("type") == "http"
            and scope["method"] == self.method
            and f"/{self.account}/" in path
            and re.search(self.path, path) is not None
        )


class Gate:
    """ASGI wrapper: requests matching a Hold stop at its point until the client goes away."""

    def __init__(self, app: Any) -> None:
        self.app, self.holds, self.log = app, list[Hold](), list[str]()
        self._lock = threading.Lock()

    def _hold_for(self, scope: Scope) -> Hold | None:
        with self._lock:
            for hold in self.holds:
                if not hold.reached.is_set() and hold.matches(scope):
                    hold.seen += 1
                    if hold.seen == hold.nth:
                        return hold
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            self.log.append(f"{scope['method']} {scope['path']}")
        hold = self._hold_for(scope)
        scope = _unprefixed(scope)
        if hold is None:
            return await self.app(scope, receive, send)
        if hold.when == "before":
            return await _park(hold)
        if hold.when == "half-body":
            await _read_half(receive, scope)
            return await _park(hold)
        return await self.app(scope, receive, _stopping_send(send, hold))


# An OpenAI-compatible provider's requests carry no account; a project's CLI is pointed at
# ``<server>/<account>`` instead (test_kill), so a Hold can tell concurrent projects apart, and
# the Gate strips the prefix before the backend sees the request.
_PREFIXED = re.compile(r"^/([A-Za-z0-9_-]+)(/v1/.*)$")


def _unprefixed(scope: Scope) -> Scope:
    found = _PREFIXED.match(scope.get("path", "")) if scope.get("type") == "http" else None
    if found is None or found.group(1) == "v1":
        return scope
    return {**scope, "path": found.group(2), "raw_path": found.group(2).encode()}


async def _park(hold: Hold) -> None:
    hold.reached.set()
    while not hold.released.is_set():  # then finish normally, into a closed connection
        await asyncio.sleep(0.05)


async def _read_half(receive: Receive, scope: Scope) -> None:
    headers = dict(scope.get("headers", []))
    total, got = int(headers.get(b"content-length", b"0") or 0), 0
    while got * 2 < total:
        message = await receive()
        got += len(message.get("body", b""))
        if not message.get("more_body"):
            break


def _stopping_send(send: Send, hold: Hold) -> Send:
    """``after``: swallow the whole answer; ``half-answer``: pass half the body, then park."""
    state = {"sent": 0, "total": 0}

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            state["total"] = int(dict(message.get("headers", [])).get(b"content-length", 0) or 0)
            if hold.when == "half-answer":
                await send(message)
            return
        if hold.when == "after":
            if not message.get("more_body"):
                await _park(hold)
            return
        body = message.get("body", b"")
        await send(message if hold.reached.is_set() else {**message, "more_body": True})
        state["sent"] += len(body)
        if not hold.reached.is_set() and state["sent"] * 2 >= state["total"]:
            await _park(hold)

    return wrapped


class GatedServer:
    """The backend's app behind a Gate, served by uvicorn on a loopback port, with its worker."""

    def __init__(self, config: BackendConfig) -> None:
        self.backend = Backend(config)
        self.gate = Gate(create_app(config, backend=self.backend))
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.gate,
                host="127.0.0.1",
                port=0,
                lifespan="off",
                access_log=False,
                log_level="critical",
                timeout_graceful_shutdown=1,
            )
        )
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.worker = Worker(self.backend)
        self.base_url = ""

    def start(self) -> GatedServer:
        self._thread.start()
        while not self._server.started:
            threading.Event().wait(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.worker.start()
        return self

    def stop(self) -> None:
        for hold in self.gate.holds:
            hold.released.set()
        self.worker.stop(timeout=1.0)
        self._server.should_exit = self._server.force_exit = True
        self._thread.join(5)
        self.backend.close()


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[Callable[..., GatedServer]]:
    started: list[GatedServer] = []

    def make(**overrides: Any) -> GatedServer:
        overrides.setdefault("data_dir", tmp_path / "backend")
        server = GatedServer(BackendConfig(**overrides)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


# -- projects ----------------------------------------------------------------------------------


def write_project(
    root: Path,
    *,
    rows: int,
    jobs: int = 2,
    pad: int = 40,
    reuse: bool = True,
    openai_url: str | None = None,
    cap: int | None = None,
) -> None:
    """``rows`` prompts (padded with ``pad`` characters) and ``jobs`` jobs reading them (the
    same requests: with ``reuse``, a job may reuse another's answers). With ``openai_url`` the
    jobs run on an OpenAI-compatible provider there (``cap`` requests per batch: parts)."""
    data = root / "jobs" / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = (
        json.dumps(
            {
                "custom_id": f"r{i}",
                "body": {
                    "messages": [{"role": "user", "content": f"{root.name} {i} " + "x" * pad}]
                },
            }
        )
        for i in range(rows)
    )
    (data / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    docs = [
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: prompts}\n"
        "spec: {path: data/prompts.jsonl}\n"
    ]
    model = "model: accounts/fireworks/models/m"
    if openai_url is not None:
        write_provider(root, openai_url, cap=cap)
        model = "provider: oai, model: gpt-4o-mini"
    for k in range(jobs):
        docs.append(
            "apiVersion: batchops/v1\nkind: BatchInferenceJob\n"
            f"metadata: {{name: job{k}}}\nspec: {{{model}, "
            f"inputDataset: prompts, {'' if reuse else 'reuse: false, '}"
            f"inferenceParameters: {{maxTokens: {pad + 16}}}}}\n"
        )
    (root / "jobs" / "all.yaml").write_text("---\n".join(docs))


def env_for(url: str, account: str = "local") -> dict[str, str]:
    env = {
        **os.environ,
        "FIREWORKS_BASE_URL": url,
        "FIREWORKS_ACCOUNT_ID": account,
        "NO_COLOR": "1",
    }
    env.pop("FIREWORKS_API_KEY", None)
    env.pop("OPENAI_API_KEY", None)
    return env


def spawn(
    root: Path, url: str, *args: str, account: str = "local", log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``batchops <args>`` in ``root``; stderr to ``log`` (or nowhere)."""
    err = log.open("wb") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "batchops", *args],
            cwd=root,
            env=env_for(url, account),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    finally:
        if log:
            err.close()  # type: ignore[union-attr]


APPLY = ("apply", "--wait", "--timeout", "120", "--poll-interval", "0.1")


# -- the converged world -----------------------------------------------------------------------


def remote(url: str, account: str, project: str) -> tuple[list[Any], list[Any]]:
    """This project's jobs and (input) datasets on the backend."""
    with FireworksClient(base_url=url, account_id=account, api_key=None) as client:
        jobs = [j for j in client.list_jobs() if owner_of(j.display_name) == project]
        datasets = [d for d in client.list_datasets() if owner_of(d.display_name) == project]
    return jobs, datasets


def assert_no_duplicates(
    url: str, account: str, root: Path, *, jobs: list[str], datasets: list[str]
) -> None:
    """Exactly one remote job per declared job (all COMPLETED), one dataset per declared one."""
    remote_jobs, remote_ds = remote(url, account, project_from_root(root))
    names = Counter(parse_job_id(resource_id(j.name or "")).name for j in remote_jobs)  # type: ignore[union-attr]
    assert names == Counter(jobs), sorted(j.name or "" for j in remote_jobs)
    assert {j.state for j in remote_jobs} <= {JOB_STATE_COMPLETED}
    ds_names = Counter(resource_id(d.name or "").rsplit("-", 1)[0] for d in remote_ds)
    assert ds_names == Counter(datasets), ds_names


def openai_url(url: str, provider: str) -> str | None:
    """The OpenAI-compatible base URL of a project on ``provider`` at the backend ``url`` (None:
    Fireworks). A shared backend takes every provider's requests at its own URL anyway."""
    return f"{url}/v1" if provider == "openai" else None


def assert_converged(
    provider: str,
    url: str,
    account: str,
    root: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    jobs: int,
    rows: int | None,
    extra_allowed: int = 1,
) -> None:
    """The world after the last apply, on either provider: one remote job per declared job (on
    an OpenAI-compatible provider, at most ``extra_allowed`` duplicate batches, none running),
    and every declared job's results verified with each custom_id exactly once."""
    names = [f"job{k}" for k in range(jobs)]
    found = openai_url(url, provider)
    if found is None:
        assert_no_duplicates(url, account, root, jobs=names, datasets=["prompts"])
    else:
        assert_batches_converged(found, root, jobs=names, extra_allowed=extra_allowed)
    expected = [f"r{i}" for i in range(rows)] if rows is not None else None
    assert_results_verified(root, url, account, expected, capsys)


def status_json(root: Path, url: str, account: str, capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    code = main(
        [
            "status",
            "--root",
            str(root),
            "--base-url",
            url,
            "--account-id",
            account,
            "--output",
            "json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def assert_results_verified(
    root: Path,
    url: str,
    account: str,
    expected: list[str] | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every declared job: `status` says verified; every input custom_id (``expected``, when
    given) exactly once across the results and errors files; nothing else where users look."""
    jobs = status_json(root, url, account, capsys)["jobs"]
    assert jobs and all(j["resultsState"] == "verified" for j in jobs), jobs
    for job in jobs:
        path = root / job["results"]
        errors = path.with_name(path.stem + ".errors.jsonl")
        got = ids_in(path) + (ids_in(errors) if errors.exists() else [])
        assert len(got) == len(set(got)) > 0, f"{root.name}/{job['name']}: duplicate rows"
        if expected is not None:
            assert sorted(got) == sorted(expected), f"{root.name}/{job['name']}: {len(got)} rows"
    paths = [root / j["results"] for j in jobs]
    allowed = {*paths, *(p.with_name(p.stem + ".errors.jsonl") for p in paths)}
    tables = {p.with_name(f"{p.stem}.table{s}") for p in paths for s in (".csv", ".jsonl")}
    for folder in {p.parent for p in paths}:  # tables: spec.output.table, declared
        assert set(folder.iterdir()) <= allowed | tables, "a stray file where users look"
