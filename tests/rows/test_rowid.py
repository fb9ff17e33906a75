"""Request identity (batchops.rowid) and the reuse index (batchops.reuse)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from batchops.reuse import Answer, ReuseIndex
from batchops.rowid import canonical_body, file_requests, request_hash, request_prefix

ROW = {"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}


def _hash(
    row: dict[str, object],
    *,
    provider: str = "fireworks",
    model: str = "m",
    params: dict[str, object] | None = None,
) -> bytes:
    return request_hash(request_prefix(provider, model, params or {}), canonical_body(row))


def test_custom_id_and_key_order_are_not_part_of_the_request() -> None:
    renamed = {"body": {"messages": [{"content": "hi", "role": "user"}]}, "custom_id": "zz"}
    assert _hash(ROW) == _hash(renamed)


def test_every_part_of_a_request_changes_its_identity() -> None:
    base = _hash(ROW, params={"maxTokens": 10})
    edited = {"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi!"}]}}
    others = {
        _hash(edited, params={"maxTokens": 10}),
        _hash(ROW, params={"maxTokens": 11}),
        _hash(ROW, params={"maxTokens": 10, "temperature": 0.5}),
        _hash(ROW, model="m2", params={"maxTokens": 10}),
        _hash(ROW, provider="together", params={"maxTokens": 10}),
    }
    assert base not in others and len(others) == 5


def test_unset_parameters_are_left_out() -> None:
    assert _hash(ROW, params={"maxTokens": None}) == _hash(ROW)


def test_file_requests_streams_rows_in_order(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [dict(ROW, custom_id=f"r{i}", body={"prompt": str(i)}) for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    prefix = request_prefix("fireworks", "m", {})
    got = list(file_requests(prefix, [path]))
    assert [cid for cid, _ in got] == ["r0", "r1", "r2"]
    assert got[1][1] == request_hash(prefix, canonical_body(rows[1]))


def test_reuse_index_keeps_the_first_answer_and_is_private(tmp_path: Path) -> None:
    with ReuseIndex.open(tmp_path) as index:
        assert index.record(["job-a"], [(b"1" * 16, "job-a", "r1", b'{"custom_id":"r1"}')]) == 1
        again = [(b"1" * 16, "job-b", "x", b"{}"), (b"2" * 16, "job-b", "y", b"{}")]
        assert index.record(["job-b"], again) == 1
        found = index.lookup([b"1" * 16, b"2" * 16, b"3" * 16])
        assert found == {b"1" * 16: Answer("job-a"), b"2" * 16: Answer("job-b")}
        assert index.indexed_jobs() == {"job-a", "job-b"}
        assert [(job, line) for _, job, line in index.lines([b"1" * 16])] == [
            ("job-a", b'{"custom_id":"r1"}')
        ]
    state = tmp_path / ".batchops"
    assert stat.S_IMODE((state / "reuse.sqlite").stat().st_mode) == 0o600
    assert (state / ".gitignore").exists()


@pytest.mark.parametrize("count", [5000, 30_000], ids=["join", "scan"])
def test_lookup_finds_exactly_the_known_hashes(tmp_path: Path, count: int) -> None:
    digests = [i.to_bytes(16, "big") for i in range(count)]
    with ReuseIndex.open(tmp_path) as index:
        index.record(["j"], ((d, "j", str(i), b"{}") for i, d in enumerate(digests[::2])))
        index.record(["k"], [(b"x" * 16, "k", "other", b"{}")])
        found = index.lookup(digests)
        assert sorted(found) == sorted(digests[::2])
        assert found[digests[2]] == Answer("j")
        assert index.lookup(digests[:3]) == {
            digests[0]: Answer("j"),
            digests[2]: Answer("j"),
        }


def test_row_hashes_are_cached_by_content_and_never_stale(tmp_path: Path) -> None:
    from batchops.reuse_rows import ROWS_DIR, _Requests

    folder = tmp_path / ".batchops" / ROWS_DIR
    folder.mkdir(parents=True)

    def requests(prefix: bytes) -> list[tuple[str, bytes]]:  # a new pass each time
        return _Requests(folder).of(prefix, [path], "sha-a")

    path = tmp_path / "d.jsonl"
    rows = [{"custom_id": f"r{i}", "body": {"prompt": str(i)}} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prefix = request_prefix("fireworks", "m", {})
    fresh = list(file_requests(prefix, [path]))
    assert requests(prefix) == fresh
    (cache,) = folder.glob("*.bin")
    assert requests(prefix) == fresh  # from the cache
    cache.write_bytes(b"torn")  # a damaged cache is recomputed
    assert requests(prefix) == fresh
    other = request_prefix("fireworks", "m2", {})  # another prefix: another cache entry
    assert requests(other) == list(file_requests(other, [path]))
    assert len(list(folder.glob("*.bin"))) == 2
    assert [p.name for p in folder.glob("*.ids.json")] == ["sha-a.ids.json"]  # one per content


def test_a_new_pass_reads_the_custom_ids_from_their_file_not_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchops import reuse_rows

    path = tmp_path / "d.jsonl"
    rows = [{"custom_id": f"r{i}", "body": {"prompt": str(i)}} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prefix = request_prefix("fireworks", "m", {})
    fresh = reuse_rows._Requests(tmp_path).of(prefix, [path], "sha-a")

    def no_read(files: list[Path]) -> list[str]:
        raise AssertionError("the rows were read for their custom_ids")

    monkeypatch.setattr(reuse_rows, "iter_custom_ids", no_read)
    assert reuse_rows._Requests(tmp_path).of(prefix, [path], "sha-a") == fresh
    (tmp_path / "sha-a.ids.json").write_bytes(b'["r0", 1')  # damaged: read from the rows
    monkeypatch.undo()
    assert reuse_rows._Requests(tmp_path).of(prefix, [path], "sha-a") == fresh
    monkeypatch.setattr(reuse_rows, "iter_custom_ids", no_read)  # ... and the file written again
    assert reuse_rows._Requests(tmp_path).of(prefix, [path], "sha-a") == fresh


def test_jobs_of_one_pass_share_a_datasets_request_hashes(tmp_path: Path) -> None:
    from batchops.reuse_rows import _Requests

    path = tmp_path / "d.jsonl"
    rows = [{"custom_id": f"r{i}", "body": {"prompt": "p"}} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prefix = request_prefix("fireworks", "m", {})
    one_pass = _Requests(tmp_path)
    first = one_pass.of(prefix, [path], "sha-a")
    assert first == list(file_requests(prefix, [path]))
    path.write_text("")  # read once per pass: a second job of the pass does not read it again
    assert one_pass.of(prefix, [path], "sha-a") is first
    other = request_prefix("fireworks", "m2", {})  # another prefix hashes its own rows...
    assert one_pass.of(other, [path], "sha-a") == []  # ...from the files (now empty)


def test_the_index_opens_while_another_connection_switches_it_to_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two passes opening a new index at once: SQLite refuses one of the two switches to WAL at
    # once ("database is locked", seen in CI with three concurrent passes); that one goes on.
    import sqlite3

    from batchops import reuse

    class Busy(sqlite3.Connection):
        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql.startswith("PRAGMA journal_mode"):
                raise sqlite3.OperationalError("database is locked")
            return super().execute(sql, *args)  # type: ignore[arg-type]

    connect = sqlite3.connect
    monkeypatch.setattr(reuse.sqlite3, "connect", lambda *a, **k: connect(*a, **k, factory=Busy))
    with ReuseIndex.open(tmp_path) as index:
        index.record(["j"], [(b"x" * 16, "j", "r1", b"{}")])
        assert index.lookup([b"x" * 16]) == {b"x" * 16: Answer("j")}
