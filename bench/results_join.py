"""Joining results to their inputs: 1,000,000 result rows to their rendered inputs, written as CSV.

    python bench/results_join.py [--rows 1000000]

The inputs are a rendered dataset's ``inputs.jsonl`` (four source columns per row) and the
results a merged results file plus its errors file (1% failed rows), in a shuffled order as
Fireworks returns them. Reports rows per second and the peak RSS growth of the join (goal: at
most 100 MB whatever the row count), measured from the RSS just before the join starts.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchops.sources.join import JobResults, Joined, input_rows
from batchops.sources.writers import chunks


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_files(folder: Path, rows: int) -> tuple[Path, JobResults]:
    """A rendered dataset's rows.jsonl + inputs.jsonl and a job's results, streamed to disk."""
    dataset = folder / ".batchops/rendered/bench/0123abcd"
    dataset.mkdir(parents=True)
    rng = random.Random(3)
    with (dataset / "inputs.jsonl").open("w") as inputs, (dataset / "rows.jsonl").open("w") as ds:
        for i in range(rows):
            row = {
                "sku": f"sku-{i:07d}",
                "product": f"Product {i}",
                "tone": "warm",
                "price": f"{i % 500}.99",
            }
            inputs.write(json.dumps({"custom_id": row["sku"], "row": row}) + "\n")
            ds.write(json.dumps({"custom_id": row["sku"], "body": {"prompt": "p"}}) + "\n")
    order = list(range(rows))
    rng.shuffle(order)  # answers come back in another order than asked
    out, err = folder / "results.jsonl", folder / "results.errors.jsonl"
    with out.open("w") as ok, err.open("w") as bad:
        for i in order:
            cid = f"sku-{i:07d}"
            if i % 100 == 0:
                bad.write(json.dumps({"custom_id": cid, "error": {"message": "timeout"}}) + "\n")
                continue
            response = {
                "choices": [
                    {
                        "message": {"role": "assistant", "content": f"Answer {i}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 40, "completion_tokens": 30},
            }
            ok.write(json.dumps({"custom_id": cid, "response": response}) + "\n")
    del order
    return dataset / "rows.jsonl", JobResults("bench", out, err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dataset, job = make_files(folder, args.rows)
        before = rss_mb()
        start = time.perf_counter()
        written = 0
        with (
            Joined(input_rows([dataset]), [job], tmp_dir=folder / "tmp") as joined,
            (folder / "joined.csv").open("wb") as out,
        ):
            for chunk in chunks("csv", joined.columns, joined.rows()):
                out.write(chunk)
                written += len(chunk)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"joined {args.rows:,} rows in {seconds:.1f} s: {args.rows / seconds:,.0f} rows/s, "
            f"{written / 2**20:.0f} MiB of CSV"
        )
        print(f"peak RSS growth: {peak - before:.1f} MB (RSS before the join {before:.1f} MB)")


if __name__ == "__main__":
    main()
