"""Run the batchops CLI with tracemalloc on, dumping a snapshot of the Python heap every
``BENCH_SNAPSHOT_EVERY`` seconds (default 30) into a folder: ``bench/soak.py --tracemalloc``
runs the daemon this way and diffs the snapshots, to tell a leak (traced memory grows) from the
allocator's noise (RSS moves, traced memory does not).

    python bench/traced.py FOLDER watch [ARGS...]
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

FRAMES = int(os.environ.get("BENCH_TRACE_FRAMES", "4"))  # frames kept per allocation


def snapshots(folder: Path, every: float) -> None:
    for index in range(10**6):
        time.sleep(every)
        tracemalloc.take_snapshot().dump(str(folder / f"{index:04d}.snap"))


def main() -> None:
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    every = float(os.environ.get("BENCH_SNAPSHOT_EVERY", "30"))
    tracemalloc.start(FRAMES)
    threading.Thread(target=snapshots, args=(folder, every), daemon=True).start()
    sys.argv = ["batchops", *sys.argv[2:]]
    from batchops.__main__ import start

    start()


if __name__ == "__main__":
    main()
