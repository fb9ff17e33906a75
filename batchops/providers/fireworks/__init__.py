"""The Fireworks provider: its wire models (``wire``), REST client (``client``), the client's
construction from settings (``factory``) and the ``Provider`` over it (``provider``), which maps
the wire types to the neutral model at the edge. See docs/client.md.

Nothing is imported here, so that ``batchops.local`` can import ``wire`` alone.
"""
