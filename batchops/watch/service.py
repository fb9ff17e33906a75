"""Wires the daemon together: the pass, its triggers, the git source, and health/metrics.

``batchops.cli.watch`` opens the provider (and the embedded backend, if any), holds the project
lock, installs the signal handlers, and calls ``run``; ``run`` returns once ``stop`` is set, after
stopping every thread it started. The pass itself is ``reconcile.run_pass``, unchanged: the daemon
adds nothing but *when* it runs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from batchops.config import STATE_DIR, ProjectConfig, ensure_state_dir
from batchops.errors import InvalidInputError
from batchops.manifest import ManifestCache, load_desired
from batchops.manifest.desired import Desired
from batchops.money import spent
from batchops.providers import Provider
from batchops.reconcile import PassOptions, PassResult, prepare_inputs, run_pass
from batchops.watch.files import FileWatcher
from batchops.watch.git import GitSource, poll, redact
from batchops.watch.health import HealthServer, Metrics
from batchops.watch.loop import Daemon, PassRecord, Timing
from batchops.watch.reporter import LogReporter, log_cost
from batchops.watch.triggers import Triggers

log = logging.getLogger("batchops.watch")


@dataclass(frozen=True)
class GitConfig:
    url: str
    ref: str = "main"
    interval: float = 60.0


@dataclass(frozen=True)
class WatchConfig:
    paths: tuple[Path, ...]  # relative to the root (the clone, with git)
    root: Path  # the project folder; with git, the clone lives in <root>/.batchops/git/
    project: str
    options: PassOptions = field(default_factory=PassOptions)
    timing: Timing = field(default_factory=Timing)
    git: GitConfig | None = None
    health: tuple[str, int] | None = None  # (host, port) for /healthz, /readyz, /metrics
    project_file: ProjectConfig | None = None  # batchops.yaml (moved, outputDir); not with git


def git_clone_dir(root: Path) -> Path:
    return root / STATE_DIR / "git"


def run(
    config: WatchConfig,
    *,
    provider: Provider,
    triggers: Triggers,
    stop: threading.Event,
    metrics: Metrics,
) -> None:
    """Run the daemon until ``stop``; ``metrics`` should already receive the client's responses."""
    source = _git_source(config)
    root = git_clone_dir(config.root) if source else config.root
    paths = [root / p for p in config.paths]
    watcher = (
        None
        if source
        else FileWatcher(paths, root=root, stop=stop, on_change=lambda: triggers.fire("file"))
    )
    one_pass = _timed(_pass_function(config, paths, root, provider, stop, source, watcher), metrics)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_health(config, metrics))
        if watcher is not None:
            stack.enter_context(_thread(watcher.start()))
        if source is not None:
            first_sync = threading.Event()
            poller = _start_poller(source, config, stop, triggers, first_sync)
            stack.enter_context(_thread(poller))
            _wait_either(first_sync, stop)
        daemon = Daemon(
            run_pass=one_pass,
            triggers=triggers,
            stop=stop,
            timing=config.timing,
            on_pass=lambda r: _observe(metrics, r),
        )
        daemon.run()


def _timed(one_pass: Callable[[], PassResult], metrics: Metrics) -> Callable[[], PassResult]:
    """The pass, its start told to ``metrics`` (so /readyz can say when one is stuck)."""

    def timed() -> PassResult:
        metrics.pass_started()
        return one_pass()

    return timed


def _observe(metrics: Metrics, record: PassRecord) -> None:
    metrics.observe_pass(record)
    applied = record.result.applied if isinstance(record.result, PassResult) else None
    cost = record.result.plan.cost if isinstance(record.result, PassResult) else None
    for merged in applied.records.values() if applied else ():
        metrics.observe_rows(succeeded=merged.counts.succeeded, failed=merged.counts.failed)
    for name, added in applied.spent.items() if applied else ():
        dollars = spent(added, cost.job_price(name) if cost else None)
        if dollars:
            metrics.observe_spend(dollars)


def _pass_function(
    config: WatchConfig,
    paths: list[Path],
    root: Path,
    provider: Provider,
    stop: threading.Event,
    source: GitSource | None,
    watcher: FileWatcher | None,
) -> Callable[[], PassResult]:
    reporter = LogReporter()
    manifests = ManifestCache()  # an unchanged manifest costs a stat on the next pass

    def one_pass() -> PassResult:
        # With git, hold the clone still: a hard reset must not land in the middle of a pass.
        with source.lock if source else contextlib.nullcontext():
            try:
                desired = load_desired(  # the watcher reuses the cache
                    paths, root=root, project=config.project_file, cache=manifests
                )
            except InvalidInputError:
                if watcher is not None:
                    watcher.update(None)  # every event counts until the manifests load
                raise
            if watcher is not None:
                watcher.update(_watched_files(desired))
            return run_pass(
                paths,
                root=root,
                provider=provider,
                project=config.project,
                options=config.options,
                reporter=reporter,
                stop=stop,
                on_plan=log_cost,
                inputs=prepare_inputs(desired, root=root, project_file=config.project_file),
                project_file=config.project_file,
            )

    return one_pass


def _watched_files(desired: Desired) -> list[Path]:
    """The manifests and the dataset files they reference (for a rendered dataset: its tables
    and template files)."""
    files = list(desired.manifest_files)
    for dataset in desired.datasets:
        files += dataset.files
        if dataset.render is not None:
            files += [*dataset.render.files, *dataset.render.template_files]
    return files


def _git_source(config: WatchConfig) -> GitSource | None:
    if config.git is None:
        return None
    ensure_state_dir(config.root)
    return GitSource(config.git.url, config.git.ref, git_clone_dir(config.root))


def _wait_either(first: threading.Event, stop: threading.Event) -> None:
    """Wait for the first clone (or shutdown); if the clone fails, the first pass waits for git."""
    while not first.wait(0.1) and not stop.is_set():
        pass


def _start_poller(
    source: GitSource,
    config: WatchConfig,
    stop: threading.Event,
    triggers: Triggers,
    first_done: threading.Event,
) -> threading.Thread:
    assert config.git is not None
    log.info(
        "git source %s (%s) every %.0fs",
        redact(config.git.url),
        config.git.ref,
        config.git.interval,
        extra={"event": "git_source"},
    )
    thread = threading.Thread(
        target=poll,
        name="batchops-watch-git",
        daemon=True,
        kwargs={
            "source": source,
            "interval": config.git.interval,
            "stop": stop,
            "on_change": lambda: triggers.fire("git"),
            "first_done": first_done,
        },
    )
    thread.start()
    return thread


@contextlib.contextmanager
def _thread(thread: threading.Thread) -> Iterator[None]:
    """Join a helper thread on the way out; it ends on its own once ``stop`` is set."""
    try:
        yield
    finally:
        thread.join(timeout=5)


@contextlib.contextmanager
def _health(config: WatchConfig, metrics: Metrics) -> Iterator[None]:
    if config.health is None:
        yield
        return
    host, port = config.health
    server = HealthServer(metrics, host=host, port=port)
    server.start()
    log.info(
        "health and metrics on http://%s:%d/",
        host,
        server.port,
        extra={"event": "health", "port": server.port},
    )
    try:
        yield
    finally:
        server.close()
