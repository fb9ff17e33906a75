"""Joining results to their inputs: 1,000,000 result rows to their rendered inputs, written as CSV.

    python bench/results_join.py [--rows 1000000] [--rounds 5]

A project as a user has it after ``batchops apply``: a dataset rendered from a CSV (four columns
per row), and a job's results merged by ``batchops.merge.merge_lineage`` from a results file
and an errors file (1% failed rows) that came back in a shuffled order, with its record. Each of
``--rounds`` rounds runs, in an order that rotates, the join in process (``Joined`` streamed to
a CSV file) and ``batchops results bench -o csv --out FILE`` in a fresh process (end to end:
start-up, manifest load, the cached render, the join, the write); the median rows per second of
each is reported, with its ratio to a baseline measured in the same rounds: the script a user
would write (the input rows in a dict by custom_id, the results streamed past it, ``csv.writer``).
Peak RSS growth (goal, issue 12: at most 100 MB whatever the row count): in
process, the peak during the join over the RSS just before it (the kernel's high-water mark is
reset first, so the setup's peak does not count); end to end, the command's peak (its RSS
sampled every 20 ms) over its peak on a project of 1,000 rows. The largest growth of the rounds
is reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import BATCHOPS, TreePeak, load, machine, rotated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchops.datasets import iter_custom_ids
from batchops.layout import errors_path
from batchops.manifest import load_desired
from batchops.merge import merge_lineage
from batchops.providers import ERRORS_FILE, OUTPUT_FILE
from batchops.sources import render_all
from batchops.sources.join import JobResults, Joined, input_rows
from batchops.sources.kept import keep_inputs
from batchops.sources.writers import chunks
from batchops.stamps import InputsUsed, inputs_used

MANIFEST = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: bench}
spec:
  source: {path: data/products.csv, idColumn: sku}
  template: {prompt: "Describe {{ product }} in a {{ tone }} tone; it costs {{ price }}."}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: bench}
spec:
  model: accounts/fireworks/models/m
  inputDataset: bench
  output: {path: results/bench.jsonl}
"""


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its RSS now (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def make_project(root: Path, rows: int) -> Path:
    """The project of the module docstring; returns the rendered dataset's rows.jsonl."""
    (root / "jobs/data").mkdir(parents=True)
    (root / "jobs/bench.yaml").write_text(MANIFEST)
    with (root / "jobs/data/products.csv").open("w") as fh:
        fh.write("sku,product,tone,price\n")
        for i in range(rows):
            fh.write(f"sku-{i:07d},Product {i},warm,{i % 500}.99\n")
    desired = load_desired([root / "jobs"], root=root)
    (artifact,) = render_all(desired, root=root).values()
    download = root / "download"
    download.mkdir()
    order = list(range(rows))
    random.Random(3).shuffle(order)  # answers come back in another order than asked
    with (download / OUTPUT_FILE).open("w") as ok, (download / ERRORS_FILE).open("w") as bad:
        for i in order:
            cid = f"sku-{i:07d}"
            if i % 100 == 0:
                bad.write(json.dumps({"custom_id": cid, "error": {"message": "timeout"}}) + "\n")
                continue
            usage = {"input_tokens": 40, "output_tokens": 30}
            line = {"custom_id": cid, "text": f"Answer {i}", "finish_reason": "stop"}
            ok.write(json.dumps({**line, "usage": usage, "error": None}) + "\n")
    del order
    kept = keep_inputs(root, "bench", [artifact])
    used = inputs_used([artifact], lambda _f, _st: "")
    merge_lineage(
        [download],
        job_name="bench",
        job_ids=["bench-1"],
        output=root / "results/bench.jsonl",
        expected_ids=iter_custom_ids([artifact]),
        root=root,
        inputs=InputsUsed(used.files, str(kept) if kept else None),
    )
    return artifact


def in_process(root: Path, artifact: Path) -> tuple[float, float]:
    """(seconds, peak RSS growth in MB) of the join streamed to a CSV file."""
    output = root / "results/bench.jsonl"
    job = JobResults("bench", output, errors_path(output))
    reset = _reset_peak()
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    with (
        Joined(input_rows([artifact]), [job], tmp_dir=root / ".batchops/tmp") as joined,
        (root / "joined.csv").open("wb") as out,
    ):
        for chunk in chunks("csv", joined.columns, joined.rows()):
            out.write(chunk)
    seconds = time.perf_counter() - start
    if reset:
        peak = _status_mb("VmHWM")
    else:  # the process's peak ever: the setup's may hide the join's
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return seconds, peak - before


def baseline(root: Path, artifact: Path) -> tuple[float, float]:
    """(seconds, peak RSS growth in MB) of the script a user would write: the input rows in a
    dict by custom_id, the results streamed past it, ``csv.writer``. Fast, but its memory grows
    with the rows."""
    output = root / "results/bench.jsonl"
    inputs_path = next((root / ".batchops/inputs/bench").glob("*.jsonl"))
    reset = _reset_peak()
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    rows: dict[str, dict[str, object]] = {}
    with inputs_path.open("rb") as fh:
        for line in fh:
            obj = json.loads(line)
            rows[obj["custom_id"]] = obj["row"]
    columns = list(next(iter(rows.values())))
    with (root / "baseline.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["custom_id", *columns, "answer", "finish_reason", "error"])
        for path in (output, errors_path(output)):
            with path.open("rb") as fh:
                for line in fh:
                    r = json.loads(line)
                    row = rows.get(r["custom_id"], {})
                    error = r.get("error")
                    message = error.get("message") if isinstance(error, dict) else error
                    writer.writerow(
                        [
                            r["custom_id"],
                            *(row.get(c) for c in columns),
                            r.get("text"),
                            r.get("finish_reason"),
                            message,
                        ]
                    )
    seconds = time.perf_counter() - start
    peak = (
        _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    del rows
    return seconds, peak - before


def end_to_end(root: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of ``batchops results`` in a fresh process."""
    argv = [*BATCHOPS, "results", "bench", "-o", "csv", "--out", "cli.csv"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Sampled, not the kernel's ru_maxrss: a child forked from this (large) process counts this
    # process's pages until it execs, so its ru_maxrss says more about the bench than the command
    peak = TreePeak(proc.pid)
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"batchops results failed: {err.decode()[-2000:]}")
    return seconds, peak.stop() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, small = Path(tmp, "big"), Path(tmp, "small")
        artifact = make_project(root, args.rows)
        make_project(small, 1_000)
        # Files changed within 2 s are not trusted by their stat (manifest/cache.py): wait, then
        # warm both projects alike (page cache, manifest cache), as a user's second look.
        time.sleep(2.1)
        end_to_end(root)
        end_to_end(small)
        small_peak = min(end_to_end(small)[1] for _ in range(3))
        peaks: list[float] = []
        sides = ["baseline", "in process", "end to end"]
        seconds: dict[str, list[float]] = {s: [] for s in sides}
        growth: dict[str, list[float]] = {s: [] for s in sides}
        for r in range(args.rounds):
            for side in rotated(sides, r):
                if side == "baseline":
                    took, grew = baseline(root, artifact)
                elif side == "in process":
                    took, grew = in_process(root, artifact)
                else:
                    took, peak = end_to_end(root)
                    grew = peak - small_peak
                    peaks.append(peak)
                seconds[side].append(took)
                growth[side].append(grew)
            print(
                f"round {r + 1}: "
                + ", ".join(f"{s} {args.rows / seconds[s][-1]:,.0f} rows/s" for s in sides)
                + f"; {load()}",
                flush=True,
            )
        size = (root / "cli.csv").stat().st_size / 2**20
        print(
            f"\n{args.rows:,} result rows (1% failed) joined to their inputs, {size:.0f} MiB of "
            f"CSV; median of {args.rounds} rounds; machine: {machine()}; {load()}"
        )
        for side in sides:
            ratios = [b / s for b, s in zip(seconds["baseline"], seconds[side], strict=True)]
            rate = args.rows / statistics.median(seconds[side])
            print(
                f"  {side:11s} {rate:>10,.0f} rows/s ({statistics.median(ratios):.2f}x the "
                f"baseline)  peak RSS growth {max(growth[side]):.1f} MB"
                + (
                    f" (over 1,000 rows: {max(peaks):.1f} vs {small_peak:.1f} MB)"
                    if side == "end to end"
                    else ""
                )
            )


if __name__ == "__main__":
    main()
