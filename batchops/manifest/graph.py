"""The declared graph: references between jobs and datasets checked, cycles found, and matrix
jobs and per-combination chains expanded into the jobs and datasets that run. Pure.

Called by ``batchops.manifest.build`` at load time, so ``validate`` and every pass report the same
problems. Nodes are the declared names; edges are a job's ``inputDataset`` and ``dependsOn``, and
a dataset's ``source.job``. Everything here is O(nodes + edges): one depth-first walk finds every
cycle and gives the order (upstream first) in which variants are expanded.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchops.errors import Diagnostic
from batchops.manifest.hints import suggest

if TYPE_CHECKING:
    from batchops.manifest.models import MatrixSpec

DATASET, JOB = "Dataset", "BatchInferenceJob"
Key = tuple[str, str]  # (kind, declared name)
# Short, readable keys of the swept parameters in a combination's name suffix.
_SHORT = {"maxTokens": "mt", "temperature": "t", "topP": "p", "topK": "k", "n": "n"}
_SUFFIX_HASH = 4
NAME_MAX = 40  # manifest.models.NAME_MAX (not imported: a warm load imports no model)
# spec.matrix's fields and their keys, in the order a suffix names them (models.MatrixSpec).
MATRIX_KEYS = (
    ("model", "model"),
    ("provider", "provider"),
    ("max_tokens", "maxTokens"),
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("n", "n"),
)


@dataclass(frozen=True)
class Ref:
    """One edge as written: where it is, and the node it names."""

    target: Key
    # the position of the reference (message unused); made only to report a problem: building
    # a document's positions costs more than the whole walk (bench/pipelines.py)
    at: Callable[[], Diagnostic]


@dataclass
class Node:
    key: Key
    at: Callable[[], Diagnostic]  # the document's metadata.name position, made when needed
    refs: list[Ref] = field(default_factory=list)


@dataclass(frozen=True)
class Variant:
    """One expanded job or dataset: its name, its name suffix, and the combination it runs."""

    name: str
    suffix: str = ""
    combination: tuple[tuple[str, str], ...] = ()


def check_graph(
    nodes: Sequence[Node], diags: list[Diagnostic], *, invalid: Iterable[Key] = ()
) -> list[Key]:
    """Every dangling ``source.job`` / ``dependsOn`` and every cycle as a Diagnostic; returns the
    nodes that can be expanded, upstream first (nodes on a cycle, or downstream of a missing or
    cyclic node, are left out: their problem is reported)."""
    by_key = {n.key: n for n in nodes}
    broken = set(invalid)
    jobs = sorted(k[1] for k in by_key if k[0] == JOB)
    for node in nodes:
        for ref in node.refs:
            if ref.target in by_key or ref.target in broken or ref.target[0] != JOB:
                continue  # an unknown dataset is reported with the job's inputDataset
            name = ref.target[1]
            hint = suggest(name, jobs) or (f" (declared: {', '.join(jobs)})" if jobs else "")
            diags.append(_with(ref.at(), f"unknown job '{name}'{hint}"))
    return _walk(nodes, by_key, broken, diags)


def _walk(
    nodes: Sequence[Node], by_key: Mapping[Key, Node], broken: set[Key], diags: list[Diagnostic]
) -> list[Key]:
    """Iterative depth-first walk: post-order is a topological order; a grey target is a
    cycle, reported once at its first member in file order."""
    state: dict[Key, int] = {}  # 1 grey (on the stack), 2 black (done)
    bad: set[Key] = set()
    order: list[Key] = []
    reported: set[frozenset[Key]] = set()
    for start in nodes:
        if start.key in state:
            continue
        stack: list[tuple[Key, int]] = [(start.key, 0)]
        path: list[Key] = [start.key]
        state[start.key] = 1
        while stack:
            key, i = stack[-1]
            refs = by_key[key].refs
            if i < len(refs):
                stack[-1] = (key, i + 1)
                target = refs[i].target
                if target not in by_key:
                    if target in broken or target[0] == JOB:
                        bad.add(key)  # reads something broken or unknown
                    continue
                if state.get(target) == 1:
                    _cycle(path[path.index(target) :], by_key, reported, diags)
                    bad.update(path[path.index(target) :])
                elif target not in state:
                    state[target] = 1
                    stack.append((target, 0))
                    path.append(target)
                continue
            stack.pop()
            path.pop()
            state[key] = 2
            if any(r.target in bad for r in refs):
                bad.add(key)
            order.append(key)
    return [k for k in order if k not in bad]


def _cycle(
    members: list[Key],
    by_key: Mapping[Key, Node],
    reported: set[frozenset[Key]],
    diags: list[Diagnostic],
) -> None:
    seen = frozenset(members)
    if seen in reported:
        return
    reported.add(seen)
    first = min(range(len(members)), key=lambda i: _pos(by_key[members[i]].at()))
    ring = members[first:] + members[:first]
    shown = " -> ".join(f"{_kind(k)} '{k[1]}'" for k in [*ring, ring[0]])
    diags.append(_with(by_key[ring[0]].at(), f"a cycle: {shown}"))


def _pos(d: Diagnostic) -> tuple[str, int, int]:
    return (d.path, d.line, d.col)


def _kind(key: Key) -> str:
    return "job" if key[0] == JOB else "dataset"


def _with(at: Diagnostic, message: str) -> Diagnostic:
    return Diagnostic(at.path, at.line, at.col, message)


# -- expansion -----------------------------------------------------------------------------


def combinations(matrix: MatrixSpec | None) -> list[dict[str, Any]]:
    """Each combination of the matrix as {camelCase key: value}; [{}] without a matrix."""
    if matrix is None:
        return [{}]
    # The model's fields, or the same read back from the manifest cache (manifest.stored.Node).
    axes = [(key, v) for name, key in MATRIX_KEYS if (v := getattr(matrix, name, None)) is not None]
    keys = [k for k, _ in axes]
    return [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*(v for _, v in axes))
    ]


def suffix_of(combination: Mapping[str, Any]) -> str:
    """A short readable name part: the model's last path segment, the provider, key+value of
    each parameter (``t0p7`` for temperature 0.7)."""
    parts = []
    for key, value in combination.items():
        if key == "model":
            parts.append(_slug(str(value).split("#", 1)[0].rsplit("/", 1)[-1]))
        elif key == "provider":
            parts.append(_slug(str(value)))
        else:
            parts.append(_SHORT.get(key, key.lower()) + _slug(_text(value).replace(".", "p")))
    return "-".join(p for p in parts if p)


def shown(combination: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((k, _text(v)) for k, v in combination.items())


def _text(value: Any) -> str:
    """0.0 -> "0", 0.70 -> "0.7": the value as a person writes it."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _slug(text: str) -> str:
    out = "".join(c if c.isascii() and c.isalnum() else "-" for c in text.lower())
    return "-".join(p for p in out.split("-") if p)


def expanded_name(name: str, suffix: str) -> str | None:
    """``<name>-<suffix>`` within NAME_MAX (so every ID derived from it fits the providers'
    limits): a long suffix is cut and a short hash of the whole suffix keeps it unique. None
    when the name itself leaves no room."""
    if not suffix:
        return name
    full = f"{name}-{suffix}"
    if len(full) <= NAME_MAX:
        return full
    digest = hashlib.sha256(suffix.encode()).hexdigest()[:_SUFFIX_HASH]
    room = NAME_MAX - len(name) - 2 - _SUFFIX_HASH
    if room < 0:
        return None
    head = suffix[:room].strip("-")
    return f"{name}-{head}-{digest}" if head else f"{name}-{digest}"


def join_suffix(*suffixes: str) -> str:
    return "-".join(s for s in suffixes if s)


def unique_names(
    names: Iterable[tuple[str, str, Diagnostic]],
    diags: list[Diagnostic],
    declared: Callable[[str], bool],
) -> set[str]:
    """(expanded name, declared name, where) of every variant: the names that collide, each
    reported (two combinations with the same name, or one named like a declared job)."""
    first: dict[str, str] = {}
    clash: set[str] = set()
    for name, group, at in names:
        if name == group:
            continue
        if name in first or declared(name):
            clash.add(name)
            other = first.get(name)
            with_what = (
                f"another combination of '{group}'"
                if other == group
                else f"job '{other}'"
                if other
                else f"the declared job '{name}'"
            )
            diags.append(
                _with(
                    at,
                    f"the expanded job name '{name}' of '{group}' collides "
                    f"with {with_what}; rename one or change the matrix",
                )
            )
        first.setdefault(name, group)
    return clash
