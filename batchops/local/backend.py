"""The backend's shared state: config, database, signing key and file layout.

One ``Backend`` per process (or per EmbeddedServer); the HTTP routes and the worker both hold it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import quote

from batchops.local.config import BackendConfig
from batchops.local.db import Database
from batchops.local.signing import load_secret


class Backend:
    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        # Owner-only: it holds the signing key and every dataset and result (prompts, outputs).
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = Database(self.data_dir / "backend.sqlite3")
        self.key = load_secret(self.data_dir)
        # Set when this process creates, readies or deletes something a worker acts on, so an
        # idle worker can poll rarely and still start at once on work made in the same process.
        self.wake = threading.Event()

    def dataset_dir(self, account: str, dataset_id: str) -> Path:
        return self.data_dir / "files" / quote(account, safe="") / dataset_id

    def file_path(self, account: str, dataset_id: str, filename: str) -> Path:
        return self.dataset_dir(account, dataset_id) / quote(filename, safe="")

    def close(self) -> None:
        self.db.close()
