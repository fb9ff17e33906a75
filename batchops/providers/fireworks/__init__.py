"""The Fireworks provider: its wire models (``wire``), REST client (``client``), the client's
construction from settings (``factory``) and the ``Provider`` over it (``provider``), which maps
the wire types to the neutral model at the edge. See docs/client.md.

Nothing is imported here, so that ``batchops.local`` can import ``wire`` alone.
"""

import sys

# httpx imports its own command-line tool when click and rich are installed (70 ms of start-up);
# batchops never runs it. A None entry makes that one import fail, and httpx falls back to a stub.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
