"""What the manifest layer needs to know of the provider kinds, without importing a provider.

``batchops.manifest`` reads these for its JSON Schema and field checks (precisions are a
Fireworks field; a provider that has none rejects it in its own validation hook).
"""

from __future__ import annotations

from batchops.providers.fireworks.wire import PRECISIONS

__all__ = ["PRECISIONS"]
