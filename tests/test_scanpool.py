"""A big dataset shared out among helper processes (batchops.scanpool, batchops.rowscan).

What the shared read finds when every row is good; that it hands anything else back (None) for
the precise read. tests/test_datasets.py runs every diagnostic test through it as well.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from batchops import chunkpool, datasets, rowcheck, scanpool
from batchops.idset import CompactIds


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few rows, so that every helper takes several from the queue."""
    monkeypatch.setattr(chunkpool, "CHUNK", 1024)


def chat(cid: str, text: str = "hi") -> bytes:
    row = {"custom_id": cid, "body": {"messages": [{"role": "user", "content": text}]}}
    return json.dumps(row, ensure_ascii=False).encode()


def write(path: Path, rows: list[bytes], *, last_newline: bool = True) -> tuple[Path, int]:
    path.write_bytes(b"\n".join(rows) + (b"\n" if last_newline else b""))
    return path, path.stat().st_size


def test_chunks_are_cut_at_line_starts_and_cover_every_byte_once(tmp_path: Path) -> None:
    files = [
        write(tmp_path / "1.jsonl", [chat(f"a{i}", "x" * (i % 13)) for i in range(300)]),
        write(tmp_path / "2.jsonl", [chat(f"b{i}") for i in range(10)], last_newline=False),
    ]
    total = sum(size for _, size in files)
    chunks = chunkpool.split(files, total // 7)
    assert 7 <= len(chunks) <= 8
    assert all(sum(end - start for _, start, end in c) >= total // 7 for c in chunks[:-1])
    pieces = [piece for chunk in chunks for piece in chunk]
    for path, size in files:
        own = [(start, end) for p, start, end in pieces if p == path]
        assert own[0][0] == 0 and own[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(own))
        data = path.read_bytes()
        assert all(start == 0 or data[start - 1] == 0x0A for start, _ in own)


def test_small_files_are_taken_together(tmp_path: Path) -> None:
    files = [write(tmp_path / f"{i}.jsonl", [chat(f"r{i}")]) for i in range(50)]
    size = files[0][1]
    chunks = chunkpool.split(files, 10 * size)
    assert [len(chunk) for chunk in chunks] == [10] * 5
    assert [piece for chunk in chunks for piece in chunk] == [(p, 0, n) for p, n in files]


def test_a_chunk_never_starts_inside_a_line(tmp_path: Path) -> None:
    files = [write(tmp_path / "one.jsonl", [chat("a", "x" * 5000), chat("b")])]
    chunks = chunkpool.split(files, 1000)  # the cuts after 1000, 2000, ... fall inside line 1
    assert chunks == [
        [(files[0][0], 0, len(chat("a", "x" * 5000)) + 1)],
        [(files[0][0], len(chat("a", "x" * 5000)) + 1, files[0][1])],
    ]


def test_every_chunk_in_the_queue_is_taken_by_exactly_one_reader(tmp_path: Path) -> None:
    # Two helpers read the numbers from one pipe: each number reaches one of them, whole.
    script = (
        "import sys; from batchops.chunkpool import taken_chunks\n"
        "for i in taken_chunks(int(sys.argv[1])): print(i, flush=True)\n"
    )
    count = chunkpool.MAX_CHUNKS + 1
    queue = chunkpool._queue(count)
    try:
        readers = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(count)], stdin=queue, stdout=subprocess.PIPE
            )
            for _ in range(2)
        ]
    finally:
        os.close(queue)
    taken = [[int(line) for line in reader.communicate()[0].split()] for reader in readers]
    assert all(reader.returncode == 0 for reader in readers)
    assert sorted(taken[0] + taken[1]) == list(range(count))


@pytest.mark.parametrize("record", [b"0000001", b"00000x1\n", b"0000009\n", b"-000001\n"])
def test_a_helper_given_a_bad_queue_record_asks_for_the_precise_read(
    tmp_path: Path, record: bytes
) -> None:
    from batchops import rowscan

    path, size = write(tmp_path / "d.jsonl", [chat("r0")])
    read, write_end = os.pipe()
    os.write(write_end, b"0000000\n" + record)
    os.close(write_end)
    helper = subprocess.run(
        [sys.executable, "-m", "batchops.rowscan", "-", "0", str(path), "0", str(size)],
        stdin=read,
        capture_output=True,
        check=False,
    )
    os.close(read)
    assert (helper.returncode, helper.stdout) == (rowscan.NEEDS_PRECISE, b"")


def test_answers_that_lose_or_repeat_a_chunk_are_refused(tmp_path: Path) -> None:
    files = [write(tmp_path / f"{i}.jsonl", [chat(f"r{i}")]) for i in range(3)]
    chunks = [[(path, 0, size)] for path, size in files]

    def combine(*answers: scanpool._Answer | None) -> tuple[int, ...] | None:
        found = scanpool._combine(files, chunks, list(answers), ("",) * 3, CompactIds())
        return None if found is None else found.rows

    assert combine(("CHAT", {0: [1], 2: [1]}), ("CHAT", {1: [1]}), (None, {})) == (1, 1, 1)
    assert combine(("CHAT", {0: [1], 2: [1]}), ("CHAT", {})) is None  # chunk 1 lost
    assert combine(("CHAT", {0: [1], 1: [1]}), ("CHAT", {1: [1], 2: [1]})) is None  # twice
    assert combine(("CHAT", {0: [1], 1: [1]}), ("COMPLETION", {2: [1]})) is None
    assert combine(("CHAT", {0: [1], 1: [1], 2: [1, 1]})) is None  # a range too many
    assert combine(("CHAT", {0: [1], 1: [-1], 2: [1]})) is None
    assert combine(("CHAT", {0: [1], 1: [1], 2: [1]}), None) is None


def test_good_rows_are_counted_hashed_and_their_ids_kept(tmp_path: Path) -> None:
    files = [
        write(tmp_path / "1.jsonl", [chat(f"a{i}", "東京 é" * (i % 5)) for i in range(400)]),
        write(tmp_path / "2.jsonl", [chat(f"b{i}") for i in range(50)], last_newline=False),
    ]
    found = scanpool.scan(files, None, 3)
    assert found is not None
    assert (found.format, found.rows) == ("CHAT", (400, 50))
    assert found.sha256 == tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p, _ in files)
    assert not found.seen.doubtful()
    assert sum(len(part) for part in found.seen._parts) == 450


def test_a_custom_id_repeated_in_another_chunk_is_in_doubt(tmp_path: Path) -> None:
    # The helpers hash under one seed: a repeat across two processes is still a repeat.
    rows = [chat(f"r{i}") for i in range(300)]
    rows[-1] = chat("r0")
    found = scanpool.scan([write(tmp_path / "d.jsonl", rows)], None, 3)
    assert found is not None and found.seen.doubtful()


@pytest.mark.parametrize(
    "bad",
    [
        b"",  # a blank line
        b'{"custom_id": "x", "body": {"prompt": "other format"}}',
        b'{"custom_id": "x", "body": {"messages": [{"role": "user", "content": "\xff"}]}}',
        b"{not json",
    ],
)
def test_anything_but_good_rows_is_handed_back(tmp_path: Path, bad: bytes) -> None:
    rows = [chat(f"r{i}") for i in range(300)]
    rows[250] = bad  # in a late chunk
    assert scanpool.scan([write(tmp_path / "d.jsonl", rows)], None, 3) is None


def test_a_declared_format_is_held_to(tmp_path: Path) -> None:
    files = [write(tmp_path / "d.jsonl", [chat(f"r{i}") for i in range(100)])]
    assert scanpool.scan(files, "COMPLETION", 2) is None
    found = scanpool.scan(files, "CHAT", 2)
    assert found is not None and found.format == "CHAT"


def test_how_many_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunkpool, "_cpus", lambda: 2)
    mib = 2**20
    assert chunkpool.helpers_for([1000 * mib]) == 2
    assert chunkpool.helpers_for([40 * mib]) == 0  # one helper's worth: read here
    assert chunkpool.helpers_for([500 * mib, 0]) == 0  # an empty file: said precisely
    monkeypatch.setattr(chunkpool, "_cpus", lambda: 1)
    assert chunkpool.helpers_for([1000 * mib]) == 0
    monkeypatch.setattr(chunkpool, "_cpus", lambda: 64)
    assert chunkpool.helpers_for([1000 * mib]) == chunkpool.MAX_HELPERS


def test_a_big_dataset_is_validated_by_the_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # inspect_dataset takes the helpers' answer: no precise read of this process runs.
    monkeypatch.setattr(chunkpool, "PART_MIN", 1)
    monkeypatch.setattr(chunkpool, "_cpus", lambda: 2)
    monkeypatch.setattr(datasets, "HELPER_MIN", 2**62)

    def no_read(*_: object, **__: object) -> None:
        raise AssertionError("read in process")

    monkeypatch.setattr(datasets, "_read_file", no_read)
    path, _ = write(tmp_path / "d.jsonl", [chat(f"r{i}") for i in range(200)])
    info = datasets.inspect_dataset(_Decl(path), root=tmp_path)
    assert (info.rows, info.format) == (200, "CHAT")
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


class _Decl:
    def __init__(self, path: Path) -> None:
        self.name, self.path, self.files, self.format = "d", path.name, (path,), None


def test_an_interrupted_scan_stops_its_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def recording(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        started.append(popen(*args, **kwargs))  # type: ignore[call-overload]
        return started[-1]

    def interrupted(path: Path) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(chunkpool.subprocess, "Popen", recording)
    monkeypatch.setattr(scanpool, "_sha256", interrupted)
    files = [write(tmp_path / "d.jsonl", [chat(f"r{i}") for i in range(100)])]
    with pytest.raises(KeyboardInterrupt):
        scanpool.scan(files, None, 2)
    assert len(started) == 2 and all(proc.returncode is not None for proc in started)


def test_a_helper_reading_tiny_blocks_joins_the_lines_they_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A line cut by a block (and a character cut inside it) is joined before it is checked, and
    # the digests are those of a scan in one piece.
    from batchops import rowscan
    from batchops.idset import CompactIds

    rows = [chat(f"r{i}", "東京 é" * (i % 7)) for i in range(120)]
    path, size = write(tmp_path / "d.jsonl", rows, last_newline=False)
    for block in (7, 64, 1000, size):
        monkeypatch.setattr(rowscan, "BLOCK", block)
        scan = rowcheck.Scan(tmp_path, None, seen=CompactIds())
        assert rowscan.scan_range(path, 0, size, scan) == 120
        expected = CompactIds()
        expected.add_rows((f"r{i}" for i in range(120)), 120)
        assert [sorted(p) for p in scan.seen._parts] == [sorted(p) for p in expected._parts]
    with pytest.raises(rowscan._NeedsPrecise):  # shorter than measured: read it precisely
        rowscan.scan_range(path, 0, size + 5, rowcheck.Scan(tmp_path, None))


def test_a_helpers_digests_are_read_from_its_pipe_without_a_copy_of_the_whole(
    tmp_path: Path,
) -> None:
    """The main process merges each helper's digests while the other helpers are still alive:
    reading the answer whole first (communicate) held a second copy of every digest, and that
    was the process tree's peak RSS on 1 GB (issue 17)."""
    ids = CompactIds()
    ids.add_rows((f"row-{i}" for i in range(500_000)), 500_000)
    answer = tmp_path / "answer"
    with answer.open("wb") as f:
        f.write(json.dumps({"format": "CHAT", "taken": {"0": [500_000]}}).encode() + b"\n")
        ids.write(f)
    digests = answer.stat().st_size
    proc = subprocess.Popen(["cat", str(answer)], stdout=subprocess.PIPE)
    seen = CompactIds()
    tracemalloc.start()
    try:
        got = scanpool._answer(proc, seen)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        chunkpool.stop(proc)
    assert got == ("CHAT", {0: [500_000]})
    assert seen.dump() == ids.dump()
    assert peak < 1.3 * digests  # the merged digests, and one range read at a time


def test_a_helpers_truncated_or_failed_answer_is_none(tmp_path: Path) -> None:
    ids = CompactIds()
    ids.add_rows((f"row-{i}" for i in range(1000)), 1000)
    whole = json.dumps({"format": None, "taken": {"3": [1000]}}).encode() + b"\n" + ids.dump()
    for data, code, expected in [
        (whole, 0, (None, {3: [1000]})),
        (whole.replace(b'{"3": [1000]}', b"[1000]"), 0, None),  # rows not by chunk
        (whole[:-8], 0, None),
        (whole + b"\0", 0, None),
        (whole, 1, None),
        (b"", 3, None),
    ]:
        answer = tmp_path / "answer"
        answer.write_bytes(data)
        script = f"import sys; sys.stdout.buffer.write(open({str(answer)!r}, 'rb').read())"
        script += f"; sys.exit({code})"
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        try:
            assert scanpool._answer(proc, CompactIds()) == expected
        finally:
            chunkpool.stop(proc)


@pytest.mark.timeout(30)
def test_a_queue_the_pipe_cannot_hold_is_refused_not_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A system short of pipe memory gives 4 KiB pipes: the chunk numbers are written before any
    # helper reads, so a queue that does not fit must fail at once (the caller then reads the
    # dataset itself), never block.
    fcntl = pytest.importorskip("fcntl")
    pipe = os.pipe

    def small_pipe() -> tuple[int, int]:
        read, write = pipe()
        fcntl.fcntl(write, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
        return read, write

    monkeypatch.setattr(chunkpool.os, "pipe", small_pipe)
    with pytest.raises(OSError):
        chunkpool._queue(600)  # 4,800 bytes
    queue = chunkpool._queue(500)  # 4,000 bytes fit
    os.close(queue)
    rows = [chat(f"r{i}") for i in range(2000)]
    files = [write(tmp_path / "d.jsonl", rows)]
    monkeypatch.setattr(chunkpool, "CHUNK", 64)  # one chunk a row: 2,000 numbers
    assert scanpool.scan(files, None, 2) is None
    monkeypatch.setattr(chunkpool, "PART_MIN", 1)
    monkeypatch.setattr(chunkpool, "_cpus", lambda: 2)
    info = datasets.inspect_dataset(_Decl(files[0][0]), root=tmp_path)  # read here instead
    assert info.rows == 2000
