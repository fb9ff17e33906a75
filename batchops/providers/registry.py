"""Providers by kind: the project file's ``spec.providers`` entries -> ``Provider`` objects.

``ProviderConfig`` is one declared provider (or the built-in ``fireworks``); ``build`` makes its
``Provider`` through the factory registered for its kind. Factories are named by module path and
imported on first use, so a command that never talks to a provider never imports its client.
Adding a provider kind is one line in ``FACTORIES`` and a module under this package.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from batchops.errors import ConfigError
from batchops.providers.base import Provider

# kind -> "module:function"; the function takes (ProviderConfig, **options) and returns a Provider.
FACTORIES: dict[str, str] = {
    "fireworks": "batchops.providers.fireworks.provider:from_config",
    "openai": "batchops.providers.openai.provider:from_config",
}
KINDS = tuple(FACTORIES)


@dataclass(frozen=True)
class ProviderConfig:
    """One provider: its name, kind, where it is and which environment variable holds its key.

    Keys are never stored here, only the variable's name; ``api_key`` is read by the CLI layer
    from the environment and passed to ``build``. ``limits`` are the provider's caps and quotas
    (``maxRequestsPerBatch``, ``maxBytesPerBatch``, ``enqueuedTokens``...), as declared."""

    name: str
    kind: str
    base_url: str | None = None
    api_key_env: str | None = None
    account_id: str | None = None
    limits: Mapping[str, Any] = field(default_factory=dict)


class Factory(Protocol):
    def __call__(self, config: ProviderConfig, **options: Any) -> Provider: ...


def factory(kind: str) -> Factory:
    """The factory of a provider kind (imported now)."""
    target = FACTORIES.get(kind)
    if target is None:
        raise ConfigError(f"unknown provider kind {kind!r}; one of {', '.join(KINDS)}")
    module, _, function = target.partition(":")
    try:
        made: Factory = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"provider kind {kind!r} is not available in this version") from exc
    return made


def build(config: ProviderConfig, **options: Any) -> Provider:
    """The ``Provider`` for ``config``; ``options`` go to the kind's factory (key, transport...)."""
    return factory(config.kind)(config, **options)
