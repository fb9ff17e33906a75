"""The local backend's SQLite database: one connection per thread, WAL, shared by processes.

Used by the routes (on the server's event-loop thread) and by the worker thread. Several processes
may open the same file; writes that must be atomic across them use ``transaction()`` (BEGIN
IMMEDIATE), and the worker's job claim relies on it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    account TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, state TEXT NOT NULL,
    create_time REAL NOT NULL, update_time REAL NOT NULL, PRIMARY KEY (account, id));
CREATE TABLE IF NOT EXISTS dataset_files (
    account TEXT NOT NULL, dataset_id TEXT NOT NULL, filename TEXT NOT NULL,
    registered_size INTEGER, uploaded_size INTEGER,
    PRIMARY KEY (account, dataset_id, filename));
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, id TEXT NOT NULL,
    doc TEXT NOT NULL, state TEXT NOT NULL, status TEXT, progress TEXT, lifecycle TEXT,
    create_time REAL NOT NULL, update_time REAL NOT NULL, expire_time REAL NOT NULL,
    owner TEXT, lease_expiry REAL NOT NULL DEFAULT 0,
    cursor INTEGER NOT NULL DEFAULT 0, out_offset INTEGER NOT NULL DEFAULT 0,
    err_offset INTEGER NOT NULL DEFAULT 0, UNIQUE (account, id));
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_account_seq ON jobs (account, seq);
CREATE TABLE IF NOT EXISTS openai_files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, purpose TEXT NOT NULL,
    filename TEXT NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL,
    expires_at INTEGER, dataset_id TEXT NOT NULL, stored_name TEXT NOT NULL, batch_id TEXT,
    model TEXT, tokens INTEGER);
CREATE INDEX IF NOT EXISTS openai_files_batch ON openai_files (batch_id);
-- How many writes each OpenAI listing's tables have seen, whichever process made them: a
-- listing rendered at one count is served again while the count stands (openai_pages).
-- '_openai' is openai_files.OPENAI_ACCOUNT, the account OpenAI batches are stored under.
CREATE TABLE IF NOT EXISTS openai_changes (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT OR IGNORE INTO openai_changes (name, n) VALUES ('batches', 0), ('files', 0);
CREATE TRIGGER IF NOT EXISTS openai_batches_insert AFTER INSERT ON jobs WHEN NEW.account = '_openai'
    BEGIN UPDATE openai_changes SET n = n + 1 WHERE name = 'batches'; END;
CREATE TRIGGER IF NOT EXISTS openai_batches_update AFTER UPDATE ON jobs
    WHEN OLD.account = '_openai' OR NEW.account = '_openai'
    BEGIN UPDATE openai_changes SET n = n + 1 WHERE name = 'batches'; END;
CREATE TRIGGER IF NOT EXISTS openai_batches_delete AFTER DELETE ON jobs WHEN OLD.account = '_openai'
    BEGIN UPDATE openai_changes SET n = n + 1 WHERE name = 'batches'; END;
CREATE TRIGGER IF NOT EXISTS openai_files_insert AFTER INSERT ON openai_files
    BEGIN UPDATE openai_changes SET n = n + 1 WHERE name = 'files'; END;
CREATE TRIGGER IF NOT EXISTS openai_files_update AFTER UPDATE ON openai_files
    BEGIN UPDATE openai_changes SET n = n + 1 WHERE name = 'files'; END;
CREATE TRIGGER IF NOT EXISTS openai_files_delete AFTER DELETE ON openai_files
    BEGIN UPDATE openai_changes SET n = n + 1 WHERE name = 'files'; END;
"""


class Database:
    """Thread-local sqlite3 connections to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._connection().executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: autocommit, explicit BEGIN where atomicity matters.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 15000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._connection().execute(sql, args).fetchone()
        return row

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._connection().execute(sql, args).fetchall()

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Execute one statement; returns the number of rows it changed."""
        return self._connection().execute(sql, args).rowcount

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
