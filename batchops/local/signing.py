"""Signed URLs for dataset file transfers, pointing back at the backend itself.

The routes mint them (``:getUploadEndpoint``, ``:getDownloadEndpoint``) and the transfer routes
check them. An HMAC-SHA256 over method, path, expiry (and size for PUT) with a per-data-dir secret
makes them unguessable and tamper-proof; they need no Authorization header, like GCS V4 URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

UPLOAD_TTL = 3600.0
DOWNLOAD_TTL = 600.0


def load_secret(data_dir: Path) -> bytes:
    """The data dir's signing key, created once (O_EXCL, so racing processes agree on one)."""
    path = data_dir / "signing.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_when_written(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def _read_when_written(path: Path) -> bytes:
    # Another process may have created the file and not yet written it.
    for _ in range(100):
        key = path.read_bytes()
        if len(key) == 32:
            return key
        time.sleep(0.01)
    raise RuntimeError(f"signing key {path} is corrupt")


def transfer_path(account: str, dataset_id: str, filename: str) -> str:
    return f"/signed/{quote(account, safe='')}/{dataset_id}/{quote(filename, safe='')}"


def _signature(key: bytes, method: str, path: str, expires: int, size: int | None) -> str:
    message = f"{method}\n{path}\n{expires}\n{'' if size is None else size}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(
    key: bytes,
    base_url: str,
    method: str,
    path: str,
    *,
    ttl: float,
    size: int | None = None,
    now: float | None = None,
) -> str:
    expires = int((time.time() if now is None else now) + ttl)
    query = f"expires={expires}&sig={_signature(key, method, path, expires, size)}"
    if size is not None:
        query = f"size={size}&{query}"
    return f"{base_url}{path}?{query}"


def verify(
    key: bytes, method: str, path: str, query: dict[str, str], *, now: float | None = None
) -> tuple[bool, str]:
    """(ok, reason). The path is the raw request path, exactly as signed."""
    try:
        expires = int(query["expires"])
        size = int(query["size"]) if "size" in query else None
    except (KeyError, ValueError):
        return False, "malformed signed URL"
    expected = _signature(key, method, path, expires, size)
    if not hmac.compare_digest(expected, query.get("sig", "")):
        return False, "invalid signature"
    if (time.time() if now is None else now) > expires:
        return False, "signed URL expired"
    return True, ""
