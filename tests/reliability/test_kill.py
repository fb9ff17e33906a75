"""`kill -9` of `batchops apply` at 20 named points on Fireworks and 14 on an OpenAI-compatible
provider, each really hit, then a fresh `apply --wait` converges: one remote job per declared job
(on the OpenAI-compatible provider: a completed batch per part, none running, at most one
duplicate, cancelled), one dataset, every custom_id exactly once on disk, `status` says
verified, and no partial file where users look.

Network points are made deterministic by the gate (tests/reliability/conftest.py): the backend
holds one chosen request of one account (before the backend sees it, after it acted but with the
answer lost, half-way through an upload or a download) and the test kills the process while it
waits there. The one purely local point (mid-merge) is caught by watching `.batchops/tmp` and is
proven by the temp file still being there after the kill. Every point runs in its own project
and account against one server, all at once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchops.cli import main
from tests.reliability.conftest import (
    APPLY,
    GatedServer,
    Hold,
    assert_converged,
    openai_url,
    spawn,
    write_project,
)
from tests.reliability.openai_world import PROVIDERS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DS = r"/datasets$"
JOBS = r"/batchInferenceJobs$"
ENDPOINT = r":getDownloadEndpoint$"


@dataclass(frozen=True)
class Point:
    name: str
    method: str = ""
    path: str = ""
    nth: int = 1
    when: str = "before"
    rows: int = 60
    jobs: int = 2
    big: bool = False  # thousands of long rows: long uploads, downloads and merges
    # The jobs ask the same requests: with reuse, the ones created after the first answered
    # would reuse its answers instead of existing (and rebuilding the index downloads too), while
    # these points count jobs and download calls per declaration.
    reuse: bool = False
    cap: int | None = None  # requests per batch on the OpenAI-compatible provider: parts

    def hold(self, account: str) -> Hold:
        return Hold(account, self.method, self.path, self.nth, self.when)


POINTS = [
    Point("first list call", "GET", DS),
    Point("datasets listed, jobs list held", "GET", JOBS),
    Point("jobs list answered, answer lost", "GET", JOBS, when="after"),
    Point("dataset create held", "POST", DS),
    Point("dataset created, answer lost", "POST", DS, when="after"),
    Point("mid-upload", "POST", r":upload$", when="half-body", big=True),
    Point("uploaded, answer lost", "POST", r":upload$", when="after"),
    Point("waiting for READY", "GET", r"/datasets/prompts-[0-9a-f]+$", when="after"),
    Point("first job create held", "POST", JOBS),
    Point("first job created, answer lost", "POST", JOBS, when="after"),
    Point("between creates", "POST", JOBS, nth=2, jobs=3),
    Point("second job created, answer lost", "POST", JOBS, nth=2, when="after", jobs=3),
    Point("last create, answer lost", "POST", JOBS, nth=3, when="after", jobs=3),
    Point("polling while jobs run", "GET", JOBS, nth=2, when="after", rows=600),
    Point("download endpoint held", "GET", ENDPOINT),
    Point("download endpoint, answer lost", "GET", ENDPOINT, when="after"),
    Point("mid-download", "GET", r"/BIJOutputSet\.jsonl$", when="half-answer", big=True),
    Point("output downloaded, error file held", "GET", r"/error-data$"),
    Point("between merges", "GET", ENDPOINT, nth=2),  # and one job's results written
    Point("mid-merge", big=True),  # local only: caught on disk
]

BATCHES = r"/v1/batches$"
FILES = r"/v1/files$"
CONTENT = r"/v1/files/[^/]+/content$"
OPENAI_POINTS = [
    Point("first list call", "GET", BATCHES),
    Point("upload held", "POST", FILES),
    Point("mid-upload", "POST", FILES, when="half-body", big=True),
    Point("uploaded, answer lost", "POST", FILES, when="after"),
    Point("first create held", "POST", BATCHES),
    Point("first batch created, answer lost", "POST", BATCHES, when="after"),
    Point("between parts", "POST", BATCHES, nth=2, cap=25),
    Point("second part created, answer lost", "POST", BATCHES, nth=2, when="after", cap=25),
    Point("polling while batches run", "GET", BATCHES, nth=3, when="after", rows=600),
    Point("file list held", "GET", FILES),
    Point("download held", "GET", CONTENT),
    Point("download, answer lost", "GET", CONTENT, when="after"),
    Point("mid-download", "GET", CONTENT, when="half-answer", big=True),
    Point("mid-merge", big=True),
]
POINTS_OF = {"fireworks": POINTS, "openai": OPENAI_POINTS}


def run_point(
    point: Point, index: int, server: GatedServer, tmp: Path, provider: str
) -> tuple[Path, str]:
    """Make the project, run apply, kill it at ``point``; returns (root, account)."""
    root, account = tmp / f"p{index:02d}", f"acct{index:02d}"
    where = base_url(server, provider, account)
    write_project(
        root,
        rows=4000 if point.big else point.rows,
        jobs=point.jobs,
        pad=300 if point.big else 40,
        reuse=point.reuse,
        openai_url=openai_url(where, provider),
        cap=point.cap,
    )
    if not point.method:
        assert kill_mid_merge(root, where, account), "never caught mid-merge"
        return root, account
    hold = point.hold(account)
    server.gate.holds.append(hold)
    proc = spawn(root, where, *APPLY, account=account)
    reached = wait_until(lambda: hold.reached.is_set() or proc.poll() is not None, 60)
    if point.name == "between merges":
        wait_until(lambda: any((root / "results").glob("job*.jsonl")), 30)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    hold.released.set()
    assert reached and hold.reached.is_set(), f"{point.name}: not reached (exit {proc.returncode})"
    if point.name == "between merges":
        assert len(list((root / "results").glob("job?.jsonl"))) == 1
    return root, account


def base_url(server: GatedServer, provider: str, account: str) -> str:
    """Where the CLI finds the backend. A shared server takes every provider's requests at its
    URL; an OpenAI-compatible request names no account, so the project's points go through
    ``<server>/<account>`` (the Gate strips it) for the Holds to tell the projects apart."""
    return f"{server.base_url}/{account}" if provider == "openai" else server.base_url


def kill_mid_merge(root: Path, url: str, account: str) -> bool:
    """Kill when a merge's index appears; proven by the file outliving the process."""
    tmp = root / ".batchops" / "tmp"
    for _ in range(8):
        proc = spawn(root, url, *APPLY, account=account)
        wait_until(lambda p=proc: p.poll() is not None or merging(tmp), 60, step=0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if merging(tmp):
            return True
        for path in [*root.glob("results/*"), *root.glob(".batchops/results/*")]:
            path.unlink()  # missed: make the next apply download and merge again
    return False


def merging(tmp: Path) -> bool:
    try:
        return any(tmp.glob("run-*/*.merge.db"))
    except FileNotFoundError:  # a run's folder went away while it was listed
        return False


def wait_until(check: Callable[[], object], timeout: float, *, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@pytest.mark.parametrize("provider", PROVIDERS)
def test_kill_at_many_points_then_apply_converges(
    tmp_path: Path,
    gated: Callable[..., GatedServer],
    capsys: pytest.CaptureFixture[str],
    provider: str,
) -> None:
    server = gated(row_delay=0.0002)
    points = POINTS_OF[provider]
    with ThreadPoolExecutor(len(points)) as pool:
        runs = list(
            pool.map(
                lambda ip: run_point(ip[1], ip[0], server, tmp_path, provider), enumerate(points)
            )
        )
    for point, (root, account) in zip(points, runs, strict=True):
        where = base_url(server, provider, account)
        code = main([*APPLY, "--root", str(root), "--base-url", where, "--account-id", account])
        assert code == 0, point.name
        if provider == "openai":  # the pass after cancels a duplicate the last pass created
            assert (
                main([*APPLY, "--root", str(root), "--base-url", where, "--account-id", account])
                == 0
            ), point.name
        rows = 4000 if point.big else point.rows
        assert_converged(
            provider,
            server.base_url,
            account,
            root,
            capsys,
            jobs=point.jobs,
            rows=rows,
            extra_allowed=1,
        )
        assert not list((root / "results").glob("*.tmp*")), point.name
        # the killed run's scratch folder (downloads, merge index, temp files) was swept
        assert not list((root / ".batchops" / "tmp").iterdir()), point.name
