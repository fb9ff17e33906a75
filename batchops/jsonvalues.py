"""What a JSON value sent to an API may be: finite numbers, string keys, bounded depth and ranges.

Pure and dependency-free, so the manifest models, the dataset validator and the local backend all
apply the same rules (the local backend may import it: it is not part of the client's layers).
A YAML mapping can hold values JSON cannot carry (``.nan``, ``.inf``, dates, ``!!binary``, sets,
non-string keys); Python's ``json`` would send NaN as an invalid token. These are refused before
anything is sent, as are integer parameters the service would certainly reject.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 64  # nesting of arrays/objects; real requests use < 10, parsers recurse per level
INT32_MAX = 2**31 - 1
INT64 = (-(2**63), 2**63 - 1)

# Integer request parameters (chat-completion names, snake_case) and their accepted ranges.
INT_PARAMS: dict[str, tuple[int, int]] = {
    "max_tokens": (1, INT32_MAX),
    "max_completion_tokens": (1, INT32_MAX),
    "top_k": (0, INT32_MAX),
    "n": (1, 128),
    "top_logprobs": (0, INT32_MAX),
    "seed": INT64,
}
SCALARS = (str, bool, int, type(None))


def value_problem(value: Any, *, where: str = "") -> str | None:
    """Why ``value`` is not a plain JSON value (or None): walked without recursion, so a deep
    value is reported, never a RecursionError."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if depth > MAX_DEPTH:
            where = at if len(at) <= 60 else at[:57] + "..."
            return f"{where}: nested deeper than {MAX_DEPTH} levels"
        problem = _scalar_problem(item)
        if problem is not None:
            return f"{at or 'value'}: {problem}"
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{at or 'value'}: key {key!r} is not a string"
                stack.append((child, f"{at}.{key}" if at else key, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{at}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


def _scalar_problem(item: Any) -> str | None:
    if isinstance(item, float):
        return None if math.isfinite(item) else f"{item} is not a finite number (JSON has none)"
    if isinstance(item, (*SCALARS, dict, list)):
        return None
    return f"a {type(item).__name__} is not a JSON value"


def param_problem(name: str, value: Any) -> str | None:
    """Why a request parameter's value will be refused (an integer one that is not an integer in
    its range), or None. Unknown parameters are the service's business."""
    bounds = INT_PARAMS.get(name)
    if bounds is None or value is None:  # null asks for the default
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be an integer, not {value!r}"
    low, high = bounds
    if not low <= value <= high:
        return f"{name} {value} is out of range [{low}, {high}]"
    return None


def params_problem(params: dict[str, Any], *, where: str = "") -> str | None:
    """The first ``param_problem`` among ``params``, prefixed with ``where``."""
    for name, value in params.items():
        problem = param_problem(name, value)
        if problem is not None:
            return f"{where}{problem}"
    return None


def content_problem(content: Any, role: Any) -> str | None:
    """Message content is a string or a list of content parts (objects with a string "type");
    only an assistant message (one with tool calls) may have none."""
    if isinstance(content, str) or (content is None and role == "assistant"):
        return None
    if not isinstance(content, list):
        return "content must be a string or a list of content parts"
    for part in content:
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            return 'content parts must be objects with a string "type"'
    return None
