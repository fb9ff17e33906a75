"""Benchmark: observing 1,000 finished jobs on the OpenAI-compatible provider, beside baselines.

Run: ``.venv/bin/python bench/openai_plan.py [--jobs 1000] [--latency 0.005]``. It starts
``batchops serve`` as a subprocess (its /v1/files + /v1/batches, no key), creates ``--jobs``
one-row batches carrying batchops metadata (one job key each), waits for all of them to complete,
then times, in the same run, on the same server:

- ``OpenAIProvider.list_jobs()``: the observe step of a plan on this provider (list calls,
  ``limit=100``, then the neutral ``RemoteJob``s), counting its HTTP requests;
- a baseline that fetches every batch with its own ``GET /v1/batches/{id}``, one after another;
- the same baseline on 10 threads.

Then it repeats the three against a new server process on the same data, with ``--latency``
seconds added to every request by the backend's fault injection (what a real network adds).
Goal (issue 13): requests <= 15 + 1 per 100 batches listed, >= 20x the one-GET-per-batch baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import serve

from batchops.providers.openai import ownership as own
from batchops.providers.openai.client import OpenAIBatchClient
from batchops.providers.openai.parts import Limits
from batchops.providers.openai.provider import OpenAIProvider


def _populate(base_url: str, jobs: int, folder: Path) -> list[str]:
    line = {
        "custom_id": "r0",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
    path = folder / "one.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with OpenAIBatchClient(base_url=f"{base_url}/v1", api_key=None) as client:
        upload = client.upload_file(path)
        ids = []
        for i in range(jobs):
            slot = own.Slot(f"job-{i:05d}", 0, 1, 0)
            meta = own.metadata(
                "bench",
                f"job-{i}",
                slot,
                tokens=1,
                rows=1,
                input_key="ds",
                model="m",
                continued_from=None,
            )
            batch = client.create_batch(
                input_file_id=upload.id, endpoint="/v1/chat/completions", metadata=meta
            )
            ids.append(batch.id)
        while sum(b.status == "completed" for b in client.iter_batches()) < jobs:
            time.sleep(0.2)
    return ids


def _timed(run: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(base_url: str, ids: list[str], label: str) -> None:
    client = OpenAIBatchClient(base_url=f"{base_url}/v1", api_key=None)
    provider = OpenAIProvider("openai", client, Limits())
    before = sum(client.requests_sent.values())
    jobs = provider.list_jobs()
    requests = sum(client.requests_sent.values()) - before
    assert len(jobs) == len(ids), len(jobs)
    ours = _timed(provider.list_jobs)
    serial = _timed(lambda: [client.get_batch(i) for i in ids], repeat=1)
    with ThreadPoolExecutor(10) as pool:
        threaded = _timed(lambda: list(pool.map(client.get_batch, ids)), repeat=1)
    goal = 15 + len(ids) // 100
    print(
        f"[{label}] list_jobs: {requests} requests (goal <= {goal}), {ours * 1000:.0f} ms "
        f"median of 3 | one GET per batch: {len(ids)} requests, {serial * 1000:.0f} ms "
        f"({serial / ours:.1f}x) | 10 threads: {threaded * 1000:.0f} ms "
        f"({threaded / ours:.1f}x)"
    )
    provider.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.005)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        for extra in ((), ("--latency", str(args.latency))):
            proc, url = serve(data, *extra)
            try:
                if not extra:
                    ids = _populate(url, args.jobs, Path(tmp))
                label = f"+{args.latency * 1000:.0f} ms per request" if extra else "loopback"
                _measure(url, ids, label)
            finally:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
