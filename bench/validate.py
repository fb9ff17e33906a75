"""Benchmark: dataset validation throughput against a json.loads baseline, and the cache hit.

Run: .venv/bin/python bench/validate.py [--mb 200] [--repeat 3]
Generates a ~200 MB JSONL chat dataset in a temp dir (realistic rows of a few hundred bytes to a
few KB), then measures, in one run: inspect_dataset cold (no cache) in MB/s; a baseline that reads
the same file and parses each line with the standard library's json.loads and does nothing else;
their ratio; and the time to re-validate the unchanged file through the stat cache.
On a shared machine one timing is noise: the two sides alternate ``--repeat`` times and the best
time of each is kept (as timeit does), so both see the same load.
Goals: >= 150 MB/s, >= 2.5x the baseline, cache hit < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batchops.datasets import StatCache, inspect_dataset

WORDS = (  # noqa: SIM905 (a sentence reads better than a list)
    "the capital of a country is city where government sits question answer model evaluate "
    "translate summarize explain reason step carefully résumé naïve Zürich 東京 данные data "
    "batch inference prompt token output json schema customer support ticket refund order"
).split(" ")


@dataclass(frozen=True)
class Decl:
    name: str
    path: str
    files: tuple[Path, ...]
    format: str | None = None


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _body(rng: random.Random) -> str:
    """A chat body as JSON text: a system prompt, 0-2 few-shot turns, a question."""
    messages = [{"role": "system", "content": _text(rng, 5, 30)}]
    for _ in range(rng.choice((0, 0, 1, 2))):
        messages.append({"role": "user", "content": _text(rng, 10, 80)})
        messages.append({"role": "assistant", "content": _text(rng, 10, 120)})
    messages.append({"role": "user", "content": _text(rng, 10, 200)})
    body: dict[str, object] = {"messages": messages, "max_tokens": rng.choice((64, 256, 1024))}
    if rng.random() < 0.3:
        body["temperature"] = round(rng.random(), 2)
    return json.dumps(body, ensure_ascii=False)


def generate(path: Path, target: int) -> int:
    """A pool of distinct bodies reused with unique custom_ids: fast to write, realistic to read."""
    rng = random.Random(7)
    pool = [_body(rng) for _ in range(3000)]
    rows = size = 0
    with path.open("w", encoding="utf-8") as f:
        while size < target:
            line = f'{{"custom_id": "row-{rows:08d}", "body": {pool[rows % len(pool)]}}}\n'
            f.write(line)
            size += len(line.encode())
            rows += 1
    return rows


def baseline(path: Path) -> None:
    with path.open("rb") as f:
        for line in f:
            json.loads(line)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU of all our threads and of the helper processes we ran) seconds for one call.
    CPU per MB hardly moves with the machine's load, so it tells a real change from noise."""
    wall, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - wall, _cpu() - cpu


def _cpu() -> float:
    t = os.times()  # children's times count once they have been waited for, as ours are
    return t.user + t.system + t.children_user + t.children_system


def inspect(decl: Decl, root: Path, cache: StatCache | None) -> Callable[[], object]:
    return lambda: inspect_dataset(decl, root=root, cache=cache, max_bytes=2**31)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="dataset size in MB (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per side (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "bench.jsonl"
        rows = generate(path, args.mb * 10**6)
        mb = path.stat().st_size / 1e6
        decl = Decl("bench", path.name, (path,))
        path.read_bytes()  # warm the page cache so both sides read from memory
        ours, base = [], []
        for _ in range(args.repeat):  # alternate, so a burst of load hits both sides alike
            ours.append(timed(inspect(decl, root, None)))
            base.append(timed(lambda: baseline(path)))
        timed(inspect(decl, root, StatCache.for_root(root)))  # fills the cache
        hit, _ = timed(inspect(decl, root, StatCache.for_root(root)))
    report(mb, rows, args.repeat, ours, base, hit)


def best(timings: list[tuple[float, float]]) -> tuple[float, float]:
    """The least wall and the least CPU time, each over all the timings."""
    return min(wall for wall, _ in timings), min(cpu for _, cpu in timings)


def report(mb: float, rows: int, repeat: int, ours: list[tuple[float, float]],
           base: list[tuple[float, float]], hit: float) -> None:  # fmt: skip
    (wall, cpu), (base_wall, base_cpu) = best(ours), best(base)
    print(f"dataset:            {mb:.0f} MB, {rows} rows; best of {repeat} timings per side")
    print(f"inspect_dataset:    {mb / wall:7.1f} MB/s  ({wall:.2f} s, cold, no cache)")
    print(f"json.loads / line:  {mb / base_wall:7.1f} MB/s  ({base_wall:.2f} s, baseline)")
    print(f"ratio:              {base_wall / wall:7.2f}x")
    print(f"CPU per MB:         {cpu / mb * 1000:7.2f} ms ours (all threads and processes), "
          f"{base_cpu / mb * 1000:.2f} ms baseline: {base_cpu / cpu:.2f}x")  # fmt: skip
    print(f"cache hit:          {hit * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
