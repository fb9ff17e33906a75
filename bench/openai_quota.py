"""Benchmark: a 150,000-row job under a 50,000-request cap and an enqueued-token quota.

Run: ``.venv/bin/python bench/openai_quota.py [--rows 150000] [--quota 600000]``. It starts
``batchops serve --openai-enqueued-token-limit QUOTA`` as a subprocess (the server fails a batch
with ``token_limit_exceeded`` when its tokens would pass the quota, as OpenAI does), declares the
same quota and OpenAI's 50,000-request cap on the provider, and runs the job through
``OpenAIProvider.create_job`` until every part is submitted, then until it finishes. A sampler
lists the batches every 0.1 s from the first part's submission to the last one's, and records
the share of the quota held by submitted batches that have not ended. Printed: parts, waves,
the mean and minimum share while parts waited (goal: >= 90%), quota refusals (goal: 0), rows
answered, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from benchlib import serve

from batchops.providers.model import DatasetSpec, JobSpec, JobState
from batchops.providers.openai import ownership as own
from batchops.providers.openai.aggregate import quota_refused
from batchops.providers.openai.client import OpenAIBatchClient
from batchops.providers.openai.parts import Limits, RowSize, estimate_tokens, split, waves
from batchops.providers.openai.provider import OpenAIProvider
from batchops.providers.openai.states import is_live


def _dataset(folder: Path, rows: int) -> DatasetSpec:
    path = folder / "big.jsonl"
    with path.open("w") as out:
        for i in range(rows):
            text = f"question {i:06d}: what is {i} plus {i}, in words?"
            body = {"messages": [{"role": "user", "content": text}]}
            out.write(json.dumps({"custom_id": f"q{i:06d}", "body": body}) + "\n")
    return DatasetSpec("big", "big", (path,), rows, path.stat().st_size, "big", "CHAT")


def _static_plan(spec: DatasetSpec, limits: Limits) -> tuple[int, list[int]]:
    sizes = []
    for raw in spec.files[0].read_bytes().splitlines():
        body = json.loads(raw)["body"]
        sizes.append(RowSize(len(raw) + 80, estimate_tokens(body)))
    parts = split(sizes, limits)
    return len(parts), [len(w) for w in waves(parts, limits)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--quota", type=int, default=600_000)
    parser.add_argument("--cap", type=int, default=50_000)
    args = parser.parse_args()
    limits = Limits(max_requests=args.cap, enqueued_tokens=args.quota)
    with tempfile.TemporaryDirectory() as tmp:
        spec = _dataset(Path(tmp), args.rows)
        parts, wave_sizes = _static_plan(spec, limits)
        print(
            f"plan: {parts} parts, waves of {wave_sizes} parts, usable quota "
            f"{limits.usable_tokens:,} of {args.quota:,} tokens"
        )
        proc, url = serve(Path(tmp) / "data", "--openai-enqueued-token-limit", str(args.quota))
        client = OpenAIBatchClient(base_url=f"{url}/v1", api_key=None)
        provider = OpenAIProvider("openai", client, limits, poll=0.1, scratch=Path(tmp))
        provider.create_input(spec, project="bench")
        job = JobSpec("big-1", "big", "gpt-4o-mini", "big", {}, None, "big-out", "big", None)
        shares: list[float] = []
        submitting = threading.Event()
        submitting.set()

        def sample() -> None:
            watcher = OpenAIBatchClient(base_url=f"{url}/v1", api_key=None)
            while submitting.is_set():
                batches = watcher.list_batches()
                if batches:  # before the first part is out, the job is rendering, not waiting
                    live = sum(own.tokens_of(b) for b in batches if is_live(b.status))
                    shares.append(live / args.quota)
                time.sleep(0.1)
            watcher.close()

        start = time.perf_counter()
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            provider.create_job(job, project="bench")
        finally:
            submitting.clear()
            sampler.join()
        submitted = time.perf_counter() - start
        while provider.get_job("big-1").state not in (JobState.FINISHED, JobState.FAILED):
            time.sleep(0.2)
        total = time.perf_counter() - start
        result = provider.get_job("big-1")
        batches = client.list_batches()
        refusals = sum(quota_refused(b) for b in batches)
        mean = statistics.mean(shares) if shares else 0.0
        print(
            f"batches: {len(batches)}; quota refusals: {refusals} (goal 0); share of the quota "
            f"in use while parts waited: mean {mean:.1%}, min {min(shares, default=0):.1%} over "
            f"{len(shares)} samples (goal >= 90%); rows answered {result.rows.succeeded:,}/"
            f"{args.rows:,} ({result.state}); all submitted after {submitted:.1f} s, "
            f"finished after {total:.1f} s"
        )
        provider.close()
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
