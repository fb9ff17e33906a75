"""Inputs that are not files, and JSON that is too big or too deep (issue 11, section 3): an
error at once, never a hang, a process growing without bound, or a RecursionError."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.datasets import StatCache, inspect_dataset
from batchops.errors import InvalidInputError
from batchops.jsonvalues import value_problem
from batchops.manifest import load_desired
from batchops.manifest.loader import MAX_MANIFEST_BYTES


@dataclass(frozen=True)
class Decl:
    name: str
    path: str
    files: tuple[Path, ...]
    format: str | None = None


def problems(path: Path, root: Path) -> list[str]:
    with pytest.raises(InvalidInputError) as caught:
        inspect_dataset(Decl("d", str(path), (path,)), root=root)
    return [d.message for d in caught.value.diagnostics]


@pytest.mark.timeout(20)
def test_a_character_device_is_refused_before_reading(tmp_path: Path) -> None:
    assert problems(Path("/dev/zero"), tmp_path) == [
        "not a regular file (a character device); refused"
    ]


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p.jsonl")
    assert problems(tmp_path / "p.jsonl", tmp_path) == ["not a regular file (a FIFO); refused"]


@pytest.mark.timeout(20)
def test_a_socket_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        monkeypatch.chdir(tmp_path)  # a short relative name: socket paths are limited in length
        sock.bind("s.jsonl")
        assert problems(tmp_path / "s.jsonl", tmp_path) == [
            "not a regular file (a socket); refused"
        ]


def test_json_values_deeper_than_any_recursion_limit_are_reported() -> None:
    value: object = 1
    for _ in range(100_000):
        value = [value]
    assert value_problem({"x": value}) is not None


def test_a_manifest_too_big_to_be_one_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "jobs").mkdir()
    huge = tmp_path / "jobs/huge.yaml"
    huge.write_bytes(b"")
    os.truncate(huge, MAX_MANIFEST_BYTES + 1)  # sparse: refused by its size, never read
    with pytest.raises(InvalidInputError) as caught:
        load_desired([Path("jobs")], root=tmp_path)
    (diag,) = caught.value.diagnostics
    assert diag.path == "jobs/huge.yaml" and "a manifest may have at most" in diag.message


def test_a_deeply_nested_json_argument_is_an_input_problem_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`apply FILE` first asks whether FILE is a saved plan (JSON): deep JSON is not one."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["apply", "deep.json"]) == 1
    assert "nesting deeper than 64 levels" in capsys.readouterr().err


def test_a_deeply_nested_stat_cache_is_an_empty_one(tmp_path: Path) -> None:
    cache = StatCache.for_root(tmp_path)
    cache.path.parent.mkdir(parents=True)
    cache.path.write_text("[" * 100_000 + "]" * 100_000)
    assert cache.entries == {}
