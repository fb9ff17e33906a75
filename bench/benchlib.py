"""What the benches share: a served local backend, the machine's name and load, paired rounds,
and the peak memory of a process tree.

Imported by the scripts beside it (``python bench/NAME.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

BATCHOPS = [sys.executable, "-m", "batchops"]


def serve(
    data_dir: Path, *extra: str, cwd: Path | None = None, quiet: bool = True
) -> tuple[subprocess.Popen[str], str]:
    """``batchops serve`` on a free loopback port, and its URL; ``stop`` ends it. No key
    reaches it: the local backend needs none."""
    argv = [*BATCHOPS, "serve", "--port", "0", "--data-dir", str(data_dir), *extra]
    env = {k: v for k, v in os.environ.items() if k != "FIREWORKS_API_KEY"}
    stderr = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=cwd
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        stop(proc)
        raise SystemExit(f"batchops serve did not start: {line!r}")
    return proc, match.group(1)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


def machine() -> str:
    """The machine the figures were measured on, and its load right now."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:  # Linux; elsewhere the name stays unknown
        names = (line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        cpu = next(names, cpu)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {sys.version.split()[0]}"


def load() -> str:
    """The load averages (1, 5, 15 minutes), as ``uptime`` prints them."""
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def rotated(names: Sequence[str], round_: int) -> list[str]:
    """The sides of a paired round, in an order that rotates from round to round."""
    k = round_ % len(names)
    return [*names[k:], *names[:k]]


def _tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and all its descendants now (0 once they are gone)."""
    total, todo = 0, [pid]
    while todo:
        each = todo.pop()
        try:
            status = Path(f"/proc/{each}/status").read_text()
            children = Path(f"/proc/{each}/task/{each}/children").read_text().split()
        except OSError:
            continue
        found = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
        total += int(found.group(1)) * 1024 if found else 0
        todo.extend(int(child) for child in children)
    return total


class TreePeak:
    """Samples the summed RSS of a process and its descendants every ``every`` seconds: the
    kernel's peak RSS of a waited child is the largest one process reached, not the sum of
    processes that ran together (a command that starts helpers would look smaller than it is)."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.every):
            self.peak = max(self.peak, _tree_rss(self.pid))

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak
