"""Input tokens of requests: counted exactly with an offline tokenizer, or estimated.

Called by ``batchops.tokencache`` (a dataset's rows, once per content hash), by the local
backend's engines (the ``usage`` they report is counted the same way, so estimate-versus-actual is
measurable offline) and by the benches. Imports nothing of ours: any layer may use it.

A request's input tokens are its text's tokens plus the chat template's overhead: each message is
wrapped in role markers, and the prompt ends with the assistant's header. Counting is exact where
the model's tokenizer ships in an installed package (``bpe-openai`` embeds OpenAI's vocabularies:
``o200k_base`` for the GPT-4o family and later, ``cl100k_base`` for GPT-4 / 3.5); Llama 3 models
are counted with ``cl100k_base``, whose 100k tokens Llama 3's 128k vocabulary starts from (the
same pre-tokenizer), and are reported as estimated. Without the package, a byte-class estimator
is used; its measured error is stated in docs/cost.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

LONG_TEXT = 100_000  # characters: longer texts are encoded in pieces (the encoder refuses more)


@dataclass(frozen=True)
class Template:
    """The chat template's tokens around the text: per request, per message, and the reply's
    header the prompt ends with."""

    name: str
    start: int  # e.g. <|begin_of_text|>
    per_message: int  # role markers, the role itself and the end-of-turn token
    reply: int  # the assistant header the prompt ends with


# Llama 3: <|begin_of_text|>, then per message <|start_header_id|>ROLE<|end_header_id|>\n\n ...
# <|eot_id|>, and <|start_header_id|>assistant<|end_header_id|>\n\n to answer.
LLAMA3 = Template("llama3", start=1, per_message=5, reply=4)
# OpenAI chat models: 3 per message plus the role, 3 to prime the reply (OpenAI's cookbook).
OPENAI = Template("openai", start=0, per_message=4, reply=3)
COMPLETION = Template("completion", start=1, per_message=0, reply=0)  # BOS + the prompt


@dataclass(frozen=True)
class Counter:
    """Counts the tokens of texts. ``exact`` when it is the model's own tokenizer."""

    name: str  # o200k_base | cl100k_base | cl100k_base~ | tokenizer.json:DIGEST | estimate
    exact: bool
    count_batch: Callable[[list[str]], list[int]]
    tokenizer: Path | None = None  # the tokenizer.json it reads, if any

    def count(self, text: str) -> int:
        return self.count_batch([text])[0]


# -- the estimator: each class of character costs its own amount (measured, docs/cost.md) -----

# The estimator reads the text's UTF-8 bytes through byte tables (2x faster than regexes over the
# text: tests/money/test_tokens.py holds the regex definition and checks the two agree).
_LETTERS = bytes(range(ord("A"), ord("Z") + 1)) + bytes(range(ord("a"), ord("z") + 1))
_LETTERS_ONLY = bytes(b if b in _LETTERS else ord(" ") for b in range(256))
_DIGIT_BYTES = b"0123456789"
_NON_ASCII = bytes(range(0x80, 0x100))
_ASCII_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # str.isspace() of the ASCII characters
_IN_EIGHTS = (8).__rfloordiv__  # n -> n // 8, and (7).__add__ before it: ceil(n / 8), in C
_PLUS_SEVEN = (7).__add__


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` without a tokenizer. Fitted against cl100k_base on real English text
    (docs/cost.md has the measured error): a word of ASCII letters is one token per 8 letters (at
    least one), digits one per 3 (tokenizers split numbers in threes), other printable ASCII 0.7
    each (punctuation often merges), whitespace 0.05 each, non-ASCII one per 2.5 bytes."""
    if not text:
        return 0
    data = text.encode("utf-8", "surrogatepass")
    size = len(data)
    words = map(len, data.translate(_LETTERS_ONLY).split())
    letters = size - len(data.translate(None, _LETTERS))
    digits = size - len(data.translate(None, _DIGIT_BYTES))
    ascii_len = len(data.translate(None, _NON_ASCII))
    if ascii_len == size:
        space = size - len(data.translate(None, _ASCII_SPACE))
    else:  # Unicode whitespace counts too
        space = len(text) - len("".join(text.split()))
    other = ascii_len - letters - digits - space
    total: float = sum(map(_IN_EIGHTS, map(_PLUS_SEVEN, words)))
    total += digits / 3 + other * 0.7 + space * 0.05 + (size - ascii_len) / 2.5
    return max(1, round(total))


ESTIMATOR = Counter("estimate", False, lambda texts: [estimate_tokens(t) for t in texts])


# -- the exact tokenizers ----------------------------------------------------------------------


@cache
def _native(name: str) -> Callable[[str], int] | None:
    """The count of ``name``'s Rust tokenizer (bpe-openai is optional: imported only to count),
    or None without the package. Called per text: no token list is built, and neither the
    package's batch call (a thread pool per call: 9x slower on ~100-character texts) nor its
    ``Encoding`` (which also builds the vocabulary's Python tables: 1.3 s in all) is used.
    Importing the package still takes ~0.5 s, once per process."""
    with warnings.catch_warnings():  # its vocabularies load with a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from bpe_openai import _bindings

            count: Callable[[str], int] = _bindings.tokenizer_for_encoding(name).count
            return count
        except (ImportError, AttributeError):  # another version: its public, slower API
            pass
        try:
            import bpe_openai
        except ImportError:
            return None
        encode = bpe_openai.get_encoding(name).encode_ordinary
        return lambda text: len(encode(text))


def _sanitized(text: str) -> str:
    """Lone surrogates (a JSON ``\\ud800`` escape) replaced, as bpe-openai's encoder does."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _pieces(text: str) -> list[str]:
    """A long text cut at whitespace into pieces the encoder accepts (a token never spans a
    space boundary cut before the space, so the count is unchanged or one token more)."""
    out, start = [], 0
    while len(text) - start > LONG_TEXT:
        cut = text.rfind(" ", start + LONG_TEXT // 2, start + LONG_TEXT)
        cut = cut if cut > start else start + LONG_TEXT
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def _installed(package: str) -> bool:
    """Whether ``package`` can be imported, without importing it (a tokenizer's vocabularies
    take most of a second to load: a count the token cache answers must not pay that)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _bpe_counter(name: str, *, exact: bool) -> Counter | None:
    """A counter named now, its vocabulary loaded at its first count (if the installed package
    then fails to load, the estimator counts instead)."""
    if not _installed("bpe_openai"):
        return None

    def count_one(text: str) -> int:
        count = _native(name)
        if count is None:  # the package failed to load since it was found: estimate
            return estimate_tokens(text)
        if len(text) > LONG_TEXT:
            return sum(map(count_one, _pieces(text)))
        try:
            return count(text)
        except UnicodeEncodeError:
            return count(_sanitized(text))

    def count_batch(texts: list[str]) -> list[int]:
        count = _native(name)
        if count is not None and all(len(t) <= LONG_TEXT for t in texts):
            with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate: one at a time
                return list(map(count, texts))
        return list(map(count_one, texts))

    return Counter(name if exact else f"{name}~", exact, count_batch)


_O200K = re.compile(r"gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|(^|/)o[1-9]|gpt-oss")
_CL100K = re.compile(r"gpt-4|gpt-3\.5|text-embedding-3")
_LLAMA3 = re.compile(r"llama-?v?3|llama3")


@cache
def template_for(model: str) -> Template:
    return LLAMA3 if _LLAMA3.search(model.lower()) else OPENAI


def tokenizer_json_counter(path: Path) -> Counter | None:
    """A Hugging Face ``tokenizer.json`` (e.g. the model's own, committed in the project) through
    the optional ``tokenizers`` package; None when the package or the file is not there. Named
    after the file's content, so cached counts are redone when the file changes."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    found = _tokenizer_json(hashlib.sha256(data).hexdigest()[:16], data)
    return None if found is None else replace(found, tokenizer=path)


@cache
def _tokenizer_json(digest: str, data: bytes) -> Counter | None:
    if not _installed("tokenizers"):
        return None

    @cache
    def tokenizer() -> Any:  # built at the first count: a cached count needs only the name
        from tokenizers import Tokenizer

        return Tokenizer.from_str(data.decode("utf-8"))

    def count_batch(texts: list[str]) -> list[int]:
        encoded = tokenizer().encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encoded]

    return Counter(f"tokenizer.json:{digest}", True, count_batch)


@cache
def counter_for(model: str, tokenizer: Path | None = None) -> Counter:
    """The best counter available offline for ``model``: the ``tokenizer.json`` the project points
    at for it, else a shipped vocabulary, else the estimator."""
    if tokenizer is not None:
        found_json = tokenizer_json_counter(tokenizer)
        if found_json is not None:
            return found_json
    m = model.lower()
    found = None
    if _O200K.search(m):
        found = _bpe_counter("o200k_base", exact=True)
    elif _CL100K.search(m):
        found = _bpe_counter("cl100k_base", exact=True)
    elif _LLAMA3.search(m):
        found = _bpe_counter("cl100k_base", exact=False)
    return found or ESTIMATOR


def counter_named(name: str, tokenizer: Path | None = None) -> Counter | None:
    """The counter called ``name`` (``tokenizer``: the file it reads), as ``counter_for`` gave
    it; None when it is not available here. A helper process rebuilds its caller's with it."""
    if name == ESTIMATOR.name:
        return ESTIMATOR
    if tokenizer is not None:
        found = tokenizer_json_counter(tokenizer)
    else:
        base = name.removesuffix("~")
        known = base in ("cl100k_base", "o200k_base")
        found = _bpe_counter(base, exact=base == name) if known else None
    return found if found is not None and found.name == name else None


# -- requests ----------------------------------------------------------------------------------


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


@dataclass(frozen=True)
class Texts:
    """What one request sends: its texts and how many messages wrap them (0: a completion), and
    tokens beyond them and the template's (``prompt_parts``)."""

    texts: Sequence[str]
    messages: int
    extra: int = 0


def prompt_parts(prompt: Any) -> tuple[list[str], int]:
    """A completion prompt's texts, and its tokens beyond them and the one BOS a row is counted
    with: a list of strings is that many prompts (a BOS each), a list of token IDs counts one
    token per ID (no BOS), anything else is its text."""
    if isinstance(prompt, str):
        return [prompt], 0
    if isinstance(prompt, list):
        if all(isinstance(p, str) for p in prompt):
            return list(prompt), len(prompt) * COMPLETION.start - COMPLETION.start
        return [], len(prompt) - COMPLETION.start
    return [str(prompt)], 0


def request_texts(body: Any) -> Texts:
    if not isinstance(body, dict):
        return Texts((), 0)
    messages = body.get("messages")
    if isinstance(messages, list):
        texts = [content_text(m.get("content")) for m in messages if isinstance(m, dict)]
        return Texts(texts, len(texts))
    texts, extra = prompt_parts(body.get("prompt"))
    return Texts(texts, 0, extra)


def overhead(template: Template, *, rows: int, messages: int) -> int:
    """The template's tokens for ``rows`` chat requests holding ``messages`` messages."""
    if messages == 0:
        return rows * COMPLETION.start
    return rows * (template.start + template.reply) + messages * template.per_message


def request_tokens(body: Any, model: str) -> int:
    """One request's input tokens, as the provider bills them (what the local engines report)."""
    texts = request_texts(body)
    counted = sum(counter_for(model).count_batch(list(texts.texts))) if texts.texts else 0
    return counted + texts.extra + overhead(template_for(model), rows=1, messages=texts.messages)


def count_many(counter: Counter, texts: Iterable[str]) -> int:
    batch = list(texts)
    return sum(counter.count_batch(batch)) if batch else 0
