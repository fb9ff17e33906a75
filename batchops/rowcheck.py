"""The checks of a dataset's rows: a fast path over whole blocks, a precise one line by line.

Used by ``batchops.datasets`` (the read of a file) and ``batchops.rowscan`` (the helper processes
that validate chunks of a big dataset; they import this module and not the rest of
``datasets``). ``fast_block`` decodes a block's complete lines in one C call with the typed
msgspec decoder of the dataset's format and checks the block's UTF-8; a block it refuses is read
again line by line with the standard library (``_slow_block``), to say precisely what is wrong
and where. ``Lines`` feeds a file's bytes to them a block at a time, keeping line numbers and
the partial last line.
"""

from __future__ import annotations

import codecs
import json
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from batchops.errors import Diagnostic
from batchops.idset import CompactIds, SeenIds
from batchops.jsonvalues import INT32_MAX, MAX_DEPTH, content_problem, params_problem, value_problem

UTF8_PIECE = 64 * 2**10  # see _utf8
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
IDS = msgspec.json.Decoder(_IdOnly)


# -- per-dataset scanning state ---------------------------------------------------------------


@dataclass
class Scan:
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
class FileProblems:
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


def display(path: Path, root: Path) -> str:
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


def fast_block(block: bytes, start: int, end: int, lines: int, scan: Scan) -> bool:
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


def _line_problem(line: bytes, scan: Scan) -> tuple[int, str] | None:
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


def _format_problem(body: dict[str, Any], scan: Scan) -> str | None:
    row_format = _fmt("messages" not in body)
    scan.format = scan.format or row_format
    if row_format == scan.format:
        return None
    return f"row is a {row_format} request but the dataset's rows are {scan.format}"


def _id_problem(custom_id: str, line: bytes, scan: Scan) -> tuple[int, str] | None:
    try:  # the two paths must agree: anything the fast one refuses is reported
        _FAST[scan.format or "CHAT"].decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return 1, f"invalid row: {exc}"
    if not scan.seen.add(custom_id):
        return 1, f"{DUPLICATE}'{custom_id}'"  # _where_first adds where it first appeared
    return None


def _slow_block(
    block: bytes, start: int, end: int, first_line: int, scan: Scan, problems: FileProblems
) -> None:
    lines = block[start:end].split(b"\n")
    if block[end - 1] == 0x0A:
        lines.pop()  # the empty string after the final newline is not a line
    for number, line in enumerate(lines, start=first_line):
        problem = _line_problem(line, scan)
        if problem is not None:
            problems.add(number, *problem)


DUPLICATE = "duplicate custom_id "
_CUSTOM_ID = operator.attrgetter("custom_id")


class Lines:
    """Feeds complete lines to the validators, keeping line numbers and the partial last line."""

    def __init__(self, scan: Scan, problems: FileProblems) -> None:
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
        if not fast_block(data, start, end, lines, self.scan):
            before = len(self.problems.diags) + self.problems.extra
            _slow_block(data, start, end, self.line, self.scan, self.problems)
            bad = len(self.problems.diags) + self.problems.extra - before
        self.rows += lines - bad
        self.line += lines
