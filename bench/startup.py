"""Benchmark: what every command pays before doing anything, as a user runs it.

Run: ``.venv/bin/python bench/startup.py [--rounds 7]``. In each paired round (the order
rotating), each of these runs as a fresh process and its wall time is taken from here:

- ``python -c pass`` (the interpreter alone: the floor);
- ``batchops --version``;
- ``batchops validate`` of the example project (``jobs/`` copied to a temp folder), with warm
  caches (datasets' stat cache, token counts, and the manifest cache, which holds the validated
  documents of unchanged manifest files): what an editor hook or a pre-commit check pays;
- the same without the manifest cache (deleted before each run, outside the timing): what the
  first command of a fresh checkout pays;
- ``batchops plan`` of the same examples against a running ``batchops serve`` (applied first, so
  the plan is the steady state a CI run sees).

Reported: the median of each, the median of the per-round ratio ``--version`` / bare Python, and
the load average before and after (the machine may be shared).
Goals (issue 17): ``--version`` <= 3x bare Python, ``validate`` <= 300 ms, ``plan`` <= 400 ms.
The package's bytecode is compiled first, as ``pip install`` does (an editable install under
PYTHONDONTWRITEBYTECODE would otherwise compile every module on every run).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import machine, serve, stop

import batchops

REPO = Path(__file__).resolve().parents[1]
BATCHOPS = [sys.executable, "-m", "batchops"]


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}): {done.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="paired rounds (default 7)")
    args = parser.parse_args()
    compileall.compile_dir(Path(batchops.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory(prefix="batchops-startup-") as tmp:
        project = Path(tmp) / "examples"
        shutil.copytree(REPO / "jobs", project / "jobs")
        shutil.copy(REPO / "batchops.yaml", project / "batchops.yaml")  # declares the providers
        proc, url = serve(Path(tmp) / "backend")
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("FIREWORKS_")}
            env["FIREWORKS_BASE_URL"] = url
            timed([*BATCHOPS, "validate"], project, env)  # warms the stat cache
            timed([*BATCHOPS, "apply", "--wait", "--timeout", "120"], project, env)
            # The manifest cache keeps only files older than 2 s (a same-size edit within the
            # clock tick would look unchanged): the copies are that old once apply is done.
            time.sleep(max(0.0, 2.1 - (time.time() - (project / "jobs").stat().st_mtime)))
            timed([*BATCHOPS, "validate"], project, env)  # fills the manifest cache
            sides = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "batchops --version": [*BATCHOPS, "--version"],
                "batchops validate (warm cache)": [*BATCHOPS, "validate"],
                "batchops validate (no manifest cache)": [*BATCHOPS, "validate"],
                "batchops plan (against serve)": [*BATCHOPS, "plan"],
            }
            times: dict[str, list[float]] = {name: [] for name in sides}
            names = list(sides)
            cache = project / ".batchops" / "cache" / "manifests.json"
            loads = [os.getloadavg()]
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    if name.endswith("(no manifest cache)"):  # that run writes it again
                        cache.unlink(missing_ok=True)
                    times[name].append(timed(sides[name], project, env))
        finally:
            stop(proc)
    loads.append(os.getloadavg())
    report(times, args.rounds, loads)


def report(
    times: dict[str, list[float]], rounds: int, loads: list[tuple[float, float, float]]
) -> None:
    print(f"machine: {machine()}; median of {rounds} paired rounds")
    shown = "; ".join(" ".join(f"{x:.2f}" for x in load) for load in loads)
    print(f"  load average (1, 5, 15 min) before; after: {shown}")
    for name, values in times.items():
        print(f"  {name:38s} {statistics.median(values) * 1000:7.0f} ms")
    bare, version = times["python -c pass"], times["batchops --version"]
    ratios = [v / b for v, b in zip(version, bare, strict=True)]
    print(
        f"  --version / bare python: median {statistics.median(ratios):.2f}x "
        f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}; goal <= 3x)"
    )
    print("  goals: validate (warm cache) <= 300 ms, plan <= 400 ms")


if __name__ == "__main__":
    main()
