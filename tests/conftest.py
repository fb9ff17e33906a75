"""Shared fixtures. Tests replace seams (transports, sockets, clocks), never our own methods."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from batchops.errors import BatchopsError
from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer


@dataclass
class FakeResult:
    """What the watch loop reads of a pass's result (``reconcile.PassResult``), without a plan."""

    errors: list[BatchopsError] = field(default_factory=list)
    converged: bool = True
    failed_jobs: list[str] = field(default_factory=list)
    job_states: dict[str, int] = field(default_factory=dict)
    unblocked: bool = False


def ids_in(path: Path) -> list[str]:
    """The custom_id of every line of a JSONL file, in order."""
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines()]


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the real Fireworks API or see a developer's key. CI and GITHUB_ACTIONS
    are cleared too (the suite itself runs under CI=true): a test of the CI rules sets them."""
    for name in (
        "FIREWORKS_API_KEY",
        "FIREWORKS_ACCOUNT_ID",
        "FIREWORKS_BASE_URL",
        "GITHUB_ACTIONS",
        "GITHUB_STEP_SUMMARY",
        "BATCHOPS_PROJECT",
        "CI",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., EmbeddedServer]]:
    """Start EmbeddedServers on ``tmp_path/data`` (config overrides as keywords); stops them all."""
    started: list[EmbeddedServer] = []

    def make(*, worker: bool = True, **overrides: Any) -> EmbeddedServer:
        overrides.setdefault("data_dir", tmp_path / "data")
        server = EmbeddedServer(BackendConfig(**overrides), worker=worker).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
