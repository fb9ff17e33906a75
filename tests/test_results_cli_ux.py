"""`batchops results` as a new user meets it: a typo in --columns, the table's footer."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.providers.fireworks.client import FireworksClient
from tests.pipelines import test_chain_e2e as chain
from tests.test_sources_results import client, converge, project

__all__ = ["client", "project"]  # fixtures, used by name


def test_an_unknown_column_is_an_error_naming_it_with_the_columns_there_are(
    project: Path, client: FireworksClient, capsys: pytest.CaptureFixture[str]
) -> None:
    converge(project, client)
    capsys.readouterr()
    assert main(["results", "b", "--columns", "nope,prodcut,price"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing shown while the request is wrong
    assert captured.err == (
        "error: --columns: unknown input columns 'nope', 'prodcut' (did you mean 'product'?); "
        "the input columns: product, price (and sku, shown as custom_id)\n"
    )
    assert main(["results", "b", "-o", "csv", "--columns", "nope"]) == 1
    assert "unknown input column 'nope';" in capsys.readouterr().err
    # The key and answer columns are always there: naming them is no error.
    assert main(["results", "b", "-o", "csv", "--columns", "custom_id,sku,answer,price"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert "price" in rows[0] and "product" not in rows[0]


def test_the_id_column_is_shown_once_as_custom_id(
    project: Path, client: FireworksClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dataset's ``idColumn: sku`` is the custom_id: one column, not two with the same
    values, in every format and in the table."""
    converge(project, client)
    capsys.readouterr()
    assert main(["results", "b", "-o", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0])[:3] == ["custom_id", "product", "price"]
    assert [r["custom_id"] for r in rows] == ["p1", "p2", "p3"]
    assert main(["results", "b", "-o", "json"]) == 0
    assert "sku" not in json.loads(capsys.readouterr().out)[0]
    assert main(["results", "b"]) == 0
    header = capsys.readouterr().out.splitlines()[1]
    assert "custom_id" in header and "sku" not in header


def test_the_table_footer_says_what_csv_writes(
    project: Path, client: FireworksClient, capsys: pytest.CaptureFixture[str]
) -> None:
    converge(project, client)
    capsys.readouterr()
    assert main(["results", "b", "--limit", "2"]) == 0
    assert "(first 2 rows; --limit 0 shows all, -o csv writes every column)" in (
        capsys.readouterr().out
    )
    # With --columns, -o csv writes those columns only: the footer does not say otherwise.
    assert main(["results", "b", "--limit", "2", "--columns", "product"]) == 0
    out = capsys.readouterr().out
    assert "(first 2 rows; --limit 0 shows all)" in out and "every column" not in out


SWEEP = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: questions}
spec: {path: data/q.jsonl}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: sweep}
spec:
  inputDataset: questions
  matrix: {model: [accounts/fireworks/models/zeta, accounts/fireworks/models/alpha]}
"""


def test_a_matrix_lines_up_in_the_order_it_declares(
    tmp_path: Path,
    client: FireworksClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = chain.write_repo(tmp_path, {"a": "one"}, SWEEP)
    chain.converge(paths, tmp_path, client)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["results", "sweep", "-o", "csv"]) == 0
    header = next(csv.reader(io.StringIO(capsys.readouterr().out)))
    answers = [c for c in header if c.endswith(".answer")]
    assert answers == ["sweep-zeta.answer", "sweep-alpha.answer"]  # zeta first, as declared


def test_describe_an_unknown_name_says_what_is_declared_as_results_does(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["describe", "nope", "--local"]) == 1
    assert capsys.readouterr().err.endswith(
        "error: unknown job 'nope': no manifest declares it and the account has no job of this "
        "project by that name (declared: a, b)\n"
    )
    (project / "jobs/more.yaml").write_text(
        "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: kettles}\n"
        "spec: {model: accounts/fireworks/models/m, inputDataset: prices}\n"
    )
    assert main(["describe", "kettle", "--local"]) == 1
    assert "; did you mean 'kettles'?" in capsys.readouterr().err
    (project / "jobs/sweep.yaml").write_text(
        "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: sweep}\nspec:\n"
        "  inputDataset: prices\n"
        "  matrix: {model: [accounts/fireworks/models/n, accounts/fireworks/models/m]}\n"
    )
    assert main(["describe", "sweep", "--local"]) == 1  # an error like every other: "error: "
    assert capsys.readouterr().err.endswith(
        "error: 'sweep' is a matrix of 2 jobs; describe one of them: sweep-n, sweep-m\n"
    )
