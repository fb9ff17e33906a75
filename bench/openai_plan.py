"""Benchmark: observing 1,000 finished jobs on the OpenAI-compatible provider, beside baselines.

Run: ``.venv/bin/python bench/openai_plan.py [--jobs 1000] [--rounds 5] [--latency 0.005]``
(``--keep DIR``: apply once into DIR, which takes minutes, and measure it again on later runs).
It starts ``batchops serve`` as a subprocess (its /v1/files + /v1/batches, no key), writes a
project of ``--jobs`` one-row jobs on an ``openai`` provider pointed at it, applies them with
``batchops apply --wait`` (one batch each, carrying batchops metadata), then, in paired rounds
on the same server (each round runs every contender once; medians are reported):

- ``batchops plan`` as a user runs it (a process: start-up, manifest load, observe, plan, print);
- ``OpenAIProvider.list_jobs()`` in process: the observe step of a plan on this provider (list
  calls, ``limit=100``, then the neutral ``RemoteJob``s), counting its HTTP requests, and the
  requests of a pass's whole observe (``list_inputs`` beside ``list_jobs``: one shared sweep);
- the baseline: every batch fetched with its own ``GET /v1/batches/{id}``, one after another;
- the same baseline on 10 threads (the strongest simple one on a fast link).

Then it repeats them against a new server process on the same data, with ``--latency`` seconds
added to every request by the backend's fault injection (what a real network adds). The load
average is printed with each figure (the machine may be shared).
Goal (issue 13): requests <= 15 + 1 per 100 batches listed, >= 20x the one-GET-per-batch baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import serve, stop

from batchops.providers.openai.client import OpenAIBatchClient
from batchops.providers.openai.parts import Limits
from batchops.providers.openai.provider import OpenAIProvider


def write_project(root: Path, url: str, jobs: int) -> None:
    """``jobs`` one-row jobs, each its own dataset line, on the provider ``oai`` at ``url``."""
    (root / "jobs" / "data").mkdir(parents=True)
    line = {"custom_id": "r0", "body": {"messages": [{"role": "user", "content": "hi"}]}}
    (root / "jobs" / "data" / "one.jsonl").write_text(json.dumps(line) + "\n")
    (root / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: bench}\n"
        f'spec:\n  providers:\n    oai: {{kind: openai, baseUrl: "{url}/v1"}}\n'
    )
    docs = [
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: one}\n"
        "spec: {path: data/one.jsonl}\n"
    ]
    docs += [
        f"apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {{name: job-{i:05d}}}\n"
        "spec: {provider: oai, model: m, inputDataset: one, inferenceParameters: {maxTokens: 8}}\n"
        for i in range(jobs)
    ]
    (root / "jobs" / "all.yaml").write_text("---\n".join(docs))


def cli(root: Path, url: str, *args: str) -> float:
    """Wall time of ``batchops <args>`` as a user runs it."""
    env = {**os.environ, "FIREWORKS_BASE_URL": url, "FIREWORKS_ACCOUNT_ID": "local"}
    env.pop("FIREWORKS_API_KEY", None)
    env.pop("OPENAI_API_KEY", None)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "batchops", *args],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"batchops {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - start


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _measure(root: Path, url: str, label: str, rounds: int) -> None:
    client = OpenAIBatchClient(base_url=f"{url}/v1", api_key=None)
    provider = OpenAIProvider("oai", client, Limits())
    ids = [b.id for b in client.iter_batches()]
    before = sum(client.requests_sent.values())
    assert len(provider.list_jobs()) == len(ids)
    requests = sum(client.requests_sent.values()) - before
    with ThreadPoolExecutor(2) as side:  # a pass's observe: both lists side by side, as plan
        before = sum(client.requests_sent.values())
        both = side.submit(provider.list_inputs), side.submit(provider.list_jobs)
        assert len(both[1].result()) == len(ids) and both[0].result()
        pass_requests = sum(client.requests_sent.values()) - before
    rows: list[tuple[float, float, float, float]] = []
    loads = []
    with ThreadPoolExecutor(10) as pool:
        for _ in range(rounds):
            loads.append(os.getloadavg()[0])
            rows.append(
                (
                    cli(root, url, "plan"),
                    _timed(provider.list_jobs),
                    _timed(lambda: [client.get_batch(i) for i in ids]),
                    _timed(lambda: list(pool.map(client.get_batch, ids))),
                )
            )
    provider.close()
    med = statistics.median
    plan, ours, serial, threaded = (med(r[k] for r in rows) for k in range(4))
    ratios = [r[2] / r[1] for r in rows]
    goal = 15 + len(ids) // 100
    print(
        f"-- {len(ids):,} finished batches, {label}: median of {rounds} paired rounds, "
        f"load average {med(loads):.1f}"
    )
    print(f"   `batchops plan` (CLI, end to end)   {plan * 1000:7.0f} ms")
    print(
        f"   list_jobs in process               {ours * 1000:7.0f} ms, {requests} requests "
        f"(goal <= {goal})"
    )
    print(f"   a pass's observe (inputs + jobs)   {pass_requests} requests (goal <= {goal})")
    print(
        f"   one GET per batch, serial          {serial * 1000:7.0f} ms, {len(ids)} requests: "
        f"{med(ratios):.1f}x list_jobs (per round: {', '.join(f'{x:.1f}' for x in ratios)})"
    )
    print(
        f"   one GET per batch, 10 threads      {threaded * 1000:7.0f} ms: "
        f"{threaded / ours:.1f}x list_jobs"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (default 5)")
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--keep", type=Path, default=None,
                        help="a folder kept across runs: applied once, measured again")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        data, root = base / "data", base / "repo"
        if not (root / "batchops.yaml").exists():
            _apply(data, root, args.jobs)
        _rounds(data, root, args)


def _apply(data: Path, root: Path, jobs: int) -> None:
    proc, url = serve(data)
    try:
        write_project(root, url, jobs)
        took = cli(root, url, "apply", "--wait", "--timeout", "900", "--poll-interval", "0.5",
                   "--parallelism", "16")  # fmt: skip
        print(f"applied {jobs} one-row jobs (--wait): {took:.1f} s")
    finally:
        stop(proc)


def _rounds(data: Path, root: Path, args: argparse.Namespace) -> None:
    for latency in (0.0, args.latency):
        extra = ("--latency", str(latency)) if latency else ()
        proc, url = serve(data, *extra)  # same data, a new process; same port not needed:
        try:  # the project names the provider's URL, so it is rewritten for this server
            (root / "batchops.yaml").write_text(
                (root / "batchops.yaml").read_text().split('baseUrl: "')[0]
                + f'baseUrl: "{url}/v1"}}\n'
            )
            label = f"loopback + {latency * 1000:.0f} ms per request" if latency else "loopback"
            _measure(root, url, label, args.rounds)
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
