"""Benchmark: the requests and time a plan of 1,000 finished jobs takes, beside a baseline.

Run: ``.venv/bin/python bench/plan.py [--jobs 1000] [--datasets 50]``. It generates manifests and
small datasets in a temp folder, starts ``batchops serve`` as a subprocess, applies everything with
``batchops apply --wait``, then, in this process:

- times ``reconcile.load_and_plan`` (load + two paginated list calls + plan) and counts its HTTP
  requests with the client's ``on_response`` hook;
- times a baseline in the same run that loads the same inputs and then fetches every declared
  resource with its own GET (the way Terraform refreshes), and plans from that;
- times the whole ``batchops plan`` command (a subprocess: interpreter start, imports, manifest
  load, dataset checks, observe, plan, rendering).

The goal's ratio (>= 20x) is observe+plan against the baseline's refresh+plan: both sides load the
same manifests first, in identical code, so that part is excluded from both; the end-to-end ratio
including it is printed beside it.

Then it starts a fresh backend with 10% of /v1 requests answered 429, applies the same manifests
from scratch, and counts the jobs and datasets on the backend per declaration (duplicates = 0).
Numbers are ratios measured side by side in one run, never absolute thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from batchops.errors import NotFoundError
from batchops.identity import owner_of, parse_job_id, project_from_root
from batchops.plan import Observed, PlanOptions, declared_dataset_ids, job_views, make_plan
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import (
    FireworksProvider,
    input_from_wire,
    job_from_wire,
)
from batchops.providers.fireworks.wire import resource_id
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
        rows = (json.dumps({"custom_id": f"d{d}-r{i}", "body": {"messages": [
            {"role": "user", "content": f"dataset {d} question {i}"}]}})
            for i in range(5))  # fmt: skip
        (data / f"ds{d}.jsonl").write_text("\n".join(rows) + "\n")
        docs.append(f"apiVersion: batchops/v1\nkind: Dataset\nmetadata: {{name: ds{d}}}\n"
                    f"spec: {{path: data/ds{d}.jsonl}}\n")  # fmt: skip
    for j in range(jobs):
        docs.append(
            "apiVersion: batchops/v1\nkind: BatchInferenceJob\n"
            f"metadata: {{name: job{j}}}\nspec: {{model: accounts/fireworks/models/m, "
            f"inputDataset: ds{j % datasets}, inferenceParameters: {{maxTokens: {16 + j % 7}}}}}\n"
        )
    (root / "jobs" / "all.yaml").write_text("---\n".join(docs))


def serve(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "batchops", "serve", "--port", "0", "--data-dir", str(data_dir)]
    proc = subprocess.Popen([*args, *extra], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    match = re.search(r"(http://\S+)", proc.stdout.readline())
    assert match, "batchops serve did not start"
    return proc, match.group(1)


def apply_wait(root: Path, url: str) -> float:
    env = {**os.environ, "FIREWORKS_BASE_URL": url}
    env.pop("FIREWORKS_API_KEY", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "batchops", "apply", "--wait", "--timeout", "900",
                           "--poll-interval", "0.5", "--parallelism", "16"], cwd=root, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
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
    with FireworksClient(base_url=url, account_id="local", api_key=None,
                         on_response=counter) as client:  # fmt: skip
        start = time.perf_counter()
        inputs = load_inputs([root / "jobs"], root=root)
        loaded = time.perf_counter()
        plan = load_and_plan([root / "jobs"], root=root, provider=FireworksProvider(client),
                             project=project, options=PassOptions(), inputs=inputs)  # fmt: skip
        end = time.perf_counter()
    changes = sum(1 for a in plan.actions if a.is_change)
    return {"total": end - start, "observe_plan": end - loaded, "requests": counter.count,
            "changes": changes}  # fmt: skip


def baseline(root: Path, url: str) -> dict[str, float]:
    """Terraform-style refresh: one GET per declared resource (datasets, jobs, output datasets)."""
    counter = Counting()
    project = project_from_root(root)
    with FireworksClient(base_url=url, account_id="local", api_key=None,
                         on_response=counter) as client:  # fmt: skip
        start = time.perf_counter()
        desired, infos = load_inputs([root / "jobs"], root=root)
        loaded = time.perf_counter()
        with gc_paused():  # as load_and_plan does
            ds_ids = declared_dataset_ids(desired, infos, project)
            datasets = [client.get_dataset(i) for i in ds_ids.values()]
            empty = job_views(desired, infos, Observed(), {}, project=project)
            jobs = [_get(client, v.base_id) for v in empty]
            outputs = [_get_ds(client, v.base_id + "-out") for v in empty]
            observed = Observed(
                datasets=tuple(input_from_wire(d) for d in datasets + [d for d in outputs if d]),
                jobs=tuple(job_from_wire(j) for j in jobs if j))  # fmt: skip
            plan = make_plan(desired, infos, observed, local_results(desired, root),
                             PlanOptions(), project=project)  # fmt: skip
        end = time.perf_counter()
    changes = sum(1 for a in plan.actions if a.is_change)
    return {"total": end - start, "observe_plan": end - loaded, "requests": counter.count,
            "changes": changes}  # fmt: skip


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
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed runs of each side, alternating (the best of each is taken)")
    parser.add_argument("--rtt", type=float, default=0.005,
                        help="simulated seconds per request for the second comparison")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchops-bench-") as tmp:
        run(Path(tmp), args)


def run(tmp: Path, args: argparse.Namespace) -> None:
    root = tmp / "bench-repo"
    generate(root, jobs=args.jobs, datasets=args.datasets)
    proc, url = serve(tmp / "backend")
    try:
        took = apply_wait(root, url)
        print(f"applied {args.jobs} jobs over {args.datasets} datasets (--wait): {took:.1f} s")
    finally:
        stop(proc)
    for latency, repeat in ((0.0, args.repeat), (args.rtt, 1)):
        compare(tmp, root, latency=latency, repeat=repeat)
    faulty(tmp, root, args)


def compare(tmp: Path, root: Path, *, latency: float, repeat: int) -> None:
    """Plan vs baseline on the applied state; ``latency`` simulates a network round trip."""
    proc, url = serve(tmp / "backend", "--latency", str(latency))  # same data, new process
    try:
        runs = [(timed_plan(root, url), baseline(root, url)) for _ in range(repeat)]  # alternate
        ours, base = best([o for o, _ in runs]), best([b for _, b in runs])
        cli = min(plan_cli(root, url) for _ in range(repeat))
    finally:
        stop(proc)
    where = "loopback" if not latency else f"loopback + {latency * 1000:.0f} ms per request"
    print(f"-- {where}")
    for label, r in (("plan (2 list calls + pages)", ours), ("baseline (one GET each)", base)):
        print(f"{label:28s} {r['requests']:5.0f} requests, {r['changes']:.0f} changes; "
              f"observe+plan {r['observe_plan'] * 1000:8.1f} ms, with manifest load "
              f"{r['total'] * 1000:8.1f} ms")  # fmt: skip
    load = ours["total"] - ours["observe_plan"]
    print(
        f"speed-up, observe+plan (the goal's ratio, >= 20x: both sides exclude the identical "
        f"manifest load): {base['observe_plan'] / ours['observe_plan']:.1f}x; end to end incl. "
        f"loading the same manifests ({load * 1000:.0f} ms): {base['total'] / ours['total']:.1f}x"
    )
    print(
        f"whole `batchops plan` command (start, load, observe, plan, print): {cli * 1000:.0f} ms; "
        f"baseline load + one GET each + plan, in process: {base['total'] * 1000:.0f} ms"
    )


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    """The best of each measure on its own (a shared machine's noise hits runs unevenly)."""
    return {key: min(r[key] for r in runs) for key in runs[0]}


def plan_cli(root: Path, url: str) -> float:
    """Wall time of ``batchops plan`` as a user runs it."""
    env = {**os.environ, "FIREWORKS_BASE_URL": url}
    env.pop("FIREWORKS_API_KEY", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "batchops", "plan"], cwd=root, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"plan failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - start


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


def faulty(tmp: Path, root: Path, args: argparse.Namespace) -> None:
    fresh = tmp / "fresh-repo"
    generate(fresh, jobs=args.jobs, datasets=args.datasets)
    proc, url = serve(tmp / "backend-429", "--fault-429", "0.1", "--fault-seed", "1")
    try:
        took = apply_wait(fresh, url)
        jobs, dss, dup = duplicates(fresh, url)
    finally:
        stop(proc)
    print(f"from scratch with 10% 429s: {took:.1f} s; {jobs} jobs, {dss} datasets on the "
          f"backend; {dup} declarations with duplicates")  # fmt: skip


if __name__ == "__main__":
    main()
