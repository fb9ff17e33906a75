"""Benchmark: the manifest load of a big project, CPU in process, beside the CLI a user runs.

Run: ``.venv/bin/python bench/load.py [--jobs 10000] [--rounds 7] [--against DIR]``.

The project is ``bench/plan.py``'s (50 datasets, ``--jobs`` jobs in one file; past 2,000
documents no manifest cache is kept, so every load parses), one copy per side. Each paired
round runs, in a fresh process per side (order rotating): ``load_partial`` of the project, its
CPU time (the median of 3 loads after one warm-up load: imports and pydantic's validators
built), and ``batchops validate`` of the same project as a user runs it (wall time, the process
included). With ``--against DIR`` (a checkout of another commit, e.g. ``git worktree add
/tmp/main main``) the same is measured with that checkout's code, round by round, and the
ratios are per round.
Goal (issue 17): 10,000 jobs load in at most 1 s of CPU.
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
from pathlib import Path

from benchlib import load, machine, rotated
from plan import generate

_CHILD = """
import json, statistics, sys, time
from pathlib import Path
from batchops.manifest.loader import load_partial
root = Path(sys.argv[1])
load_partial([root / "jobs"], root=root)  # imports, validators built
cpu = []
for _ in range(3):
    start = time.process_time()
    desired, diags = load_partial([root / "jobs"], root=root)
    cpu.append(time.process_time() - start)
assert not diags, diags[:3]
print(json.dumps({"cpu": statistics.median(cpu), "jobs": len(desired.jobs)}))
"""


def measure(root: Path, code: Path | None) -> dict[str, float]:
    env = dict(os.environ)
    if code is not None:  # that checkout's package first on the path
        env["PYTHONPATH"] = str(code)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=code or Path.cwd(),
    )
    got: dict[str, float] = json.loads(out.stdout)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "batchops", "validate"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    got["cli"] = time.perf_counter() - start
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--against", type=Path, help="a checkout to compare with, round by round")
    args = parser.parse_args()
    sides: dict[str, Path | None] = {"this": None}
    if args.against is not None:
        sides["against"] = args.against.resolve()
    print(f"machine: {machine()}; {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        roots = {side: Path(tmp) / side for side in sides}  # each side its own .batchops/
        for root in roots.values():
            generate(root, jobs=args.jobs, datasets=min(50, args.jobs))
        rounds: list[dict[str, dict[str, float]]] = []
        for r in range(args.rounds):
            order = rotated(list(sides), r)
            rounds.append({side: measure(roots[side], sides[side]) for side in order})
    print(f"after {args.rounds} paired rounds: {load()}")
    med = statistics.median
    for side in sides:
        cpu = med(x[side]["cpu"] for x in rounds)
        cli = med(x[side]["cli"] for x in rounds)
        print(
            f"   {side:8s} load_partial of {args.jobs:,} jobs: {cpu * 1000:6.0f} ms CPU "
            f"({cpu / args.jobs * 1e6:.1f} us per job); `batchops validate` (CLI, wall) "
            f"{cli * 1000:6.0f} ms"
        )
    if "against" in sides:
        cpu_ratio = [x["this"]["cpu"] / x["against"]["cpu"] for x in rounds]
        cli_ratio = [x["this"]["cli"] / x["against"]["cli"] for x in rounds]
        print(
            f"   this / against, median of per-round ratios: load {med(cpu_ratio):.2f}x "
            f"({', '.join(f'{x:.2f}' for x in cpu_ratio)}); CLI {med(cli_ratio):.2f}x"
        )


if __name__ == "__main__":
    main()
