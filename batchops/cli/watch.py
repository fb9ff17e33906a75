"""`batchops watch`: the GitOps daemon. Flags, logging, signals and the lock; the loop is in watch/.

Runs a full apply pass at start, on every relevant file change, on a jittered resync interval, on
SIGHUP and after a git pull that moved HEAD; SIGTERM/SIGINT stop it cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlparse

from batchops.cli.backend import (
    add_backend_flags,
    default_paths,
    open_provider,
    project_of,
    root_of,
    settings_from_args,
)
from batchops.cli.common import duration
from batchops.cli.plan import add_max_cost_flag, money_options
from batchops.config import Settings
from batchops.errors import EXIT_OK, ConfigError
from batchops.identity import slugify
from batchops.reconcile import PassOptions
from batchops.textsafe import inert, inert_lines, json_text
from batchops.watch.health import STUCK_AFTER, Metrics
from batchops.watch.lock import ProjectLock
from batchops.watch.loop import Timing
from batchops.watch.service import GitConfig, WatchConfig
from batchops.watch.service import run as run_daemon
from batchops.watch.triggers import Triggers

LOCAL_BUSY_INTERVAL = 2.0  # jobs in progress on the local backend finish in seconds
REMOTE_BUSY_INTERVAL = 15.0  # ...on Fireworks in minutes to hours; do not poll it hard
ABANDON_AFTER = 8.0  # seconds after SIGTERM: exit 0 within 10 s even if a step hangs
_DESCRIPTION = (
    "Keep the account in line with the manifests: run a full apply pass at start, whenever a "
    "manifest or a dataset file it references is saved, every --interval seconds (sooner while "
    "jobs run), on SIGHUP, and after a git pull that moved HEAD (--git-url). Invalid manifests "
    "are reported and skipped until fixed; API errors back off; SIGTERM or Ctrl-C stop it "
    "cleanly (exit 0). One daemon runs per project folder."
)


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "watch",
        parents=parents,
        help="reconcile continuously (the GitOps daemon)",
        description=_DESCRIPTION,
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATHS",
        help="manifest files or folders (default: <root>/jobs; with --git-url, "
        "relative to the repository)",
    )
    p.add_argument(
        "--interval",
        type=duration,
        default=30.0,
        help="resync interval, +-10%% jitter (default: 30s)",
    )
    p.add_argument("--prune", action="store_true", help="delete owned, undeclared resources")
    p.add_argument("--allow-empty", action="store_true", help="allow pruning with no declarations")
    p.add_argument("--retry-failed", action="store_true", help="start a new attempt of failed jobs")
    p.add_argument("--no-download", action="store_true", help="do not download results")
    add_max_cost_flag(p)
    add_backend_flags(p)
    _register_git(p)
    p.add_argument("--health-port", type=int, help="serve /healthz, /readyz and /metrics")
    p.add_argument("--health-host", default="127.0.0.1", help="(default: 127.0.0.1)")
    p.add_argument(
        "--stuck-after",
        type=duration,
        default=STUCK_AFTER,
        metavar="DURATION",
        help="/readyz reports a pass running longer than this as stuck (default: 10m)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on stderr as text or one JSON object each",
    )
    p.set_defaults(func=run)


def _abandon() -> None:
    logging.getLogger("batchops.watch").warning(
        "the current step did not finish within %.0fs of the signal; abandoning it",
        ABANDON_AFTER,
        extra={"event": "abandoned"},
    )
    logging.shutdown()
    os._exit(EXIT_OK)


def _register_git(p: argparse.ArgumentParser) -> None:
    p.add_argument("--git-url", help="reconcile a git repository: clone it and pull on an interval")
    p.add_argument("--git-ref", default="main", help="branch to follow (default: main)")
    p.add_argument(
        "--git-interval", type=duration, default=60.0, help="how often to fetch (default: 60s)"
    )


def run(args: argparse.Namespace) -> int:
    configure_logging(fmt=args.log_format, verbose=args.verbose)
    root = root_of(args)
    settings = settings_from_args(args)
    stop = threading.Event()
    triggers = Triggers(stop)
    metrics = Metrics(stuck_after=args.stuck_after)
    config = _config(args, root, settings)
    log = logging.getLogger("batchops.watch")

    def sleep(seconds: float) -> None:  # the client's retry back-off ends at shutdown too
        stop.wait(seconds)

    with (
        ProjectLock(root),
        _signals(triggers),
        open_provider(
            settings, root=root, notice=log.info, on_response=metrics.observe_response, sleep=sleep
        ) as provider,
    ):
        run_daemon(config, provider=provider, triggers=triggers, stop=stop, metrics=metrics)
    return EXIT_OK


def _config(args: argparse.Namespace, root: Path, settings: Settings) -> WatchConfig:
    git = GitConfig(args.git_url, args.git_ref, args.git_interval) if args.git_url else None
    busy = LOCAL_BUSY_INTERVAL if settings.uses_local_backend else REMOTE_BUSY_INTERVAL
    paths = _paths(args, root, git, settings)
    # PATHS naming part of the project: --prune deletes only what they declare (as in apply).
    whole = _paths(argparse.Namespace(paths=None), root, git, settings)
    narrowed = bool(args.paths) and paths != whole
    return WatchConfig(
        paths=paths,
        root=root,
        project=_project(settings, root, git),
        options=PassOptions(
            prune=args.prune,
            allow_empty=args.allow_empty,
            retry_failed=args.retry_failed,
            download=not args.no_download,
            narrowed=narrowed,
            **money_options(args, settings),
        ),
        timing=Timing(interval=args.interval, busy_interval=min(args.interval, busy)),
        git=git,
        health=None if args.health_port is None else (args.health_host, args.health_port),
        project_file=None if git else settings.project_file,
    )


def _paths(
    args: argparse.Namespace, root: Path, git: GitConfig | None, settings: Settings
) -> tuple[Path, ...]:
    """As for apply (relative to the current folder); with git, relative to the clone."""
    if git is None:
        return tuple(default_paths(args, root, settings))
    paths = [Path(p) for p in args.paths or ["jobs"]]
    if any(p.is_absolute() or ".." in p.parts for p in paths):
        raise ConfigError("with --git-url, PATHS must be relative paths inside the repository")
    return tuple(paths)


def _project(settings: Settings, root: Path, git: GitConfig | None) -> str:
    """With git, the repository's name, as a CI checkout of the same repository would derive it."""
    if git is None or settings.project:
        return project_of(settings, root)
    name = Path(urlparse(git.url).path.rstrip("/")).name.removesuffix(".git")
    return slugify(name) if name else project_of(settings, root)


_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            body["traceback"] = self.formatException(record.exc_info)
        return json_text(body, default=str)


class TextFormatter(logging.Formatter):
    """The text log line, with what servers and datasets wrote into it made inert (JSON lines
    need nothing more: ``json_text`` escapes every control character)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return inert(super().formatMessage(record))  # one line, whatever the values held

    def formatException(self, ei: Any) -> str:
        return inert_lines(super().formatException(ei))  # a traceback's own lines stay lines


def configure_logging(*, fmt: str, verbose: int) -> None:
    """The daemon logs to stderr; only the CLI configures logging (the library only logs)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    logger = logging.getLogger("batchops")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    for noisy in ("httpx", "httpcore", "uvicorn", "uvicorn.access"):  # one line per request
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def _signals(triggers: Triggers) -> Iterator[None]:
    """SIGTERM/SIGINT stop the daemon cleanly; SIGHUP asks for a pass now."""

    def stop(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("batchops.watch").info(
            "%s: stopping", signal.Signals(signum).name, extra={"event": "signal"}
        )
        triggers.shutdown()
        # A step stuck in a slow HTTP call is abandoned rather than waited for: result files are
        # written atomically and job IDs are deterministic, so nothing is half-done on restart.
        watchdog = threading.Timer(ABANDON_AFTER, _abandon)
        watchdog.daemon = True
        watchdog.start()

    def hup(signum: int, frame: FrameType | None) -> None:
        triggers.fire("sighup")

    handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: hup}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
