"""Dataset validation, hashing and the stat cache, asserting exact file:line:col diagnostics."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchops import chunkpool, datasets, rowcheck
from batchops.datasets import StatCache, inspect_all, inspect_dataset, iter_custom_ids
from batchops.errors import InvalidInputError


@pytest.fixture(autouse=True, params=["in-process", "helper", "shared"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test three times: files read in this process alone; with the helper process that
    hashes and checks UTF-8 beside the read (used from HELPER_MIN bytes up); and shared out
    among three helper processes that take chunks of it from one queue (scanpool, from
    PART_MIN bytes a helper; chunks of a few rows here), which hand any dataset with a problem
    back to the precise read."""
    monkeypatch.setattr(datasets, "HELPER_MIN", 0 if request.param == "helper" else 2**62)
    monkeypatch.setattr(chunkpool, "PART_MIN", 1 if request.param == "shared" else 2**62)
    monkeypatch.setattr(chunkpool, "CHUNK", 256)
    monkeypatch.setattr(chunkpool, "_cpus", lambda: 3)
    return str(request.param)


@dataclass(frozen=True)
class Decl:
    name: str
    path: str
    files: tuple[Path, ...]
    format: str | None = None


@dataclass(frozen=True)
class Wanted:
    datasets: tuple[Decl, ...]


def chat(cid: str, text: str = "hi") -> str:
    return json.dumps({"custom_id": cid, "body": {"messages": [{"role": "user", "content": text}]}})


def prompt(cid: str) -> str:
    return json.dumps({"custom_id": cid, "body": {"prompt": "Once upon a time"}})


def make(root: Path, rel: str, lines: list[str] | bytes, *, fmt: str | None = None) -> Decl:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = lines if isinstance(lines, bytes) else "".join(f"{x}\n" for x in lines).encode()
    path.write_bytes(data)
    return Decl(path.stem, rel, (path,), fmt)


def problems(decl: Decl, root: Path, **kw: int) -> list[str]:
    with pytest.raises(InvalidInputError) as info:
        inspect_dataset(decl, root=root, **kw)  # type: ignore[arg-type]
    return [str(d) for d in info.value.diagnostics]


def test_valid_file_rows_size_hash_and_format(tmp_path: Path) -> None:
    decl = make(tmp_path, "d.jsonl", [chat("a"), chat("b", "é 東京")])
    info = inspect_dataset(decl, root=tmp_path)
    data = (tmp_path / "d.jsonl").read_bytes()
    assert (info.rows, info.size, info.format) == (2, len(data), "CHAT")
    assert info.sha256 == hashlib.sha256(data).hexdigest() == info.files[0].sha256
    completion = make(tmp_path, "p.jsonl", [prompt("a")])
    assert inspect_dataset(completion, root=tmp_path).format == "COMPLETION"


def test_last_line_without_newline_counts(tmp_path: Path) -> None:
    decl = make(tmp_path, "d.jsonl", (chat("a") + "\n" + chat("b")).encode())
    assert inspect_dataset(decl, root=tmp_path).rows == 2
    assert list(iter_custom_ids(decl.files)) == ["a", "b"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "1:1: blank line"),
        ("   ", "1:1: blank line"),
        (
            '{"custom_id": "a", "body": {',
            "1:29: invalid JSON: Expecting property name enclosed in double quotes",
        ),
        ("[1]", "1:1: each line must be a JSON object"),
        ('{"body": {"prompt": "x"}}', "1:1: missing custom_id"),
        ('{"custom_id": "", "body": {"prompt": "x"}}', "1:1: custom_id must be a non-empty string"),
        ('{"custom_id": 7, "body": {"prompt": "x"}}', "1:1: custom_id must be a non-empty string"),
        ('{"custom_id": "a"}', "1:1: missing body"),
        ('{"custom_id": "a", "body": "x"}', "1:1: body must be a JSON object"),
        (
            '{"custom_id": "a", "body": {"prompt": "x", "model": "m"}}',
            "1:1: body must not contain 'model': the job's spec.model sets it",
        ),
        (
            '{"custom_id": "a", "body": {"max_tokens": 5}}',
            "1:1: body needs messages (chat) or prompt (completion)",
        ),
        (
            '{"custom_id": "a", "body": {"prompt": "x", "messages": []}}',
            "1:1: body has both messages and prompt; use one",
        ),
        (
            '{"custom_id": "a", "body": {"messages": []}}',
            "1:1: body.messages must be a non-empty list",
        ),
        (
            '{"custom_id": "a", "body": {"messages": ["x"]}}',
            "1:1: body.messages[0] must be an object",
        ),
        (
            '{"custom_id": "a", "body": {"messages": [{"role": "bot", "content": "x"}]}}',
            "1:1: body.messages[0].role must be one of system, user, assistant, tool",
        ),
        (
            '{"custom_id": "a", "body": {"messages": [{"role": "user"}]}}',
            "1:1: body.messages[0] has no content",
        ),
        (  # the fast path took any list of objects as content parts
            '{"custom_id": "a", "body": {"messages": [{"role": "user", "content": '
            '[{"text": "x"}]}]}}',
            '1:1: body.messages[0].content parts must be objects with a string "type"',
        ),
        (
            '{"custom_id": "a", "body": {"messages": [{"role": "user", "content": '
            '[{"type": "text", "text": "x"}, {"type": 7}]}]}}',
            '1:1: body.messages[0].content parts must be objects with a string "type"',
        ),
    ],
)
def test_row_rules(tmp_path: Path, line: str, expected: str) -> None:
    decl = make(tmp_path, "data/d.jsonl", [line, chat("ok")])
    assert problems(decl, tmp_path) == [f"data/d.jsonl:{expected}"]


def test_not_utf8_empty_and_too_big(tmp_path: Path) -> None:
    bad = make(tmp_path, "bad.jsonl", chat("a").encode() + b"\n" + b'{"custom_id": "\xff"}\n')
    assert problems(bad, tmp_path) == ["bad.jsonl:2:16: not valid UTF-8"]
    empty = make(tmp_path, "empty.jsonl", b"")
    assert problems(empty, tmp_path) == ["empty.jsonl:1:1: file is empty"]
    big = make(tmp_path, "big.jsonl", [chat(str(i)) for i in range(100)])
    assert problems(big, tmp_path, max_bytes=1024) == [
        "big.jsonl:1:1: file is 7,890 bytes, over the limit of 1,024 bytes"
    ]


def test_duplicates_and_mixed_formats(tmp_path: Path) -> None:
    decl = make(tmp_path, "d.jsonl", [chat("a"), chat("b"), chat("a"), prompt("c")])
    assert problems(decl, tmp_path) == [
        "d.jsonl:3:1: duplicate custom_id 'a' (first at d.jsonl:1)",
        "d.jsonl:4:1: row is a COMPLETION request but the dataset's rows are CHAT",
    ]
    declared = make(tmp_path, "e.jsonl", [chat("a")], fmt="COMPLETION")
    assert problems(declared, tmp_path) == [
        "e.jsonl:1:1: row is a CHAT request but the dataset's rows are COMPLETION"
    ]


def test_thousands_of_bad_lines_show_twenty_then_a_count(tmp_path: Path) -> None:
    decl = make(tmp_path, "d.jsonl", [chat("ok")] + ["{nope"] * 3000)
    shown = problems(decl, tmp_path)
    assert len(shown) == 21
    assert (
        shown[0] == "d.jsonl:2:2: invalid JSON: Expecting property name enclosed in double quotes"
    )
    assert shown[19].startswith("d.jsonl:21:2: ")
    assert shown[20] == "d.jsonl:22:1: ... and 2980 more problems in this file"


def test_each_duplicate_says_where_its_custom_id_first_appeared(tmp_path: Path) -> None:
    rows = [chat("x"), "", chat("it's"), chat("x"), "{", chat("it's"), chat("x")]
    make(tmp_path, "s/1.jsonl", [chat("y")])
    make(tmp_path, "s/2.jsonl", [*rows, chat("y")])
    decl = Decl("s", "s", (tmp_path / "s/1.jsonl", tmp_path / "s/2.jsonl"))
    assert problems(decl, tmp_path) == [
        "s/2.jsonl:2:1: blank line",
        "s/2.jsonl:4:1: duplicate custom_id 'x' (first at s/2.jsonl:1)",
        "s/2.jsonl:5:2: invalid JSON: Expecting property name enclosed in double quotes",
        "s/2.jsonl:6:1: duplicate custom_id 'it's' (first at s/2.jsonl:3)",
        "s/2.jsonl:7:1: duplicate custom_id 'x' (first at s/2.jsonl:1)",
        "s/2.jsonl:8:1: duplicate custom_id 'y' (first at s/1.jsonl:1)",
    ]


def test_blocks_and_lines_spanning_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small blocks force lines across block boundaries; a bad line in the middle is still exact.
    monkeypatch.setattr(datasets, "BLOCK", 100)
    rows = [chat(f"row-{i}", "x" * (i % 50)) for i in range(200)]
    rows[150] = chat("row-3")
    decl = make(tmp_path, "d.jsonl", rows)
    assert problems(decl, tmp_path) == [
        "d.jsonl:151:1: duplicate custom_id 'row-3' (first at d.jsonl:4)"
    ]
    rows[150] = chat("row-150")
    info = inspect_dataset(make(tmp_path, "d.jsonl", rows), root=tmp_path)
    assert info.rows == 200
    assert info.sha256 == hashlib.sha256((tmp_path / "d.jsonl").read_bytes()).hexdigest()


def test_folder_of_shards(tmp_path: Path) -> None:
    make(tmp_path, "ds/b.jsonl", [chat("b1"), chat("b2")])
    make(tmp_path, "ds/a.jsonl", [chat("a1")])
    files = (tmp_path / "ds/a.jsonl", tmp_path / "ds/b.jsonl")
    info = inspect_dataset(Decl("ds", "ds", files), root=tmp_path)
    pairs = "".join(f"{p.name}\t{hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in files)
    assert info.sha256 == hashlib.sha256(pairs.encode()).hexdigest()
    assert (info.rows, [s.rows for s in info.files]) == (3, [1, 2])
    make(tmp_path, "ds/b.jsonl", [chat("b1"), chat("a1")])
    assert problems(Decl("ds", "ds", files), tmp_path) == [
        "ds/b.jsonl:2:1: duplicate custom_id 'a1' (first at ds/a.jsonl:1)"
    ]


def test_inspect_all_collects_every_dataset(tmp_path: Path) -> None:
    one = make(tmp_path, "one.jsonl", [chat("a"), ""])
    two = make(tmp_path, "two.jsonl", ["{"])
    ok = make(tmp_path, "ok.jsonl", [chat("a")])
    with pytest.raises(InvalidInputError) as info:
        inspect_all(Wanted((one, two, ok)), root=tmp_path)
    assert [str(d) for d in info.value.diagnostics] == [
        "one.jsonl:2:1: blank line",
        "two.jsonl:1:2: invalid JSON: Expecting property name enclosed in double quotes",
    ]
    assert inspect_all(Wanted((ok,)), root=tmp_path)["ok"].rows == 1


def test_stat_cache_skips_unchanged_files(tmp_path: Path) -> None:
    decl = make(tmp_path, "d.jsonl", [chat("a"), chat("b")])
    path = decl.files[0]
    cache = StatCache.for_root(tmp_path)
    first = inspect_dataset(decl, root=tmp_path, cache=cache)
    stored = json.loads((tmp_path / ".batchops/cache/datasets.json").read_text())
    st = path.stat()
    assert stored["files"][str(path)] == {
        "stat": [st.st_size, st.st_mtime_ns, st.st_ino],
        "sha256": first.sha256,
        "rows": 2,
        "format": "CHAT",
    }
    # Same size, mtime and inode but different bytes: the cache answers without reading.
    path.write_bytes(path.read_bytes().replace(b'"a"', b'"z"'))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert inspect_dataset(decl, root=tmp_path, cache=StatCache.for_root(tmp_path)) == first
    # A new mtime makes it read and hash again.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    again = inspect_dataset(decl, root=tmp_path, cache=StatCache.for_root(tmp_path))
    assert again.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != first.sha256


def test_cache_stores_only_valid_files_and_survives_corruption(tmp_path: Path) -> None:
    bad = make(tmp_path, "bad.jsonl", ["{"])
    cache = StatCache.for_root(tmp_path)
    problems(bad, tmp_path, cache=cache)  # type: ignore[arg-type]
    assert not (tmp_path / ".batchops/cache/datasets.json").exists()
    (tmp_path / ".batchops/cache").mkdir(parents=True)
    (tmp_path / ".batchops/cache/datasets.json").write_text("{not json")
    good = make(tmp_path, "good.jsonl", [chat("a")])
    assert inspect_dataset(good, root=tmp_path, cache=StatCache.for_root(tmp_path)).rows == 1
    assert list(json.loads((tmp_path / ".batchops/cache/datasets.json").read_text())["files"]) == [
        str(good.files[0])
    ]


@pytest.mark.parametrize("reader", ["in-process"], indirect=True)  # reads no dataset
def test_iter_custom_ids_across_files(tmp_path: Path) -> None:
    a = make(tmp_path, "a.jsonl", [chat("x"), chat("y")])
    b = make(tmp_path, "b.jsonl", [prompt("z")])
    assert list(iter_custom_ids(a.files + b.files)) == ["x", "y", "z"]


def utf8_chat(cid: str, text: str) -> bytes:
    """A chat row with its non-ASCII as raw UTF-8 (json.dumps escapes it by default)."""
    row = {"custom_id": cid, "body": {"messages": [{"role": "user", "content": text}]}}
    return json.dumps(row, ensure_ascii=False).encode()


@pytest.mark.parametrize("block", [100, 2**20])
def test_bad_utf8_where_the_fast_decoder_does_not_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    # The typed decoder leaves message content, prompts and unknown body params undecoded, so it
    # never checks their UTF-8 itself; valid non-ASCII passes, bad bytes are still exact.
    monkeypatch.setattr(datasets, "BLOCK", block)
    good = [utf8_chat(f"c{i}", "é 東京 данные") for i in range(40)]
    bad_content = (
        b'{"custom_id": "x", "body": {"messages": [{"role": "user", "content": "caf\xe9"}]}}'
    )
    bad_param = (
        b'{"custom_id": "y", "body": {"stop": "\xc3(", '
        b'"messages": [{"role": "user", "content": "hi"}]}}'
    )
    ok = make(tmp_path, "ok.jsonl", b"\n".join(good) + b"\n")
    assert inspect_dataset(ok, root=tmp_path).rows == 40
    lines = [*good[:10], bad_content, *good[10:30], bad_param, *good[30:]]
    decl = make(tmp_path, "d.jsonl", b"\n".join(lines) + b"\n")
    assert problems(decl, tmp_path) == [
        f"d.jsonl:11:{bad_content.index(0xE9) + 1}: not valid UTF-8",
        f"d.jsonl:32:{bad_param.index(0xC3) + 1}: not valid UTF-8",
    ]
    prompts = [json.dumps({"custom_id": f"p{i}", "body": {"prompt": "Zürich"}}) for i in range(9)]
    bad_prompt = b'{"custom_id": "z", "body": {"prompt": "\xed\xa0\x80"}}'  # a UTF-8 surrogate
    decl = make(tmp_path, "p.jsonl", "\n".join(prompts).encode() + b"\n" + bad_prompt + b"\n")
    assert problems(decl, tmp_path) == [f"p.jsonl:10:{bad_prompt.index(0xED) + 1}: not valid UTF-8"]


def test_format_is_taken_from_the_first_row_when_not_declared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each format has its own typed decoder; a completion dataset must not be judged as chat.
    monkeypatch.setattr(datasets, "BLOCK", 100)
    decl = make(tmp_path, "p.jsonl", [prompt(f"p{i}") for i in range(30)])
    assert inspect_dataset(decl, root=tmp_path).format == "COMPLETION"
    mixed = make(tmp_path, "m.jsonl", [prompt(f"p{i}") for i in range(10)] + [chat("c")])
    assert problems(mixed, tmp_path) == [
        "m.jsonl:11:1: row is a CHAT request but the dataset's rows are COMPLETION"
    ]


def test_lines_longer_than_many_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "BLOCK", 100)
    rows = [chat("a"), chat("long", "é" * 2000), chat("b"), chat("a"), chat("last", "x" * 900)]
    decl = make(tmp_path, "d.jsonl", "\n".join(rows).encode())  # no final newline
    assert problems(decl, tmp_path) == ["d.jsonl:4:1: duplicate custom_id 'a' (first at d.jsonl:1)"]
    assert list(iter_custom_ids(decl.files)) == ["a", "long", "b", "a", "last"]
    del rows[3]
    decl = make(tmp_path, "d.jsonl", "\n".join(rows).encode())
    assert inspect_dataset(decl, root=tmp_path).rows == 4


def test_utf8_checked_in_pieces_that_cut_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rowcheck, "UTF8_PIECE", 5)  # most pieces end inside a character
    rows = [utf8_chat(f"r{i}", "é東京данные😀") for i in range(20)]
    decl = make(tmp_path, "d.jsonl", b"\n".join(rows) + b"\n")
    assert inspect_dataset(decl, root=tmp_path).rows == 20
    rows[7] = rows[7].replace("京".encode(), "京".encode()[:2])  # a character cut short
    decl = make(tmp_path, "d.jsonl", b"\n".join(rows) + b"\n")
    column = rows[7].index("京".encode()[:2]) + 1
    assert problems(decl, tmp_path) == [f"d.jsonl:8:{column}: not valid UTF-8"]


def inspected(root: Path, data: bytes) -> tuple[str, int]:
    info = inspect_dataset(make(root, "d.jsonl", data), root=root)
    return info.sha256, info.rows


def test_the_helper_agrees_with_the_in_process_read(tmp_path: Path, reader: str) -> None:
    rows = [utf8_chat(f"r{i}", "é東京данные😀" * (i % 7)) for i in range(3000)]
    data = b"\n".join(rows) + b"\n"
    assert inspected(tmp_path, data) == (hashlib.sha256(data).hexdigest(), 3000)


@pytest.mark.parametrize("reader", ["helper"], indirect=True)
def test_a_file_the_helper_rejects_is_read_again_without_false_duplicates(tmp_path: Path) -> None:
    # The first read, trusting the helper for UTF-8, took every row as good; the second must
    # not then find each custom_id of this file (or the dataset's format) already seen.
    first = [utf8_chat(f"a{i}", "東京") for i in range(50)]
    second = [utf8_chat(f"b{i}", "данные") for i in range(50)]
    second[20] = second[20].replace("данные".encode(), b"\xff")
    make(tmp_path, "s/1.jsonl", b"\n".join(first) + b"\n")
    make(tmp_path, "s/2.jsonl", b"\n".join(second) + b"\n")
    decl = Decl("s", "s", (tmp_path / "s/1.jsonl", tmp_path / "s/2.jsonl"))
    column = second[20].index(0xFF) + 1
    assert problems(decl, tmp_path) == [f"s/2.jsonl:21:{column}: not valid UTF-8"]


@pytest.mark.parametrize(
    "helper",
    ["import sys; sys.exit(3)", "print('utf-8')", "print('utf-8 a b')", "print('utf-8 0a')", "1/0"],
)
@pytest.mark.parametrize("reader", ["helper"], indirect=True)
def test_a_helper_that_fails_means_reading_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helper: str
) -> None:
    script = tmp_path / "helper.py"
    script.write_text(helper + "\n")
    monkeypatch.setattr(datasets, "HELPER", script)
    data = "".join(f"{chat(f'c{i}')}\n" for i in range(100)).encode()
    assert inspected(tmp_path, data) == (hashlib.sha256(data).hexdigest(), 100)


@pytest.mark.parametrize("reader", ["helper"], indirect=True)
def test_an_interrupted_read_stops_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def recording(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        started.append(popen(*args, **kwargs))  # type: ignore[call-overload]
        return started[-1]

    def interrupted(self: object, block: bytes) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.subprocess, "Popen", recording)
    monkeypatch.setattr(rowcheck.Lines, "feed", interrupted)
    decl = make(tmp_path, "d.jsonl", [chat(f"c{i}") for i in range(10)])
    with pytest.raises(KeyboardInterrupt):
        inspect_dataset(decl, root=tmp_path)
    assert len(started) == 1 and started[0].returncode is not None


def test_content_parts_are_rows_like_any_other(tmp_path: Path) -> None:
    image = {"url": "data:image/png;base64,iVBORw0K"}
    parts = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": image}]
    messages = [[{"role": "user", "content": parts if i % 2 else "plain"}] for i in range(40)]
    rows = [
        json.dumps({"custom_id": f"p{i}", "body": {"messages": m}}) for i, m in enumerate(messages)
    ]
    info = inspect_dataset(make(tmp_path, "d.jsonl", rows), root=tmp_path)
    assert (info.rows, info.format) == (40, "CHAT")
