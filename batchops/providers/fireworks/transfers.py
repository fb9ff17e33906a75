"""Streaming bodies, signed-URL checks and safe download paths for the Fireworks client.

Everything here keeps memory flat whatever the file size: request bodies are generators reading
1 MiB at a time from disk, downloads are written as they arrive (64 KiB reads) to a temp file beside
the target and renamed into place. Server-chosen file names never escape the destination directory.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath

import httpx

from batchops.errors import ApiError

CHUNK = 1 << 20
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})

ProgressFn = Callable[[int], None]


class Progress:
    """Reports byte increments to a callback; ``rewind`` takes them back on a restart."""

    def __init__(self, callback: ProgressFn | None) -> None:
        self._callback = callback
        self.sent = 0

    def advance(self, count: int) -> None:
        self.sent += count
        if self._callback is not None and count:
            self._callback(count)

    def rewind(self) -> None:
        if self._callback is not None and self.sent:
            self._callback(-self.sent)
        self.sent = 0


def file_chunks(path: Path, progress: Progress) -> Iterator[bytes]:
    """The file's bytes, 1 MiB at a time, reported to ``progress`` as they are handed out."""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            progress.advance(len(chunk))
            yield chunk


def multipart_file(path: Path, progress: Progress) -> tuple[dict[str, str], Iterator[bytes]]:
    """A ``multipart/form-data`` body with one field ``file``, streamed, with its exact length.

    httpx's ``files=`` streams too (64 KiB reads), but building the body here gives 1 MiB reads,
    progress reporting and a fresh generator per retry.
    """
    boundary = secrets.token_hex(16)
    name = _header_safe(path.name)
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + path.stat().st_size + len(tail)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(length),
    }

    def body() -> Iterator[bytes]:
        yield head
        yield from file_chunks(path, progress)
        yield tail

    return headers, body()


def _header_safe(name: str) -> str:
    return "".join("_" if ch in '"\\\r\n' else ch for ch in name)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_signed_url(url: str, *, allow_http: bool) -> httpx.URL:
    """Parse a server-issued signed URL; refuse anything but https (or http when allowed)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ApiError("the server sent a malformed signed URL") from exc
    allowed = {"https", "http"} if allow_http else {"https"}
    if parsed.scheme not in allowed or not parsed.host:
        raise ApiError(
            f"refusing a {parsed.scheme or 'schemeless'} signed URL for host {parsed.host!r}; "
            "only https is allowed for a remote API (allow_insecure_urls=True overrides)"
        )
    return parsed


def safe_relative(key: str, dataset_id: str) -> PurePosixPath:
    """Where a server file key lands, relative to the destination directory.

    ``dataset/<id>/BIJOutputSet.jsonl`` becomes ``<id>/BIJOutputSet.jsonl`` (the dataset folder is
    kept so lineage files do not collide); a bare ``file`` becomes ``<dataset_id>/file``. Keys
    with ``..``, ``.``, empty segments, backslashes, NULs or a leading ``/`` are refused.
    """
    if not key or "\\" in key or "\x00" in key or key.startswith("/"):
        raise ApiError(f"refusing unsafe file name from the server: {key!r}")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ApiError(f"refusing unsafe file name from the server: {key!r}")
    if len(parts) >= 3 and parts[0] == "dataset":
        parts = parts[1:]
    if len(parts) == 1:
        parts = [dataset_id, *parts]
    return PurePosixPath(*parts)


def download_targets(dest: Path, urls: Mapping[str, str], dataset_id: str) -> dict[str, Path]:
    """Map every key to a path inside ``dest`` (checked after resolving), before writing any."""
    root = dest.resolve()
    targets: dict[str, Path] = {}
    for key in sorted(urls):
        target = (root / safe_relative(key, dataset_id)).resolve()
        if not target.is_relative_to(root) or target == root:
            raise ApiError(f"refusing file name that leaves the destination: {key!r}")
        if target in targets.values():
            raise ApiError(f"two server files map to the same local path: {key!r}")
        targets[key] = target
    return targets


def write_atomically(response: httpx.Response, target: Path, progress: Progress) -> None:
    """Stream a response body into a temp file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in _body(response):
                handle.write(chunk)
                progress.advance(len(chunk))
        temp.replace(target)  # atomic: readers see the old file or the whole new one
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


# What signed GETs ask for: the stored bytes, never a compressed rendition of them.
DOWNLOAD_HEADERS = {"Accept-Encoding": "identity"}


def _body(response: httpx.Response) -> Iterator[bytes]:
    """The body in the pieces the connection reads (64 KiB). Not ``iter_bytes(CHUNK)``: that joins
    them into 1 MiB pieces, copying every byte once more, and costs a third of the throughput on
    loopback. ``iter_raw`` skips decoding, so it is only used for a body that is not encoded, and
    still on the wire (a transport may hand over a response it has read already)."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity") and not response.is_stream_consumed:
        return response.iter_raw()
    return response.iter_bytes()
