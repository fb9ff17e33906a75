"""Opaque, signed page tokens and page-size coercion for the list routes.

A token is base64url(JSON [list kind, account, last key]) plus a short HMAC, so clients cannot
forge or reuse one across lists; a bad token is a 400 like any other invalid argument. A
``filter`` (the subset of AIP-160 in ``parse_filter``) narrows the list on the server, as
batchops asks for its own resources only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from batchops.local.backend import Backend
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


@dataclass(frozen=True)
class Listing:
    """How one resource table is listed: the page token carries the last ``key`` seen."""

    table: str  # "datasets" | "jobs" (also the token's kind)
    key: str  # a unique column in list order: "id" for datasets, "seq" (creation order) for jobs
    start: Any  # a value before every key
    field: str  # the response's list field
    render: Callable[[sqlite3.Row], dict[str, Any]]


def list_page(
    backend: Backend, account: str, query: Mapping[str, str], listing: Listing
) -> dict[str, Any]:
    """One page of ``listing`` for ``account``, with ``nextPageToken`` ("" on the last page)."""
    size = page_size(query.get("pageSize"))
    token = query.get("pageToken")
    after = decode(backend.key, listing.table, account, token) if token else listing.start
    where, args = parse_filter(query.get("filter") or "")
    # Table and column names come from the fixed Listings in the route modules, and filter
    # expressions from the fixed _FIELDS; values are always bound parameters.
    table, key = listing.table, listing.key
    select = f"SELECT * FROM {table} WHERE account = ? {where} AND {key} > ? ORDER BY {key} LIMIT ?"  # noqa: S608
    rows = backend.db.all(select, (account, *args, after, size + 1))
    count = f"SELECT count(*) FROM {table} WHERE account = ? {where}"  # noqa: S608
    total = backend.db.one(count, (account, *args))
    page, more = rows[:size], len(rows) > size
    last = page[-1][listing.key] if more else None
    return {
        listing.field: [_rendered(listing.render, row) for row in page],
        "nextPageToken": encode(backend.key, listing.table, account, last) if more else "",
        "totalSize": total[0] if total else 0,
    }


# The list filter: the part of AIP-160 (https://google.aip.dev/160) batchops uses, restrictions
# ``field = "text"`` (equal) or ``field:"text"`` (contains) joined by AND, on these fields.
_FIELDS = {
    "display_name": "json_extract(doc, '$.displayName')",
    "displayName": "json_extract(doc, '$.displayName')",
    "name": "json_extract(doc, '$.name')",
    "state": "state",
}
_RESTRICTION = re.compile(r'([A-Za-z_]+)\s*(=|:)\s*"((?:[^"\\]|\\.)*)"')
_AND = re.compile(r"\s+AND\s+(?=\S)|\s*$")


def parse_filter(text: str) -> tuple[str, list[str]]:
    """``AND <expr> ...`` SQL and its parameters for a list filter; a 400 for anything else."""
    where, args, pos, text = "", [], 0, text.strip()
    while pos < len(text):
        match = _RESTRICTION.match(text, pos)
        joint = _AND.match(text, match.end()) if match else None
        if match is None or joint is None or match.group(1) not in _FIELDS:
            raise invalid(
                f'unsupported filter {text!r}: use field="text" or field:"text" '
                f"on {', '.join(sorted(_FIELDS))}, joined by AND"
            )
        field, op, value = match.groups()
        column = _FIELDS[field]
        where += f" AND {column} = ?" if op == "=" else f" AND instr({column}, ?) > 0"
        args.append(re.sub(r"\\(.)", r"\1", value))
        pos = joint.end()
    return where, args


@lru_cache(maxsize=4096)
def _rendered(render: Callable[[sqlite3.Row], dict[str, Any]], row: sqlite3.Row) -> orjson.Fragment:
    """A row as JSON, rendered once while it is unchanged. The key is the whole row (a Row hashes
    and compares by its values), so any write to it, by this process or another sharing the data
    folder, is a miss: a list of 1,000 finished jobs is then mostly one SELECT."""
    return orjson.Fragment(orjson.dumps(render(row)))
