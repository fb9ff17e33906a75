"""The Fireworks REST client (``FireworksClient``) and its construction from settings.

Used by the reconciler, apply, results and CLI layers; see docs/client.md.
"""

from batchops.api.client import FireworksClient
from batchops.api.factory import client_from_settings

__all__ = ["FireworksClient", "client_from_settings"]
