"""A dataset rendered from a table and a template is counted and cached like a hand-written one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import batchops.tokencache
from batchops.cli import main

MODEL = "accounts/fireworks/models/llama-v3p1-8b-instruct"
MANIFEST = f"""\
apiVersion: batchops/v1
kind: Dataset
metadata: {{name: rendered}}
spec:
  source: {{path: data/products.csv, idColumn: sku}}
  template:
    messages:
      - {{role: system, content: You write product copy.}}
      - {{role: user, content: 'Two sentences about the {{{{ product }}}}.'}}
---
apiVersion: batchops/v1
kind: Dataset
metadata: {{name: written}}
spec: {{path: data/written.jsonl}}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {{name: from-table}}
spec: {{model: {MODEL}, inputDataset: rendered}}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {{name: by-hand}}
spec: {{model: {MODEL}, inputDataset: written}}
"""
PRODUCTS = {"p1": "electric kettle with a gooseneck spout", "p2": "two-slice toaster"}


def _row(sku: str, product: str) -> dict[str, Any]:
    return {
        "custom_id": sku,
        "body": {
            "messages": [
                {"role": "system", "content": "You write product copy."},
                {"role": "user", "content": f"Two sentences about the {product}."},
            ]
        },
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "jobs/data"
    data.mkdir(parents=True)
    (data / "products.csv").write_text(
        "sku,product\n" + "".join(f"{k},{v}\n" for k, v in PRODUCTS.items())
    )
    rows = [_row(k, v) for k, v in PRODUCTS.items()]  # the same requests, written by hand
    (data / "written.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "jobs/m.yaml").write_text(MANIFEST)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _tokens(capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    assert main(["validate", "--output", "json"]) == 0
    counted = json.loads(capsys.readouterr().out)["inputTokens"]
    return {job: c["tokens"] for job, c in counted.items()}


def test_a_rendered_dataset_counts_like_the_same_rows_written_by_hand(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = _tokens(capsys)
    assert tokens["from-table"] == tokens["by-hand"] > 2 * 10  # template overhead included


def test_a_rendered_datasets_count_is_cached_and_redone_when_the_table_changes(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _tokens(capsys)["from-table"]
    counted: list[Path] = []
    real = batchops.tokencache.count_file

    def spy(path: Path, *args: Any, **kwargs: Any) -> Any:
        counted.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(batchops.tokencache, "count_file", spy)
    assert _tokens(capsys)["from-table"] == first and counted == []  # unchanged: from the cache
    with (project / "jobs/data/products.csv").open("a") as fh:
        fh.write("p3,desk fan with three speeds and a timer\n")
    assert _tokens(capsys)["from-table"] > first
    assert len(counted) == 1  # only the re-rendered dataset is tokenized again
