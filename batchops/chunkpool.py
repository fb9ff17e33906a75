"""Big files shared out among helper processes that take them a chunk at a time from one queue.

Used by ``batchops.scanpool`` (validating a big dataset: ``batchops.rowscan``) and
``batchops.tokencache`` (counting its tokens: ``batchops.tokenscan``). Decoding rows and
tokenizing hold the GIL, so only processes can share that work out. The files are cut into
chunks of about ``CHUNK`` bytes at line starts (small files taken together), and the chunks'
numbers are put in a pipe that every helper reads as its stdin: a helper takes the next number
when it is done with a chunk, so a helper the scheduler slows simply takes fewer, and all of them
end together. A helper is ``python -P -m MODULE HEAD... CHUNK PATH START END [CHUNK PATH START
END ...]``; it answers, first on its stdout, one JSON line ``{"taken": {chunk: [one answer per
range]}, ...}``. ``gather`` accepts the helpers' answers only when every chunk was answered
exactly once, one answer per range: anything else is the caller's cue to do the work itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

PART_MIN = 32 * 2**20  # bytes a helper is worth starting for (one costs ~0.1 s to start)
MAX_HELPERS = 4
CHUNK = 16 * 2**20  # bytes a helper takes from the queue at a time (~0.07 s of validation)
MAX_CHUNKS = 4000  # their numbers fill half of a pipe's 64 KiB: written before any helper reads
RECORD = 8  # a chunk's number in the queue: seven digits and a newline
MAX_FACTS = 2**20  # the longest first line of a helper's answer read
_NEWLINE_SEARCH = 2**16  # read at a time while looking for the line start after a cut
_MAX_SEARCH = 16 * 2**20  # no newline this far after a cut: do not cut there

Range = tuple[Path, int, int]  # a file, and the bytes [start, end) of it
Chunk = list[Range]  # ranges taken together: a piece of a big file, or several small files
Taken = dict[int, list[Any]]  # a helper's answers: chunk -> one answer per range
T = TypeVar("T")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def helpers_for(sizes: Sequence[int]) -> int:
    """How many helpers files of ``sizes`` bytes are worth; below 2, none."""
    if not sizes or min(sizes) == 0 or not sys.executable:  # an empty file: said precisely
        return 0
    count = min(_cpus(), MAX_HELPERS, sum(sizes) // max(PART_MIN, 1))
    return count if count >= 2 else 0


def chunks_of(files: Sequence[tuple[Path, int]]) -> list[Chunk]:
    """``files`` (path, size) in chunks of ``CHUNK`` bytes, or more: at most MAX_CHUNKS + 1."""
    total = sum(size for _, size in files)
    return split(files, max(CHUNK, -(-total // MAX_CHUNKS)))


def split(files: Sequence[tuple[Path, int]], size: int) -> list[Chunk]:
    """The files' bytes in chunks of about ``size`` bytes, cut at line starts; small files
    are taken together, so every chunk but the last holds at least ``size`` bytes."""
    chunks: list[Chunk] = [[]]
    held = 0  # bytes in the last chunk
    for path, length in files:
        start = 0
        while start < length:
            want = start + size - held
            cut = _line_start(path, want, length) if want < length else None
            end = length if cut is None else cut
            chunks[-1].append((path, start, end))
            held += end - start
            if held >= size:
                chunks.append([])
                held = 0
            start = end
    return [chunk for chunk in chunks if chunk]


def _line_start(path: Path, offset: int, size: int) -> int | None:
    """The start of the first line after ``offset``, or None when none begins near it."""
    with path.open("rb") as f:
        f.seek(offset)
        for start in range(offset, min(size, offset + _MAX_SEARCH), _NEWLINE_SEARCH):
            found = f.read(_NEWLINE_SEARCH).find(b"\n")
            if found >= 0:
                cut = start + found + 1
                return cut if cut < size else None
    return None


def start(
    module: str,
    head: Sequence[str],
    chunks: list[Chunk],
    helpers: int,
    env: Mapping[str, str] | None = None,
) -> list[subprocess.Popen[bytes]]:
    """``helpers`` processes of ``module`` sharing ``chunks`` through one queue. Raises
    OSError when one cannot start (those started are stopped)."""
    args = [sys.executable, "-P", "-m", module, *head]
    for index, chunk in enumerate(chunks):
        for path, begin, end in chunk:
            args += [str(index), str(path), str(begin), str(end)]
    environ = {**os.environ, **(env or {})}
    devnull, procs = subprocess.DEVNULL, []
    queue = _queue(len(chunks))
    try:
        for _ in range(helpers):
            procs.append(
                subprocess.Popen(
                    args, stdin=queue, stdout=subprocess.PIPE, stderr=devnull, env=environ
                )
            )
    except OSError:
        for proc in procs:
            stop(proc)
        raise
    finally:
        os.close(queue)
    return procs


def _queue(count: int) -> int:
    """A pipe holding the numbers 0..count-1, its writing end closed: the read end's fd.
    All of them are written before any helper reads, so a helper's read of ``RECORD`` bytes
    takes exactly one whole number (``taken_chunks`` refuses anything else). Raises OSError
    when the pipe cannot hold them all (a system short of pipe memory gives 4 KiB pipes):
    never blocks waiting for a reader that does not exist yet."""
    if count > MAX_CHUNKS + 1:
        raise ValueError(f"{count} chunks: at most {MAX_CHUNKS + 1} fit the queue")
    numbers = b"".join(b"%07d\n" % index for index in range(count))
    read, write = os.pipe()
    try:
        os.set_blocking(write, False)
        if os.write(write, numbers) != len(numbers):
            raise OSError(f"the queue's pipe holds fewer than {count} chunk numbers")
    except OSError:
        os.close(read)
        raise
    finally:
        os.close(write)
    return read


def facts(proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    """The first line of a helper's answer, with its chunks' answers as ``taken`` (by number),
    or None when it is not such a line."""
    assert proc.stdout is not None
    try:
        found = json.loads(proc.stdout.readline(MAX_FACTS))
        found["taken"] = {int(k): v for k, v in found["taken"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return found if isinstance(found, dict) else None


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:  # interrupted: its answer is no longer wanted
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def gather(chunks: list[Chunk], taken: Sequence[Taken]) -> dict[Path, list[Any]] | None:
    """Every range's answer, by file in order, when the helpers answered every chunk exactly
    once with one answer per range; None otherwise."""
    done: Taken = {}
    for helper in taken:
        if not done.keys().isdisjoint(helper):
            return None
        done |= helper
    if done.keys() != set(range(len(chunks))):
        return None  # a chunk lost
    by_file: dict[Path, list[Any]] = {}
    for index, chunk in enumerate(chunks):
        answers: Any = done[index]  # as the helper sent it: checked here
        if not isinstance(answers, list) or len(answers) != len(chunk):
            return None
        for (path, _, _), answer in zip(chunk, answers, strict=True):
            by_file.setdefault(path, []).append(answer)
    return by_file


# -- in a helper -----------------------------------------------------------------------------


def take_chunks(argv: Sequence[str], work: Callable[[Path, int, int], T]) -> dict[int, list[T]]:
    """A helper's share: ``work`` on each range of each chunk it takes from the queue, by chunk
    (``argv``: its arguments after its head). Raises ValueError or IndexError on arguments or
    queue records that are not the caller's, and whatever ``work`` raises."""
    chunks = chunks_given(argv)
    return {index: [work(*piece) for piece in chunks[index]] for index in taken_chunks(len(chunks))}


def chunks_given(argv: Sequence[str]) -> dict[int, Chunk]:
    """The chunks of a helper's arguments after its head: ``CHUNK PATH START END`` each."""
    chunks: dict[int, Chunk] = {}
    for i in range(0, len(argv), 4):
        path, begin, end = Path(argv[i + 1]), int(argv[i + 2]), int(argv[i + 3])
        chunks.setdefault(int(argv[i]), []).append((path, begin, end))
    return chunks


def taken_chunks(count: int) -> Iterator[int]:
    """The numbers of the chunks this helper takes, one at a time, from the queue on its stdin
    (the other helpers read the same pipe). Raises ValueError on anything but a whole record
    holding a chunk's number."""
    while record := os.read(0, RECORD):
        index = int(record) if len(record) == RECORD and record[-1:] == b"\n" else -1
        if not 0 <= index < count:
            raise ValueError(f"not a chunk's number: {record!r}")
        yield index
