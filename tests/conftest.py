"""Shared fixtures. Tests replace seams (transports, sockets, clocks), never our own methods."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the real Fireworks API or see a developer's key."""
    for name in ("FIREWORKS_API_KEY", "FIREWORKS_ACCOUNT_ID", "FIREWORKS_BASE_URL",
                 "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "BATCHOPS_PROJECT"):
        monkeypatch.delenv(name, raising=False)
