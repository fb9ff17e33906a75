"""Benchmark: dataset validation of 1 GB of ~400 B chat rows against the strongest simple baselines.

Run: ``.venv/bin/python bench/validate.py [--mb 1000] [--rounds 5]``. It writes one JSONL file of
``--mb`` MB (2.45M rows at 1 GB, ~400 B each: a system prompt, sometimes a few-shot turn, a
question) and a manifest declaring it, then in each of ``--rounds`` paired rounds runs, each in a
fresh process so that its peak RSS is its own:

- ``batchops validate`` (the CLI a user runs: start-up, manifest load, dataset validation and
  hashing; the stat cache emptied first, so the file is really read) - the end-to-end figure;
- ``inspect_dataset`` alone, in a process that does nothing else - the narrower figure;
- baselines that read the file and parse each line, and do nothing else: the standard library's
  ``json.loads`` per line of the file opened as UTF-8 text (its fastest simple form: reading
  bytes and handing each line to ``json.loads`` is ~17% slower, as the decoding then happens a
  line at a time), and ``orjson.loads`` per line of bytes (the fastest simple alternative).

The order of the sides rotates from round to round. Ratios are computed per round (baseline time /
our time) and the median of those is reported, beside the median MB/s and peak RSS of each side.
Then the re-validation of the unchanged file through the stat cache is timed.
Goals (issue 17): >= 150 MB/s, peak RSS < 150 MB, >= 2.5x the stdlib baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import TreePeak, load, machine, rotated

WORDS = (  # noqa: SIM905 (a sentence reads better than a list)
    "the capital of a country is city where government sits question answer model evaluate "
    "translate summarize explain reason step carefully résumé naïve Zürich 東京 данные data "
    "batch inference prompt token output json schema customer support ticket refund order"
).split(" ")
SIDES = ("cli", "inspect", "stdlib", "orjson")


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _body(rng: random.Random) -> str:
    """A chat body of about 370 B as JSON: a system prompt, a rare few-shot turn, a question."""
    messages = [{"role": "system", "content": _text(rng, 4, 12)}]
    if rng.random() < 0.15:
        messages.append({"role": "user", "content": _text(rng, 4, 12)})
        messages.append({"role": "assistant", "content": _text(rng, 2, 8)})
    messages.append({"role": "user", "content": _text(rng, 12, 44)})
    body: dict[str, object] = {"messages": messages, "max_tokens": rng.choice((64, 256, 1024))}
    if rng.random() < 0.3:
        body["temperature"] = round(rng.random(), 2)
    return json.dumps(body, ensure_ascii=False)


def generate(path: Path, target: int) -> int:
    """A pool of distinct bodies reused with unique custom_ids: fast to write, realistic to read."""
    rng = random.Random(7)
    pool = [_body(rng) for _ in range(5000)]
    rows = size = 0
    with path.open("w", encoding="utf-8") as f:
        while size < target:
            line = f'{{"custom_id": "req-{rows:09d}", "body": {pool[rows % len(pool)]}}}\n'
            f.write(line)
            size += len(line.encode())
            rows += 1
    return rows


# -- the sides, each run as `python bench/validate.py --side NAME ROOT` ------------------------


def side(name: str, root: Path) -> None:
    """Run one side once in this (fresh) process and print its figures as JSON."""
    path = root / "jobs" / "data" / "big.jsonl"
    start = time.perf_counter()
    if name == "inspect":
        from batchops.datasets import inspect_dataset

        inspect_dataset(_Decl(path), root=root, max_bytes=2**40)
    elif name == "stdlib":
        with path.open(encoding="utf-8") as f:
            for line in f:
                json.loads(line)
    elif name == "orjson":
        loads = __import__("orjson").loads
        with path.open("rb") as f:
            for line in f:
                loads(line)
    print(json.dumps({"wall": time.perf_counter() - start}))


@dataclass(frozen=True)
class _Decl:
    path_: Path

    @property
    def name(self) -> str:
        return "big"

    @property
    def path(self) -> str:
        return "jobs/data/big.jsonl"

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path_,)

    @property
    def format(self) -> str | None:
        return None


def run_side(name: str, root: Path) -> tuple[float, int, float]:
    """(seconds, peak RSS bytes, CPU seconds) of one side, in a fresh process. The CLI's time is
    the whole process as measured from here; the others time their own work. The RSS is the
    larger of the child's peak as the kernel reports it to wait4 (the largest single process of
    its tree) and the peak of its tree's summed RSS sampled every 20 ms (its helper processes
    run together). The CPU time is user + system, its helpers' included: on a loaded machine
    CPU per MB moves much less than wall time: the work done, whatever the scheduler gives."""
    if name == "cli":
        shutil.rmtree(root / ".batchops", ignore_errors=True)  # cold: no stat cache
        argv = [sys.executable, "-m", "batchops", "validate", "--max-dataset-bytes", "2G"]
    else:
        argv = [sys.executable, __file__, "--side", name, str(root)]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, text=True)
    tree = TreePeak(proc.pid)
    assert proc.stdout is not None
    out = proc.stdout.read()
    peak = tree.stop()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {out}")
    if name != "cli":
        wall = json.loads(out)["wall"]
    return wall, max(usage.ru_maxrss * 1024, peak), usage.ru_utime + usage.ru_stime


def cache_hit(root: Path) -> float:
    from batchops.datasets import StatCache, inspect_dataset

    decl = _Decl(root / "jobs" / "data" / "big.jsonl")
    inspect_dataset(decl, root=root, cache=StatCache.for_root(root), max_bytes=2**40)  # fills it
    start = time.perf_counter()
    inspect_dataset(decl, root=root, cache=StatCache.for_root(root), max_bytes=2**40)
    return time.perf_counter() - start


def warm(path: Path) -> None:
    """Read the file once so that every side reads it from the page cache. In pieces: a child
    process inherits its parent's peak RSS through exec on Linux, which would hide its own."""
    with path.open("rb") as f:
        while f.read(2**20):
            pass


MANIFEST = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: big}
spec: {path: data/big.jsonl}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1000, help="dataset size in MB (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (default 5)")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("root", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.root)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "jobs" / "data").mkdir(parents=True)
        (root / "jobs" / "big.yaml").write_text(MANIFEST)
        path = root / "jobs" / "data" / "big.jsonl"
        rows = generate(path, args.mb * 10**6)
        size = path.stat().st_size
        warm(path)
        results: dict[str, list[tuple[float, int, float]]] = {s: [] for s in SIDES}
        for r in range(args.rounds):
            for name in rotated(SIDES, r):
                results[name].append(run_side(name, root))
            rates = (f"{n} {size / 1e6 / results[n][-1][0]:.0f} MB/s" for n in SIDES)
            print(f"round {r + 1}: " + ", ".join(rates) + f"; {load()}", flush=True)
        hit = cache_hit(root)
    report(size, rows, args.rounds, results, hit)


def report(
    size: int,
    rows: int,
    rounds: int,
    results: dict[str, list[tuple[float, int, float]]],
    hit: float,
) -> None:
    mb = size / 1e6
    print(
        f"\ndataset: {mb:.0f} MB, {rows:,} rows ({size / rows:.0f} B a row); "
        f"median of {rounds} paired rounds; machine: {machine()}; {load()}"
    )
    labels = {
        "cli": "batchops validate (CLI, end to end)",
        "inspect": "inspect_dataset",
        "stdlib": "json.loads per line (text)",
        "orjson": "orjson.loads per line",
    }
    for name in SIDES:
        walls = [w for w, _, _ in results[name]]
        most = max(r for _, r, _ in results[name]) / 2**20
        peak = f"peak RSS {most:.0f} MiB (tree, max of rounds)"
        cpu = statistics.median(c for _, _, c in results[name]) / mb * 1000
        print(
            f"  {labels[name]:38s} {mb / statistics.median(walls):7.1f} MB/s  {peak}  "
            f"CPU {cpu:.2f} ms/MB"
        )
    for ours in ("cli", "inspect"):
        for base in ("stdlib", "orjson"):
            ratios = [b[0] / o[0] for o, b in zip(results[ours], results[base], strict=True)]
            cpus = [b[2] / o[2] for o, b in zip(results[ours], results[base], strict=True)]
            print(
                f"  ratio {base:6s} / {ours:7s}  median {statistics.median(ratios):.2f}x "
                f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}); "
                f"CPU {statistics.median(cpus):.2f}x"
            )
    print(f"  re-validating the unchanged file (stat cache): {hit * 1000:.1f} ms")


if __name__ == "__main__":
    main()
