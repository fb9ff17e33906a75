"""A quick proof that an ordinary Dataset or job document is valid, without pydantic.

Called by ``batchops.manifest.loader`` before a document is validated by its model. Most
documents of a big project are plain: a name, a path, a model, a dataset, a few inference
parameters. For those, each value is checked here against the very rule its model field states
(the same types, strict as the models are, the same ranges, patterns and literals), and the
answer is a ``stored.Node`` holding the fields the model would hold, defaults included: the
builder already reads Nodes (the manifest cache gives them back), and telling documents apart
by ``kind`` only. Anything else (an unknown or unusual key, a value of another type, an
out-of-range or invalid value, a matrix, a template, a canary, ...) answers None and the model
decides: every message stays the model's own. Pydantic validates ~14 us per job document; this
~3 us (issue 17: 10,000 jobs load in at most 1 s).

``tests/manifest/test_quick.py`` checks that whatever is accepted here the model accepts with
the same fields, and that the tables below name exactly the models' fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from batchops.jsonvalues import INT32_MAX
from batchops.manifest.models import (
    MODEL_RE,
    NAME_MAX,
    NAME_RE,
    BatchInferenceJobManifest,
    DatasetManifest,
    DatasetSpec,
    InferenceParameters,
    JobSpec,
    Metadata,
    OutputSpec,
    StrictModel,
)
from batchops.manifest.stored import Node
from batchops.providers.catalog import PRECISIONS


class _No(Exception):
    """Not provably valid here: the model decides."""


Check = Callable[[Any], Any]  # a value -> the field's value, or raises _No


def quick_manifest(data: dict[str, Any]) -> Node | None:
    """``data`` (a document's mapping) as the fields its model would hold, or None to let the
    model validate it."""
    kind = data.get("kind")
    shape = _SHAPES.get(kind) if type(kind) is str else None
    if shape is None:
        return None
    try:
        return shape(data)
    except _No:
        return None


# -- values ---------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if type(value) is not str:
        raise _No
    return value


def _filled(value: Any) -> str:
    if type(value) is not str or not value:
        raise _No
    return value


def _name(value: Any) -> str:
    if type(value) is not str or len(value) > NAME_MAX or not NAME_RE.fullmatch(value):
        raise _No
    return value


def _model_name(value: Any) -> str:
    if type(value) is not str or not MODEL_RE.fullmatch(value):
        raise _No
    return value


def _one_of(*allowed: str) -> Check:
    def check(value: Any) -> str:
        if type(value) is not str or value not in allowed:
            raise _No
        return value

    return check


def _int(low: int, high: float = math.inf) -> Check:
    def check(value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise _No
        return value

    return check


def _float(low: float, high: float) -> Check:
    def check(value: Any) -> float:
        if type(value) is not float or not low <= value <= high:  # NaN fails both
            raise _No
        return value

    return check


def _flag(value: Any) -> bool:
    if type(value) is not bool:
        raise _No
    return value


def _labels(value: Any) -> dict[str, str]:
    if type(value) is not dict or not all(
        type(k) is str and type(v) is str for k, v in value.items()
    ):
        raise _No
    return dict(value)


def _names(value: Any) -> list[str]:
    if type(value) is not list or not all(type(v) is str and v for v in value):
        raise _No
    return list(value)


# -- documents ------------------------------------------------------------------------------------


class _Shape:
    """One model: its accepted keys (aliases) -> (field, check), and its fields' defaults."""

    def __init__(
        self, model: type[StrictModel], checks: dict[str, Check], needs: frozenset[str]
    ) -> None:
        fields = model.model_fields
        self.model = model.__name__
        self.aliases = {f: i.serialization_alias or i.alias or f for f, i in fields.items()}
        by_alias = {alias: f for f, alias in self.aliases.items()}
        self.checks = {alias: (by_alias[alias], check) for alias, check in checks.items()}
        required = {a for f, a in self.aliases.items() if fields[f].is_required()}
        self.required = needs | required  # ``needs``: what a model's own validator requires
        # Every field, in the model's order (a required one is always given: ``required``).
        self.defaults: dict[str, Any] = dict.fromkeys(fields)
        self.fresh: list[str] = []  # defaults that are mutable: a new one per document
        for f, info in fields.items():
            if info.is_required():
                continue
            default = info.get_default(call_default_factory=True)
            if isinstance(default, StrictModel):  # a nested model's defaults, as a Node
                default = _SHAPE_OF[type(default)]({})
            elif isinstance(default, (list, dict)):
                self.fresh.append(f)
            self.defaults[f] = default

    def __call__(self, data: Any) -> Node:
        if type(data) is not dict or not self.required <= data.keys():
            raise _No
        fields = self.defaults.copy()
        for f in self.fresh:
            fields[f] = type(fields[f])()
        checks = self.checks
        try:
            for key, value in data.items():
                field, check = checks[key]
                fields[field] = check(value)
        except KeyError:  # an unknown key (the checks raise only _No)
            raise _No from None
        return Node(self.model, fields, self.aliases)


def _job(data: dict[str, Any]) -> Node:
    node = _JOB(data)
    spec = data["spec"]
    if "model" not in spec or ("inputDataset" in spec) == ("inputDatasetId" in spec):
        raise _No  # the model's "missing model" and "exactly one input" rules, worded there
    return node


_SHAPE_OF: dict[type[StrictModel], _Shape] = {}


def _shape(
    model: type[StrictModel], checks: dict[str, Check], *, needs: frozenset[str] = frozenset()
) -> _Shape:
    shape = _SHAPE_OF[model] = _Shape(model, checks, needs)
    return shape


_METADATA = _shape(Metadata, {"name": _name, "labels": _labels})
_PARAMETERS = _shape(
    InferenceParameters,
    {
        "maxTokens": _int(1, INT32_MAX),
        "temperature": _float(0, 2),
        "topP": _float(0, 1),
        "topK": _int(0, INT32_MAX),
        "n": _int(1, 128),
    },
)
_OUTPUT = _shape(OutputSpec, {"path": _filled})
_JOB_SPEC = _shape(
    JobSpec,
    {
        "provider": _text,
        "model": _model_name,
        "inputDataset": _text,
        "inputDatasetId": _filled,
        "displayName": _text,
        "inferenceParameters": _PARAMETERS,
        "precision": _one_of(*PRECISIONS),
        "output": _OUTPUT,
        "onExpired": _one_of("resume", "stop"),
        "maxResumes": _int(0, 100),
        "reuse": _flag,
        "rowRetries": _int(0, 10),
        "maxFailedRows": _int(0),
        "maxRetries": _int(0, 100),
        "dependsOn": _names,
    },
)
_DATASET_SPEC = _shape(
    DatasetSpec,
    {"path": _filled, "format": _one_of("CHAT", "COMPLETION")},
    needs=frozenset({"path"}),  # DatasetSpec._path_required (path or source; source goes there)
)
_HEAD: dict[str, Check] = {"apiVersion": _one_of("batchops/v1"), "metadata": _METADATA}
_JOB = _shape(
    BatchInferenceJobManifest,
    {**_HEAD, "kind": _one_of("BatchInferenceJob"), "spec": _JOB_SPEC},
)
_DATASET = _shape(DatasetManifest, {**_HEAD, "kind": _one_of("Dataset"), "spec": _DATASET_SPEC})
_SHAPES: dict[str, Callable[[dict[str, Any]], Node]] = {
    "BatchInferenceJob": _job,
    "Dataset": _DATASET,
}
