"""One results schema whatever the provider: Fireworks lines in the neutral shape (issue 13)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.merge import merge_lineage
from batchops.providers import Tokens, result_row
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.outputs import neutral, to_neutral
from batchops.providers.fireworks.provider import FireworksProvider
from batchops.reconcile import PassOptions, run_pass

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 47,
        "total_tokens": 49,
        "completion_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 29},
    },
}


def test_a_fireworks_answer_gets_the_neutral_fields_and_keeps_its_response() -> None:
    row = result_row(neutral({"custom_id": "r1", "response": COMPLETION}, "j-1", failed=False))
    assert (row.custom_id, row.text, row.finish_reason, row.error, row.job) == (
        "r1",
        "4",
        "stop",
        None,
        "j-1",
    )
    assert row.usage == Tokens(input=47, output=2, cached=29)
    assert row.response == COMPLETION


def test_a_fireworks_error_line_gets_the_error_field() -> None:
    line = {"custom_id": "r2", "error": {"code": "INVALID_ARGUMENT", "message": "bad"}}
    row = result_row(neutral(line, "j-1", failed=True))
    assert (row.text, row.error, row.error_code, row.usage) == (
        None,
        "bad",
        "INVALID_ARGUMENT",
        Tokens(),
    )


def test_to_neutral_rewrites_both_files_and_leaves_unreadable_lines_for_the_merge(
    tmp_path: Path,
) -> None:
    (tmp_path / "BIJOutputSet.jsonl").write_text(
        json.dumps({"custom_id": "a", "response": COMPLETION}) + "\n{torn\n\n"
    )
    (tmp_path / "error-data").write_text(json.dumps({"custom_id": "b", "error": "boom"}) + "\n")
    to_neutral(tmp_path, "j-2")
    ok = (tmp_path / "BIJOutputSet.jsonl").read_text().splitlines()
    assert json.loads(ok[0])["text"] == "4" and ok[1] == "{torn" and len(ok) == 2
    err = json.loads((tmp_path / "error-data").read_text())
    assert (err["custom_id"], err["error"], err["error_code"]) == ("b", "boom", None)
    assert err["job"] == "j-2"


def test_merged_results_have_the_neutral_fields(tmp_path: Path) -> None:
    data = tmp_path / "jobs" / "data"
    data.mkdir(parents=True)
    (data / "p.jsonl").write_text(
        "".join(
            json.dumps(
                {"custom_id": f"c{i}", "body": {"messages": [{"role": "user", "content": f"q{i}"}]}}
            )
            + "\n"
            for i in range(3)
        )
    )
    (tmp_path / "jobs" / "m.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: data/p.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        "spec: {model: accounts/fireworks/models/m, inputDataset: p}\n"
    )
    with (
        EmbeddedServer(BackendConfig(data_dir=tmp_path / "backend")) as server,
        FireworksClient(base_url=server.base_url, account_id="local", api_key=None) as client,
    ):
        provider = FireworksProvider(client)
        for _ in range(200):
            result = run_pass(
                [tmp_path / "jobs"],
                root=tmp_path,
                provider=provider,
                project="proj",
                options=PassOptions(),
            )
            if result.converged or result.errors:
                break
            threading.Event().wait(0.05)
    assert result.errors == [] and result.converged
    lines = (tmp_path / "results" / "j.jsonl").read_text().splitlines()
    rows = [result_row(json.loads(line)) for line in lines]
    assert sorted(r.custom_id for r in rows) == ["c0", "c1", "c2"]
    for row in rows:
        assert row.text and row.finish_reason and row.error is None
        assert row.usage.input > 0 and row.job is not None and row.job.startswith("j-")
        assert isinstance(row.response, dict) and row.response["choices"]


def test_spend_reads_the_neutral_usage_whatever_the_raw_response(tmp_path: Path) -> None:

    folder = tmp_path / "out"
    folder.mkdir()
    openai_raw = {"status_code": 200, "body": {"usage": {"prompt_tokens": 999}}}
    line = {
        "custom_id": "a",
        "text": "x",
        "finish_reason": "stop",
        "error": None,
        "usage": {"input_tokens": 10, "output_tokens": 3, "cached_tokens": 4},
        "job": "j-1",
        "response": openai_raw,
    }
    (folder / "BIJOutputSet.jsonl").write_text(json.dumps(line) + "\n")
    record = merge_lineage(
        [folder],
        job_name="j",
        job_ids=["j-1"],
        root=tmp_path,
        output=tmp_path / "results" / "j.jsonl",
        expected_ids=["a"],
    )
    assert record.usage is not None
    assert (
        record.usage.prompt_tokens,
        record.usage.completion_tokens,
        record.usage.cached_tokens,
    ) == (10, 3, 4)
