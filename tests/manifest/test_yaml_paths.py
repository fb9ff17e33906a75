"""The libyaml fast path and the pure-Python loader agree; hostile YAML is refused on either.

``parse_documents`` tries libyaml first and re-parses with the pure-Python loader whenever the fast
path finds anything wrong, so that messages and positions are the precise ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batchops.manifest import yamlsrc
from batchops.manifest.yamlevents import parse_events
from batchops.manifest.yamlsrc import _FastLoader, _Loader, _parse_with, parse_documents

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "jobs").rglob("*.yaml")) + sorted(
    (ROOT / "tests" / "reliability" / "corpus").rglob("*.yaml")
)


def test_libyaml_is_available() -> None:
    assert yamlsrc._FAST, "PyYAML was built without libyaml: manifests load ~5x slower"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_fast_and_pure_paths_agree_on_valid_documents(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    pure, pure_problems = _parse_with(_Loader, text, yamlsrc.MAX_NODES)
    if pure_problems or "\t" in text:
        pytest.skip("invalid files take the pure path by design; covered by the corpus tests")
    fast, fast_problems = _parse_with(_FastLoader, text, yamlsrc.MAX_NODES)
    assert fast_problems == []
    assert [(d.data, d.start, d.keys, d.values) for d in fast] == [
        (d.data, d.start, d.keys, d.values) for d in pure
    ]


@pytest.mark.parametrize("opener", ["[", "- ", "{a: "])
def test_very_deep_nesting_is_refused_without_crashing(opener: str) -> None:
    depth = 100_000
    text = opener * depth + ("x\n" if opener == "- " else "\n")
    docs, problems = parse_documents(text)
    assert docs == []
    assert len(problems) == 1 and "nest" in problems[0].message


def test_a_control_character_is_a_located_problem() -> None:
    docs, problems = parse_documents("a: 1\nb: c\x01d\n")
    assert docs == []
    assert [(p.pos, p.message) for p in problems] == [
        ((2, 5), "invalid YAML: character #x0001 is not allowed")
    ]


def test_a_tab_gets_the_pure_loaders_message() -> None:
    text = "a:\n\tb: 1\n"
    assert parse_documents(text) == _parse_with(_Loader, text, yamlsrc.MAX_NODES)
    assert parse_documents(text)[1], "PyYAML refuses tab indentation"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_event_path_agrees_with_the_composer_or_leaves_the_file_to_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    events = parse_events(text, yamlsrc.MAX_NODES)
    if events is None:
        return  # handed to the composer paths, whose answer parse_documents then gives
    pure, pure_problems = _parse_with(_Loader, text, yamlsrc.MAX_NODES)
    assert pure_problems == []
    assert [(d.data, d.start, d.keys, d.values) for d in events] == [
        (d.data, d.start, d.keys, d.values) for d in pure
    ]


ORDINARY = """\
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: a, labels: {team: x}}
spec:
  model: m
  inferenceParameters: {maxTokens: 16, temperature: 0.5, topP: 1e-1, stop: [a, "b"], n: ~}
  flags: [yes, on, 2026-01-02, 0x1f, .inf, -7, '8']
---
---
kind: Dataset
list:
  - - nested
    - {x: [1, {y: 2}]}
"""


def test_ordinary_manifests_take_the_event_path_with_the_same_answer() -> None:
    events = parse_events(ORDINARY, yamlsrc.MAX_NODES)
    assert events is not None
    pure, _ = _parse_with(_Loader, ORDINARY, yamlsrc.MAX_NODES)
    assert [(d.data, d.start, d.keys, d.values) for d in events] == [
        (d.data, d.start, d.keys, d.values) for d in pure
    ]


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",  # anchors and aliases
        "base: &b {x: 1}\nc:\n  <<: *b\n",  # merge keys
        "a: 1\na: 2\n",  # duplicate key
        "? [a]\n: 1\n",  # a non-scalar key
        "a: !!python/name:os.system x\n",  # an unsafe tag
        "a: !custom x\n",  # an unknown tag
        "a: [1, 2\n",  # a syntax error
        "[" * 70 + "]" * 70 + "\n",  # nesting past MAX_DEPTH
    ],
)
def test_anything_unusual_is_left_to_the_composer(text: str) -> None:
    assert parse_events(text, yamlsrc.MAX_NODES) is None
    assert parse_documents(text) == _parse_with(_FastLoader, text, yamlsrc.MAX_NODES) or (
        parse_documents(text) == _parse_with(_Loader, text, yamlsrc.MAX_NODES)
    )
