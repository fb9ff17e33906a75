"""Signals at start-up and durations (issue 11, section 3): a signal while the commands are still
being imported ends the process with 130 (SIGINT) or 143 (SIGTERM) and no traceback; every
duration flag goes through one parser that refuses zero, negative and absurd values."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.config import parse_duration

MARK = b"| batchops.cli\n"  # the CLI package: the commands and their libraries are still to come


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, b"interrupted"), (signal.SIGTERM, 143, b"terminated")],
)
@pytest.mark.parametrize(
    "command", [["validate", "jobs"], ["plan", "jobs"], ["status"], ["apply", "jobs"], ["watch"]]
)
def test_a_signal_during_start_up_exits_cleanly(
    tmp_path: Path, sig: int, code: int, word: bytes, command: list[str]
) -> None:
    """-X importtime reports each import as it ends, on stderr: once the CLI
    package is imported, the signal lands while the commands and httpx, pydantic... are."""
    env = {**os.environ, "NO_COLOR": "1", "FIREWORKS_BASE_URL": "http://127.0.0.1:9"}
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "batchops", *command],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen = b""
    while MARK not in seen:
        line = proc.stderr.readline()
        assert line, seen[-2000:]
        seen += line
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err[-2000:]
    assert b"Traceback" not in err
    assert err.rstrip().endswith(word)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("30s", 30.0),
        ("1.5s", 1.5),
        (".5", 0.5),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        (" 2m ", 120.0),
    ],
)
def test_durations_parse_the_same_everywhere(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["0", "0s", "-1", "-5s", "", "nan", "inf", "1e3", "5 parsecs", "9999999999h"]
)
def test_zero_negative_and_absurd_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
    assert parse_duration("0", allow_zero=True) == 0.0


@pytest.mark.parametrize(
    "flags",
    [
        ["apply", "--poll-interval", "0"],
        ["apply", "--poll-interval", "-1"],
        ["apply", "--timeout", "0s"],
        ["apply", "--timeout=-3"],
        ["apply", "--parallelism", "0"],
        ["watch", "--interval", "0"],
        ["watch", "--git-interval=-1m"],
        ["watch", "--stuck-after", "0"],
        ["serve", "--max-job-duration", "0"],
        ["serve", "--row-delay=-1"],
        ["serve", "--openai-concurrency", "0"],
    ],
)
def test_every_duration_flag_refuses_zero_and_negative(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(flags)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "not a positive" in err or "not a zero or more" in err


def test_duration_flags_take_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--timeout 30s` and `--poll-interval 2m` are accepted where plain seconds were."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs").mkdir()
    assert main(["apply", "--wait", "--timeout", "30s", "--poll-interval", "2m", "jobs"]) == 0
