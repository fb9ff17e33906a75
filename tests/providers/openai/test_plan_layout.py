"""`plan` shows the parts and waves an OpenAI-compatible job is submitted in (text, JSON and the
step summary) when its rows exceed the provider's per-batch cap or its token quota."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.local.server import EmbeddedServer
from batchops.providers.layout import Layout
from tests.reliability.conftest import env_for

ROWS = 30  # "question NN": 3 tokens each by the four-characters rule


def write_repo(root: Path, url: str, limits: str) -> None:
    (root / "jobs" / "data").mkdir(parents=True)
    lines = [
        json.dumps(
            {
                "custom_id": f"c{i}",
                "body": {"messages": [{"role": "user", "content": f"question {i:02d}"}]},
            }
        )
        for i in range(ROWS)
    ]
    (root / "jobs" / "data" / "p.jsonl").write_text("\n".join(lines) + "\n")
    (root / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: proj}\nspec:\n  providers:\n"
        f'    oai: {{kind: openai, baseUrl: "{url}/v1", limits: {limits}}}\n'
    )
    (root / "jobs" / "m.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: data/p.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: big}\n"
        "spec: {provider: oai, model: gpt-4o-mini, inputDataset: p}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: small}\n"
        "spec: {model: accounts/fireworks/models/m, inputDataset: p}\n"
    )


@pytest.fixture
def served(make_server: Callable[..., EmbeddedServer], monkeypatch: pytest.MonkeyPatch) -> str:
    url = make_server().base_url
    for name, value in env_for(url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return url


def plan(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["plan", "--root", str(root), *args]) == 0
    return capsys.readouterr().out


def test_plan_shows_parts_and_waves_under_the_quota(
    tmp_path: Path,
    served: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_repo(tmp_path, served, "{maxRequestsPerBatch: 10, enqueuedTokens: 60}")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    # 57 usable tokens (5% headroom) fit 19 rows: parts of 9 (two fill a wave), the cap is 10.
    said = "30 rows in 4 parts (9, 9, 9, 3), 2 waves under the 60-token quota"
    text = plan(tmp_path, capsys)
    (line,) = [x for x in text.splitlines() if "+ job big" in x]
    assert said in line, text
    assert not any("parts" in x for x in text.splitlines() if "job small" in x)  # one batch
    assert said in html.unescape(summary.read_text())  # Markdown-escaped punctuation
    actions = json.loads(plan(tmp_path, capsys, "--output", "json"))["actions"]
    (big,) = [a for a in actions if a["resource"]["name"] == "big"]
    assert big["details"]["layout"] == {"parts": [9, 9, 9, 3], "waves": 2, "enqueuedTokens": 60}


def test_a_cap_without_a_quota_shows_parts_only(
    tmp_path: Path, served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_repo(tmp_path, served, "{maxRequestsPerBatch: 10}")
    text = plan(tmp_path, capsys)
    assert "+ job big" in text and "30 rows in 3 parts (10 each)" in text, text
    assert "wave" not in text


def test_one_batch_shows_no_layout(
    tmp_path: Path, served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_repo(tmp_path, served, "{maxRequestsPerBatch: 100}")
    text = plan(tmp_path, capsys)
    assert "+ job big" in text and " parts" not in text, text
    actions = json.loads(plan(tmp_path, capsys, "--output", "json"))["actions"]
    assert all("layout" not in a["details"] for a in actions)


def test_layout_wording() -> None:
    assert Layout((50_000,) * 3, 2, 600_000).describe() == (
        "150,000 rows in 3 parts (50,000 each), 2 waves under the 600,000-token quota"
    )
    assert Layout((5, 5, 5, 5, 2), 1, 100).describe() == (
        "22 rows in 5 parts (up to 5 each), 1 wave under the 100-token quota"
    )
