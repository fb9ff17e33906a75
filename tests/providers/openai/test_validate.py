"""`batchops validate` applies the OpenAI-compatible provider's rules, with file:line, to the jobs
declared for it (and only to them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchops.cli import main

PROJECT = """\
apiVersion: batchops/v1
kind: Project
metadata: {name: rules}
spec:
  providers:
    oai: {kind: openai, baseUrl: "https://api.openai.com/v1", apiKeyEnv: OPENAI_API_KEY}
"""
JOBS = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: qs}
spec: {path: data/qs.jsonl, format: CHAT}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: on-openai}
spec:
  provider: oai
  model: gpt-4o-mini
  inputDataset: qs
  inferenceParameters: {maxTokens: 8, topK: 4}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: on-fireworks}
spec: {model: accounts/fireworks/models/x, inputDataset: qs, inferenceParameters: {topK: 4}}
"""


def test_validate_reports_openai_rules_at_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "jobs" / "data").mkdir(parents=True)
    (tmp_path / "batchops.yaml").write_text(PROJECT)
    (tmp_path / "jobs" / "jobs.yaml").write_text(JOBS)
    ids = ["ok-1", "x" * 65, "has space"]
    rows = [
        {"custom_id": c, "body": {"messages": [{"role": "user", "content": "hi"}]}} for c in ids
    ]
    (tmp_path / "jobs" / "data" / "qs.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "jobs/data/qs.jsonl:2:1: custom_id is 65 characters; OpenAI-compatible providers accept "
        "at most 64",
        "jobs/data/qs.jsonl:3:1: custom_id must be printable ASCII without spaces for "
        "OpenAI-compatible providers",
        "jobs/jobs.yaml:13:39: on-openai: inferenceParameters.topK: OpenAI-compatible batch APIs "
        "have no top_k; remove it",
        "3 problems found",
    ]  # at the topK key itself; the Fireworks job's topK and its rows are fine for Fireworks


def test_a_setting_a_matrix_gives_is_located_at_the_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "jobs" / "data").mkdir(parents=True)
    (tmp_path / "batchops.yaml").write_text(PROJECT)
    jobs = JOBS.split("---\n")[0] + (
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: sweep}\n"
        "spec:\n  provider: oai\n  model: gpt-4o-mini\n  inputDataset: qs\n"
        "  inferenceParameters: {maxTokens: 8}\n  matrix:\n    topK: [2, 4]\n"
    )
    (tmp_path / "jobs" / "jobs.yaml").write_text(jobs)
    row = {"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}
    (tmp_path / "jobs" / "data" / "qs.jsonl").write_text(json.dumps(row) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 1
    line = jobs.splitlines().index("    topK: [2, 4]") + 1
    out = capsys.readouterr().out.splitlines()
    located = [o for o in out if "topK" in o]
    assert len(located) == 2 and all(
        o.startswith(f"jobs/jobs.yaml:{line}:5: sweep-") for o in located
    )
