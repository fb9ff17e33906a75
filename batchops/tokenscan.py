"""A helper process that counts the input tokens of chunks of validated dataset files.

Run by ``batchops.tokencache.count_shared`` (never imported by batchops itself), one process per
core, all on one big dataset: ``python -P -m batchops.tokenscan COUNTER TOKENIZER CHUNK PATH
START END [CHUNK PATH START END ...]`` (COUNTER is a ``tokens.Counter``'s name, TOKENIZER the
tokenizer.json it reads or ``-``). It takes chunk numbers from its stdin, a queue it shares with
the other helpers (``batchops.chunkpool``), and prints one JSON line: ``{"taken": {chunk:
[[rows, messages, tokens] per range]}}``. Anything else - a counter not available here, a file
that cannot be read or decoded - exits with ``FAILED`` and the caller counts in its own process.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import msgspec

from batchops import chunkpool
from batchops.tokencache import count_file
from batchops.tokens import counter_named

FAILED = 3


def main(argv: list[str]) -> int:
    gc.disable()  # a short-lived process whose rows make no cycles
    counter = counter_named(argv[0], None if argv[1] == "-" else Path(argv[1]))
    if counter is None:
        return FAILED

    def tally(path: Path, start: int, end: int) -> list[int]:
        counted = count_file(path, counter, start=start, end=end)
        return [counted.rows, counted.messages, counted.tokens]

    try:
        taken = chunkpool.take_chunks(argv[2:], tally)
    except (OSError, ValueError, IndexError, msgspec.DecodeError):
        return FAILED
    sys.stdout.write(json.dumps({"taken": taken}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
