"""Rendering a dataset from a table: batchops against the strongest simple baselines, in one run.

    python bench/render.py [--rows 100000] [--rounds 7]

Baselines are what a user's glue script does, one row at a time, written to a file:
``csv.DictReader`` + ``jinja2.Template.render`` for each of the two messages + ``json.dumps`` (the
issue's), and the same with ``csv.reader`` + ``dict(zip(...))`` and ``orjson.dumps`` (the
strongest simple one: Jinja2's rendering is most of either). batchops renders the same CSV
through the same two-message template in process (manifest load included; in its sandbox, with
StrictUndefined, custom_id from a key column, duplicate and empty-cell checks, and the inputs
file for joins), and end to end as a user runs it: ``batchops validate`` in a fresh process
(start-up, render, then the rendered dataset validated), its cache emptied first.
In each of ``--rounds`` paired rounds every side runs once, in an order that rotates; ratios
are taken per round and their median reported. Then a second pass with nothing changed must
render nothing (goal < 50 ms). Goal (issue 12): >= 2.5x the baseline.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jinja2
import orjson
from benchlib import BATCHOPS, load, machine, rotated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchops.manifest import load_desired
from batchops.sources import render_all

SYSTEM = "You write concise, accurate product copy for {{ audience }}. No superlatives."
USER = (
    "Write two sentences about the {{ product }} (SKU {{ sku }}).\n"
    "Keep the tone {{ tone }}; mention that it costs {{ price }} EUR."
)
MANIFEST = f"""\
apiVersion: batchops/v1
kind: Dataset
metadata: {{name: bench}}
spec:
  source: {{path: data/products.csv, idColumn: sku}}
  template:
    messages:
      - role: system
        content: "{SYSTEM}"
      - role: user
        content: |
          {USER.splitlines()[0]}
          {USER.splitlines()[1]}
"""
WORDS = [
    "kettle",
    "toaster",
    "blender",
    "mixer",
    "lamp",
    "fan",
    "heater",
    "grill",
    "press",
    "scale",
]
TONES = ["warm", "dry", "cheerful", "precise", "calm", "upbeat"]
AUDIENCES = ["students", "families", "cooks", "bakers", "teams"]


def make_csv(path: Path, rows: int) -> None:
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sku", "product", "tone", "audience", "price"])
        for i in range(rows):
            name = " ".join(rng.choice(WORDS) for _ in range(3)).title()
            writer.writerow(
                [
                    f"sku-{i:07d}",
                    name,
                    rng.choice(TONES),
                    rng.choice(AUDIENCES),
                    f"{rng.uniform(5, 500):.2f}",
                ]
            )


def baseline(table: Path, out: Path) -> int:
    system, user = jinja2.Template(SYSTEM), jinja2.Template(USER)
    count = 0
    with table.open(newline="", encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for row in csv.DictReader(src):
            body = {
                "messages": [
                    {"role": "system", "content": system.render(row)},
                    {"role": "user", "content": user.render(row)},
                ]
            }
            dst.write(json.dumps({"custom_id": row["sku"], "body": body}) + "\n")
            count += 1
    return count


def strongest(table: Path, out: Path) -> int:
    """The same with the fastest simple pieces: csv.reader and a dict per row, orjson."""
    system, user = jinja2.Template(SYSTEM), jinja2.Template(USER)
    count = 0
    with table.open(newline="", encoding="utf-8") as src, out.open("wb") as dst:
        reader = csv.reader(src)
        header = next(reader)
        for cells in reader:
            row = dict(zip(header, cells, strict=True))
            body = {
                "messages": [
                    {"role": "system", "content": system.render(row)},
                    {"role": "user", "content": user.render(row)},
                ]
            }
            dst.write(orjson.dumps({"custom_id": row["sku"], "body": body}) + b"\n")
            count += 1
    return count


def ours(root: Path) -> int:
    shutil.rmtree(root / ".batchops", ignore_errors=True)
    desired = load_desired([root / "jobs"], root=root)
    (artifact,) = render_all(desired, root=root).values()
    return artifact.read_bytes().count(b"\n")


def cli(root: Path) -> int:
    shutil.rmtree(root / ".batchops", ignore_errors=True)
    done = subprocess.run(
        [*BATCHOPS, "validate", "--output", "json"], cwd=root, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"batchops validate failed: {done.stderr[-2000:]}")
    return int(json.loads(done.stdout)["datasets"]["bench"]["rows"])


SIDES: dict[str, Callable[[Path], int]] = {
    "baseline (DictReader, Template.render, json.dumps)": lambda root: baseline(
        root / "jobs/data/products.csv", root / "baseline.jsonl"
    ),
    "strongest (csv.reader, Template.render, orjson)": lambda root: strongest(
        root / "jobs/data/products.csv", root / "strongest.jsonl"
    ),
    "batchops render (in process)": ours,
    "batchops validate (CLI, end to end)": cli,
}


def timed(fn: Callable[[Path], int], root: Path) -> tuple[float, int]:
    start = time.perf_counter()
    count = fn(root)
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7, help="paired rounds (default 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "jobs/data").mkdir(parents=True)
        (root / "jobs/bench.yaml").write_text(MANIFEST)
        make_csv(root / "jobs/data/products.csv", args.rows)
        times: dict[str, list[float]] = {name: [] for name in SIDES}
        for r in range(args.rounds):
            for name in rotated(list(SIDES), r):
                took, count = timed(SIDES[name], root)
                assert count == args.rows, (name, count)
                times[name].append(took)
            rates = ", ".join(f"{args.rows / times[n][-1]:,.0f}" for n in SIDES)
            print(f"round {r + 1}: {rates} rows/s; {load()}", flush=True)
        report(times, args.rows, args.rounds)
        desired = load_desired([root / "jobs"], root=root)
        (artifact,) = render_all(desired, root=root).values()  # the last side may be the CLI's
        before = artifact.stat()
        start = time.perf_counter()
        (again_file,) = render_all(desired, root=root).values()
        again = (time.perf_counter() - start) * 1000
        after = again_file.stat()
        same = again_file == artifact and (after.st_ino, after.st_mtime_ns) == (
            before.st_ino,
            before.st_mtime_ns,
        )
        what = "nothing rendered" if same else "RENDERED AGAIN: the cache missed"
        print(f"unchanged second run: {again:.1f} ms ({what}; goal < 50 ms)")


def report(times: dict[str, list[float]], rows: int, rounds: int) -> None:
    print(
        f"\n{rows:,} rows, two-message template; median of {rounds} paired rounds; "
        f"machine: {machine()}; {load()}"
    )
    for name, values in times.items():
        print(f"  {name:52s} {rows / statistics.median(values):>9,.0f} rows/s")
    names = list(times)
    for ours_name in names[2:]:
        for base in names[:2]:
            ratios = [b / o for b, o in zip(times[base], times[ours_name], strict=True)]
            each = ", ".join(f"{x:.2f}" for x in ratios)
            print(
                f"  {ours_name:40s} / {base.split(' (')[0]:9s} "
                f"median {statistics.median(ratios):.2f}x (rounds: {each})"
            )


if __name__ == "__main__":
    main()
