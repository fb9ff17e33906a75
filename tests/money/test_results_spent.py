"""`batchops results` shows the spend of what ran, from the usage recorded with the results."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider
from batchops.reconcile import PassOptions, PassResult, run_pass
from batchops.results import local_records

MODEL = "accounts/fireworks/models/m"
MANIFEST = f"""\
apiVersion: batchops/v1
kind: Dataset
metadata: {{name: products}}
spec:
  source: {{path: data/products.csv, idColumn: sku}}
  template:
    messages:
      - {{role: user, content: 'Describe {{{{ product }}}} in one line.'}}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {{name: a}}
spec: {{model: {MODEL}, inputDataset: products}}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {{name: b}}
spec: {{model: accounts/fireworks/models/unpriced, inputDataset: products}}
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FireworksClient]:
    with (
        EmbeddedServer(BackendConfig(data_dir=tmp_path / "backend")) as server,
        FireworksClient(base_url=server.base_url, account_id="local", api_key=None) as c,
    ):
        yield c


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "jobs/data").mkdir(parents=True)
    (tmp_path / "jobs/data/products.csv").write_text("sku,product\np1,Kettle\np2,Toaster\n")
    (tmp_path / "jobs/m.yaml").write_text(MANIFEST)
    (tmp_path / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: p}\nspec:\n"
        f"  prices:\n  - {{model: {MODEL}, input: 1000, output: 2000, source: ours}}\n"
    )  # $0.001 an input token, $0.002 an output token: easy sums
    monkeypatch.chdir(tmp_path)
    return tmp_path


def converge(root: Path, client: FireworksClient) -> PassResult:
    for _ in range(200):
        result = run_pass(
            [root / "jobs"],
            root=root,
            provider=FireworksProvider(client),
            project="proj",
            options=PassOptions(),
        )
        if result.converged or result.errors:
            return result
        threading.Event().wait(0.05)
    raise AssertionError("did not converge")


def test_results_show_the_spend_of_what_ran(
    project: Path, client: FireworksClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not converge(project, client).errors
    usage = local_records(project)["a"].usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    dollars = (usage.prompt_tokens * 1000 + usage.completion_tokens * 2000) / 1e6
    capsys.readouterr()
    assert main(["results", "a"]) == 0
    out = capsys.readouterr().out
    assert (
        f"spent: ${dollars:,.2f} ({usage.prompt_tokens:,} input, "
        f"{usage.completion_tokens:,} output tokens)"
    ) in out

    assert main(["results", "a", "b"]) == 0
    out = capsys.readouterr().out
    assert f"a spent: ${dollars:,.2f}" in out
    assert "b spent: unknown (no price for accounts/fireworks/models/unpriced;" in out

    assert main(["results", "a", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["spent"] for r in rows] == [
        (r["prompt_tokens"] * 1000 + r["completion_tokens"] * 2000) / 1e6 for r in rows
    ]
    assert sum(r["spent"] for r in rows) == pytest.approx(dollars)

    assert main(["results", "a", "b", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["a.spent"] > 0 and r["b.spent"] is None for r in rows)


def test_results_spend_is_unknown_without_recorded_usage(
    project: Path, client: FireworksClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not converge(project, client).errors
    (project / ".batchops").chmod(0o700)
    for state in (project / ".batchops").glob("*.db"):
        state.unlink()  # no record: the results are shown, their spend is not guessed
    capsys.readouterr()
    assert main(["results", "a"]) == 0
    assert "spent: unknown (no usage recorded with the results)" in capsys.readouterr().out
