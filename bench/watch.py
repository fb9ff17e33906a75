"""How fast `batchops watch` reacts to a saved manifest, and what it costs while idle.

    .venv/bin/python bench/watch.py [--jobs 1000] [--repeat 10] [--idle 60]

Runs a local backend on a loopback port (in this process) and `batchops watch` (default resync
interval) as a subprocess pointed at it, with ``--jobs`` jobs already declared (in files of 50,
as a real project grows) and converged, then:
1. saves a new job manifest, ``--repeat`` times, and measures the time from the save to the job
   existing on the backend (median and p90; goal at 1,000 jobs: median under 300 ms);
2. once every job has finished and the daemon is idle, reads the daemon's utime+stime from
   /proc/<pid>/stat over ``--idle`` seconds, resync passes included (goal: under 1% of one
   core). The same is measured with the embedded backend inside the daemon (its worker polls
   for work), for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.providers.fireworks.client import FireworksClient

DATASET = (
    "apiVersion: batchops/v1\nkind: Dataset\nmetadata:\n  name: prompts\nspec:\n"
    "  path: ../data/prompts.jsonl\n"
)
# Every job sends its rows (``reuse: false``): with reuse, a job asking what another job asked
# already is answered from that job's results and never reaches the backend, so a saved job
# would not appear there and the declared jobs would be one job on the backend.
JOB = (
    "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata:\n  name: {name}\nspec:\n"
    "  model: accounts/fireworks/models/llama-v3p1-8b-instruct\n  inputDataset: prompts\n"
    "  reuse: false\n"
)
ROW = {"custom_id": "r{}", "body": {"messages": [{"role": "user", "content": "hello {}"}]}}


def make_project(root: Path, jobs: int = 0) -> None:
    (root / "jobs").mkdir(parents=True)
    (root / "data").mkdir()
    rows = [json.dumps(ROW).replace("{}", str(i)) for i in range(20)]
    (root / "data" / "prompts.jsonl").write_text("\n".join(rows) + "\n")
    (root / "jobs" / "prompts.yaml").write_text(DATASET)
    for start in range(0, jobs, 50):
        docs = [JOB.format(name=f"declared-{i}") for i in range(start, min(start + 50, jobs))]
        (root / "jobs" / f"declared-{start // 50:03d}.yaml").write_text("---\n".join(docs))


def start_daemon(root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (root.parent / "watch.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "batchops", "watch"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def wait_for(check, timeout: float = 60.0, step: float = 0.005) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("gave up waiting")
        time.sleep(step)
    return time.perf_counter()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def idle_cpu(pid: int, seconds: float) -> float:
    before, t0 = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.perf_counter() - t0) * 100.0


def latencies(root: Path, client: FireworksClient, repeat: int) -> list[float]:
    out = []
    for i in range(repeat):
        name = f"bench-{i}"
        saved = time.perf_counter()
        (root / "jobs" / f"{name}.yaml").write_text(JOB.format(name=name))
        mine = f'display_name:"{name} ["'  # ask for that job only: polling must not load the server
        seen = wait_for(lambda f=mine: bool(client.list_jobs(filter=f)))
        out.append(seen - saved)
        time.sleep(0.3)  # let the pass that created it finish; each save is a separate event
    return out


def settle(root: Path, repeat: int) -> None:
    """Every job finished and its results on disk: the daemon is idle from here on."""
    wait_for(
        lambda: all((root / "results" / f"bench-{i}.jsonl").exists() for i in range(repeat)),
        timeout=120,
        step=0.2,
    )
    time.sleep(3.0)  # the pass that downloaded the last result, then the long interval


def shared_backend_run(
    base: Path, jobs: int, repeat: int, idle: float
) -> tuple[list[float], float, float]:
    root = base / "shared" / "proj"
    make_project(root, jobs)
    with (
        EmbeddedServer(BackendConfig(data_dir=base / "server"), port=0) as server,
        FireworksClient(base_url=server.base_url, account_id="local", api_key=None) as client,
    ):
        env = {**os.environ, "FIREWORKS_BASE_URL": server.base_url}
        daemon = start_daemon(root, env)
        try:
            wait_for(lambda: (root / ".batchops" / "watch.lock").exists(), step=0.05)
            started = time.perf_counter()
            results = root / "results"
            wait_for(
                lambda: len(list(results.glob("declared-*[0-9].jsonl"))) >= jobs,
                timeout=1800,
                step=0.5,
            )
            converged = time.perf_counter() - started
            time.sleep(3.0)  # the pass that downloaded the last result
            lat = latencies(root, client, repeat)
            settle(root, repeat)
            return lat, idle_cpu(daemon.pid, idle), converged
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)


def embedded_run(base: Path, idle: float) -> float:
    root = base / "embedded" / "proj"
    make_project(root)
    (root / "jobs" / "one.yaml").write_text(JOB.format(name="one"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREWORKS_")}
    daemon = start_daemon(root, env)
    try:
        wait_for(lambda: (root / "results" / "one.jsonl").exists(), timeout=120, step=0.2)
        time.sleep(3.0)
        return idle_cpu(daemon.pid, idle)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000, help="jobs declared before measuring")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds (>= 2 resyncs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lat, cpu, converged = shared_backend_run(Path(tmp), args.jobs, args.repeat, args.idle)
        embedded_cpu = embedded_run(Path(tmp), args.idle)
    ordered = sorted(lat)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    print(
        f"{args.jobs} declared jobs converged (watch from start to every result on disk): "
        f"{converged:.0f} s"
    )
    print(
        f"save -> job on backend, {len(lat)} runs: median {statistics.median(lat) * 1000:.0f} ms,"
        f" p90 {p90 * 1000:.0f} ms, min {ordered[0] * 1000:.0f} ms,"
        f" max {ordered[-1] * 1000:.0f} ms (goal at 1,000 jobs: median < 300 ms)"
    )
    print(
        f"idle CPU over {args.idle:.0f} s, daemon with a shared backend: {cpu:.2f}% of one core"
        f" (goal: < 1%)"
    )
    print(
        f"idle CPU over {args.idle:.0f} s, daemon with the embedded backend (worker included):"
        f" {embedded_cpu:.2f}% of one core"
    )


if __name__ == "__main__":
    main()
