"""batchops.local: the embedded, Fireworks-compatible backend (HTTP app, SQLite store, worker,
engines). Entry points: ``server.EmbeddedServer``, ``server.serve``, ``app.create_app`` and the
``config`` dataclasses. See docs/local-backend.md.
"""
