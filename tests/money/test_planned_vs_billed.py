"""The local backend bills input tokens as the plan counts them (issue 15): what `plan` says a
job's rows cost in input tokens is what the results' usage reports after the run, for chat rows
(system messages, content parts, an assistant turn) and completion rows (a string, a list of
prompts, a list of token IDs), on a model counted with a vocabulary and on one estimated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchops.results import local_records
from batchops.tokencache import CACHE_FILE, CACHE_VERSION, TokenCache
from tests.e2e import test_apply_cli as e2e
from tests.e2e.test_apply_cli import WAIT, InProcess

pytestmark = [pytest.mark.e2e]
inproc = e2e.inproc  # the CLI in this process against a real server on a loopback socket

CHAT = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "ünï 日本 "}]}]},
    {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "y 123"},
            {"role": "user", "content": "again 12345"},
        ]
    },
]
COMPLETION = [
    {"prompt": "Once upon a time"},
    {"prompt": ["a list", "of prompts"]},
    {"prompt": [1, 2, 3]},
]
MODELS = {"llama": "accounts/fireworks/models/llama-v3p1-8b-instruct", "other": "acme/unknown"}


def _repo(root: Path) -> Path:
    docs = []
    for name, rows in (("chat", CHAT), ("completion", COMPLETION)):
        path = root / "jobs" / "data" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "".join(json.dumps({"custom_id": str(i), "body": b}) + "\n" for i, b in enumerate(rows))
        )
        docs.append(
            f"apiVersion: batchops/v1\nkind: Dataset\nmetadata: {{name: {name}}}\n"
            f"spec: {{path: data/{name}.jsonl}}\n"
        )
        for short, model in MODELS.items():
            spec = {"model": model, "inputDataset": name, "inferenceParameters": {"maxTokens": 8}}
            docs.append(
                "apiVersion: batchops/v1\nkind: BatchInferenceJob\n"
                f"metadata: {{name: {name}-{short}}}\nspec: {json.dumps(spec)}\n"
            )
    (root / "jobs" / "work.yaml").write_text("---\n".join(docs))
    return root


def test_the_plans_input_tokens_are_what_the_local_backend_bills(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = _repo(tmp_path / "repo")
    plan = inproc(root, "plan", "--output", "json")
    assert plan.returncode == 0, plan.stderr
    planned = {a["job"]: a["inputTokens"] for a in json.loads(plan.stdout)["cost"]["actions"]}
    assert len(planned) == 4 and all(planned.values())
    assert inproc(root, *WAIT).returncode == 0
    records = local_records(root)
    billed = {}
    for name in planned:
        usage = records[name].usage
        assert usage is not None and usage.rows == 3
        billed[name] = usage.prompt_tokens
    assert billed == planned


def test_a_token_cache_of_another_version_is_counted_again(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    path.parent.mkdir(parents=True)
    stale = {"version": CACHE_VERSION - 1, "counts": {"f" * 64 + ":cl100k_base": [1, 0, 99]}}
    path.write_text(json.dumps(stale))
    assert TokenCache(tmp_path).get("f" * 64, "cl100k_base") is None
    path.write_text(json.dumps({**stale, "version": CACHE_VERSION}))
    assert TokenCache(tmp_path).get("f" * 64, "cl100k_base") is not None
