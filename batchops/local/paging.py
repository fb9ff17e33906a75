"""Opaque, signed page tokens and page-size coercion for the list routes.

A token is base64url(JSON [list kind, account, last key]) plus a short HMAC, so clients cannot
forge or reuse one across lists; a bad token is a 400 like any other invalid argument.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from batchops.local.problems import invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def page_size(raw: str | None) -> int:
    """Unset or 0 means 50; above 200 is coerced to 200 (the documented behaviour)."""
    if not raw:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise invalid(f"invalid pageSize {raw!r}") from None
    if size < 0:
        raise invalid("pageSize must not be negative")
    return min(size, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:12]


def encode(key: bytes, kind: str, account: str, last: Any) -> str:
    payload = orjson.dumps([kind, account, last])
    return base64.urlsafe_b64encode(_mac(key, payload) + payload).decode().rstrip("=")


def decode(key: bytes, kind: str, account: str, token: str) -> Any:
    """The last key of the previous page, or a 400 for a forged or foreign token."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        mac, payload = raw[:12], raw[12:]
        got_kind, got_account, last = orjson.loads(payload)
    except (ValueError, TypeError):
        raise invalid("invalid page token") from None
    if not hmac.compare_digest(mac, _mac(key, payload)) or (got_kind, got_account) != (
        kind,
        account,
    ):
        raise invalid("invalid page token")
    return last
