"""Seen custom_ids: compact digests that never change an answer (DESIGN.md section 10)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from batchops import datasets
from batchops.datasets import inspect_dataset
from batchops.errors import InvalidInputError
from batchops.idset import CompactIds, ExactIds


def test_compact_ids_find_repeats_within_and_across_blocks() -> None:
    ids = CompactIds()
    ids.add_rows((f"id-{i}" for i in range(1000)), 1000)
    assert not ids.doubtful()
    ids.add_rows(["id-1000", "id-1001"], 2)
    assert not ids.doubtful()
    ids.add_rows(["id-5"], 1)  # seen in the first block
    assert ids.doubtful()
    within = CompactIds()
    within.add_rows(["a", "b", "a"], 3)
    assert within.doubtful()


def test_one_by_one_ids_are_answered_at_once_among_themselves() -> None:
    for ids in (CompactIds(), ExactIds()):
        assert ids.add("x") and ids.add("y")
        assert not ids.add("x")


def test_exact_ids_refuse_a_block_with_a_repeat_and_keep_nothing_of_it() -> None:
    ids = ExactIds()
    assert ids.add_rows(["a", "b"], 2)
    assert not ids.add_rows(["c", "a"], 2)
    assert not ids.add_rows(["d", "d"], 2)
    assert ids.add("c") and ids.add("d")


def test_a_copy_is_independent() -> None:
    ids = CompactIds()
    ids.add_rows(["a"], 1)
    copy = ids.copy()
    copy.add_rows(["a"], 1)
    assert copy.doubtful() and not ids.doubtful()


def chat(cid: str) -> str:
    return (
        f'{{"custom_id": "{cid}", "body": {{"messages": [{{"role": "user", "content": "hi"}}]}}}}'
    )


class Decl:
    name, path, format = "d", "d.jsonl", None

    def __init__(self, file: Path) -> None:
        self.files = (file,)


def test_a_scan_keeps_eight_bytes_an_id_not_the_strings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100,000 IDs of 60 characters: as strings in a set they would hold about 13 MB until the
    end of the scan; as digests, 0.8 MB. Blocks of 64 KiB keep everything else small."""
    monkeypatch.setattr(datasets, "BLOCK", 64 * 2**10)
    monkeypatch.setattr(datasets, "HELPER_MIN", 2**62)
    rows = 100_000
    file = tmp_path / "d.jsonl"
    file.write_text("".join(chat(f"{i:060d}") + "\n" for i in range(rows)))
    tracemalloc.start()
    try:
        info = inspect_dataset(Decl(file), root=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.rows == rows
    assert peak < 6 * 2**20


def test_a_repeat_across_blocks_is_reported_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "BLOCK", 4096)
    file = tmp_path / "d.jsonl"
    lines = [chat(f"r{i}") for i in range(2000)]
    lines[1500] = chat("r7")
    file.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError) as info:
        inspect_dataset(Decl(file), root=tmp_path)
    assert [str(d) for d in info.value.diagnostics] == [
        "d.jsonl:1501:1: duplicate custom_id 'r7' (first at d.jsonl:8)"
    ]


def test_compact_ids_travel_between_processes_as_a_dump() -> None:
    first, second = CompactIds(), CompactIds()
    first.add_rows((f"a{i}" for i in range(500)), 500)
    second.add_rows((f"b{i}" for i in range(500)), 500)
    merged = CompactIds()
    merged.merge(first.dump())
    merged.merge(second.dump())
    assert not merged.doubtful()
    merged.merge(CompactIds().dump())  # an empty share adds nothing
    assert not merged.doubtful()
    again = CompactIds()
    again.add_rows(["b7"], 1)
    merged.merge(again.dump())
    assert merged.doubtful()
    for broken in (b"", b"\0" * 7, first.dump()[:-8], first.dump() + b"\0" * 8):
        with pytest.raises(ValueError):
            CompactIds().merge(broken)


def test_a_block_is_spread_over_the_parts_by_top_bits_in_arrival_order() -> None:
    # One pass over the block, no sort: each digest goes to the part its top six bits name.
    ids = CompactIds()
    names = [f"id-{i}" for i in range(5000)]
    ids.add_rows(iter(names), len(names))
    for index, part in enumerate(ids._parts):
        mine = [hash(n) for n in names if (hash(n) >> 58) % 64 == index]
        assert list(part) == mine
