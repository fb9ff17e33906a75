"""The work a big load does per job: counted (system calls, scalar constructions), never timed.

A 10,000-job load has a budget of 1 s of CPU (bench/plan.py --parts scaling); these tests pin the
per-job work that budget rests on, and that the quick ways give the answers the long ways give.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from batchops.manifest import paths as P
from batchops.manifest import yamlsrc
from batchops.manifest.loader import load_partial
from batchops.manifest.yamlevents import _Scalars, parse_events
from batchops.manifest.yamlsrc import _Loader, _parse_with

JOBS = 60


def _project(root: Path, jobs: int, output: str = "") -> None:
    (root / "jobs" / "data").mkdir(parents=True)
    (root / "jobs" / "data" / "qa.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
    docs = [
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: qa}\nspec: {path: data/qa.jsonl}"
    ]
    for i in range(jobs):
        out = f", output: {{path: {output}/job{i}.jsonl}}" if output else ""
        docs.append(
            "apiVersion: batchops/v1\nkind: BatchInferenceJob\n"
            f"metadata: {{name: job{i}}}\nspec: {{model: m, inputDataset: qa{out},"
            " inferenceParameters: {maxTokens: 16, temperature: 0.5}}"
        )
    (root / "jobs" / "all.yaml").write_text("\n---\n".join(docs) + "\n", encoding="utf-8")


def _count_stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real_stat, real_lstat = os.stat, os.lstat

    def counted_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        seen.append(os.fspath(path))  # type: ignore[arg-type]
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    def counted_lstat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        seen.append(os.fspath(path))  # type: ignore[arg-type]
        return real_lstat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counted_stat)
    monkeypatch.setattr(os, "lstat", counted_lstat)
    return seen


@pytest.mark.parametrize("output", ["", "out/deep"])
def test_no_file_in_a_missing_results_folder_is_stat_ed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    _project(tmp_path, JOBS, output)
    seen = _count_stats(monkeypatch)
    desired, diags = load_partial([tmp_path / "jobs"], root=tmp_path)
    assert diags == [] and len(desired.jobs) == JOBS
    per_job = [p for p in seen if re.fullmatch(r"job\d+(\.errors)?\.jsonl", Path(p).name)]
    assert per_job == [], "a results file in a folder that does not exist cannot exist"


def test_existing_results_are_still_checked(tmp_path: Path) -> None:
    _project(tmp_path, 3, "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "job1.jsonl").mkdir()  # a folder where a results file goes
    os.symlink(tmp_path / "jobs" / "data" / "qa.jsonl", tmp_path / "out" / "job2.jsonl")
    _, diags = load_partial([tmp_path / "jobs"], root=tmp_path)
    messages = [d.message for d in diags]
    assert messages == [
        "output path 'out/job1.jsonl' is a folder; name a file",
        "output path 'out/job2.jsonl' (a symlink to 'jobs/data/qa.jsonl') is a file of dataset"
        " 'qa'; it would be overwritten",
    ]


def test_a_repeated_plain_value_is_constructed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    construct = _Scalars.construct_object

    def counted(self: _Scalars, node: object, deep: bool = False) -> object:
        made.append(node)
        return construct(self, node, deep=deep)  # type: ignore[arg-type]

    monkeypatch.setattr(_Scalars, "construct_object", counted)
    text = "\n---\n".join(f"n: {i}\nmax: 1000\nt: 0.5\nok: true\nnone: null" for i in range(50))
    docs = parse_events(text, yamlsrc.MAX_NODES)
    assert docs is not None and len(docs) == 50
    assert docs[7].data == {"n": 7, "max": 1000, "t": 0.5, "ok": True, "none": None}
    assert len(made) == 50 + 4, "1000, 0.5, true and null once each; each n once"


@pytest.mark.parametrize(
    "text",
    [
        "a: ! 12\nb: ! x\nc: !!str 12\nd: '12'\n",  # '!' resolves plain scalars, as PyYAML does
        "a: 012\nb: 0x1f\nc: 1_000\nd: 1:30\ne: .inf\nf: -.INF\ng: 2001-12-14\nh: ~\ni: ''\n",
        "- 12\n- 12\n- [12, 12]\n- {x: 12}\n",
        "x: .nan\ny: .nan\n",
        "a:\n  - {b: 1, c: [x, {d: 2}]}\n  - q\n  -\n    - [r, {s: t}]\ne: {f: {g: h}}\n"
        "---\n- k: {l: m}\n  n: []\n- {}\n",
    ],
)
def test_the_quick_path_agrees_with_the_composer(text: str) -> None:
    fast = parse_events(text, yamlsrc.MAX_NODES)
    pure, problems = _parse_with(_Loader, text, yamlsrc.MAX_NODES)
    assert fast is not None and problems == []
    assert [(d.start, d.keys, d.values) for d in fast] == [
        (d.start, d.keys, d.values) for d in pure
    ]
    assert repr([d.data for d in fast]) == repr([d.data for d in pure])


def test_a_results_file_in_an_existing_folder_costs_two_lstats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One when its path is confined, one when the output rules check it (was three: a stat
    for ``is_dir`` besides)."""
    _project(tmp_path, JOBS, "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "job3.jsonl").write_text("", encoding="utf-8")  # results of a past run
    seen = _count_stats(monkeypatch)
    desired, diags = load_partial([tmp_path / "jobs"], root=tmp_path)
    assert diags == [] and len(desired.jobs) == JOBS
    results = [p for p in seen if re.fullmatch(r"job\d+\.jsonl", Path(p).name)]
    assert sorted(results) == sorted(str(j.output_path) for j in desired.jobs for _ in "12")


@pytest.mark.parametrize(
    "written",
    [
        "r/x.jsonl",
        "x.jsonl",
        "r/./x.jsonl",
        "r//x.jsonl",
        "r/../x.jsonl",
        "./r/x.jsonl",
        "../x.jsonl",
        "r/..",
        "r/.",
        "r/",
        "/abs/x.jsonl",
        "c:/x.jsonl",
        "r/dir",
        "r/link-in.jsonl",
        "r/link-out.jsonl",
        "r/loop.jsonl",
        "in/x.jsonl",
        "out/x.jsonl",
        "gone/x.jsonl",
        "r/" + "n" * 300,
        "missing/" + "n" * 300,
        "r/nul\0.jsonl",
    ],
)
def test_an_output_path_in_a_remembered_folder_is_what_the_long_way_says(
    tmp_path: Path, written: str
) -> None:
    root = tmp_path / "root"
    (root / "r" / "dir").mkdir(parents=True)
    (root / "elsewhere").mkdir()
    os.symlink(root / "elsewhere", root / "in")
    os.symlink(tmp_path, root / "out")
    os.symlink(root / "nowhere", root / "gone")
    os.symlink(root / "r" / "x.jsonl", root / "r" / "link-in.jsonl")
    os.symlink(tmp_path / "x.jsonl", root / "r" / "link-out.jsonl")
    os.symlink(root / "r" / "loop.jsonl", root / "r" / "loop.jsonl")

    def outcome(dirs: P.Dirs | None) -> str:
        try:
            return str(P.output_file(written, root, dirs=dirs))
        except (P.PathProblem, OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"

    dirs: P.Dirs = {}
    assert [outcome(dirs), outcome(dirs)] == [outcome(None)] * 2  # told, then remembered


def test_a_documents_positions_are_made_only_when_asked_for() -> None:
    text = "apiVersion: v1\nspec:\n  items: [a, {b: c}]\n  d: e\n"
    [doc] = parse_events(text, yamlsrc.MAX_NODES) or []
    assert doc._keys is None and doc._values is None  # marks kept, no maps made
    assert doc.values == {
        ("apiVersion",): (1, 13),
        ("spec",): (3, 3),
        ("spec", "items"): (3, 10),
        ("spec", "items", 1, "b"): (3, 18),
        ("spec", "d"): (4, 6),
    }
    assert doc.keys[("spec", "items", 1, "b")] == (3, 15)
