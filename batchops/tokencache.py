"""Input tokens of datasets, counted once per content: ``.batchops/cache/tokens.json``.

The reconciler (``batchops.reconcile.load_and_plan``) and ``validate`` call ``dataset_tokens`` after
the datasets validated. Each shard is counted with the counter of the model that reads it
(``batchops.tokens.counter_for``) and remembered under (its sha256, the counter's name): the
dataset stat cache gives the sha256 of an unchanged file without reading it, so unchanged data is
never read nor tokenized again, and a file renamed or copied is not counted twice. Rows are read
in 8 MiB blocks, decoded in one C call per block, and their texts counted in one batch call. A
big dataset is counted by helper processes on every core (``count_shared``, ``batchops.tokenscan``
taking chunks from one queue, ``batchops.chunkpool``), each file's count the same as here.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec

from batchops import chunkpool
from batchops.config import STATE_DIR, save_state_file
from batchops.tokens import (
    Counter,
    Template,
    content_text,
    counter_for,
    overhead,
    prompt_parts,
    template_for,
)

CACHE_FILE = Path(STATE_DIR, "cache", "tokens.json")
# Bumped when a file's tally changes meaning: a cache of another version is counted again.
# 2: a completion prompt that is a list counts as the local backend bills it (prompt_parts).
CACHE_VERSION = 2
BLOCK = 8 * 2**20


@dataclass(frozen=True)
class Tally:
    """A file's (or a dataset's) rows, chat messages and text tokens."""

    rows: int = 0
    messages: int = 0
    tokens: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.rows + other.rows, self.messages + other.messages, self.tokens + other.tokens
        )


@dataclass(frozen=True)
class DatasetTokens:
    """The input tokens of one dataset for one model: its texts plus the template's overhead."""

    tally: Tally
    counter: str
    exact: bool
    template: Template

    @cached_property
    def input_tokens(self) -> int:
        t = self.tally
        return t.tokens + overhead(self.template, rows=t.rows, messages=t.messages)


class ShardLike(Protocol):
    @property
    def path(self) -> Path: ...
    @property
    def sha256(self) -> str: ...


@runtime_checkable
class WithShards(Protocol):
    """What we need of ``batchops.datasets.DatasetInfo``."""

    @property
    def files(self) -> tuple[Any, ...]: ...


class JobLike(Protocol):
    @property
    def model(self) -> str: ...
    @property
    def input_dataset(self) -> str | None: ...


# -- counting one file ---------------------------------------------------------------------------


class _Message(msgspec.Struct, gc=False):
    content: Any = None


class _Body(msgspec.Struct, gc=False):
    messages: list[_Message] | None = None
    prompt: Any = None


class _Row(msgspec.Struct, gc=False):
    body: _Body


_ROWS = msgspec.json.Decoder(_Row)


def _texts(rows: list[_Row]) -> tuple[list[str], int, int]:
    """The rows' texts, their messages, and their tokens beyond both (``tokens.prompt_parts``:
    a prompt that is a list), as ``tokens.request_tokens`` counts one request."""
    texts: list[str] = []
    messages = extra = 0
    for row in rows:
        body = row.body
        if body.messages is not None:
            texts += [content_text(m.content) for m in body.messages]
            messages += len(body.messages)
        elif isinstance(body.prompt, str):
            texts.append(body.prompt)
        else:
            parts, more = prompt_parts(body.prompt)
            texts += parts
            extra += more
    return texts, messages, extra


def _blocks(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """Blocks of complete lines of ``path[start:end]`` (``start`` is a line's)."""
    tail = b""
    with path.open("rb") as f:
        f.seek(start)
        left = end - start if end is not None else None
        while block := f.read(BLOCK if left is None else min(BLOCK, left)):
            if left is not None:
                left -= len(block)
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                tail += block
                continue
            yield tail + block[:cut]
            tail = block[cut:]
    if tail.strip():
        yield tail


def count_file(
    path: Path, counter: Counter, *, batched: bool = True, start: int = 0, end: int | None = None
) -> Tally:
    """One validated JSONL file's tally (of its bytes ``[start:end]``, whole lines).
    ``batched=False`` calls the tokenizer row by row (the bench compares the two)."""
    total = Tally()
    for block in _blocks(path, start, end):
        rows = _ROWS.decode_lines(block)
        texts, messages, extra = _texts(rows)
        if batched:
            tokens = sum(counter.count_batch(texts)) if texts else 0
        else:
            tokens = sum(counter.count(t) for t in texts)
        total += Tally(len(rows), messages, tokens + extra)
    return total


def count_shared(paths: list[Path], counter: Counter) -> dict[Path, Tally] | None:
    """Big files counted by helper processes on every core (``batchops.tokenscan``, taking
    chunks from one queue: ``batchops.chunkpool``); None when they are not worth it here, or
    failed: the caller counts in this process."""
    try:
        files = [(path, path.stat().st_size) for path in paths]
    except OSError:
        return None
    helpers = chunkpool.helpers_for([size for _, size in files])
    if not helpers:
        return None
    chunks = chunkpool.chunks_of(files)
    head = [counter.name, str(counter.tokenizer or "-")]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs = chunkpool.start("batchops.tokenscan", head, chunks, helpers)
        found = [chunkpool.facts(proc) for proc in procs]
        clean = all(proc.wait() == 0 for proc in procs)
    except OSError:
        return None
    finally:
        for proc in procs:
            chunkpool.stop(proc)
    if not clean or any(f is None for f in found):
        return None
    by_file = chunkpool.gather(chunks, [f["taken"] for f in found if f is not None])
    if by_file is None:
        return None
    tallies: dict[Path, Tally] = {}
    for path, answers in by_file.items():
        if not all(_is_tally(answer) for answer in answers):
            return None
        tallies[path] = sum((Tally(*answer) for answer in answers), Tally())
    return tallies


def _is_tally(answer: Any) -> bool:
    return type(answer) is list and len(answer) == 3 and all(type(v) is int for v in answer)


# -- the cache ---------------------------------------------------------------------------------


class TokenCache:
    """(shard sha256, counter) -> [rows, messages, tokens], as JSON; missing or corrupt: empty."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / CACHE_FILE
        self._entries: dict[str, list[int]] | None = None
        self._dirty = False

    @property
    def entries(self) -> dict[str, list[int]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, list[int]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        counts = data.get("counts")
        return counts if isinstance(counts, dict) else {}

    def get(self, sha256: str, counter: str) -> Tally | None:
        entry = self.entries.get(f"{sha256}:{counter}")
        if isinstance(entry, list) and len(entry) == 3 and all(isinstance(v, int) for v in entry):
            return Tally(*entry)
        return None

    def put(self, sha256: str, counter: str, tally: Tally) -> None:
        self.entries[f"{sha256}:{counter}"] = [tally.rows, tally.messages, tally.tokens]
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        body = json.dumps({"version": CACHE_VERSION, "counts": self.entries}, sort_keys=True)
        save_state_file(self.path, body, root=self.root, prefix=".tokens-")
        self._dirty = False


# -- entry point -------------------------------------------------------------------------------


def count_dataset(
    info: object, counter: Counter, template: Template, cache: TokenCache | None
) -> DatasetTokens | None:
    """A validated dataset's tokens for one counter; None when its files are not known here."""
    # getattr, not isinstance(info, WithShards): a runtime Protocol check walks the protocol's
    # members on every call, most of this function's time in a 1,000-job plan
    files: tuple[ShardLike, ...] | None = getattr(info, "files", None)
    if not files:
        return None
    known = {s.path: cache.get(s.sha256, counter.name) for s in files} if cache is not None else {}
    missing = [s.path for s in files if known.get(s.path) is None]
    counted = (count_shared(missing, counter) if missing else None) or {}
    total = Tally()
    for shard in files:
        hit = known.get(shard.path)
        if hit is None:
            hit = counted.get(shard.path) or count_file(shard.path, counter)
            if cache is not None:
                cache.put(shard.sha256, counter.name, hit)
        total += hit
    return DatasetTokens(total, counter.name, counter.exact, template)


def dataset_tokens(
    jobs: Iterable[JobLike],
    infos: Mapping[str, object],
    *,
    root: Path,
    tokenizers: Mapping[str, Path] | None = None,
    cache: TokenCache | None = None,
) -> dict[tuple[str, str], DatasetTokens]:
    """(dataset name, model) -> its input tokens, for each declared job reading a declared
    dataset. ``tokenizers``: model -> a ``tokenizer.json`` (the project file's). Counts what the
    cache does not know and saves the cache (a ``cache`` given is the caller's to save)."""
    files = tokenizers or {}
    own = cache is None
    cache = TokenCache(root) if cache is None else cache
    out: dict[tuple[str, str], DatasetTokens] = {}
    for job in jobs:
        name = job.input_dataset
        if name is None or name not in infos or (name, job.model) in out:
            continue
        counter = counter_for(job.model, files.get(job.model))
        counted = count_dataset(infos[name], counter, template_for(job.model), cache)
        if counted is not None:
            out[(name, job.model)] = counted
    if own:
        cache.save()
    return out


@dataclass(frozen=True)
class _Files:
    files: tuple[ShardLike, ...]


def file_tokens(
    wanted: Iterable[tuple[str, str, ShardLike]],
    *,
    tokenizers: Mapping[str, Path] | None = None,
    cache: TokenCache,
) -> dict[str, DatasetTokens]:
    """key -> the input tokens of one file (its path and sha256) for one model, for each (key,
    model, file) of ``wanted``: the rows a job sends when they are a file of their own (a
    derived dataset). Counted into ``cache`` by content like datasets (the caller saves it)."""
    files = tokenizers or {}
    out: dict[str, DatasetTokens] = {}
    for key, model, shard in wanted:
        counter = counter_for(model, files.get(model))
        counted = count_dataset(_Files((shard,)), counter, template_for(model), cache)
        if counted is not None:
            out[key] = counted
    return out
