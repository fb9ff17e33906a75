"""ManifestCache: an unchanged manifest costs a stat, a changed one is read again, alone."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from batchops.errors import InvalidInputError
from batchops.manifest import ManifestCache, load_desired

ROW = '{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'
DATASET = (
    "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: qa}\nspec: {path: data/qa.jsonl}\n"
)


def job(name: str, tokens: int = 16) -> str:
    return (
        f"apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {{name: {name}}}\n"
        f"spec: {{model: m, inputDataset: qa, inferenceParameters: {{maxTokens: {tokens}}}}}\n"
    )


def write_old(path: Path, text: str, age: float = 60.0) -> Path:
    """Write ``text``, its modification time ``age`` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_old(tmp_path / "jobs" / "data" / "qa.jsonl", ROW)
    write_old(tmp_path / "jobs" / "qa.yaml", DATASET)
    for name in ("a", "b", "c"):
        write_old(tmp_path / "jobs" / f"{name}.yaml", job(name))
    return tmp_path


def names(root: Path, cache: ManifestCache) -> list[Path]:
    return [p.relative_to(root / "jobs") for p in cache.reads]


def test_unchanged_files_are_not_read_again(root: Path) -> None:
    cache = ManifestCache(racy_ns=0)  # files here were all just written
    first = load_desired([Path("jobs")], root=root, cache=cache)
    assert len(cache.reads) == 4
    again = load_desired([Path("jobs")], root=root, cache=cache)
    assert cache.reads == []
    assert again == first


def test_after_one_file_changes_only_that_file_is_read(root: Path) -> None:
    cache = ManifestCache(racy_ns=0)  # files here were all just written
    load_desired([Path("jobs")], root=root, cache=cache)
    write_old(root / "jobs" / "b.yaml", job("b", tokens=512), age=30)
    desired = load_desired([Path("jobs")], root=root, cache=cache)
    assert names(root, cache) == [Path("b.yaml")]
    tokens = {j.name: j.inference_parameters["maxTokens"] for j in desired.jobs}
    assert tokens == {"a": 16, "b": 512, "c": 16}


def test_added_and_removed_files_are_seen(root: Path) -> None:
    cache = ManifestCache(racy_ns=0)  # files here were all just written
    load_desired([Path("jobs")], root=root, cache=cache)
    (root / "jobs" / "a.yaml").unlink()
    write_old(root / "jobs" / "d.yaml", job("d"))
    desired = load_desired([Path("jobs")], root=root, cache=cache)
    assert names(root, cache) == [Path("d.yaml")]
    assert [j.name for j in desired.jobs] == ["b", "c", "d"]


def test_a_cached_invalid_file_reports_its_problems_every_time(root: Path) -> None:
    write_old(root / "jobs" / "bad.yaml", job("e").replace("model: m", "modle: m"))
    cache = ManifestCache(racy_ns=0)  # files here were all just written
    for reads in (5, 0):
        with pytest.raises(InvalidInputError) as info:
            load_desired([Path("jobs")], root=root, cache=cache)
        assert len(cache.reads) == reads
        assert any("modle" in str(d) for d in info.value.diagnostics)


def test_a_file_written_just_now_is_read_again(root: Path) -> None:
    """A second edit in the same clock tick, with the same size, would keep the same stat: so a
    file modified within the racy window is never trusted from the cache."""
    (root / "jobs" / "a.yaml").write_text(job("a", tokens=17))
    cache = ManifestCache(racy_ns=10**9 * 3600)  # everything is "just now"
    for _ in range(2):
        load_desired([Path("jobs")], root=root, cache=cache)
        assert len(cache.reads) == 4


def test_a_cached_invalid_dataset_still_names_itself_for_the_jobs_reading_it(root: Path) -> None:
    """A file served from the cache gives back its invalid documents too (main's load_partial
    checks them across files): the job reading a broken Dataset is not told "unknown dataset"."""
    write_old(root / "jobs" / "qa.yaml", DATASET.replace("path:", "pathh:"))
    cache = ManifestCache(racy_ns=0)
    problems = []
    for _ in range(2):
        with pytest.raises(InvalidInputError) as caught:
            load_desired([Path("jobs")], root=root, cache=cache)
        problems.append(sorted(str(d) for d in caught.value.diagnostics))
    assert cache.reads == []  # the second load read nothing
    assert problems[0] == problems[1]
    assert not any("unknown dataset" in p for p in problems[1])
