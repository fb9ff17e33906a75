"""The quick proof of plain documents (``manifest/quick.py``) against the models it stands for.

Whatever ``quick_manifest`` accepts, the model accepts with the very same fields (types, values,
defaults, order); whatever it declines, the model still decides, so every message is the model's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from batchops.errors import Diagnostic
from batchops.manifest.loader import read_manifests
from batchops.manifest.models import KINDS
from batchops.manifest.quick import _SHAPE_OF, quick_manifest
from batchops.manifest.stored import Node, _model

JOB = {
    "apiVersion": "batchops/v1",
    "kind": "BatchInferenceJob",
    "metadata": {"name": "job-1", "labels": {"team": "qa"}},
    "spec": {
        "provider": "fireworks",
        "model": "accounts/fireworks/models/m",
        "inputDataset": "qa",
        "displayName": "Job one",
        "inferenceParameters": {
            "maxTokens": 16,
            "temperature": 0.5,
            "topP": 1.0,
            "topK": 40,
            "n": 2,
        },
        "precision": "FP8",
        "output": {"path": "out/one.jsonl"},
        "onExpired": "stop",
        "maxResumes": 0,
        "reuse": False,
        "rowRetries": 10,
        "maxFailedRows": 3,
        "maxRetries": 100,
        "dependsOn": ["other"],
    },
}
DATASET = {
    "apiVersion": "batchops/v1",
    "kind": "Dataset",
    "metadata": {"name": "qa"},
    "spec": {"path": "data/qa.jsonl", "format": "CHAT"},
}


def _same(data: dict[str, Any]) -> Node | None:
    """The quick answer, after checking that the model gives the same fields."""
    node = quick_manifest(data)
    if node is not None:
        model = KINDS[data["kind"]].model_validate(data)  # raises if the proof was wrong
        assert repr(_model(node, {})) == repr(_model(model, {}))
        dumped = model.model_dump(by_alias=True, exclude_none=True)
        assert repr(node.model_dump(by_alias=True, exclude_none=True)) == repr(dumped)
    return node


def test_plain_documents_are_proven_without_their_model(tmp_path: Path) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: qa}\n"
        "spec: {path: data/qa.jsonl}\n---\n"
        "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: job1}\n"
        "spec: {model: m, inputDataset: qa, inferenceParameters: {maxTokens: 16}}\n",
        encoding="utf-8",
    )
    parsed = read_manifests(manifest, tmp_path, [])
    assert [type(p.manifest).__name__ for p in parsed] == ["Node", "Node"]
    assert parsed[1].manifest.spec.inference_parameters.max_tokens == 16  # type: ignore[attr-defined]


def test_every_key_it_knows_gives_the_models_fields() -> None:
    assert _same(JOB) is not None
    assert _same(DATASET) is not None
    assert _same({**JOB, "spec": {"model": "m", "inputDatasetId": "d-1"}}) is not None


def test_the_models_rules_are_the_ones_it_was_written_against() -> None:
    """A validator added to one of these models is a rule ``quick.py`` must learn (or leave
    to the model by declining the key): this list changes with it."""
    rules = {
        model.__name__: (
            sorted(model.__pydantic_decorators__.model_validators),
            sorted(model.__pydantic_decorators__.field_validators),
            sorted(model.model_fields),
        )
        for model in _SHAPE_OF
    }
    assert rules == {
        "Metadata": ([], ["_check_name"], ["labels", "name"]),
        "InferenceParameters": (
            [],
            ["_check_extra_body"],
            ["extra_body", "max_tokens", "n", "temperature", "top_k", "top_p"],
        ),
        "OutputSpec": ([], [], ["path", "table"]),
        "JobSpec": (
            ["_canary_reuses", "_model_once", "_model_required", "_one_input"],
            ["_check_failed_rows", "_check_model", "_check_precision", "_model_given"],
            [
                "budget",
                "canary",
                "depends_on",
                "display_name",
                "inference_parameters",
                "input_dataset",
                "input_dataset_id",
                "matrix",
                "max_failed_rows",
                "max_resumes",
                "max_retries",
                "model",
                "on_expired",
                "output",
                "precision",
                "provider",
                "response_format",
                "reuse",
                "row_retries",
            ],
        ),
        "DatasetSpec": (
            ["_path_or_source", "_path_required"],
            [],
            ["format", "path", "source", "template"],
        ),
        "BatchInferenceJobManifest": ([], [], ["api_version", "kind", "metadata", "spec"]),
        "DatasetManifest": ([], [], ["api_version", "kind", "metadata", "spec"]),
    }


_VALUES = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        1,
        -1,
        16,
        101,
        2**31,
        0.0,
        0.5,
        1.0,
        1.5,
        2.5,
        math.nan,
        math.inf,
        "",
        "x",
        "qa",
        "job-1",
        "Bad_Name",
        "a" * 41,
        "m",
        "accounts/fireworks/models/m",
        "bad model!",
        "CHAT",
        "COMPLETION",
        "resume",
        "stop",
        "FP8",
        "2%",
        "batchops/v1",
        [],
        ["a"],
        [""],
        [1],
        {},
        {"a": "b"},
        {"a": 1},
        {1: "b"},
    ]
)


def _paths(doc: dict[str, Any], at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for key, value in doc.items():
        found.append((*at, key))
        if isinstance(value, dict):
            found += _paths(value, (*at, key))
    return found


_DELETED = object()


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([JOB, DATASET]).flatmap(
        lambda doc: st.tuples(
            st.just(doc),
            st.lists(
                st.tuples(st.sampled_from(_paths(doc)), _VALUES | st.just(_DELETED)), max_size=2
            ),
        )
    )
)
def test_a_valid_document_changed_here_and_there(case: tuple[dict[str, Any], list[Any]]) -> None:
    doc, changes = case
    changed: dict[str, Any] = _copy(doc)
    for path, value in changes:
        holder = changed
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None  # type: ignore[assignment]
        if not isinstance(holder, dict):
            continue
        if value is _DELETED:
            holder.pop(path[-1], None)
        else:
            holder[path[-1]] = value
    _same(changed)


def _copy(value: Any) -> Any:
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else value


def test_a_kind_that_is_not_a_string_is_an_unknown_kind(tmp_path: Path) -> None:
    manifest = tmp_path / "odd.yaml"
    manifest.write_text("apiVersion: batchops/v1\nkind: [1]\nmetadata: {name: a}\n", "utf-8")
    diags: list[Diagnostic] = []
    assert read_manifests(manifest, tmp_path, diags) == []
    assert [(d.line, d.col, d.message) for d in diags] == [
        (2, 7, "unknown kind '[1]'; expected one of BatchInferenceJob, Dataset")
    ]
