"""Input tokens: exact with an offline tokenizer, else estimated; the template's overhead too."""

from __future__ import annotations

import inspect
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchops.tokencache import TokenCache, count_dataset, count_file, dataset_tokens
from batchops.tokens import (
    ESTIMATOR,
    LLAMA3,
    OPENAI,
    counter_for,
    estimate_tokens,
    request_tokens,
    template_for,
)


def test_openai_models_are_counted_exactly_with_their_vocabulary() -> None:
    gpt4o, gpt4 = counter_for("gpt-4o-mini"), counter_for("gpt-4")
    assert (gpt4o.name, gpt4o.exact) == ("o200k_base", True)
    assert (gpt4.name, gpt4.exact) == ("cl100k_base", True)
    assert gpt4.count("hello world, how are you?") == 7  # [15339, 1917, 11, 1268, 527, 499, 30]


def test_llama3_is_counted_with_cl100k_and_reported_as_estimated() -> None:
    counter = counter_for("accounts/fireworks/models/llama-v3p1-8b-instruct")
    assert counter.name == "cl100k_base~" and not counter.exact
    assert template_for("accounts/fireworks/models/llama-v3p1-8b-instruct") is LLAMA3


def test_unknown_models_fall_back_to_the_estimator() -> None:
    assert counter_for("accounts/fireworks/models/m") is ESTIMATOR
    assert template_for("accounts/fireworks/models/m") is OPENAI


def test_a_request_includes_the_chat_templates_overhead() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "hello world, how are you?"},
            {"role": "user", "content": [{"type": "text", "text": "hello"}]},
        ]
    }
    # 7 + 1 text tokens; OpenAI: 4 per message and 3 to prime the reply
    assert request_tokens(body, "gpt-4") == 8 + 2 * 4 + 3
    assert request_tokens({"prompt": "hello"}, "gpt-4") == 1 + 1  # BOS + the prompt


def test_very_long_texts_are_counted_in_pieces() -> None:
    text = "word " * 60_000  # 300,000 characters: the encoder refuses it whole
    assert counter_for("gpt-4").count(text) == pytest.approx(60_000, rel=0.01)


def _real_text() -> list[str]:
    import argparse
    import collections
    import pathlib
    import subprocess
    import textwrap

    docs = []
    for module in (argparse, collections, json, pathlib, subprocess, textwrap):
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj)
            if doc and len(doc) > 40:
                docs.append(doc)
    return list(dict.fromkeys(docs))


def _bpe_openai() -> Any:
    """The package, imported as batchops imports it: its vocabularies load with a deprecated
    importlib call, a warning that is not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

    return bpe_openai


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_counts_are_those_of_the_packages_own_encoder(name: str) -> None:
    # The Rust tokenizer's count, called per text, agrees with bpe-openai's tiktoken-style
    # encoder on real text, on non-ASCII and on a lone surrogate (a JSON "\\ud800" escape).
    encoding = _bpe_openai().get_encoding(name)
    texts = [*_real_text(), "", "résumé Zürich 東京 данные", "a\ud800b", "x" * 150_000]
    counter = counter_for("gpt-4o" if name == "o200k_base" else "gpt-4")
    expected = [len(encoding.encode_ordinary(t)) for t in texts[:-1]]
    assert counter.count_batch(texts[:-1]) == expected
    assert counter.count(texts[-1]) == pytest.approx(150_000 / 8, rel=0.05)  # in pieces


def test_without_the_private_bindings_the_public_encoder_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # bpe-openai's Rust bindings are a private module: should a version lack their entry point,
    # the counts come from its public encoder, still exact (never the estimator under an exact
    # name).
    import types

    from batchops import tokens

    bpe_openai = _bpe_openai()

    used: list[str] = []
    get_encoding = bpe_openai.get_encoding

    def public(name: str) -> object:
        used.append(name)
        return get_encoding(name)

    tokens._native.cache_clear()
    # what ``from bpe_openai import _bindings`` finds: bindings of another version
    monkeypatch.setattr(bpe_openai, "_bindings", types.ModuleType("_bindings"), raising=False)
    monkeypatch.setattr(bpe_openai, "get_encoding", public)
    try:
        counter = counter_for("gpt-4")
        assert counter.count("hello world, how are you?") == 7
        assert counter.count_batch(["a\ud800b", ""]) == [3, 0]
        assert used == ["cl100k_base"]
    finally:
        tokens._native.cache_clear()


def _estimate_by_regex(text: str) -> float:
    """The estimator's definition over the text (docs/cost.md), before rounding."""
    words = re.findall(r"[A-Za-z]+", text)
    letters, digits = sum(map(len, words)), len(re.findall(r"[0-9]", text))
    space = sum(map(len, re.findall(r"\s+", text)))
    ascii_len = len(text.encode("ascii", "ignore"))
    non_ascii = len(text.encode("utf-8", "surrogatepass")) - ascii_len
    other = ascii_len - letters - digits - space
    total: float = sum(max(1, math.ceil(len(w) / 8)) for w in words)
    total += digits / 3 + other * 0.7 + space * 0.05 + non_ascii / 2.5  # summed in this order
    return total


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="abXYZ 09\t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2003\u3000é東\ud800.,!-_"))
def test_the_estimator_counts_as_its_regex_definition_says(text: str) -> None:
    expected = max(1, round(_estimate_by_regex(text))) if text else 0
    assert estimate_tokens(text) == expected


def test_the_estimator_counts_real_text_as_its_regex_definition_says() -> None:
    texts = [*_real_text(), "word" * 40, "résumé 東京, 12345 — ok?"]
    assert [estimate_tokens(t) for t in texts] == [
        max(1, round(_estimate_by_regex(t))) for t in texts
    ]


def test_the_estimator_is_within_ten_percent_of_a_real_tokenizer_on_real_text() -> None:
    texts = _real_text()
    real = sum(counter_for("gpt-4").count_batch(texts))
    estimated = sum(estimate_tokens(t) for t in texts)
    assert real > 10_000
    assert abs(estimated - real) / real < 0.10


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class _Shard:
    def __init__(self, path: Path, sha256: str) -> None:
        self.path, self.sha256 = path, sha256


class _Info:
    def __init__(self, *shards: _Shard) -> None:
        self.files = shards
        self.rows = 2


def test_a_dataset_is_counted_per_row_in_one_batch_or_row_by_row_alike(tmp_path: Path) -> None:
    rows = [
        {"custom_id": str(i), "body": {"messages": [{"role": "user", "content": f"row {i}"}]}}
        for i in range(1000)
    ]
    path = _write(tmp_path / "d.jsonl", rows)
    counter = counter_for("gpt-4")
    batched, single = count_file(path, counter), count_file(path, counter, batched=False)
    assert batched == single and batched.rows == 1000 and batched.messages == 1000
    assert batched.tokens == sum(counter.count(f"row {i}") for i in range(1000))


def test_unchanged_data_is_never_tokenized_again(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "d.jsonl",
        [
            {"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hello world"}]}},
            {"custom_id": "b", "body": {"messages": [{"role": "user", "content": "hello"}]}},
        ],
    )
    info = _Info(_Shard(path, "f" * 64))
    cache = TokenCache(tmp_path)
    first = count_dataset(info, counter_for("gpt-4"), OPENAI, cache)
    cache.save()
    assert first is not None and first.tally.rows == 2
    cache = TokenCache(tmp_path)
    path.unlink()  # the content hash says it is the same data: the cache answers, nothing is read
    again = count_dataset(info, counter_for("gpt-4"), OPENAI, cache)
    assert again == first
    assert first.input_tokens == 3 + 2 * (4 + 3)  # texts; per request one message and the reply


def test_dataset_tokens_saves_its_cache_under_the_private_state_folder(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", [{"custom_id": "a", "body": {"prompt": "hi"}}])

    class Job:
        model, input_dataset = "gpt-4", "d"

    counted = dataset_tokens([Job()], {"d": _Info(_Shard(path, "e" * 64))}, root=tmp_path)
    assert counted[("d", "gpt-4")].input_tokens == 2
    saved = json.loads((tmp_path / ".batchops" / "cache" / "tokens.json").read_text())
    assert saved["counts"] == {f"{'e' * 64}:cl100k_base": [1, 0, 1]}
    assert (tmp_path / ".batchops" / "cache").stat().st_mode & 0o077 == 0


def test_validate_counts_each_jobs_input_tokens_and_fills_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from batchops.cli import main

    (tmp_path / "jobs").mkdir()
    row = {"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hello world"}]}}
    _write(tmp_path / "jobs" / "d.jsonl", [row])
    (tmp_path / "jobs" / "w.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: d}\nspec: {path: d.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        "spec: {model: gpt-4o, inputDataset: d}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "--output", "json"]) == 0
    tokens = json.loads(capsys.readouterr().out)["inputTokens"]
    assert tokens == {
        "j": {"tokens": 2 + 4 + 3, "exact": True, "counter": "o200k_base", "template": "openai"}
    }
    assert (tmp_path / ".batchops" / "cache" / "tokens.json").is_file()
    assert main(["validate"]) == 0
    assert capsys.readouterr().out.strip().endswith("; 9 input tokens for the jobs")


def test_a_tokenizer_json_the_project_points_at_counts_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    from batchops.cli import main

    tokenizer = Tokenizer(WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "jobs").mkdir()
    row = {"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hello big world"}]}}
    _write(tmp_path / "jobs" / "d.jsonl", [row])
    (tmp_path / "jobs" / "w.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: d}\nspec: {path: d.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        "spec: {model: acme/house-model, inputDataset: d}\n"
    )
    (tmp_path / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: p}\nspec:\n"
        "  tokenizers: [{model: acme/house-model, path: tokenizer.json}]\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "--output", "json"]) == 0
    [counted] = json.loads(capsys.readouterr().out)["inputTokens"].values()
    assert counted["exact"] and counted["counter"].startswith("tokenizer.json:")
    assert counted["tokens"] == 3 + 4 + 3  # three words (one unknown), the OpenAI-style template


def _tokenizer_json(path: Path) -> Path:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel({"[UNK]": 0, "row": 1, "a": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    tokenizer.save(str(path))
    return path


@pytest.mark.parametrize(
    "model", ["gpt-4o", "gpt-4", "accounts/fireworks/models/llama-v3p1-8b-instruct", "acme/m"]
)
def test_a_big_dataset_is_counted_by_helpers_as_it_is_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    # Helper processes taking chunks from one queue count exactly what this process counts,
    # per file, with every counter (a tokenizer.json's too), and a counter a helper cannot
    # rebuild sends the count back here.
    from batchops import chunkpool, tokencache
    from batchops.tokens import Counter, counter_named

    monkeypatch.setattr(chunkpool, "PART_MIN", 1)
    monkeypatch.setattr(chunkpool, "_cpus", lambda: 2)
    monkeypatch.setattr(chunkpool, "CHUNK", 700)  # a few rows a chunk: many in the queue
    paths = [
        _write(
            tmp_path / f"{f}.jsonl",
            [
                {"custom_id": f"{f}-{i}", "body": {"messages": [{"role": "user", "content": t}]}}
                for i in range(150)
                if (t := f"row {i} of {f}: 東京 résumé, a a a " * (i % 4))
            ],
        )
        for f in "abc"
    ]
    tokenizer = _tokenizer_json(tmp_path / "tokenizer.json") if model == "acme/m" else None
    counter = counter_for(model, tokenizer)
    rebuilt = counter_named(counter.name, counter.tokenizer)
    assert rebuilt is not None and rebuilt.name == counter.name
    here = {path: count_file(path, counter) for path in paths}
    assert tokencache.count_shared(paths, counter) == here
    assert counter_named(counter.name + "x", counter.tokenizer) is None
    unknown = Counter(counter.name + "x", False, counter.count_batch)
    assert tokencache.count_shared(paths, unknown) is None  # the helpers refuse: counted here
    shards = tuple(_Shard(path, f"{i}" * 64) for i, path in enumerate(paths, start=1))
    counted = count_dataset(_Info(*shards), unknown, OPENAI, None)
    assert counted is not None and counted.tally == sum(here.values(), tokencache.Tally())
