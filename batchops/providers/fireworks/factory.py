"""Builds a ``FireworksClient`` from ``Settings``; called by the CLI and the daemon.

The embedded local backend's wiring (no API key) is done by the caller, which passes its
``base_url``; this only checks that a real key comes with an account ID.
"""

from __future__ import annotations

from typing import Any

from batchops.config import LOCAL_ACCOUNT_ID, Settings
from batchops.errors import ConfigError
from batchops.providers.fireworks.client import FireworksClient


def client_from_settings(
    settings: Settings, *, base_url: str | None = None, **options: Any
) -> FireworksClient:
    """A client for ``settings``; ``options`` go to ``FireworksClient`` (retries, rate, hooks)."""
    if settings.api_key is not None and not settings.account_id:
        raise ConfigError(
            "FIREWORKS_ACCOUNT_ID is required with FIREWORKS_API_KEY "
            "(your account ID, shown in the Fireworks console)"
        )
    return FireworksClient(
        base_url=base_url or settings.base_url,
        account_id=settings.account_id or LOCAL_ACCOUNT_ID,
        api_key=settings.api_key,
        **options,
    )
