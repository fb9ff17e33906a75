"""The Fireworks REST client (``FireworksClient``) and its construction from settings.

Used by the reconciler, apply, results and CLI layers; see docs/client.md.
"""

import sys

# httpx imports its own command-line tool when click and rich are installed (70 ms of start-up);
# batchops never runs it. A None entry makes that one import fail, and httpx falls back to a stub.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from batchops.api.client import FireworksClient
from batchops.api.factory import client_from_settings

__all__ = ["FireworksClient", "client_from_settings"]
