"""Results on disk: lineage merge by custom_id, atomic writes, verification, and the record."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from batchops.layout import errors_path
from batchops.merge import merge_lineage
from batchops.plan.rowerrors import RowFailure, classify
from batchops.results import (
    FileStamp,
    MergeCounts,
    ResultRecord,
    ResultsError,
    local_records,
    local_state,
    problem,
    save_record,
)


def _write(folder: Path, ok: dict[str, str], err: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "BIJOutputSet.jsonl").write_text(
        "".join(json.dumps({"custom_id": c, "response": r}) + "\n" for c, r in ok.items())
    )
    (folder / "error-data").write_text(
        "".join(
            json.dumps({"custom_id": c, "error": {"message": e}}) + "\n" for c, e in err.items()
        )
    )
    return folder


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _merge(tmp_path: Path, folders: list[Path], expected: Iterable[str] | None) -> Path:
    output = tmp_path / "results" / "job.jsonl"
    merge_lineage(
        folders,
        job_name="job",
        job_ids=["j", "j-r1"],
        output=output,
        expected_ids=expected,
        root=tmp_path,
    )
    return output


def test_later_success_wins_and_errors_keep_only_rows_never_done(tmp_path: Path) -> None:
    first = _write(tmp_path / "d1", {"a": "old-a"}, {"b": "boom", "c": "boom"})
    second = _write(tmp_path / "d2", {"a": "new-a", "b": "ok-b"}, {"c": "again"})
    output = _merge(tmp_path, [first, second], ["c", "b", "a"])
    assert _lines(output) == [
        {"custom_id": "b", "response": "ok-b"},
        {"custom_id": "a", "response": "new-a"},
    ]
    assert _lines(errors_path(output)) == [{"custom_id": "c", "error": {"message": "again"}}]
    assert sorted(p.name for p in output.parent.iterdir()) == ["job.errors.jsonl", "job.jsonl"]
    assert list((tmp_path / ".batchops" / "tmp").iterdir()) == []


def test_verification_counts_missing_and_unexpected_rows(tmp_path: Path) -> None:
    folder = _write(tmp_path / "d1", {"a": "x", "zzz": "y"}, {})
    with pytest.raises(ResultsError) as caught:
        _merge(tmp_path, [folder], ["a", "b"])
    message = str(caught.value)
    assert "1 of 2 input rows" in message and "1 output rows" in message
    assert not (tmp_path / "results").exists() and local_records(tmp_path) == {}
    partial = tmp_path / "results" / "p.jsonl"
    folder = _write(tmp_path / "d2", {"a": "x"}, {})
    record = merge_lineage(
        [folder],
        job_name="p",
        job_ids=["p"],
        output=partial,
        expected_ids=["a", "b"],
        root=tmp_path,
        partial=True,
    )
    c = record.counts
    assert (c.expected, c.succeeded, c.failed, c.missing, c.unreached) == (2, 1, 1, 0, 1)
    assert record.partial and problem(record, partial=True) is None
    # the row the expired job never reached is a failed row of a passing reason (row retries)
    (unreached,) = _lines(errors_path(partial))
    assert unreached["custom_id"] == "b" and unreached["error_code"] == "EXPIRED"
    assert classify(f"{unreached['error_code']}: {unreached['error']}") is RowFailure.TRANSIENT
    assert local_state(tmp_path, "p", partial).verified


def test_remote_only_input_is_verified_against_what_was_seen(tmp_path: Path) -> None:
    output = _merge(tmp_path, [_write(tmp_path / "d1", {"a": "x"}, {"b": "e"})], None)
    state = local_state(tmp_path, "job", output)
    assert state.record is not None and problem(state.record, partial=False) is None


def test_edited_truncated_or_deleted_results_are_no_longer_verified(tmp_path: Path) -> None:
    folder = _write(tmp_path / "d1", {"a": "x", "b": "y"}, {})
    output = _merge(tmp_path, [folder], ["a", "b"])
    assert local_state(tmp_path, "job", output).verified
    stat = output.stat()
    os.utime(output, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    assert local_state(tmp_path, "job", output).verified
    output.write_text(output.read_text().replace("x", "z"))  # same size, other bytes
    assert not local_state(tmp_path, "job", output).verified
    output = _merge(tmp_path, [folder], ["a", "b"])
    output.write_text(output.read_text()[:10])
    assert not local_state(tmp_path, "job", output).verified
    output.unlink()
    assert not local_state(tmp_path, "job", output).verified


def test_a_damaged_record_means_download_again(tmp_path: Path) -> None:
    output = _merge(tmp_path, [_write(tmp_path / "d1", {"a": "x"}, {})], ["a"])
    store = tmp_path / ".batchops" / "results.db"
    with sqlite3.connect(store) as db:
        db.execute("UPDATE record SET body = ? WHERE job = 'job'", (b"{not json",))
    assert local_state(tmp_path, "job", output).record is None
    output = _merge(tmp_path, [_write(tmp_path / "d2", {"a": "x"}, {})], ["a"])
    assert local_state(tmp_path, "job", output).verified
    for extra in store.parent.glob("results.db-*"):
        extra.unlink()  # the WAL files: a damaged store, not a half-written one
    store.write_bytes(b"this is not a database" * 100)
    state = local_state(tmp_path, "job", output)
    assert state.record is None and not state.verified


def test_a_record_of_another_version_or_shape_means_download_again(tmp_path: Path) -> None:
    output = _merge(tmp_path, [_write(tmp_path / "d1", {"a": "x"}, {})], ["a"])
    store = tmp_path / ".batchops" / "results.db"
    with sqlite3.connect(store) as db:
        (body,) = db.execute("SELECT body FROM record WHERE job = 'job'").fetchone()
    record = json.loads(body)
    for changed in ({**record, "version": 2}, {**record, "counts": "all"}, [record]):
        with sqlite3.connect(store) as db:
            db.execute("UPDATE record SET body = ? WHERE job = 'job'", (json.dumps(changed),))
        assert local_state(tmp_path, "job", output).record is None, changed
    with sqlite3.connect(store) as db:
        db.execute("UPDATE record SET body = ? WHERE job = 'job'", (body,))
    assert local_state(tmp_path, "job", output).verified


def test_merging_holds_no_output_in_memory(tmp_path: Path) -> None:
    """Lines are indexed by offset and copied with pread, so a large output costs no memory:
    merge 20,000 rows of 5 KB (100 MB) and check the Python heap's peak stays far below it."""
    import tracemalloc

    folder = tmp_path / "d1"
    folder.mkdir()
    pad = "x" * 5000
    with (folder / "BIJOutputSet.jsonl").open("w") as fh:
        for i in range(20_000):
            fh.write(json.dumps({"custom_id": f"r{i}", "response": pad}) + "\n")
    (folder / "error-data").write_text("")
    tracemalloc.start()
    try:
        output = _merge(tmp_path, [folder], (f"r{i}" for i in reversed(range(20_000))))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB for a 100 MB merge"
    with output.open() as fh:
        first = json.loads(fh.readline())
    assert first["custom_id"] == "r19999" and first["response"] == pad
    assert output.stat().st_size == (folder / "BIJOutputSet.jsonl").stat().st_size


def test_torn_lines_are_skipped_not_fatal(tmp_path: Path) -> None:
    folder = _write(tmp_path / "d1", {"a": "x"}, {})
    with (folder / "BIJOutputSet.jsonl").open("a") as fh:
        fh.write('{"custom_id": "b", "resp')
    output = _merge(tmp_path, [folder], ["a"])
    assert [row["custom_id"] for row in _lines(output)] == ["a"]


def _record(root: Path, name: str) -> ResultRecord:
    stamp = FileStamp(str(root / f"{name}.jsonl"), 0, 0, "")
    return ResultRecord(name, (f"{name}-id",), stamp, stamp, MergeCounts(0, 0, 0, 0, 0))


SAVER = """
import sys
from pathlib import Path
from batchops.results import FileStamp, MergeCounts, ResultRecord, save_record
root, prefix = Path(sys.argv[1]), sys.argv[2]
for i in range(40):
    stamp = FileStamp(str(root / f"{prefix}{i}.jsonl"), 0, 0, "")
    counts = MergeCounts(0, 0, 0, 0, 0)
    save_record(root, ResultRecord(f"{prefix}{i}", ("id",), stamp, stamp, counts))
"""


def test_records_saved_at_once_by_threads_and_processes_are_all_kept(tmp_path: Path) -> None:
    """A busy store is waited for, never mistaken for a damaged one and thrown away: threads
    released together by a barrier open a brand-new store at the same moment, many times over,
    while other processes write to another one."""
    procs = [
        subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path), f"p{n}-"]) for n in range(3)
    ]
    for attempt in range(60):
        root = tmp_path / f"fresh{attempt}"
        gate = threading.Barrier(8)

        def save(i: int, root: Path = root, gate: threading.Barrier = gate) -> None:
            gate.wait()
            save_record(root, _record(root, f"t{i}"))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(save, range(8)))
        assert set(local_records(root)) == {f"t{i}" for i in range(8)}, attempt
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    expected = {f"p{n}-{i}" for n in range(3) for i in range(40)}
    assert set(local_records(tmp_path)) == expected
