"""The bad-input corpus (issue 6, "Hardening"): every broken input fails loudly and sends nothing.

Each case is a folder ``corpus/<case>/`` copied to ``<tmp>/repo`` (the root): its ``jobs/`` holds
the manifests and data, and ``expected.txt`` the exact diagnostics, one ``path:line:col: message``
a line. Inputs that are big, binary, symlinks or bombs are written at test time by ``GENERATORS``
instead of being committed (``<tmp>/outside``, beside the root, is where escaping links point).
For every case:

* ``batchops validate jobs`` exits 1 and prints exactly the expected diagnostics and their count;
* ``batchops apply jobs`` against one shared running local backend exits 1, prints the same
  diagnostics, and the backend holds no dataset and no job afterwards.

"Circular" has two meanings here, since manifests have no job-to-job references: a YAML alias that
contains itself (``yaml-recursive-alias``) and a dataset path that is a cycle of symlinks
(``circular-symlink-dataset``). "Dangling" is an ``inputDataset`` naming no declared dataset, or a
dataset path that is a symlink to nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from batchops.cli import main
from batchops.datasets import DEFAULT_MAX_BYTES
from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.rowcheck import MAX_ROW_BYTES

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
ACCOUNT = "local"  # the account the CLI uses with FIREWORKS_BASE_URL and no key


def chat_row(i: int, content: str = "") -> str:
    body = {"messages": [{"role": "user", "content": content or f"q{i}"}]}
    return json.dumps({"custom_id": f"r{i}", "body": body})


GOOD = "".join(chat_row(i) + "\n" for i in range(1, 4))


# -- inputs written at test time -------------------------------------------------------------


def _alias_bomb(root: Path, outside: Path) -> None:
    """Billion laughs: nine levels of nine aliases, a 1 KB file describing 9**9 strings."""
    lines = ['a0: &a0 "lol"']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (root / "jobs/m.yaml").write_text("\n".join(lines) + "\nkind: Dataset\n")


def _deep_nesting(root: Path, outside: Path) -> None:
    (root / "jobs/m.yaml").write_text("kind: Dataset\nspec: " + "[" * 5000 + "]" * 5000 + "\n")


def _manifest_not_utf8(root: Path, outside: Path) -> None:
    text = b"apiVersion: batchops/v1\n# caf\xe9 in Latin-1\nkind: Dataset\n"
    (root / "jobs/m.yaml").write_bytes(text)


def _symlink_cycle(root: Path, outside: Path) -> None:
    data = root / "jobs/data"
    data.mkdir(parents=True)
    (data / "rows.jsonl").symlink_to("loop.jsonl")
    (data / "loop.jsonl").symlink_to("rows.jsonl")


def _symlink_out(root: Path, outside: Path) -> None:
    (root / "jobs/data").mkdir(parents=True)
    (root / "jobs/data/rows.jsonl").symlink_to(outside / "rows.jsonl")


def _folder_symlink_out(root: Path, outside: Path) -> None:
    (root / "jobs/data").mkdir(parents=True)
    (root / "jobs/data/shards").symlink_to(outside, target_is_directory=True)


def _shard_symlink_out(root: Path, outside: Path) -> None:
    (root / "jobs/data/shards/b.jsonl").symlink_to(outside / "rows.jsonl")


def _manifest_symlink_out(root: Path, outside: Path) -> None:
    (outside / "evil.yaml").write_text("kind: Dataset\n")
    (root / "jobs/evil.yaml").symlink_to(outside / "evil.yaml")


def _manifest_symlink_loop(root: Path, outside: Path) -> None:
    (root / "jobs/a.yaml").symlink_to("b.yaml")
    (root / "jobs/b.yaml").symlink_to("a.yaml")


def _manifest_dangling_symlink(root: Path, outside: Path) -> None:
    (root / "jobs/rows.yaml").symlink_to("moved-away.yaml")


def _dangling_symlink(root: Path, outside: Path) -> None:
    (root / "jobs/data").mkdir(parents=True)
    (root / "jobs/data/rows.jsonl").symlink_to("gone.jsonl")


def _data(root: Path, content: bytes) -> None:
    (root / "jobs/data").mkdir(parents=True, exist_ok=True)
    (root / "jobs/data/rows.jsonl").write_bytes(content)


def _jsonl_not_utf8(root: Path, outside: Path) -> None:
    _data(root, GOOD.encode() + b'{"custom_id": "r4", "body": {"prompt": "caf\xe9"}}\n')


def _jsonl_binary(root: Path, outside: Path) -> None:
    _data(root, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01")


def _jsonl_bom(root: Path, outside: Path) -> None:
    _data(root, b"\xef\xbb\xbf" + GOOD.encode())  # what Notepad writes as "UTF-8"


def _many_bad_lines(root: Path, outside: Path) -> None:
    _data(root, (GOOD + "42\n" * 25 + chat_row(4) + "\n").encode())


ONE_MB = 2**20


def _one_mb_line(root: Path, outside: Path) -> None:
    """A valid 1 MiB row, then a 1 MiB row cut off inside its string (a truncated upload)."""
    big = chat_row(2, "x" * ONE_MB)
    _data(root, (chat_row(1) + "\n" + big + "\n" + big[: ONE_MB // 2] + "\n").encode())


def _oversized(root: Path, outside: Path) -> None:
    """One byte over the default limit, sparse: the size check must refuse it before reading."""
    _data(root, b"")
    os.truncate(root / "jobs/data/rows.jsonl", DEFAULT_MAX_BYTES + 1)


def _fifo(root: Path, outside: Path) -> None:
    """A named pipe nobody writes to: reading it would block validate forever."""
    (root / "jobs/data").mkdir(parents=True)
    os.mkfifo(root / "jobs/data/rows.jsonl")
    (root / "jobs/shards").mkdir()
    (root / "jobs/shards/a.jsonl").write_text(GOOD)
    os.mkfifo(root / "jobs/shards/b.jsonl")
    os.mkfifo(root / "jobs/pipe.yaml")  # a manifest too: found, and refused without reading


def _row_too_long(root: Path, outside: Path) -> None:
    """A row over MAX_ROW_BYTES between good ones: refused, and the next line still read."""
    long_row = chat_row(2, "x" * MAX_ROW_BYTES)
    _data(root, (chat_row(1) + "\n" + long_row + "\n" + chat_row(3) + "\n").encode())


def _output_links_to_dataset(root: Path, outside: Path) -> None:
    """A results path that is a symlink to a dataset file: writing it would destroy the input."""
    (root / "results").mkdir()
    (root / "results/link.jsonl").symlink_to("../jobs/data/rows.jsonl")


Generator = Callable[[Path, Path], None]
GENERATORS: dict[str, Generator] = {
    "yaml-alias-bomb": _alias_bomb,
    "yaml-deep-nesting": _deep_nesting,
    "yaml-not-utf8": _manifest_not_utf8,
    "circular-symlink-dataset": _symlink_cycle,
    "path-symlink-out": _symlink_out,
    "path-symlink-folder-out": _folder_symlink_out,
    "path-shard-symlink-out": _shard_symlink_out,
    "manifest-symlink-out": _manifest_symlink_out,
    "manifest-symlink-loop": _manifest_symlink_loop,
    "manifest-dangling-symlink": _manifest_dangling_symlink,
    "path-dangling-symlink": _dangling_symlink,
    "jsonl-not-utf8": _jsonl_not_utf8,
    "jsonl-binary": _jsonl_binary,
    "jsonl-utf8-bom": _jsonl_bom,
    "jsonl-many-bad-lines": _many_bad_lines,
    "jsonl-one-mb-line": _one_mb_line,
    "jsonl-oversized": _oversized,
    "path-fifo": _fifo,
    "jsonl-row-too-long": _row_too_long,
    "output-path-owned-files": _output_links_to_dataset,
}


# -- building a case and reading its expectation -----------------------------------------------


def materialize(case: str, tmp_path: Path) -> tuple[Path, Path]:
    """``<tmp>/repo`` (the root) holding the case, and ``<tmp>/outside`` beside it."""
    root, outside = tmp_path / "repo", tmp_path / "outside"
    shutil.copytree(CORPUS / case, root, ignore=shutil.ignore_patterns("expected.txt"))
    outside.mkdir()
    (outside / "rows.jsonl").write_text(GOOD)
    GENERATORS.get(case, lambda root, outside: None)(root, outside)
    return root, outside


def expected(case: str) -> list[str]:
    return (CORPUS / case / "expected.txt").read_text(encoding="utf-8").splitlines()


def count_line(n: int) -> str:
    return f"{n} problem{'s' if n != 1 else ''}"


@pytest.fixture
def case_root(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path]:
    """(case name, root) with the case built and the current folder set to its root."""
    case: str = request.param
    root, _ = materialize(case, tmp_path)
    monkeypatch.chdir(root)
    return case, root


# -- the corpus itself -------------------------------------------------------------------------


def test_the_corpus_is_complete() -> None:
    """At least 40 cases, each with an expectation; every generator belongs to a case."""
    assert len(CASES) >= 40
    assert [c for c in CASES if not (CORPUS / c / "expected.txt").is_file()] == []
    assert set(GENERATORS) <= set(CASES)
    for case in CASES:
        lines = expected(case)
        assert lines and all(line.startswith("jobs/") for line in lines), case


# -- validate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case_root", CASES, indirect=True)
def test_validate_reports_every_problem(
    case_root: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    case, root = case_root
    want = expected(case)
    assert main(["validate", "jobs"]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [*want, f"{count_line(len(want))} found"]
    assert out.err == ""
    assert not (root / "pwned").exists()  # yaml-python-tag: no code ran


# -- apply: nothing reaches the backend ------------------------------------------------------


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:  # one: building a client costs ~0.2 s (TLS setup)
        yield client


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One local backend shared by every case: if any case wrote, the later checks see it too."""
    config = BackendConfig(data_dir=tmp_path_factory.mktemp("backend"))
    with EmbeddedServer(config, worker=False) as server:
        yield server


def held(server: EmbeddedServer, http: httpx.Client) -> tuple[list[object], list[object]]:
    """The datasets and jobs the backend holds for the CLI's account."""
    base = f"{server.base_url}/v1/accounts/{ACCOUNT}"
    datasets = http.get(f"{base}/datasets").raise_for_status().json()
    jobs = http.get(f"{base}/batchInferenceJobs").raise_for_status().json()
    return datasets["datasets"], jobs["batchInferenceJobs"]


@pytest.mark.parametrize("case_root", CASES, indirect=True)
def test_apply_exits_1_and_the_backend_receives_nothing(
    case_root: tuple[str, Path],
    backend: EmbeddedServer,
    http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case, _ = case_root
    want = expected(case)
    monkeypatch.setenv("FIREWORKS_BASE_URL", backend.base_url)
    assert main(["apply", "jobs"]) == 1
    out = capsys.readouterr()
    assert out.err.splitlines() == [*want, f"error: {count_line(len(want))} in the input"]
    assert out.out == ""
    assert held(backend, http) == ([], [])


def test_apply_control_a_valid_case_does_write(
    tmp_path: Path,
    http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The corpus's empty-backend checks can fail: the same setup with valid input writes."""
    root, _ = materialize("jsonl-format-mismatch", tmp_path)
    (root / "jobs/m.yaml").write_text(
        (root / "jobs/m.yaml").read_text().replace("  format: COMPLETION\n", "")
    )
    monkeypatch.chdir(root)
    config = BackendConfig(data_dir=tmp_path / "backend")
    with EmbeddedServer(config, worker=False) as server:
        monkeypatch.setenv("FIREWORKS_BASE_URL", server.base_url)
        assert main(["apply", "--no-download", "jobs"]) == 0, capsys.readouterr()
        datasets, jobs = held(server, http)
    assert len(datasets) == 1 and len(jobs) == 1
