"""Local JSONL datasets: stream-validate, hash, and skip unchanged files through a stat cache.

Called by ``batchops.cli.validate`` and the reconciler (``inspect_all``), and by ``apply`` to check
merged results (``iter_custom_ids``). One read per file does everything: 8 MiB blocks are hashed
(sha256, in a helper thread: hashlib releases the GIL on big buffers) while the complete lines of
the block are decoded in one C call by the typed msgspec decoder of the dataset's format and the
block's UTF-8 is checked. From 32 MiB up, a helper process (``batchops/utf8check.py``) hashes the
file and checks its UTF-8 instead, beside our read, so both cores work. Only a block that fails
the fast checks is re-read line by line with the standard library, to say precisely what is wrong
and where.

Dataset digest: a single-file dataset's ``sha256`` is the file's sha256; a folder of shards has the
sha256 of the text ``"<basename>\\t<shard sha256>\\n"`` for each shard, sorted by basename.

This module sits beside ``batchops.manifest`` in the layering (neither imports the other), so it
takes the manifest's declarations structurally (``DatasetLike`` / ``DesiredLike``).
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import operator
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import msgspec

from batchops import scanpool
from batchops.config import STATE_DIR, ensure_state_dir_above
from batchops.errors import Diagnostic, InvalidInputError
from batchops.gcpause import gc_paused
from batchops.idset import CompactIds, ExactIds, SeenIds
from batchops.jsonvalues import INT32_MAX, MAX_DEPTH, content_problem, params_problem, value_problem
from batchops.private import private_dir, write_atomic_text

DEFAULT_MAX_BYTES = 500 * 2**20
# Big blocks let the sha256 thread overlap our decoding: each of its trips through the GIL may wait
# a switch interval (5 ms) while we decode; at 1 MiB that serialised the two (bench/validate.py).
BLOCK = 8 * 2**20
UTF8_PIECE = 64 * 2**10  # see _utf8
# From this size a helper process hashes a file and checks its UTF-8 beside our read (_scan_file).
HELPER_MIN = 32 * 2**20
HELPER = Path(__file__).with_name("utf8check.py")
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_SHOWN = 20  # problems shown per file; the rest are counted in one more diagnostic
ROLES = ("system", "user", "assistant", "tool")
MAX_ROW_BYTES = 16 * 2**20  # one request; a longer line is refused without being held whole
# A run of MAX_DEPTH '[' sends its block to the precise path, which measures the depth: msgspec
# skips unknown fields without a depth limit (json.loads and the server's parser recurse).
_DEEP = b"[" * MAX_DEPTH
# Content that is not a string or a list of objects (null is only an assistant's): the precise
# path decides. A regex with a literal prefix scans ~2 GB/s; decoding every string costs 3x.
_ODD_CONTENT = re.compile(rb'"content"\s*:\s*(?:[^\s"\[]|\[\s*[^\s{\]])')
# Any content that is not a string: only a block that has some pays for the two checks above
# (the _ODD_CONTENT scan, then content parts decoded: _PARTS).
_LIST_CONTENT = re.compile(rb'"content"\s*:\s*[^\s"]')
CACHE_FILE = Path(STATE_DIR, "cache", "datasets.json")


# -- what we are given ------------------------------------------------------------------------


class DatasetLike(Protocol):
    """What we need of ``batchops.manifest.desired.DatasetDecl``."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def files(self) -> tuple[Path, ...]: ...
    @property
    def format(self) -> str | None: ...


class DesiredLike(Protocol):
    """What we need of ``batchops.manifest.desired.Desired``."""

    @property
    def datasets(self) -> Sequence[DatasetLike]: ...


# -- what we return ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardInfo:
    path: Path  # absolute
    size: int
    sha256: str
    rows: int


@dataclass(frozen=True)
class DatasetInfo:
    sha256: str  # see the module docstring for folders of shards
    rows: int
    size: int
    files: tuple[ShardInfo, ...]
    format: str  # CHAT | COMPLETION


# -- the fast decoders: only the shape we check, strings we do not need are left undecoded ------
# One typed decoder per format, so the shape check (messages xor prompt, no model) happens in C.
# gc=False: these objects never form cycles, and untracked ones cost the collector nothing.


class _Message(msgspec.Struct, gc=False):
    role: Literal["system", "user", "assistant", "tool"]
    content: msgspec.Raw  # its type is checked by _ODD_CONTENT: decoding the strings costs 3x


# null is "the default", as the chat-completions API has it.
_Tokens = Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)] | msgspec.UnsetType | None
_Count = Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)] | msgspec.UnsetType | None
_Choices = Annotated[int, msgspec.Meta(ge=1, le=128)] | msgspec.UnsetType | None
_Seed = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | msgspec.UnsetType | None
_Number = float | msgspec.UnsetType | None


class _Params(msgspec.Struct, gc=False, kw_only=True):
    """Request parameters a row may set, checked in C: integers in their range
    (jsonvalues.INT_PARAMS), and numbers that do not overflow to infinity (1e999)."""

    temperature: _Number = msgspec.UNSET
    top_p: _Number = msgspec.UNSET
    min_p: _Number = msgspec.UNSET
    frequency_penalty: _Number = msgspec.UNSET
    presence_penalty: _Number = msgspec.UNSET
    repetition_penalty: _Number = msgspec.UNSET
    max_tokens: _Tokens = msgspec.UNSET
    max_completion_tokens: _Tokens = msgspec.UNSET
    top_k: _Count = msgspec.UNSET
    n: _Choices = msgspec.UNSET
    top_logprobs: _Count = msgspec.UNSET
    seed: _Seed = msgspec.UNSET


class _ChatBody(_Params, gc=False):
    messages: Annotated[list[_Message], msgspec.Meta(min_length=1)]
    prompt: msgspec.UnsetType = msgspec.UNSET  # present at all -> a decode error -> slow path
    model: msgspec.UnsetType = msgspec.UNSET


class _CompletionBody(_Params, gc=False):
    prompt: msgspec.Raw
    messages: msgspec.UnsetType = msgspec.UNSET
    model: msgspec.UnsetType = msgspec.UNSET


class _ChatRow(msgspec.Struct, gc=False):
    custom_id: Annotated[str, msgspec.Meta(min_length=1)]
    body: _ChatBody


class _CompletionRow(msgspec.Struct, gc=False):
    custom_id: Annotated[str, msgspec.Meta(min_length=1)]
    body: _CompletionBody


class _Part(msgspec.Struct, gc=False):
    type: str  # content parts are objects with a string "type" (jsonvalues.content_problem)


class _PartsMessage(msgspec.Struct, gc=False):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[_Part]


class _PartsChatBody(_Params, gc=False):
    messages: Annotated[list[_PartsMessage], msgspec.Meta(min_length=1)]
    prompt: msgspec.UnsetType = msgspec.UNSET
    model: msgspec.UnsetType = msgspec.UNSET


class _PartsChatRow(msgspec.Struct, gc=False):
    custom_id: Annotated[str, msgspec.Meta(min_length=1)]
    body: _PartsChatBody


class _IdOnly(msgspec.Struct, gc=False):
    custom_id: str


_FAST: dict[str, msgspec.json.Decoder[Any]] = {
    "CHAT": msgspec.json.Decoder(_ChatRow),
    "COMPLETION": msgspec.json.Decoder(_CompletionRow),
}
# Chat rows whose content may be a list of parts: each part is checked, at the cost of decoding
# the content strings (blocks with list content only).
_PARTS = msgspec.json.Decoder(_PartsChatRow)
_IDS = msgspec.json.Decoder(_IdOnly)


# -- per-dataset scanning state ---------------------------------------------------------------


@dataclass
class _Scan:
    """State shared by the shards of one dataset: custom_ids are unique across all of them."""

    root: Path
    format: str | None
    seen: SeenIds = field(default_factory=CompactIds)
    diags: list[Diagnostic] = field(default_factory=list)
    utf8_inline: bool = True  # False while a helper process checks the file's UTF-8 (_Helper)

    def mark(self) -> tuple[SeenIds, str | None, int]:
        return self.seen.copy(), self.format, len(self.diags)

    def rewind(self, mark: tuple[SeenIds, str | None, int]) -> None:
        self.seen, self.format = mark[0], mark[1]
        del self.diags[mark[2] :]


@dataclass
class _FileProblems:
    """Caps what one file reports: the first MAX_SHOWN problems, then one line with the count."""

    shown: str
    diags: list[Diagnostic] = field(default_factory=list)
    extra: int = 0
    extra_line: int = 0

    def add(self, line: int, col: int, message: str) -> None:
        if len(self.diags) < MAX_SHOWN:
            self.diags.append(Diagnostic(self.shown, line, col, message))
        else:
            self.extra += 1
            self.extra_line = self.extra_line or line

    def all(self) -> list[Diagnostic]:
        if not self.extra:
            return self.diags
        more = f"... and {self.extra} more problem{'s' if self.extra > 1 else ''} in this file"
        return [*self.diags, Diagnostic(self.shown, self.extra_line, 1, more)]


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _fmt(messages_missing: bool) -> str:
    return "COMPLETION" if messages_missing else "CHAT"


def _utf8(data: memoryview) -> bool:
    """Is ``data`` UTF-8? Checked in 64 KiB pieces: the str built on the way (and thrown away) is
    up to four times the piece's size, and once that is too big for malloc to reuse its heap
    (1 MiB pieces), fresh pages for every piece halve the speed. Measured, nothing cheaper
    and exact: a translate-based check, decoding the block to str once and handing msgspec the
    str, or decoding every content string as str instead of Raw were all slower."""
    start, end = 0, len(data)
    try:
        while start < end:  # a character cut at the end of a piece is finished by the next one
            last = start + UTF8_PIECE >= end  # ... except at the very end: then it is an error
            _, used = codecs.utf_8_decode(data[start : start + UTF8_PIECE], "strict", last)
            start += used
    except UnicodeDecodeError:
        return False
    return True


def _fast_block(block: bytes, start: int, end: int, lines: int, scan: _Scan) -> bool:
    """Validate the complete lines ``block[start:end]`` at C speed; False means "look closer".
    Commits the format and custom_ids to ``scan`` only when the whole block is good."""
    if block.find(_DEEP, start, end) >= 0:
        return False
    parts = _LIST_CONTENT.search(block, start, end) is not None
    if parts and _ODD_CONTENT.search(block, start, end):
        return False
    view = memoryview(block)[start:end]
    decoded = _fast_rows(view, scan.format, parts=parts)
    # decode_lines skips blank lines and accepts two objects on one line: compare with the count.
    # The decoder checks the UTF-8 of the strings it decodes, not of those it skips: check all.
    if decoded is None or len(decoded[1]) != lines:
        return False
    if scan.utf8_inline and not (block.isascii() or _utf8(view)):
        return False
    fmt, rows = decoded
    if not scan.seen.add_rows(map(_CUSTOM_ID, rows), len(rows)):
        return False
    scan.format = fmt
    return True


def _fast_rows(view: memoryview, fmt: str | None, *, parts: bool) -> tuple[str, list[Any]] | None:
    """(format, rows) when every line is a row of ``fmt``, or (not yet known) of one format;
    ``parts``: some content is a list, whose parts are checked too."""
    for each in (fmt,) if fmt else ("CHAT", "COMPLETION"):
        decoder = _PARTS if parts and each == "CHAT" else _FAST[each]
        try:
            return each, decoder.decode_lines(view)
        except (msgspec.DecodeError, UnicodeDecodeError):  # it checks the strings it decodes
            continue
    return None


# -- the precise path: one line at a time, saying what is wrong ---------------------------------


def _line_problem(line: bytes, scan: _Scan) -> tuple[int, str] | None:
    """(column, message) for the first problem of one line, or None."""
    if not line.strip():
        return 1, "blank line"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start + 1, "not valid UTF-8"
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        # "Unterminated string starting at" ends where the stdlib appends the position we report.
        return exc.colno, f"invalid JSON: {exc.msg.removesuffix(' starting at')}"
    except (ValueError, RecursionError) as exc:
        return 1, f"invalid JSON: {_not_json(exc)}"
    problem = _row_problem(obj) or _format_problem(obj["body"], scan)
    if problem is None:
        return _id_problem(obj["custom_id"], line, scan)
    return 1, problem


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _not_json(exc: Exception) -> str:
    return f"nested deeper than {MAX_DEPTH} levels" if isinstance(exc, RecursionError) else str(exc)


def _row_problem(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return "each line must be a JSON object"
    problem = value_problem(obj)  # depth and numbers that overflow to infinity (1e999)
    if problem is not None:
        return problem
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        missing = "custom_id" not in obj
        return "missing custom_id" if missing else "custom_id must be a non-empty string"
    body = obj.get("body")
    if not isinstance(body, dict):
        return "missing body" if "body" not in obj else "body must be a JSON object"
    return _body_problem(body)


def _body_problem(body: dict[str, Any]) -> str | None:
    if "model" in body:
        return "body must not contain 'model': the job's spec.model sets it"
    if "messages" in body and "prompt" in body:
        return "body has both messages and prompt; use one"
    problem = params_problem(body, where="body.")
    if problem is not None:
        return problem
    if "messages" in body:
        return _messages_problem(body["messages"])
    if "prompt" not in body:
        return "body needs messages (chat) or prompt (completion)"
    return None


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "body.messages must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"body.messages[{i}] must be an object"
        if message.get("role") not in ROLES:
            return f"body.messages[{i}].role must be one of {', '.join(ROLES)}"
        if "content" not in message:
            return f"body.messages[{i}] has no content"
        problem = content_problem(message["content"], message["role"])
        if problem is not None:
            return f"body.messages[{i}].{problem}"
    return None


def _format_problem(body: dict[str, Any], scan: _Scan) -> str | None:
    row_format = _fmt("messages" not in body)
    scan.format = scan.format or row_format
    if row_format == scan.format:
        return None
    return f"row is a {row_format} request but the dataset's rows are {scan.format}"


def _id_problem(custom_id: str, line: bytes, scan: _Scan) -> tuple[int, str] | None:
    try:  # the two paths must agree: anything the fast one refuses is reported
        _FAST[scan.format or "CHAT"].decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return 1, f"invalid row: {exc}"
    if not scan.seen.add(custom_id):
        return 1, f"{_DUPLICATE}'{custom_id}'"  # _where_first adds where it first appeared
    return None


def _slow_block(
    block: bytes, start: int, end: int, first_line: int, scan: _Scan, problems: _FileProblems
) -> None:
    lines = block[start:end].split(b"\n")
    if block[end - 1] == 0x0A:
        lines.pop()  # the empty string after the final newline is not a line
    for number, line in enumerate(lines, start=first_line):
        problem = _line_problem(line, scan)
        if problem is not None:
            problems.add(number, *problem)


_DUPLICATE = "duplicate custom_id "
_CUSTOM_ID = operator.attrgetter("custom_id")


def _duplicate_id(diag: Diagnostic) -> str | None:
    message = diag.message
    return message[len(_DUPLICATE) + 1 : -1] if message.startswith(_DUPLICATE) else None


def _where_first(diags: list[Diagnostic], files: Sequence[Path], root: Path) -> list[Diagnostic]:
    """Each duplicate custom_id shown also says where it first appeared. Only a dataset with
    duplicates pays for it: one more read, up to the last first occurrence."""
    wanted = {cid for d in diags if (cid := _duplicate_id(d)) is not None}
    first = _first_lines(files, wanted, root) if wanted else {}
    return [
        replace(d, message=f"{d.message} (first at {first[cid]})")
        if (cid := _duplicate_id(d)) in first
        else d
        for d in diags
    ]


def _first_lines(files: Sequence[Path], wanted: set[str], root: Path) -> dict[str, str]:
    first: dict[str, str] = {}
    for path in files:
        with contextlib.suppress(OSError), path.open("rb") as f:  # gone since: say nothing more
            for number, line in enumerate(f, start=1):
                try:
                    custom_id = _IDS.decode(line).custom_id
                except (msgspec.DecodeError, UnicodeDecodeError):
                    continue
                if custom_id in wanted and custom_id not in first:
                    first[custom_id] = f"{_display(path, root)}:{number}"
                    if len(first) == len(wanted):
                        return first
    return first


# -- one file: a single read that hashes and validates ------------------------------------------


class _Lines:
    """Feeds complete lines to the validators, keeping line numbers and the partial last line."""

    def __init__(self, scan: _Scan, problems: _FileProblems) -> None:
        self.scan, self.problems = scan, problems
        self.tail: list[bytes] = []  # the partial last line in pieces, joined once it ends
        self.tail_size = 0
        self.too_long = False  # the current line is over MAX_ROW_BYTES: skipped to its end
        self.line = 1  # number of the next line
        self.rows = 0

    def feed(self, block: bytes) -> None:
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            self._grow(block)  # a line longer than a block: no quadratic concatenation
            return
        head_end = block.find(b"\n") + 1 if self.tail or self.too_long else 0
        if head_end:
            self._grow(block[:head_end])
            self._end_line()
        self._segment(block, head_end, cut)
        self.tail, self.tail_size = [], 0
        self._grow(block[cut:])

    def _grow(self, piece: bytes) -> None:
        """Add to the partial line; past MAX_ROW_BYTES it is dropped (and reported once)."""
        self.tail_size += len(piece)
        if self.too_long or not piece:
            return
        if self.tail_size > MAX_ROW_BYTES:
            self.problems.add(self.line, 1, f"line is longer than {MAX_ROW_BYTES:,} bytes")
            self.too_long, self.tail = True, []
            return
        self.tail.append(piece)

    def _end_line(self) -> None:
        """The partial line is complete: validate it, or step over it when it was too long."""
        if self.too_long:
            self.line += 1
        else:
            line = b"".join(self.tail)
            self._segment(line, 0, len(line))
        self.too_long, self.tail, self.tail_size = False, [], 0

    def finish(self) -> None:
        """The last line, when the file does not end with a newline."""
        self._end_line()

    def _segment(self, data: bytes, start: int, end: int) -> None:
        if start >= end:
            return
        lines = data.count(b"\n", start, end) + (data[end - 1] != 0x0A)
        bad = 0
        if not _fast_block(data, start, end, lines, self.scan):
            before = len(self.problems.diags) + self.problems.extra
            _slow_block(data, start, end, self.line, self.scan, self.problems)
            bad = len(self.problems.diags) + self.problems.extra - before
        self.rows += lines - bad
        self.line += lines


def _scan_file(path: Path, size: int, scan: _Scan) -> ShardInfo:
    """One file. A big one is hashed and has its UTF-8 checked by a helper process while we
    decode its rows: checking UTF-8 holds the GIL as long as decoding does, so no thread could
    overlap the two. Should the helper find a bad byte (or fail), the file is read again with
    everything done here, to say exactly where."""
    helper = _Helper.start(path) if size >= HELPER_MIN else None
    if helper is None:
        return _read_file(path, size, scan, hashing=True)
    mark = scan.mark()
    try:
        scan.utf8_inline = False
        shard = _read_file(path, size, scan, hashing=False)
        sha256 = helper.sha256()
    finally:
        scan.utf8_inline = True
        helper.stop()
    if sha256 is not None:
        return ShardInfo(path, size, sha256, shard.rows)
    scan.rewind(mark)
    return _read_file(path, size, scan, hashing=True)


def _read_file(path: Path, size: int, scan: _Scan, *, hashing: bool) -> ShardInfo:
    problems = _FileProblems(_display(path, scan.root))
    if size == 0:
        problems.add(1, 1, "file is empty")
    digest, lines = hashlib.sha256(), _Lines(scan, problems)
    with path.open("rb", buffering=0) as f, ThreadPoolExecutor(1, "sha256") as pool:
        pending: Future[None] | None = None
        while block := f.read(BLOCK):
            if pending is not None:
                pending.result()
            if hashing:
                pending = pool.submit(digest.update, block)  # hashes while we decode
            lines.feed(block)
        lines.finish()
        if pending is not None:
            pending.result()
    scan.diags.extend(problems.all())
    return ShardInfo(path, size, digest.hexdigest() if hashing else "", lines.rows)


class _Helper:
    """``batchops/utf8check.py`` on one file, in its own interpreter (stdlib only: ~10 ms to
    start). Anything but its clean answer counts as "not known valid": the caller re-reads."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @classmethod
    def start(cls, path: Path) -> _Helper | None:
        if not sys.executable:  # an embedded interpreter: no Python to start
            return None
        args = [sys.executable, "-I", "-S", str(HELPER), str(path)]
        try:
            return cls(
                subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            )
        except OSError:
            return None

    def sha256(self) -> str | None:
        """The file's sha256 when it is UTF-8 and the helper ended cleanly, else None."""
        out, _ = self.proc.communicate()
        answer = out.decode("ascii", "replace").split()
        if self.proc.returncode == 0 and len(answer) == 2 and answer[0] == "utf-8":
            return answer[1] if _SHA256.fullmatch(answer[1]) else None
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:  # we were interrupted: it has nothing left to tell us
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- the stat cache -----------------------------------------------------------------------------


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class StatCache:
    """(size, mtime_ns, inode) -> (sha256, rows, format) per file, as JSON at ``path``.

    Like git's index: an unchanged file is never read again. Only files that validated cleanly
    are stored. Written atomically (temp file + os.replace); a missing or corrupt file is empty.
    """

    def __init__(self, path: Path, *, root: Path | None = None) -> None:
        self.path = path
        self._root = root  # with a root, the folders up to it are private (0700)
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False

    @classmethod
    def for_root(cls, root: Path) -> StatCache:
        return cls(root / CACHE_FILE, root=root)

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # a corrupt cache is an empty one
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        return files if isinstance(files, dict) else {}

    def lookup(self, path: Path, st: os.stat_result) -> dict[str, Any] | None:
        entry = self.entries.get(str(path))
        if isinstance(entry, dict) and entry.get("stat") == _stat_key(st):
            return entry
        return None

    def store(self, shard: ShardInfo, st: os.stat_result, fmt: str) -> None:
        entry = {"stat": _stat_key(st), "sha256": shard.sha256, "rows": shard.rows, "format": fmt}
        self.entries[str(shard.path)] = entry
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self._prune()
        ensure_state_dir_above(self.path.parent)  # .batchops/ ignores itself
        if self._root is not None:
            private_dir(self.path.parent, root=self._root)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"version": 1, "files": self.entries}, indent=1, sort_keys=True)
        write_atomic_text(self.path, body, prefix=".datasets-")
        self._dirty = False

    def _prune(self) -> None:
        """Forget files that are gone: a watch daemon's project would otherwise keep every
        dataset file it ever saw (renamed shards, deleted data) in the cache forever."""
        for key in [k for k in self.entries if not Path(k).exists()]:
            del self.entries[key]


# -- public entry points ------------------------------------------------------------------------


def inspect_dataset(
    decl: DatasetLike,
    *,
    root: Path,
    max_bytes: int = DEFAULT_MAX_BYTES,
    cache: StatCache | None = None,
) -> DatasetInfo:
    """Validate and hash one dataset (all its shards). Raises InvalidInputError with every
    problem; reads nothing when every shard is unchanged since it last validated."""
    root = root.resolve()
    stats = _stats(decl, root, max_bytes)
    hit = _from_cache(decl, stats, root, cache)
    if hit is not None:
        return hit
    with gc_paused():  # millions of short-lived rows, no cycles (DESIGN.md section 10)
        found = _scan_shared(decl, stats, root)
        scan, shards = found or _scan_all(decl, stats, root, CompactIds())
        if scan.seen.doubtful():  # a custom_id repeats (or two share a digest): say exactly
            scan, shards = _scan_all(decl, stats, root, ExactIds())
    if scan.diags:
        raise InvalidInputError(_where_first(scan.diags, [path for path, _ in stats], root))
    fmt = scan.format or decl.format or "CHAT"
    if cache is not None:
        _remember(cache, shards, stats, fmt)
    return _info(decl, root, shards, fmt)


def _scan_all(
    decl: DatasetLike, stats: list[tuple[Path, os.stat_result]], root: Path, seen: SeenIds
) -> tuple[_Scan, tuple[ShardInfo, ...]]:
    scan = _Scan(root, decl.format, seen=seen)
    return scan, tuple(_scan_file(path, st.st_size, scan) for path, st in stats)


def _scan_shared(
    decl: DatasetLike, stats: list[tuple[Path, os.stat_result]], root: Path
) -> tuple[_Scan, tuple[ShardInfo, ...]] | None:
    """A big dataset read by helper processes on every core (``batchops.scanpool``), when all
    of it is good; None sends the caller to read it here, which says what is wrong and where."""
    files = [(path, st.st_size) for path, st in stats]
    helpers = scanpool.helpers_for([size for _, size in files])
    found = scanpool.scan(files, decl.format, helpers) if helpers else None
    if found is None:
        return None
    shards = tuple(
        ShardInfo(path, size, sha256, rows)
        for (path, size), sha256, rows in zip(files, found.sha256, found.rows, strict=True)
    )
    return _Scan(root, found.format, seen=found.seen), shards


def _stats(decl: DatasetLike, root: Path, max_bytes: int) -> list[tuple[Path, os.stat_result]]:
    diags, stats = [], []
    for path in decl.files:
        try:
            st = path.stat()
        except OSError as exc:
            diags.append(Diagnostic(_display(path, root), 1, 1, f"cannot read: {exc.strerror}"))
            continue
        if not stat.S_ISREG(st.st_mode):  # a FIFO blocks the read, a device never ends
            message = f"not a regular file ({special_kind(st.st_mode)}); refused"
            diags.append(Diagnostic(_display(path, root), 1, 1, message))
            continue
        if st.st_size > max_bytes:
            # Exact bytes: rounded units made "500.0 MiB; the limit is 500 MiB" look like no excess.
            message = f"file is {st.st_size:,} bytes, over the limit of {max_bytes:,} bytes"
            diags.append(Diagnostic(_display(path, root), 1, 1, message))
        stats.append((path, st))
    if diags:
        raise InvalidInputError(diags)
    return stats


def special_kind(mode: int) -> str:
    """What a non-regular file is, for messages: 'a FIFO', 'a character device', ..."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _from_cache(
    decl: DatasetLike, stats: list[tuple[Path, os.stat_result]], root: Path, cache: StatCache | None
) -> DatasetInfo | None:
    if cache is None:
        return None
    entries = [cache.lookup(path, st) for path, st in stats]
    formats = {e["format"] for e in entries if e is not None}
    # All shards must hit: custom_id uniqueness spans shards, so one changed shard means all.
    if None in entries or len(formats) != 1 or (decl.format and decl.format not in formats):
        return None
    shards = tuple(
        ShardInfo(path, st.st_size, e["sha256"], e["rows"])
        for (path, st), e in zip(stats, entries, strict=True)
        if e is not None
    )
    return _info(decl, root, shards, formats.pop())


def _remember(
    cache: StatCache,
    shards: Sequence[ShardInfo],
    stats: list[tuple[Path, os.stat_result]],
    fmt: str,
) -> None:
    for shard, (path, before) in zip(shards, stats, strict=True):
        if _stat_key(path.stat()) == _stat_key(before):  # not rewritten while we read it
            cache.store(shard, before, fmt)
    cache.save()


def _info(decl: DatasetLike, root: Path, shards: tuple[ShardInfo, ...], fmt: str) -> DatasetInfo:
    if Path(root, decl.path).is_dir():
        text = "".join(f"{s.path.name}\t{s.sha256}\n" for s in sorted(shards, key=_name))
        digest = hashlib.sha256(text.encode()).hexdigest()
    else:
        digest = shards[0].sha256
    rows, size = sum(s.rows for s in shards), sum(s.size for s in shards)
    return DatasetInfo(digest, rows, size, shards, fmt)


def _name(shard: ShardInfo) -> str:
    return shard.path.name


def inspect_all(
    desired: DesiredLike,
    *,
    root: Path,
    cache: StatCache | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, DatasetInfo]:
    """Every dataset of ``desired`` by name; one InvalidInputError with all their problems."""
    infos: dict[str, DatasetInfo] = {}
    diags: list[Diagnostic] = []
    for decl in desired.datasets:
        try:
            infos[decl.name] = inspect_dataset(decl, root=root, max_bytes=max_bytes, cache=cache)
        except InvalidInputError as exc:
            diags.extend(exc.diagnostics)
    if diags:
        raise InvalidInputError(sorted(set(diags)))
    return infos


def iter_custom_ids(files: Sequence[Path]) -> Iterator[str]:
    """Every row's custom_id, in file order (blank lines skipped). For checking merged results."""
    for path in files:
        tail: list[bytes] = []  # the partial last line in pieces: it may span many blocks
        with path.open("rb") as f:
            while block := f.read(BLOCK):
                cut = block.rfind(b"\n") + 1
                if cut:
                    rows = _IDS.decode_lines(b"".join([*tail, block[:cut]]))
                    yield from (row.custom_id for row in rows)
                    tail = []
                tail.append(block[cut:])
        last = b"".join(tail)
        if last.strip():
            yield _IDS.decode(last).custom_id


def dataset_facts(infos: Mapping[str, DatasetInfo]) -> dict[str, dict[str, Any]]:
    """A JSON-ready summary per dataset (for ``validate --output json``)."""
    return {
        name: {
            "sha256": i.sha256,
            "rows": i.rows,
            "size": i.size,
            "format": i.format,
            "files": [s.path.name for s in i.files],
        }
        for name, i in sorted(infos.items())
    }


def iter_rows(files: Sequence[Path], root: Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Every row of a dataset that validated, with its file (as shown) and line: what a provider's
    rules read (``batchops.providers.rules``). Streams; blank lines are skipped."""
    for path in files:
        shown = _display(path, root)
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if raw.strip():
                    yield shown, number, msgspec.json.decode(raw)
