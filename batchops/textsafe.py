"""Text from outside made inert before it is printed, and secrets redacted: one place for both.

Anything a server or a dataset supplies (status and error messages, custom_ids, names, display
names, model names, state strings) may hold terminal escapes, bidi overrides, newlines or GitHub
workflow commands. Every renderer (``batchops.render``, the CLI's printing, annotations, the
daemon's log lines) passes such values through ``inert`` (plain text), ``md_text``/``md_code``
(Markdown for ``$GITHUB_STEP_SUMMARY``) or ``annotation_data`` (workflow-command data). The error
boundary (each provider's client) passes server text through ``redact``, which removes a key
even when the server echoed it percent-encoded, JSON-escaped or base64-encoded. Pure; no imports
of ours.
"""

from __future__ import annotations

import base64
import json
import re
from functools import lru_cache
from typing import Any

REDACTED = "**********"

# C0, DEL, C1; soft hyphen; Arabic letter mark; Mongolian vowel separator; zero-width characters,
# LRM/RLM; line and paragraph separators; bidi embeddings and overrides (U+202A-E); word joiner,
# invisible operators and bidi isolates (U+2060-6F); BOM; interlinear annotations; lone
# surrogates (they cannot even be encoded for printing); tag characters.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
    "\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# The Actions runner treats a line whose first non-blank characters are "::" as a workflow
# command, and "##[" anywhere in a line as a legacy one.
_LEADING_COMMAND = re.compile(r"^(\s*):(?=:)")
_LEGACY_COMMAND = "##["


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def inert(text: object) -> str:
    """``text`` as one printable line that cannot act on a terminal or a CI log.

    Control and invisible formatting characters become visible escapes (``\\x1b``, ``\\u202e``,
    ``\\n``); a leading ``::`` and any ``##[`` lose the form of a workflow command.
    """
    value = str(text)
    if value.isprintable() and "::" not in value and _LEGACY_COMMAND not in value:
        return value  # the common case, decided in C: nothing to escape
    value = _UNSAFE.sub(_escape, value)
    value = _LEADING_COMMAND.sub(r"\1\\x3a", value, count=1) if "::" in value else value
    return value.replace(_LEGACY_COMMAND, "##\\x5b")


def inert_lines(text: str) -> str:
    """Each line of a multi-line text of ours (a log record with its traceback) made inert."""
    return "\n".join(inert(line) for line in text.split("\n"))


def json_text(value: Any, **options: Any) -> str:
    """``json.dumps`` for output a CI log may show: control characters are escaped by JSON
    itself (ASCII output), and ``##[`` inside a string becomes ``##\\u005b``, still the same
    JSON value, so the runner cannot read a legacy command in the line."""
    return json.dumps(value, ensure_ascii=True, **options).replace(_LEGACY_COMMAND, "##\\u005b")


_MD_SPECIAL = re.compile(r"[!-/:-@\[-`{-~]")  # all ASCII punctuation


def md_text(text: object) -> str:
    """Inert text for Markdown (a table cell included): every ASCII punctuation character as a
    numeric character reference, so no HTML, link, image, emphasis, autolink or cell break."""
    return _MD_SPECIAL.sub(lambda m: f"&#{ord(m.group())};", inert(text))


_PLAIN = re.compile(r"[A-Za-z0-9_.:/@+-]*")


def md_code(text: object) -> str:
    """Text shown as code in Markdown: a plain name as a code span, anything else (a backtick
    could close the span, a ``|`` end the table cell) as ``<code>`` around ``md_text``."""
    value = str(text)
    return f"`{value}`" if _PLAIN.fullmatch(value) else f"<code>{md_text(value)}</code>"


def annotation_data(text: object) -> str:
    """Text as a workflow command's data: each line inert, then the runner's escapeData ('%'
    first), which keeps line breaks as ``%0A`` inside the one command line."""
    return inert_lines(str(text)).replace("%", "%25").replace("\n", "%0A")


def annotation_property(text: object) -> str:
    """Inert text as a workflow command's property value (escapeProperty)."""
    return inert(text).replace("%", "%25").replace(":", "%3A").replace(",", "%2C")


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` removed, also where a server echoed it percent-encoded (even
    twice, in either case), JSON-escaped (``\\uXXXX``), as HTML references or in base64."""
    if not secret or not text:
        return text
    return _pattern(secret).sub(REDACTED, text)


@lru_cache(maxsize=8)
def _pattern(secret: str) -> re.Pattern[str]:
    encoded = "".join(_char_forms(char) for char in secret)
    forms = [encoded, *(re.escape(core) for core in _base64_cores(secret.encode()))]
    return re.compile("|".join(forms), re.IGNORECASE if secret.isascii() else 0)


def _char_forms(char: str) -> str:
    """A regex for one character of the secret in every encoding a server might echo it in."""
    octets = char.encode()
    hexes = "".join(f"%(?:25)?{b:02x}" for b in octets)
    forms = [
        re.escape(char),
        hexes,
        rf"\\u{ord(char):04x}",
        rf"&#0*{ord(char)};",
        rf"&#x0*{ord(char):x};",
    ]
    if char == " ":
        forms.append(r"\+")
    return "(?:" + "|".join(forms) + ")"


def _base64_cores(data: bytes) -> list[str]:
    """The part of any base64 text that encodes ``data`` whatever its offset (mod 3) in the
    encoded bytes (``Basic`` credentials put the key after ``user:``); only long enough ones."""
    cores = []
    for offset in range(3):
        padded = base64.b64encode(b"\0" * offset + data).decode()
        start = 4 if offset else 0
        end = len(padded) - (4 if (offset + len(data)) % 3 else 0)
        core = padded[start:end]
        if len(core) >= 16:
            cores += [core, core.replace("+", "-").replace("/", "_")]
    return cores
