"""Benchmark: pipelines (issue 16), against `batchops serve` on a loopback port.

Run: ``.venv/bin/python bench/pipelines.py [--parts order,watch,plan] [--rounds 5]``. Parts:

1. **order**: a two-stage pipeline over three models (a matrix, then a judge per combination) is
   six jobs, created in order. ``batchops apply --wait`` is killed with SIGKILL at ten random
   points (seeded), each in a fresh process on the same project, then run to the end. Printed:
   the jobs on the server, whether each judge was created after its upstream finished, duplicate
   jobs (goal 0), and the rows sent against the rows declared (goal: equal, none sent twice).
   The same is asserted by tests/reliability/test_pipeline_kill.py.
2. **watch**: the time from an upstream job's results being verified (its results file replaced
   on disk) to its downstream job existing on the server, over ``--runs`` upstream changes (goal:
   median under 1 s). Measured with `batchops watch --interval 3` as a user runs it (the CLI
   figure), and in process in paired rounds against the strongest simple baseline: the same
   daemon when a merge does not trigger a pass, so the stage starts at the next resync tick.
3. **plan**: the plan of 1,000 finished jobs in a 100-stage graph (each job ``dependsOn`` two
   jobs of the stage before: 1,980 edges) against the same 1,000 jobs without edges (goal:
   at most 1.2x). ``dependsOn`` changes no job ID, so both plans see the same world and say "No
   changes". Paired rounds in alternating order; the median of per-round ratios, in process
   (``load_and_plan``) and as `batchops plan` processes.

Load average is printed with each figure: the machine is shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from benchlib import load, machine, serve, stop

from batchops.identity import mark, owner_of, parse_job_id, project_from_root
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider
from batchops.providers.fireworks.wire import resource_id
from batchops.reconcile import PassOptions, PassResult, load_and_plan, load_inputs, run_pass
from batchops.watch.loop import Daemon, Timing
from batchops.watch.triggers import Triggers

MODELS = ("alpha", "beta", "gamma")
PIPELINE = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {{name: prompts}}
spec: {{path: data/prompts.jsonl}}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {{name: gen}}
spec:
  inputDataset: prompts
  matrix: {{model: [{models}]}}
  inferenceParameters: {{maxTokens: 64}}
---
apiVersion: batchops/v1
kind: Dataset
metadata: {{name: judged}}
spec:
  source: {{job: gen}}
  template:
    messages: [{{role: user, content: "judge {{{{ answer.job }}}}: {{{{ answer.text }}}}"}}]
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {{name: judge}}
spec: {{inputDataset: judged, model: accounts/fireworks/models/judge,
       inferenceParameters: {{maxTokens: 64}}}}
"""


def write_pipeline(root: Path, *, rows: int, models: tuple[str, ...], tag: str = "") -> None:
    data = root / "jobs" / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = (
        json.dumps(
            {
                "custom_id": f"r{i}",
                "body": {"messages": [{"role": "user", "content": f"question {i} {tag}"}]},
            }
        )
        for i in range(rows)
    )
    _atomic(data / "prompts.jsonl", "\n".join(lines) + "\n")  # a daemon may read it meanwhile
    names = ", ".join(f"accounts/fireworks/models/{m}" for m in models)
    _atomic(root / "jobs" / "p.yaml", PIPELINE.format(models=names))


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def end(proc: subprocess.Popen[bytes]) -> None:
    """Stop a daemon this bench started (SIGTERM, then SIGKILL)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def env_for(url: str) -> dict[str, str]:
    env = {**os.environ, "FIREWORKS_BASE_URL": url, "NO_COLOR": "1"}
    env.pop("FIREWORKS_API_KEY", None)
    return env


def batchops(root: Path, url: str, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchops", *argv],
        cwd=root,
        env=env_for(url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def our_jobs(url: str, root: Path) -> list[object]:
    project = project_from_root(root)
    with FireworksClient(base_url=url, account_id="local", api_key=None) as client:
        return [j for j in client.list_jobs() if owner_of(j.display_name) == project]


# -- 1. order and kill -9 ------------------------------------------------------------------------


def order(tmp: Path, *, kills: int, rows: int) -> None:
    server, url = serve(tmp / "order-server", "--row-delay", "0.03")
    root = tmp / "order"
    write_pipeline(root, rows=rows, models=MODELS)
    apply = ("apply", "--wait", "--timeout", "300", "--poll-interval", "0.1")
    try:
        rng = random.Random(16)
        hits = []
        for _ in range(kills):
            delay = rng.uniform(0.3, 1.5)
            proc = batchops(root, url, *apply)
            time.sleep(delay)
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            names = sorted(_name(j) for j in our_jobs(url, root))
            hits.append((round(delay, 2), alive, names))
        started = time.perf_counter()
        final = batchops(root, url, *apply)
        code = final.wait(300)
        took = time.perf_counter() - started
        jobs = our_jobs(url, root)
        print(f"order: {kills} kills ({sum(h[1] for h in hits)} of a live run); {load()}")
        for delay, alive, names in hits:
            stage = "stage 2" if any(n.startswith("judge") for n in names) else "stage 1"
            print(
                f"  kill at {delay:.2f}s: {'live' if alive else 'done'}, "
                f"{len(names)} jobs on the server ({stage})"
            )
        per_name = Counter(_name(j) for j in jobs)
        print(f"  final apply --wait: exit {code} in {took:.1f}s; jobs {sorted(per_name)}")
        print(f"  duplicate jobs: {sum(c - 1 for c in per_name.values())} (goal 0)")
        sent = _sent_rows(url, root)
        print(
            f"  rows sent: {sum(sent.values())} for {len(per_name) * rows} declared "
            f"(goal: equal); per job {dict(sorted(sent.items()))}"
        )
        print(f"  each judge created after its upstream finished: {_in_order(jobs)}")
    finally:
        stop(server)


def _name(job: object) -> str:
    parts = parse_job_id(resource_id(getattr(job, "name", "") or ""))
    return parts.name if parts else "?"


def _sent_rows(url: str, root: Path) -> dict[str, int]:
    with FireworksClient(base_url=url, account_id="local", api_key=None) as client:
        datasets = {resource_id(d.name or ""): d for d in client.list_datasets()}
        jobs = [
            j for j in client.list_jobs() if owner_of(j.display_name) == project_from_root(root)
        ]
        sent: Counter[str] = Counter()
        for j in jobs:
            ds = datasets.get(resource_id(j.input_dataset_id or ""))
            sent[_name(j)] += int(ds.example_count or 0) if ds else 0
        return dict(sent)


def _in_order(jobs: list[object]) -> bool:
    by = {_name(j): j for j in jobs}
    return all(
        (getattr(by[f"judge-{m}"], "create_time", "") or "")
        >= (getattr(by[f"gen-{m}"], "update_time", "") or "~")
        for m in MODELS
    )


# -- 2. watch: upstream verified -> downstream job ----------------------------------------------


def _latency(root: Path, url: str, tag: str, seen: set[str]) -> float:
    """Change the upstream's input; from the new upstream results on disk to a new judge job."""
    results = root / "results" / "gen-alpha.jsonl"
    before = results.stat().st_mtime_ns if results.exists() else 0
    write_pipeline(root, rows=20, models=("alpha",), tag=tag)
    deadline = time.monotonic() + 120
    while (results.stat().st_mtime_ns if results.exists() else 0) == before:
        if time.monotonic() > deadline:
            raise SystemExit("the upstream results never came")
        time.sleep(0.002)
    verified = time.perf_counter()
    flt = f'display_name:"judge-alpha {mark(project_from_root(root))}"'  # this project's only
    with FireworksClient(base_url=url, account_id="local", api_key=None) as client:
        while True:
            ids = {j.name or "" for j in client.list_jobs(filter=flt)}
            if ids - seen:
                seen |= ids
                return time.perf_counter() - verified
            if time.monotonic() > deadline:
                raise SystemExit("the downstream job never came")
            time.sleep(0.002)


def _settle(root: Path) -> None:
    """The judge's results for the current upstream: the pipeline is idle again."""
    deadline = time.monotonic() + 120
    judged = root / "results" / "judge-alpha.jsonl"
    gen = root / "results" / "gen-alpha.jsonl"
    while not (
        judged.exists() and gen.exists() and judged.stat().st_mtime_ns > gen.stat().st_mtime_ns
    ):
        if time.monotonic() > deadline:
            raise SystemExit("did not settle")
        time.sleep(0.05)


def watch_cli(tmp: Path, url: str, runs: int) -> list[float]:
    root = tmp / "watch-cli"
    write_pipeline(root, rows=20, models=("alpha",), tag="start")
    daemon = batchops(root, url, "watch", "--interval", "3")
    seen: set[str] = set()
    try:
        _settle(root)
        seen |= {getattr(j, "name", "") or "" for j in our_jobs(url, root)}
        out = []
        for i in range(runs):
            out.append(_latency(root, url, f"cli{i}", seen))
            _settle(root)
        return out
    finally:
        end(daemon)


def _daemon(root: Path, url: str, *, trigger: bool) -> tuple[threading.Thread, threading.Event]:
    stop_event = threading.Event()
    client = FireworksClient(base_url=url, account_id="local", api_key=None)
    provider = FireworksProvider(client)
    project = project_from_root(root)

    def one() -> PassResult:
        result = run_pass(
            [root / "jobs"], root=root, provider=provider, project=project, options=PassOptions()
        )
        return result if trigger else dataclasses.replace(result, unblocked=False)

    daemon = Daemon(
        run_pass=one,
        triggers=Triggers(stop_event),
        stop=stop_event,
        timing=Timing(interval=3.0, busy_interval=3.0),
    )

    def run() -> None:
        try:
            daemon.run()
        finally:
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, stop_event


def watch_paired(tmp: Path, url: str, runs: int) -> tuple[list[float], list[float]]:
    """In process: the daemon as built (a merge triggers a pass) and the baseline (it does not),
    one latency of each per round, in alternating order."""
    got: dict[bool, list[float]] = {True: [], False: []}
    roots = {flag: tmp / f"watch-{'trigger' if flag else 'tick'}" for flag in (True, False)}
    seen: dict[bool, set[str]] = {True: set(), False: set()}
    for root in roots.values():
        write_pipeline(root, rows=20, models=("alpha",), tag="start")
    for i in range(runs):
        for flag in (True, False) if i % 2 == 0 else (False, True):
            thread, stop_event = _daemon(roots[flag], url, trigger=flag)
            try:
                _settle(roots[flag])
                seen[flag] |= {getattr(j, "name", "") or "" for j in our_jobs(url, roots[flag])}
                got[flag].append(_latency(roots[flag], url, f"r{i}", seen[flag]))
                _settle(roots[flag])
            finally:
                stop_event.set()
                thread.join(30)
    return got[True], got[False]


def watch(tmp: Path, runs: int) -> None:
    server, url = serve(tmp / "watch-server")
    try:
        cli = watch_cli(tmp, url, runs)
        print(
            f"watch (CLI, `batchops watch --interval 3`): upstream verified -> downstream job, "
            f"median {statistics.median(cli) * 1000:.0f} ms, max {max(cli) * 1000:.0f} ms over "
            f"{len(cli)} runs (goal: median < 1 s); {load()}"
        )
        trig, tick = watch_paired(tmp, url, runs)
        ratios = [b / a for a, b in zip(trig, tick, strict=True)]
        print(
            f"watch (in process, paired): triggered median {statistics.median(trig) * 1000:.0f} "
            f"ms vs next-tick baseline {statistics.median(tick) * 1000:.0f} ms; baseline / "
            f"triggered median of per-round ratios {statistics.median(ratios):.1f}x over "
            f"{len(trig)} rounds; {load()}"
        )
    finally:
        stop(server)


# -- 3. plan: 100 stages of 1,000 jobs vs no edges ---------------------------------------------


def graph_manifests(root: Path, *, jobs: int, stages: int, edges: bool) -> None:
    per = jobs // stages
    docs = []
    for d in range(10):
        docs.append(
            f"apiVersion: batchops/v1\nkind: Dataset\nmetadata: {{name: ds{d}}}\n"
            f"spec: {{path: data/ds{d}.jsonl}}\n"
        )
    for j in range(jobs):
        stage, k = divmod(j, per)
        deps = ""
        if edges and stage:
            a, b = (stage - 1) * per + k, (stage - 1) * per + (k + 1) % per
            deps = f", dependsOn: [job{a}, job{b}]"
        docs.append(
            "apiVersion: batchops/v1\nkind: BatchInferenceJob\n"
            f"metadata: {{name: job{j}}}\nspec: {{model: accounts/fireworks/models/m, "
            f"inputDataset: ds{j % 10}, inferenceParameters: {{maxTokens: {16 + j % 7}}}"
            f"{deps}}}\n"
        )
    (root / "jobs" / "all.yaml").write_text("---\n".join(docs))


def plan(tmp: Path, *, jobs: int, stages: int, rounds: int) -> None:
    root = tmp / "graph"
    data = root / "jobs" / "data"
    data.mkdir(parents=True)
    for d in range(10):
        rows = (
            json.dumps(
                {
                    "custom_id": f"d{d}-r{i}",
                    "body": {
                        "messages": [{"role": "user", "content": f"dataset {d} question {i}"}]
                    },
                }
            )
            for i in range(5)
        )
        (data / f"ds{d}.jsonl").write_text("\n".join(rows) + "\n")
    server, url = serve(tmp / "graph-server")
    try:
        graph_manifests(root, jobs=jobs, stages=stages, edges=False)
        proc = batchops(
            root,
            url,
            "apply",
            "--wait",
            "--timeout",
            "1800",
            "--poll-interval",
            "0.5",
            "--parallelism",
            "16",
        )
        if proc.wait(1800) != 0:
            raise SystemExit("apply failed")
        inproc: dict[bool, list[float]] = {True: [], False: []}
        cli: dict[bool, list[float]] = {True: [], False: []}
        for i in range(rounds):
            for edges in (True, False) if i % 2 == 0 else (False, True):
                graph_manifests(root, jobs=jobs, stages=stages, edges=edges)
                inproc[edges].append(_plan_in_process(root, url))
                cli[edges].append(_plan_cli(root, url))
        for label, got in (("in process (load_and_plan)", inproc), ("CLI (`batchops plan`)", cli)):
            ratios = [e / n for e, n in zip(got[True], got[False], strict=True)]
            print(
                f"plan {label}: {jobs} jobs, {stages} stages: with edges median "
                f"{statistics.median(got[True]) * 1000:.0f} ms, without "
                f"{statistics.median(got[False]) * 1000:.0f} ms; median ratio "
                f"{statistics.median(ratios):.3f}x over {rounds} rounds (goal <= 1.2x); "
                f"{load()}"
            )
    finally:
        stop(server)


def _plan_in_process(root: Path, url: str) -> float:
    with FireworksClient(base_url=url, account_id="local", api_key=None) as client:
        start = time.perf_counter()
        inputs = load_inputs([root / "jobs"], root=root)
        result = load_and_plan(
            [root / "jobs"],
            root=root,
            provider=FireworksProvider(client),
            project=project_from_root(root),
            options=PassOptions(),
            inputs=inputs,
        )
        took = time.perf_counter() - start
    if result.has_changes:
        raise SystemExit("the graph's plan has changes: the comparison would not be paired")
    return took


def _plan_cli(root: Path, url: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "batchops", "plan"],
        cwd=root,
        env=env_for(url),
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - start
    if done.returncode != 0 or "No changes." not in done.stdout:
        raise SystemExit(f"plan: {done.returncode} {done.stdout[-500:]} {done.stderr[-500:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="order,watch,plan")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds for plan")
    parser.add_argument("--runs", type=int, default=10, help="upstream changes under watch")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--rows", type=int, default=30, help="rows of the order part")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--stages", type=int, default=100)
    args = parser.parse_args()
    parts: dict[str, Callable[[Path], None]] = {
        "order": lambda tmp: order(tmp, kills=args.kills, rows=args.rows),
        "watch": lambda tmp: watch(tmp, args.runs),
        "plan": lambda tmp: plan(tmp, jobs=args.jobs, stages=args.stages, rounds=args.rounds),
    }
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="batchops-pipelines-") as tmp:
        for name in args.parts.split(","):
            parts[name](Path(tmp))


if __name__ == "__main__":
    main()
