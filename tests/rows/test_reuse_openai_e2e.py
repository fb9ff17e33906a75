"""Reuse on an OpenAI-compatible provider from an empty ``.batchops/`` (a fresh CI checkout):
the reuse index is rebuilt from the batches' input and output files on the server, so only the
changed row is sent again. The CLI runs in process against the local backend's /v1 API."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchops.cli import main
from batchops.local.server import EmbeddedServer
from tests.reliability.conftest import env_for

PROMPTS = {f"c{i}": f"question {i}" for i in range(10)}


def write_repo(root: Path, url: str, prompts: dict[str, str], *, tokens: int = 16) -> None:
    data = root / "jobs" / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"custom_id": cid, "body": {"messages": [{"role": "user", "content": text}]}})
        for cid, text in prompts.items()
    ]
    (data / "p.jsonl").write_text("\n".join(lines) + "\n")
    (root / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: proj}\n"
        f'spec:\n  providers:\n    oai: {{kind: openai, baseUrl: "{url}/v1"}}\n'
    )
    (root / "jobs" / "m.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: data/p.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        "spec: {provider: oai, model: gpt-4o-mini, inputDataset: p, "
        f"inferenceParameters: {{maxTokens: {tokens}, temperature: 0.0}}}}\n"
    )


def run(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main([*args, "--root", str(root)])
    return code, capsys.readouterr().out


def rows_sent(url: str) -> list[int]:
    """Rows each batch on the server was given, oldest first."""
    with httpx.Client(base_url=f"{url}/v1") as client:
        data: list[dict[str, Any]] = client.get("/batches", params={"limit": 100}).json()["data"]
    return [b["request_counts"]["total"] for b in reversed(data)]


def test_an_empty_state_dir_reuses_answers_paid_on_openai(
    tmp_path: Path,
    make_server: Callable[..., EmbeddedServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = make_server().base_url
    for name, value in env_for(url).items():  # a served backend, not .batchops/local
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    root = tmp_path / "repo"
    write_repo(root, url, PROMPTS)
    code, out = run(root, capsys, "apply", "--wait", "--timeout", "60", "--poll-interval", "0.05")
    assert code == 0, out
    first = {
        json.loads(x)["custom_id"]: json.loads(x)
        for x in (root / "results" / "j.jsonl").read_text().splitlines()
    }
    shutil.rmtree(root / ".batchops")  # a fresh checkout: no index, no results
    shutil.rmtree(root / "results")
    write_repo(root, url, {**PROMPTS, "c3": "question three"})

    code, out = run(root, capsys, "plan", "--output", "json")
    assert code == 0, out
    (replace,) = [a for a in json.loads(out)["actions"] if a["kind"] == "replace-job"]
    assert replace["details"]["rowsReused"] == 9, replace
    assert "1 new row, 9 reused from j" in replace["reason"]

    code, out = run(root, capsys, "apply", "--wait", "--timeout", "60", "--poll-interval", "0.05")
    assert code == 0, out
    assert rows_sent(url) == [10, 1]  # only the changed row was sent again
    merged = {
        json.loads(x)["custom_id"]: json.loads(x)
        for x in (root / "results" / "j.jsonl").read_text().splitlines()
    }
    assert sorted(merged) == sorted(PROMPTS)
    assert "question three" in json.dumps(merged["c3"]["response"])
    for cid in PROMPTS.keys() - {"c3"}:  # the old answers, paid once
        assert merged[cid]["response"] == first[cid]["response"]
