"""The watch command's own pieces: duration flags, JSON log lines, and its configuration."""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import pytest

from batchops.cli import build_parser
from batchops.cli.watch import JsonFormatter, _config, duration
from batchops.config import load_settings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1s", "5 parsecs", "1d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_json_log_lines_carry_the_extra_fields_and_the_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("batchops.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("pass %s", "ok", extra={"event": "pass", "duration": 0.5})
        try:
            raise KeyError("boom")
        except KeyError as exc:
            logger.error("failed", exc_info=exc)
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "pass ok" and first["event"] == "pass"
    assert first["duration"] == 0.5 and first["level"] == "warning"
    assert "KeyError: 'boom'" in second["traceback"]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["watch", *argv])


def test_flags_become_the_daemon_configuration(tmp_path: Path) -> None:
    args = parse("--interval", "10s", "--prune", "--no-download", "--health-port", "0")
    config = _config(args, tmp_path, load_settings({}))
    assert config.paths == (tmp_path / "jobs",)
    assert config.options.prune and not config.options.download
    assert config.timing.interval == 10.0 and config.timing.busy_interval == 2.0  # local backend
    assert config.health == ("127.0.0.1", 0)
    remote = load_settings({"FIREWORKS_API_KEY": "k", "FIREWORKS_ACCOUNT_ID": "a"})
    assert _config(args, tmp_path, remote).timing.busy_interval == 10.0  # capped by --interval


def test_narrowed_paths_limit_what_watch_may_prune(tmp_path: Path) -> None:
    settings = load_settings({})
    assert not _config(parse("--prune"), tmp_path, settings).options.narrowed
    whole = _config(parse("--prune", str(tmp_path / "jobs")), tmp_path, settings)
    assert not whole.options.narrowed
    some = _config(parse("--prune", str(tmp_path / "jobs" / "a.yaml")), tmp_path, settings)
    assert some.options.narrowed


def test_git_mode_paths_are_inside_the_repository_and_name_the_project(tmp_path: Path) -> None:
    args = parse("--git-url", "https://u:p@example.com/acme/Batch_Jobs.git", "--git-ref", "prod")
    config = _config(args, tmp_path, load_settings({}))
    assert config.paths == (Path("jobs"),)
    assert config.project == "batch-jobs"
    assert config.git is not None and config.git.ref == "prod"
