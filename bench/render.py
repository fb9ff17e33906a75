"""Rendering a dataset from a table: batchops against a straightforward baseline, in one run.

    python bench/render.py [--rows 100000]

The baseline is what a user's glue script does: ``csv.DictReader`` + ``jinja2.Template.render``
for each of the two messages + ``json.dumps``, one row at a time, written to a file. batchops
renders the same CSV through the same two-message template (in its sandbox, with StrictUndefined,
custom_id from a key column, duplicate and empty-cell checks, and the inputs file for joins).
Both are timed in the same process, interleaved, best of ``--repeat`` (5), so the ratio is
meaningful on a busy machine. Then a second pass with nothing changed must render nothing
(goal < 50 ms).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import jinja2

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
            writer.writerow([f"sku-{i:07d}", name, rng.choice(TONES), rng.choice(AUDIENCES),
                             f"{rng.uniform(5, 500):.2f}"])  # fmt: skip


def baseline(table: Path, out: Path) -> int:
    system, user = jinja2.Template(SYSTEM), jinja2.Template(USER)
    count = 0
    with table.open(newline="", encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for row in csv.DictReader(src):
            body = {"messages": [{"role": "system", "content": system.render(row)},
                                 {"role": "user", "content": user.render(row)}]}  # fmt: skip
            dst.write(json.dumps({"custom_id": row["sku"], "body": body}) + "\n")
            count += 1
    return count


def ours(root: Path) -> int:
    for old in (root / ".batchops").glob("**/*"):
        if old.is_file():
            old.unlink()
    desired = load_desired([root / "jobs"], root=root)
    (artifact,) = render_all(desired, root=root).values()
    with artifact.open("rb") as fh:
        return sum(1 for _ in fh)


def timed(fn: object, *args: object) -> tuple[float, int]:
    start = time.perf_counter()
    count = fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "jobs/data").mkdir(parents=True)
        (root / "jobs/bench.yaml").write_text(MANIFEST)
        table = root / "jobs/data/products.csv"
        make_csv(table, args.rows)
        base, mine = [], []
        for _ in range(args.repeat):  # interleaved: both see the same machine load
            base.append(timed(baseline, table, root / "baseline.jsonl"))
            mine.append(timed(ours, root))
        (b, nb), (m, nm) = min(base), min(mine)
        assert nb == nm == args.rows, (nb, nm)
        print(f"baseline  {nb / b:>10,.0f} rows/s  ({b:.2f} s for {nb:,} rows)")
        print(f"batchops  {nm / m:>10,.0f} rows/s  ({m:.2f} s)   {b / m:.2f}x the baseline")
        desired = load_desired([root / "jobs"], root=root)
        start = time.perf_counter()
        render_all(desired, root=root)
        again = (time.perf_counter() - start) * 1000
        print(f"unchanged second run: {again:.1f} ms (nothing rendered)")


if __name__ == "__main__":
    main()
