"""Providers by kind: the project file's ``spec.providers`` entries -> ``Provider`` objects.

``ProviderConfig`` (``batchops.config``) is one declared provider (or the built-in ``fireworks``);
``build`` makes its ``Provider`` through the factory registered for its kind. Factories are named
by module path and imported on first use, so a command that never talks to a provider never
imports its client.
Adding a provider kind is one line in ``FACTORIES`` and a module under this package.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from batchops.config import BUILTIN_PROVIDER, ProviderConfig
from batchops.errors import ConfigError
from batchops.providers.base import Provider

# kind -> "module:function"; the function takes (ProviderConfig, **options) and returns a Provider.
FACTORIES: dict[str, str] = {
    "fireworks": "batchops.providers.fireworks.provider:from_config",
    "openai": "batchops.providers.openai.provider:from_config",
}
KINDS = tuple(FACTORIES)

__all__ = ["BUILTIN_FIREWORKS", "FACTORIES", "KINDS", "ProviderConfig", "build", "factory"]

BUILTIN_FIREWORKS = ProviderConfig(name=BUILTIN_PROVIDER, kind="fireworks")  # FIREWORKS_* variables


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
