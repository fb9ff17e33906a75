"""Pydantic validation errors -> located Diagnostics, with "did you mean" hints.

Called by ``batchops.manifest.loader`` for each document. A pydantic ``loc`` (by alias) is looked
up in the document's position maps: unknown fields point at the key, bad values at the value, and
missing fields at the key of the mapping that lacks them.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from batchops.errors import Diagnostic
from batchops.manifest.doc import Loc, Pos, YamlDocument
from batchops.manifest.hints import suggest

__all__ = ["suggest", "validation_diagnostics"]  # suggest: re-exported for older imports


def validation_diagnostics(
    exc: ValidationError, doc: YamlDocument, model: type[BaseModel], path: str
) -> list[Diagnostic]:
    return [_diagnostic(err, doc, model, path) for err in exc.errors(include_url=False)]


def _diagnostic(
    err: ErrorDetails, doc: YamlDocument, model: type[BaseModel], path: str
) -> Diagnostic:
    loc: Loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        fields = aliases_at(model, loc[:-1])
        message = f"unknown field '{loc[-1]}'{suggest(str(loc[-1]), fields)}"
        return Diagnostic(path, *_nearest(doc.keys, loc, doc.start), message)
    if err["type"] == "missing":
        where = f" in {dotted(loc[:-1])}" if len(loc) > 1 else ""
        pos = _nearest(doc.keys, loc[:-1], doc.start)
        return Diagnostic(path, *pos, f"missing required field '{loc[-1]}'{where}")
    text = err["msg"].removeprefix("Value error, ")
    if err["type"] == "model_type":  # not "a valid dictionary or instance of Metadata"
        text = "Input should be a mapping"
    return Diagnostic(path, *_value_pos(doc, loc), f"{dotted(loc)}: {text}")


def dotted(loc: Loc) -> str:
    """('spec', 'messages', 0) -> 'spec.messages[0]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out or "document"


def _value_pos(doc: YamlDocument, loc: Loc) -> Pos:
    """The value's position; for a mapping (a whole-object error), its key's, which reads better."""
    if isinstance(_data_at(doc.data, loc), dict) and loc in doc.keys:
        return doc.keys[loc]
    return _nearest(doc.values, loc, doc.start)


def _nearest(positions: dict[Loc, Pos], loc: Loc, default: Pos) -> Pos:
    for end in range(len(loc), 0, -1):
        if loc[:end] in positions:
            return positions[loc[:end]]
    return default


def _data_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def aliases_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The YAML keys allowed in the mapping at ``loc`` of ``model`` (for suggestions)."""
    current: type[BaseModel] | None = model
    for part in loc:
        field = _field_by_alias(current, part) if current else None
        current = _model_in(field.annotation) if field else None
    if current is None:
        return []
    return [f.alias or name for name, f in current.model_fields.items()]


def _field_by_alias(model: type[BaseModel], key: str | int) -> Any:
    return next((f for n, f in model.model_fields.items() if (f.alias or n) == key), None)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    candidates = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)
