"""Soak: `batchops watch` against a faulty backend for ``--minutes``, with manifests changing.

    .venv/bin/python bench/soak.py [--minutes 10] [--jobs 1000] [--change-every 3] [--seed 1]

The project declares ``--jobs`` jobs that stay put (in files of 50, as a real project grows)
beside the few that the edits add, change and remove. ``--minutes`` shortens the run. A local
backend runs in this process on a loopback port with about 10% of /v1 requests faulty
(429 with Retry-After, 500, 503, dropped connections) plus latency spikes on 2% of requests.
`batchops watch --prune --log-format json` runs as a subprocess in a temp project, pointed at it
with FIREWORKS_BASE_URL. Every ``--change-every`` seconds a job manifest is added, modified
(its maxTokens) or removed. At the end the edits stop, the daemon is given time to converge, and
the script prints:

- the RSS of the daemon sampled every 10 s, and the averages of the first and last minute
  (memory must not grow), and the same for RssAnon (RSS without shared-library pages);
- duplicates on the backend: two jobs with the same spec, two datasets with the same content, or
  a resource whose ID batchops did not derive (must be 0);
- passes per minute and their outcomes, parsed from the daemon's JSON log lines;
- whether every declared job ended COMPLETED with its results verified (`batchops status`).

Not a test: it prints numbers; nothing here is timed against a threshold.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batchops.identity import owner_of, parse_job_id, project_from_root
from batchops.local.config import BackendConfig, FaultConfig
from batchops.local.server import EmbeddedServer
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.wire import resource_id

FAULTS = FaultConfig(
    rate_429=0.03,
    rate_500=0.025,
    rate_503=0.025,
    rate_drop=0.02,
    latency=0.5,
    latency_rate=0.02,
    retry_after=1.0,
    seed=7,
)
DATASET = (
    "apiVersion: batchops/v1\nkind: Dataset\nmetadata:\n  name: prompts\nspec:\n"
    "  path: ../data/prompts.jsonl\n"
)
JOB = (
    "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata:\n  name: {name}\nspec:\n"
    "  model: accounts/fireworks/models/llama-v3p1-8b-instruct\n  inputDataset: prompts\n"
    "  inferenceParameters:\n    maxTokens: {tokens}\n"
)
MAX_JOBS = 8
SAMPLE_EVERY = 10.0


def make_project(root: Path, rows: int, jobs: int) -> None:
    (root / "jobs").mkdir(parents=True)
    (root / "data").mkdir()
    lines = (
        json.dumps(
            {
                "custom_id": f"r{i}",
                "body": {
                    "messages": [{"role": "user", "content": f"soak question {i} " + "y" * 100}]
                },
            }
        )
        for i in range(rows)
    )
    (root / "data" / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    (root / "jobs" / "prompts.yaml").write_text(DATASET)
    for start in range(0, jobs, 50):
        docs = [
            JOB.format(name=f"steady-{i}", tokens=16) for i in range(start, min(start + 50, jobs))
        ]
        (root / "jobs" / f"steady-{start // 50:03d}.yaml").write_text("---\n".join(docs))


class Editor:
    """Adds, modifies and removes job manifests at random, as a busy team would."""

    def __init__(self, root: Path, seed: int) -> None:
        self.jobs = root / "jobs"
        self.rng = random.Random(seed)
        self.next_name = 0
        self.edits: collections.Counter[str] = collections.Counter()

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.jobs.glob("job-*.yaml"))

    def step(self) -> None:
        names = self.names()
        choice = self.rng.choice(["add", "modify", "remove"] if names else ["add"])
        if choice == "add" and len(names) >= MAX_JOBS:
            choice = "remove"
        if choice == "add":
            name, self.next_name = f"job-{self.next_name}", self.next_name + 1
        else:
            name = self.rng.choice(names)
        if choice == "remove":
            (self.jobs / f"{name}.yaml").unlink()
        else:
            text = JOB.format(name=name, tokens=self.rng.choice([8, 16, 32, 64]))
            (self.jobs / f"{name}.yaml").write_text(text)
        self.edits[choice] += 1


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon): RssAnon is the heap and stacks alone, without the shared libraries'
    pages (RssFile), which the kernel may map in or drop at any time; a leak shows there."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return tuple(int(fields.get(k, "0 kB").split()[0]) for k in ("VmRSS", "RssAnon"))  # type: ignore[return-value]


def duplicates(client: FireworksClient, project: str) -> list[str]:
    """Resources that should not exist twice (or at all): the soak's pass/fail number."""
    problems = []
    specs: collections.Counter[str] = collections.Counter()
    for job in client.list_jobs():
        jid = resource_id(job.name or "")
        parts = parse_job_id(jid)
        if parts is None or owner_of(job.display_name) != project:
            problems.append(f"job not ours or not derived: {jid}")
            continue
        params = job.inference_parameters.model_dump_json() if job.inference_parameters else ""
        specs[
            f"{parts.name}|{parts.attempt}|{parts.resume}|{job.model}|"
            f"{job.input_dataset_id}|{params}"
        ] += 1
    problems += [f"duplicate job spec: {key}" for key, n in specs.items() if n > 1]
    contents: collections.Counter[str] = collections.Counter()
    for ds in client.list_datasets():
        did = resource_id(ds.name or "")
        if did.endswith("-out"):
            continue
        if owner_of(ds.display_name) != project:
            problems.append(f"dataset not ours: {did}")
        contents[f"{did.rsplit('-', 1)[0]}|{ds.example_count}"] += 1
    problems += [f"duplicate dataset: {key}" for key, n in contents.items() if n > 1]
    return problems


def pass_lines(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "pass":
            out.append(record)
    return out


def status(root: Path, env: dict[str, str]) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "batchops", "status", "--output", "json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        return list(json.loads(done.stdout)["jobs"])
    except (ValueError, KeyError):
        return [{"error": done.stderr.strip()[-300:]}]


def converged(jobs: list[dict[str, object]]) -> bool:
    return bool(jobs) and all(
        str(j.get("state")).endswith("COMPLETED") and j.get("resultsState") == "verified"
        for j in jobs
    )


def run_soak(args: argparse.Namespace, tmp: Path) -> int:
    root = tmp / "soak-project"
    make_project(root, args.rows, args.jobs)
    config = BackendConfig(
        data_dir=tmp / "backend", row_delay=0.002, stage_delay=0.2, faults=FAULTS
    )
    with EmbeddedServer(config, port=0) as server:
        env = {**os.environ, "FIREWORKS_BASE_URL": server.base_url, "NO_COLOR": "1"}
        env.pop("FIREWORKS_API_KEY", None)
        log = tmp / "watch.log"
        with log.open("w") as err:
            traced = [str(Path(__file__).with_name("traced.py")), str(tmp / "snapshots")]
            daemon = subprocess.Popen(
                [
                    sys.executable,
                    *(traced if args.tracemalloc else ["-m", "batchops"]),
                    "watch",
                    "--prune",
                    "--interval",
                    "5s",
                    "--log-format",
                    "json",
                ],
                cwd=root,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            return soak_loop(args, root, env, daemon, log, server.base_url)
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
            if args.tracemalloc:
                heap_report(tmp / "snapshots")


def soak_loop(
    args: argparse.Namespace,
    root: Path,
    env: dict[str, str],
    daemon: subprocess.Popen[bytes],
    log: Path,
    base_url: str,
) -> int:
    editor = Editor(root, args.seed)
    start = time.monotonic()
    end = start + args.minutes * 60
    samples: list[tuple[float, int, int]] = []
    next_sample, next_edit = start + SAMPLE_EVERY, start + args.change_every
    while time.monotonic() < end and daemon.poll() is None:
        now = time.monotonic()
        if now >= next_sample:
            samples.append((now - start, *memory_kb(daemon.pid)))
            print(
                f"  t={now - start:6.0f}s rss={samples[-1][1] / 1024:.1f} MiB "
                f"anon={samples[-1][2] / 1024:.2f} MiB",
                flush=True,
            )
            next_sample += SAMPLE_EVERY
        if now >= next_edit:
            editor.step()
            next_edit += args.change_every
        time.sleep(0.2)
    alive = daemon.poll() is None
    settle_start = time.monotonic()
    jobs: list[dict[str, object]] = []
    while alive and time.monotonic() - settle_start < 600:
        jobs = status(root, env)
        if converged(jobs):
            break
        time.sleep(3)
    settle = time.monotonic() - settle_start
    with FireworksClient(base_url=base_url, account_id="local", api_key=None) as client:
        dups = _retrying(lambda: duplicates(client, project_from_root(root)))
    report(
        args,
        samples,
        pass_lines(log),
        dups,
        jobs,
        editor,
        alive=alive,
        settle=settle,
        start_wall=time.time() - (time.monotonic() - start),
    )
    return 0 if alive and not dups and converged(jobs) else 1


def _retrying(fn):  # type: ignore[no-untyped-def]
    """The backend is faulty on purpose; the client retries, but a listing can still give up."""
    for _ in range(10):
        try:
            return fn()
        except Exception:
            time.sleep(1)
    return fn()


def memory_report(samples: list[tuple[float, int, int]], column: int, label: str) -> None:
    series = " ".join(f"{s[column] / 1024:.2f}" for s in samples)
    print(f"{label} of watch every {SAMPLE_EVERY:.0f}s (MiB): {series}")
    first = [s[column] for s in samples if s[0] <= 60]
    last = [s[column] for s in samples if s[0] >= samples[-1][0] - 60] if samples else []
    if first and last:
        a, b = statistics.mean(first) / 1024, statistics.mean(last) / 1024
        print(f"{label} first minute {a:.2f} MiB, last minute {b:.2f} MiB, ratio {b / a:.3f}")


def report(
    args: argparse.Namespace,
    samples: list[tuple[float, int, int]],
    passes: list[dict[str, object]],
    dups: list[str],
    jobs: list[dict[str, object]],
    editor: Editor,
    *,
    alive: bool,
    settle: float,
    start_wall: float,
) -> None:
    print(
        f"\nsoak: {args.minutes} min, an edit every {args.change_every}s "
        f"({dict(editor.edits)}), faults {FAULTS}"
    )
    for column, label in ((1, "RSS"), (2, "RssAnon")):
        memory_report(samples, column, label)
    per_minute: collections.Counter[int] = collections.Counter()
    outcomes: collections.Counter[str] = collections.Counter()
    for record in passes:
        per_minute[int((_ts(record) - start_wall) // 60)] += 1
        outcomes[str(record.get("outcome"))] += 1
    print("passes per minute: " + " ".join(str(per_minute[m]) for m in sorted(per_minute)))
    print(f"pass outcomes: {dict(outcomes)}")
    print(f"duplicates on the backend: {len(dups)}" + "".join(f"\n  {d}" for d in dups))
    print(
        f"daemon alive at the end: {alive}; converged {converged(jobs)} after {settle:.0f}s "
        f"of settling; declared jobs: {len(jobs)}"
    )
    states = collections.Counter(
        f"{j.get('state')} / results {j.get('resultsState')}" for j in jobs
    )
    for state, count in sorted(states.items()):
        print(f"  {count:5d} x {state}")


def heap_report(folder: Path, top: int = 12) -> None:
    """The Python heap as tracemalloc saw it: traced bytes at each snapshot, and what grew
    between the first snapshot after the start-up minute and the last (by line of allocation)."""
    import tracemalloc

    files = sorted(folder.glob("*.snap"))
    if len(files) < 3:
        print(f"tracemalloc: {len(files)} snapshot(s), too few to compare")
        return
    base = min(2, len(files) - 2)  # past the start-up and the first full passes
    sizes, first, last = [], None, None
    for index, file in enumerate(files):  # one at a time: a snapshot can take a GiB loaded
        snap = tracemalloc.Snapshot.load(str(file))
        sizes.append(sum(s.size for s in snap.statistics("filename")) / 2**20)
        first = snap if index == base else first
        last = snap
    assert first is not None and last is not None
    print(
        "tracemalloc: traced Python heap per snapshot (MiB): " + " ".join(f"{x:.2f}" for x in sizes)
    )
    diff = last.compare_to(first, "lineno")
    grew = sum(d.size_diff for d in diff) / 2**10
    print(
        f"tracemalloc: {grew:+.1f} KiB from snapshot {base} to the last; largest changes by line:"
    )
    for stat in sorted(diff, key=lambda d: -abs(d.size_diff))[:top]:
        frame = stat.traceback[0]
        print(
            f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
            f"{frame.filename}:{frame.lineno}"
        )


def _ts(record: dict[str, object]) -> float:
    """The JSON formatter writes ``time`` as ISO 8601 to the second."""
    return datetime.datetime.strptime(str(record["time"]), "%Y-%m-%dT%H:%M:%S%z").timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--change-every", type=float, default=3.0, help="seconds between edits")
    parser.add_argument("--rows", type=int, default=60, help="rows of the soak's dataset")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs declared that stay put")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="the daemon under tracemalloc: heap diffs"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchops-soak-") as tmp:
        return run_soak(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
