"""Hostile text stays inert (issue 11, section 4; SECURITY.md section 5).

A server (the local backend, its store edited the way a hostile or broken service would answer)
and a dataset supply text full of terminal escapes, bidi overrides, line breaks, GitHub workflow
commands and Markdown/HTML. Every output path is searched: the text plan, ``status``, ``apply``'s
lines and closing line, ``validate``'s diagnostics and ``::error`` annotations, the step summary,
and the daemon's text and JSON log lines.
"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.cli.watch import configure_logging
from batchops.errors import ApiError
from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.plan import Action, Kind, Resource
from batchops.textsafe import annotation_data, inert, md_code, md_text
from batchops.watch.reporter import LogReporter

pytestmark = [pytest.mark.e2e]

MARK = "pwned-7c1e"
HOSTILE = (
    f"\x1b[2J\x1b[31m{MARK}\x1b]8;;https://evil.example\x07click\x1b]8;;\x07 \u202egnp.exe "
    "\r\n::add-mask::x\n  ::stop-commands::tok\n::warning file=a::w\n##[warning]legacy "
    "<img src=https://evil.example/t.png> [link](https://evil.example) | cell \x9b31m \x7f"
    "\u2028\u2066 `code` *em* www.evil.example"
)
HOSTILE_STATE = "JOB_STATE_\x1b[5mBLINK\n::warning::state"
# What may appear in output: no control or invisible formatting character except our own "\n".
BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def assert_inert(text: str, *, own_commands: bool = False) -> None:
    """No control character but line ends, no workflow command from untrusted text."""
    bad = [c for c in text if c != "\n" and unicodedata.category(c) in BAD_CATEGORIES]
    assert not bad, f"control characters printed: {bad!r}"
    assert "##[" not in text
    for line in text.split("\n"):
        if own_commands and line.startswith("::error file="):
            continue  # the annotations we emit on purpose; their data is checked apart
        assert not line.lstrip().startswith("::"), f"a workflow command was printed: {line!r}"


def assert_markdown_inert(text: str) -> None:
    assert_inert(text)
    for needle in ("<img", "](", "<https", "`code`", "*em*", "www.evil"):
        assert needle not in text, f"{needle!r} reached the step summary"
    for line in text.splitlines():
        if line.startswith("| ") and "---" not in line:
            assert line.count("|") == 6, f"a value broke the table: {line!r}"  # 5 cells


# -- the escaping function itself -----------------------------------------------------------------


@pytest.mark.parametrize(
    "char",
    [
        "\x00",
        "\x07",
        "\x1b",
        "\x7f",
        "\x85",
        "\x9b",
        "\u202e",
        "\u2066",
        "\u200f",
        "\u2028",
        "\ufeff",
        "\ud800",
        "\n",
        "\r",
        "\t",
        "\U000e0041",
    ],
)
def test_every_control_and_bidi_character_is_escaped(char: str) -> None:
    value = inert(f"a{char}b")
    assert_inert(value)
    assert value.startswith("a\\") and value.endswith("b")
    value.encode("utf-8")  # a lone surrogate would make print() raise


@pytest.mark.parametrize(
    "text",
    [
        "::warning::x",
        "  ::add-mask::x",
        "\u3000::set-output name=a::b",
        "\t::stop-commands::t",
        "x\n::error::y",
        "a ##[add-path]/evil",
    ],
)
def test_workflow_commands_lose_their_form(text: str) -> None:
    assert_inert(inert(text))
    assert_inert(annotation_data(text))


def test_ordinary_text_is_unchanged() -> None:
    for text in (
        "accounts/fireworks/models/llama-v3p1-8b",
        "row-17",
        "résumé 東京 🎉",
        "C:\\data\\x",
        "50% done: a::b",
        "https://host/p?q=1",
    ):
        assert inert(text) == text


def test_markdown_cells_cannot_inject() -> None:
    assert_markdown_inert(
        "| " + " | ".join([md_text(HOSTILE), md_code(HOSTILE), "x", "y", "z"]) + " |"
    )
    assert md_code("answers-v2") == "`answers-v2`"
    assert md_code("a`b") == "<code>a&#96;b</code>"


# -- a hostile server and dataset, end to end -----------------------------------------------------


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def hostile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[Path, Path, Path]]:
    """A project with two jobs applied to a real local backend; then the backend's store says
    job ``failing`` FAILED with HOSTILE as its status message and job ``odd`` is in
    HOSTILE_STATE. Yields (root, the backend's database, the step summary file)."""
    root = tmp_path / "repo"
    (root / "jobs" / "data").mkdir(parents=True)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    (root / "jobs/data/p.jsonl").write_text(json.dumps({"custom_id": "r1", "body": body}) + "\n")
    docs = [
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: data/p.jsonl}\n"
    ]
    for name in ("failing", "odd"):
        docs.append(
            f"apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {{name: {name}}}\n"
            f"spec: {{model: accounts/fireworks/models/{name}, inputDataset: p}}\n"
        )
    (root / "jobs/work.yaml").write_text("---\n".join(docs))
    data = tmp_path / "backend"
    with EmbeddedServer(BackendConfig(data_dir=data), worker=False) as server:
        monkeypatch.setenv("FIREWORKS_BASE_URL", server.base_url)
        assert main(["apply", "--root", str(root)]) == 0
        capsys.readouterr()
        db = data / "backend.sqlite3"
        status = json.dumps({"code": "INTERNAL", "message": HOSTILE})
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE jobs SET state = 'JOB_STATE_FAILED', status = ?, update_time = ? "
                "WHERE id LIKE 'failing-%'",
                (status, time.time()),
            )
            conn.execute(
                "UPDATE jobs SET state = ?, update_time = ? WHERE id LIKE 'odd-%'",
                (HOSTILE_STATE, time.time()),
            )
        conn.close()
        summary = tmp_path / "summary.md"
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
        yield root, db, summary


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return Run(code, out, err)


def test_server_text_is_inert_in_plan_status_apply_and_the_step_summary(
    hostile: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _, summary = hostile
    runs = {
        "plan": _cli(capsys, "plan", "--root", str(root)),
        "status": _cli(capsys, "status", "--root", str(root)),
        "apply": _cli(
            capsys,
            "apply",
            "--root",
            str(root),
            "--wait",
            "--timeout",
            "0.3",
            "--poll-interval",
            "0.1",
        ),
    }
    for name, run in runs.items():
        assert_inert(run.out + run.err, own_commands=True)
        shown = MARK if name != "status" else "BLINK"  # status shows states, not messages
        assert shown in run.out + run.err, f"{name} did not show the server's text at all"
    assert "\\x1b[2J\\x1b[31m" + MARK in runs["plan"].out  # shown, escaped, not dropped
    assert "\\x1b[5mblink\\n" in runs["plan"].out  # the unknown state, lower-cased, escaped
    assert "\\x1b[5mBLINK\\n" in runs["status"].out
    # the failed job with the server's reason (escaped), one line of its own
    assert runs["apply"].code == 1 and "\nfailed: job failing [failing-" in runs["apply"].err
    closing = runs["apply"].err.splitlines()
    assert any("reached before convergence" in line and "\\x1b[5mblink" in line for line in closing)
    text = summary.read_text()
    assert md_text(MARK) in text and "blink" in text  # the message and the state, escaped
    assert_markdown_inert(text)


def test_plan_and_status_json_escape_control_characters(
    hostile: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _, _ = hostile
    for command in ("plan", "status"):
        run = _cli(capsys, command, "--root", str(root), "--output", "json")
        assert_inert(run.out)
        assert "\\u001b[5mBLINK\\n::warning::state" in run.out  # the exact value, JSON-escaped


def test_dataset_text_is_inert_in_diagnostics_and_annotations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "jobs" / "data").mkdir(parents=True)
    row = json.dumps(
        {"custom_id": HOSTILE, "body": {"messages": [{"role": "user", "content": "x"}]}}
    )
    (tmp_path / "jobs/data/p.jsonl").write_text(f"{row}\n{row}\n")  # a duplicate custom_id
    (tmp_path / "jobs/d.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: data/p.jsonl}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    as_json = _cli(capsys, "validate", "--output", "json")
    assert as_json.code == 1 and MARK in as_json.out
    assert_inert(
        as_json.out, own_commands=True
    )  # JSON escapes controls; "##[" is written "##\\u005b"
    run = _cli(capsys, "validate")
    assert run.code == 1
    assert_inert(run.out + run.err, own_commands=True)
    annotations = [line for line in run.out.splitlines() if line.startswith("::error file=")]
    assert annotations and all(MARK in line for line in annotations)
    for line in annotations:  # the message, as the runner decodes it, starts no command line
        data = line.split("::", 2)[2].replace("%0A", "\n").replace("%0D", "\r")
        assert_inert(data.replace("%25", "%").replace("\r", ""))


def _daemon_formatter(fmt: str) -> logging.Formatter:
    """The formatter ``watch --log-format FMT`` installs (its handler writes to stderr)."""
    top = logging.getLogger("batchops")
    saved = (top.handlers[:], top.level, top.propagate)
    configure_logging(fmt=fmt, verbose=0)
    formatter = top.handlers[0].formatter
    top.handlers[:], top.level, top.propagate = saved
    assert formatter is not None
    return formatter


def test_daemon_log_lines_are_inert_in_text_and_json() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("batchops.watch.actions")
    logger.addHandler(handler)
    old = logger.level, logger.propagate
    logger.level, logger.propagate = logging.INFO, False
    action = Action(Kind.CREATE_JOB, Resource("job", HOSTILE, f"id-{HOSTILE}"), HOSTILE)
    error = ApiError(HOSTILE, method="POST", path="/v1/x", status=400)
    try:
        for fmt in ("text", "json"):
            handler.setFormatter(_daemon_formatter(fmt))
            LogReporter().action_finished(action, error)
            LogReporter().action_finished(action, None)
            try:
                raise ApiError(HOSTILE)
            except ApiError:
                logger.exception("pass failed: %s", HOSTILE)
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = old
    text = stream.getvalue()
    assert_inert(text)
    lines = text.splitlines()
    assert MARK in lines[0] and MARK in lines[1] and MARK in lines[2]  # failed, done, exception
    json_lines = lines[-3:]
    for line in json_lines:  # JSON logs stay JSON and keep the exact message
        assert HOSTILE in json.loads(line)["message"]


def test_the_terminal_status_table_shows_markup_and_escapes_as_text() -> None:
    """On a terminal `status` prints a rich table: server text must not be read as rich markup
    (`[link=...]`, `[blink]`) nor reach the terminal as escapes."""
    from rich.console import Console

    from batchops.render.status import StatusRow, status_table

    hostile = f"[link=https://evil.example][blink]{MARK}[/blink][/link]\x1b[2J"
    row = StatusRow(hostile, hostile, HOSTILE_STATE, 0, 0, 0, 0, 0, "results/x.jsonl", "missing")
    out = io.StringIO()
    Console(file=out, width=400, color_system=None, force_terminal=False).print(status_table([row]))
    text = out.getvalue()
    assert_inert(text)
    assert f"[link=https://evil.example][blink]{MARK}[/blink][/link]\\x1b[2J" in text
