"""Benchmark: what a plan costs, in requests and time, at every size, beside honest baselines.

Run: ``.venv/bin/python bench/plan.py [--jobs 1000] [--rounds 5] [--parts compare,...]``. Parts:

1. **1,000 finished jobs** (generated manifests and small datasets, applied with
   ``batchops apply --wait`` against ``batchops serve``). In each paired round: ``batchops plan``
   as a user runs it (a process: start-up, manifest load, dataset checks, observe, plan, print);
   ``load_and_plan`` in process (manifest load included, and observe + plan alone); and the
   strongest simple baseline, a Terraform-style refresh with 10 threads (one GET per declared
   dataset, job and output dataset) after the same load, then the same planner. Ratios are per
   round; the median is reported. Once on loopback, once with 5 ms added per request.
2. **Scaling**: ``load_and_plan`` of 10, 100, 1,000 and 10,000 declared (not yet applied) jobs
   against an empty account, rounds alternating the sizes; time per job at each size, without
   the manifest cache (a fresh checkout) and with it, and ``batchops validate`` (CLI) beside.
3. **A busy account**: a 10-job project, applied; its plan's requests and time (CLI and in
   process), then again after 5,000 foreign jobs are created in the account.
4. **Faults**: a fresh backend answering 10% of /v1 requests with 429, the same
   1,000 jobs applied from scratch, and the duplicates counted per declaration (goal 0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import machine, serve, stop

from batchops.errors import NotFoundError
from batchops.identity import owner_of, parse_job_id, project_from_root
from batchops.plan import Observed, PlanOptions, declared_dataset_ids, job_views, make_plan
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import (
    FireworksProvider,
    input_from_wire,
    job_from_wire,
)
from batchops.providers.fireworks.wire import BatchInferenceJob, Dataset, resource_id
from batchops.reconcile import (
    PassOptions,
    gc_paused,
    load_and_plan,
    load_inputs,
    local_results,
)


def generate(root: Path, *, jobs: int, datasets: int) -> None:
    data = root / "jobs" / "data"
    data.mkdir(parents=True)
    docs = []
    for d in range(datasets):
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
        docs.append(
            f"apiVersion: batchops/v1\nkind: Dataset\nmetadata: {{name: ds{d}}}\n"
            f"spec: {{path: data/ds{d}.jsonl}}\n"
        )
    for j in range(jobs):
        docs.append(
            "apiVersion: batchops/v1\nkind: BatchInferenceJob\n"
            f"metadata: {{name: job{j}}}\nspec: {{model: accounts/fireworks/models/m, "
            f"inputDataset: ds{j % datasets}, inferenceParameters: {{maxTokens: {16 + j % 7}}}}}\n"
        )
    (root / "jobs" / "all.yaml").write_text("---\n".join(docs))


def apply_wait(root: Path, url: str) -> float:
    env = {**os.environ, "FIREWORKS_BASE_URL": url}
    env.pop("FIREWORKS_API_KEY", None)
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchops",
            "apply",
            "--wait",
            "--timeout",
            "900",
            "--poll-interval",
            "0.5",
            "--parallelism",
            "16",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"apply failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - start


class Counting:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, *_: object) -> None:
        with self.lock:
            self.count += 1


def timed_plan(root: Path, url: str) -> dict[str, float]:
    """load_and_plan end to end, and its observe + plan part alone (inputs preloaded)."""
    counter = Counting()
    project = project_from_root(root)
    with FireworksClient(
        base_url=url, account_id="local", api_key=None, on_response=counter
    ) as client:
        start = time.perf_counter()
        inputs = load_inputs([root / "jobs"], root=root)
        loaded = time.perf_counter()
        plan = load_and_plan(
            [root / "jobs"],
            root=root,
            provider=FireworksProvider(client),
            project=project,
            options=PassOptions(),
            inputs=inputs,
        )
        end = time.perf_counter()
    changes = sum(1 for a in plan.actions if a.is_change)
    return {
        "total": end - start,
        "observe_plan": end - loaded,
        "requests": counter.count,
        "changes": changes,
        "jobs": len(inputs[0].jobs),
    }


def baseline(root: Path, url: str) -> dict[str, float]:
    """Terraform-style refresh with 10 threads: one GET per declared resource (datasets, jobs,
    output datasets), after the same manifest load, then the same planner."""
    counter = Counting()
    project = project_from_root(root)
    with (
        FireworksClient(
            base_url=url, account_id="local", api_key=None, on_response=counter
        ) as client,
        ThreadPoolExecutor(10) as pool,
    ):
        start = time.perf_counter()
        desired, infos = load_inputs([root / "jobs"], root=root)
        loaded = time.perf_counter()
        with gc_paused():  # as load_and_plan does
            ds_ids = declared_dataset_ids(desired, infos, project)
            datasets = list(pool.map(lambda i: _get_ds(client, i), ds_ids.values()))
            empty = job_views(desired, infos, Observed(), {}, project=project)
            jobs = list(pool.map(lambda v: _get(client, v.base_id), empty))
            outputs = list(pool.map(lambda v: _get_ds(client, v.base_id + "-out"), empty))
            observed = Observed(
                datasets=tuple(input_from_wire(d) for d in datasets + outputs if d),
                jobs=tuple(job_from_wire(j) for j in jobs if j),
            )
            plan = make_plan(
                desired,
                infos,
                observed,
                local_results(desired, root),
                PlanOptions(),
                project=project,
            )
        end = time.perf_counter()
    changes = sum(1 for a in plan.actions if a.is_change)
    return {
        "total": end - start,
        "observe_plan": end - loaded,
        "requests": counter.count,
        "changes": changes,
    }


def _get(client: FireworksClient, job_id: str):  # type: ignore[no-untyped-def]
    try:
        return client.get_job(job_id)
    except NotFoundError:
        return None


def _get_ds(client: FireworksClient, ds_id: str):  # type: ignore[no-untyped-def]
    try:
        return client.get_dataset(ds_id)
    except NotFoundError:
        return None


def duplicates(root: Path, url: str) -> tuple[int, int, int]:
    """(jobs, datasets, declarations with more than one resource) on the backend."""
    project = project_from_root(root)
    with FireworksClient(base_url=url, account_id="local", api_key=None) as client:
        jobs = [j for j in client.list_jobs() if owner_of(j.display_name) == project]
        dss = [d for d in client.list_datasets() if owner_of(d.display_name) == project]
    per_job = Counter(parse_job_id(resource_id(j.name or "")).name for j in jobs)  # type: ignore[union-attr]
    per_ds = Counter(resource_id(d.name or "").rsplit("-", 1)[0] for d in dss)
    dup = sum(1 for c in per_job.values() if c > 1) + sum(1 for c in per_ds.values() if c > 1)
    return len(jobs), len(dss), dup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (default 5)")
    parser.add_argument(
        "--rtt",
        type=float,
        default=0.005,
        help="simulated seconds per request for the second comparison",
    )
    parser.add_argument("--sizes", default="10,100,1000,10000", help="job counts for scaling")
    parser.add_argument("--foreign", type=int, default=5000, help="foreign jobs (busy account)")
    parser.add_argument(
        "--parts",
        default="compare,scaling,busy,faults",
        help="which parts to run (default: all four)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="batchops-bench-") as tmp:
        run(Path(tmp), args)


def run(tmp: Path, args: argparse.Namespace) -> None:
    parts = set(args.parts.split(","))
    root = tmp / "bench-repo"
    generate(root, jobs=args.jobs, datasets=args.datasets)
    if "compare" in parts:
        proc, url = serve(tmp / "backend")
        try:
            took = apply_wait(root, url)
            print(f"applied {args.jobs} jobs over {args.datasets} datasets (--wait): {took:.1f} s")
        finally:
            stop(proc)
        for latency in (0.0, args.rtt):
            compare(tmp, root, latency=latency, rounds=args.rounds)
    if "scaling" in parts:
        scaling(tmp, [int(n) for n in args.sizes.split(",")], rounds=args.rounds)
    if "busy" in parts:
        busy(tmp, foreign=args.foreign, rounds=args.rounds)
    if "faults" in parts:
        faulty(tmp, root, args)


def compare(tmp: Path, root: Path, *, latency: float, rounds: int) -> None:
    """Plan vs the threaded refresh on the applied state, in paired rounds."""
    proc, url = serve(tmp / "backend", "--latency", str(latency))  # same data, new process
    rows = []
    try:
        for _ in range(rounds):
            rows.append((plan_cli(root, url), timed_plan(root, url), baseline(root, url)))
    finally:
        stop(proc)
    where = "loopback" if not latency else f"loopback + {latency * 1000:.0f} ms per request"
    ours, base = rows[-1][1], rows[-1][2]
    jobs = ours["jobs"]
    print(f"-- {jobs:,.0f} finished jobs, {where}: median of {rounds} paired rounds")
    print(
        f"   requests: plan {ours['requests']:.0f}, threaded refresh {base['requests']:.0f}; "
        f"changes: {ours['changes']:.0f} and {base['changes']:.0f}"
    )

    def ms(values: Iterable[float]) -> str:
        return f"{statistics.median(values) * 1000:8.0f} ms"

    med = statistics.median
    print(f"   `batchops plan` (CLI, end to end)          {ms(r[0] for r in rows)}")
    print(
        f"   load_and_plan in process (manifests incl.) {ms(r[1]['total'] for r in rows)};"
        f" observe+plan {ms(r[1]['observe_plan'] for r in rows)}"
    )
    print(
        f"   refresh, 10 threads, in process (incl.)    {ms(r[2]['total'] for r in rows)};"
        f" observe+plan {ms(r[2]['observe_plan'] for r in rows)}"
    )
    narrow = [r[2]["observe_plan"] / r[1]["observe_plan"] for r in rows]
    whole = [r[2]["total"] / r[1]["total"] for r in rows]
    print(
        f"   ratio refresh/ours: observe+plan {med(narrow):.1f}x, with the manifest load both "
        f"pay {med(whole):.1f}x (per round: {', '.join(f'{x:.1f}' for x in whole)})"
    )


def scaling(tmp: Path, sizes: list[int], *, rounds: int) -> None:
    """load_and_plan of N declared jobs (an empty account: every job is a create), in each
    paired round twice: without the manifest cache (deleted first: a fresh checkout, what CI
    pays) and with it (the next command); beside them ``batchops validate`` as a user runs it."""
    roots = {}
    for n in sizes:
        roots[n] = tmp / f"scale-{n}"
        generate(roots[n], jobs=n, datasets=min(50, n))
    time.sleep(2.1)  # the manifest cache keeps only files older than 2 s (manifest/cache.py)
    proc, url = serve(tmp / "backend-empty")
    figures: dict[str, dict[int, list[float]]] = {
        k: {n: [] for n in sizes} for k in ("cold", "cold_load", "warm", "warm_load", "cli")
    }
    loads = [os.getloadavg()]
    try:
        for r in range(rounds):
            for n in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:
                (roots[n] / ".batchops" / "cache" / "manifests.json").unlink(missing_ok=True)
                for side in ("cold", "warm"):  # the cold run writes the cache the warm one reads
                    got = timed_plan(roots[n], url)
                    figures[side][n].append(got["total"])
                    figures[f"{side}_load"][n].append(got["total"] - got["observe_plan"])
                figures["cli"][n].append(validate_cli(roots[n]))
    finally:
        stop(proc)
    loads.append(os.getloadavg())
    med = statistics.median
    before, after = loads[0][0], loads[1][0]
    print(
        f"-- scaling: load_and_plan of N declared jobs, empty account, median of {rounds} "
        f"paired rounds; load average {before:.2f} before, {after:.2f} after"
    )
    for n in sizes:
        cold, warm = med(figures["cold"][n]), med(figures["warm"][n])
        cold_load, warm_load = med(figures["cold_load"][n]), med(figures["warm_load"][n])
        print(
            f"   {n:6d} jobs: no manifest cache {cold * 1000:7.0f} ms ({cold / n * 1000:.3f} ms"
            f" per job; loading manifests and datasets {cold_load * 1000:.0f} ms); manifest "
            f"cache {warm * 1000:7.0f} ms (loading {warm_load * 1000:.0f} ms); `batchops "
            f"validate` (CLI, cache) {med(figures['cli'][n]) * 1000:.0f} ms"
        )
    per_job = {n: med(figures["cold"][n]) / n * 1000 for n in sizes}
    if 1000 in per_job and 10000 in per_job:
        print(
            f"   per-job time (no cache) at 10,000 / at 1,000: "
            f"{per_job[10000] / per_job[1000]:.2f}x (goal <= 1.3x); loading 10,000: "
            f"{med(figures['cold_load'][10000]) * 1000:.0f} ms without the manifest cache, "
            f"{med(figures['warm_load'][10000]) * 1000:.0f} ms with it (goal <= 1000 ms)"
        )


def validate_cli(root: Path) -> float:
    """Wall time of ``batchops validate`` as a user runs it."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "batchops", "validate"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"validate failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - start


def busy(tmp: Path, *, foreign: int, rounds: int) -> None:
    """A 10-job project's plan in its own account, then with ``foreign`` other jobs in it."""
    root = tmp / "small-repo"
    generate(root, jobs=10, datasets=2)
    data = tmp / "backend-busy"
    proc, url = serve(data)
    try:
        apply_wait(root, url)
    finally:
        stop(proc)
    quiet = measure_busy(root, data, rounds)
    # Jobs that stay VALIDATING: they are listed like any others and cost the worker nothing.
    proc, url = serve(data, "--stage-delay", "86400")
    try:
        add_foreign_jobs(url, foreign)
    finally:
        stop(proc)
    loud = measure_busy(root, data, rounds)
    print(f"-- a 10-job project, median of {rounds}: own account vs with {foreign:,} foreign jobs")
    for label, (requests, cli, inproc) in (("own account", quiet), ("busy account", loud)):
        print(
            f"   {label:13s} {requests:3d} requests; `batchops plan` {cli * 1000:6.0f} ms; "
            f"load_and_plan {inproc * 1000:6.0f} ms"
        )
    print(
        f"   busy / own: requests {loud[0] / quiet[0]:.2f}x, CLI time {loud[1] / quiet[1]:.2f}x "
        "(goal <= 2x)"
    )


def measure_busy(root: Path, data: Path, rounds: int) -> tuple[int, float, float]:
    proc, url = serve(data, "--stage-delay", "86400")
    try:
        runs = [(timed_plan(root, url), plan_cli(root, url)) for _ in range(rounds)]
    finally:
        stop(proc)
    med = statistics.median
    return (int(runs[-1][0]["requests"]), med(c for _, c in runs), med(r["total"] for r, _ in runs))


def add_foreign_jobs(url: str, count: int) -> None:
    """``count`` jobs made by hand (no mark), over one foreign dataset."""
    with (
        FireworksClient(base_url=url, account_id="local", api_key=None) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        client.create_dataset("hand-made", Dataset(display_name="by hand", example_count="1"))
        job = BatchInferenceJob(
            model="accounts/fireworks/models/m",
            input_dataset_id="hand-made",
            display_name="someone else's job",
        )
        list(pool.map(lambda i: client.create_job(f"hand-{i}", job), range(count)))


def plan_cli(root: Path, url: str) -> float:
    """Wall time of ``batchops plan`` as a user runs it."""
    env = {**os.environ, "FIREWORKS_BASE_URL": url}
    env.pop("FIREWORKS_API_KEY", None)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "batchops", "plan"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"plan failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - start


def faulty(tmp: Path, root: Path, args: argparse.Namespace) -> None:
    fresh = tmp / "fresh-repo"
    generate(fresh, jobs=args.jobs, datasets=args.datasets)
    proc, url = serve(tmp / "backend-429", "--fault-429", "0.1", "--fault-seed", "1")
    try:
        took = apply_wait(fresh, url)
        jobs, dss, dup = duplicates(fresh, url)
    finally:
        stop(proc)
    print(
        f"from scratch with 10% 429s: {took:.1f} s; {jobs} jobs, {dss} datasets on the "
        f"backend; {dup} declarations with duplicates"
    )


if __name__ == "__main__":
    main()
