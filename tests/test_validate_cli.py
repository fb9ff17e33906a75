"""`batchops validate` and `batchops schema` through batchops.cli.main, and the renderers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from batchops.cli import main
from batchops.errors import Diagnostic
from batchops.manifest.models import (
    BatchInferenceJobManifest,
    DatasetManifest,
    ProjectManifest,
)
from batchops.render.diagnostics import diagnostics_json, diagnostics_text, github_annotations

REPO = Path(__file__).resolve().parents[1]
BAD = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: bad}
spec:
  path: data/bad.jsonl
  formt: CHAT
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    shutil.copy2(REPO / "batchops.yaml", tmp_path / "batchops.yaml")  # declares `openai`
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_examples_validate(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    assert capsys.readouterr().out == (
        "valid: 5 manifest files, 3 datasets (43 rows, 11.1 kB), 8 jobs; "
        "4,413 input tokens (estimated) for the jobs\n"
    )
    assert (project / ".batchops/cache/datasets.json").exists()


def test_invalid_input_exit_1_with_every_problem(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "jobs/bad.yaml").write_text(BAD)
    (project / "other").mkdir()
    (project / "other/x.yml").write_text("kind: Job\n")
    assert main(["validate", "jobs", "other"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "jobs/bad.yaml:6:3: unknown field 'formt'; did you mean 'format'?",
        "other/x.yml:1:7: unknown kind 'Job'; expected one of BatchInferenceJob, Dataset",
        "2 problems found",
    ]


def test_dataset_problems_are_reported(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with (project / "jobs/data/product-seeds/office.jsonl").open("a") as f:
        f.write('{"custom_id": "office-01", "body": {"prompt": "x"}}\n')
    assert main(["validate", "-o", "json"]) == 1
    body = json.loads(capsys.readouterr().out)
    assert body["valid"] is False and body["jobs"] == [
        "capitals-gpt4o-mini",
        "capitals-judge",
        "capitals-llama70b",
        "capitals-llama8b",
        "capitals-sweep-llama-v3p1-70b-instruct",
        "capitals-sweep-llama-v3p1-8b-instruct",
        "product-copy-8b",
        "product-reviews",
    ]
    assert body["diagnostics"] == [
        {
            "path": "jobs/data/product-seeds/office.jsonl",
            "line": 6,
            "col": 1,
            "message": "row is a COMPLETION request but the dataset's rows are CHAT",
        }
    ]


def test_json_output_when_valid(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--output", "json", "jobs/capitals.yaml"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["valid"] is True and body["problems"] == 0
    assert body["manifestFiles"] == ["jobs/capitals.yaml"]
    assert body["datasets"]["capitals"]["rows"] == 20


def test_max_dataset_bytes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--max-dataset-bytes", "1K"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "jobs/data/capitals.jsonl:1:1: file is 3,794 bytes, over the limit of 1,024 bytes"
    )
    # A rendered dataset's problem points at its manifest, not into .batchops/.
    assert (
        "jobs/product-copy.yaml:6:1: dataset 'product-copy' as rendered (line 1): file is 2,359 "
        "bytes, over the limit of 1,024 bytes"
    ) in out
    with pytest.raises(SystemExit):
        main(["validate", "--max-dataset-bytes", "lots"])


def test_github_annotations_under_actions(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    (project / "jobs/bad.yaml").write_text(BAD)
    assert main(["validate"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "::error file=jobs/bad.yaml,line=6,col=3::unknown field 'formt'; did you mean 'format'?"
    )


def test_renderers() -> None:
    diags = [Diagnostic("a,b:c.yaml", 2, 3, "50% bad\nreally"), Diagnostic("a.yaml", 1, 1, "x")]
    assert github_annotations(diags) == (
        "::error file=a%2Cb%3Ac.yaml,line=2,col=3::50%25 bad%0Areally\n"
        "::error file=a.yaml,line=1,col=1::x"
    )
    assert (
        diagnostics_text(diags)
        == "a,b:c.yaml:2:3: 50% bad\\nreally\na.yaml:1:1: x\n2 problems found"
    )
    assert diagnostics_json(diags[1:]) == {
        "valid": False,
        "problems": 1,
        "diagnostics": [{"path": "a.yaml", "line": 1, "col": 1, "message": "x"}],
    }


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["$defs"][ref.rsplit("/", 1)[1]] if ref else node


def test_schema_is_json_schema_accepting_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    kinds = {
        k: _resolve(schema, {"$ref": v}) for k, v in schema["discriminator"]["mapping"].items()
    }
    assert set(kinds) == {"Dataset", "BatchInferenceJob", "Project"}
    assert len(schema["oneOf"]) == 3
    adapter: TypeAdapter[DatasetManifest | BatchInferenceJobManifest | ProjectManifest] = (
        TypeAdapter(DatasetManifest | BatchInferenceJobManifest | ProjectManifest)
    )
    for path in [*sorted((REPO / "jobs").rglob("*.yaml")), REPO / "batchops.yaml"]:
        for doc in yaml.safe_load_all(path.read_text()):
            kind = kinds[doc["kind"]]
            assert set(doc) <= set(kind["properties"]) and set(kind["required"]) <= set(doc)
            spec = _resolve(schema, kind["properties"]["spec"])
            assert spec["additionalProperties"] is False and set(doc["spec"]) <= set(
                spec["properties"]
            )
            adapter.validate_python(doc)


def test_committed_schema_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    main(["schema"])
    assert capsys.readouterr().out == (REPO / "jobs/batchops.schema.json").read_text()


def test_a_manifest_error_hides_no_dataset_problem_elsewhere(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (project / "jobs/data/product-seeds/office.jsonl").open("a") as f:
        f.write("not json\n")
    (project / "jobs/bad.yaml").write_text(BAD)
    assert main(["validate"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "jobs/bad.yaml:6:3: unknown field 'formt'; did you mean 'format'?" in out
    assert any(line.startswith("jobs/data/product-seeds/office.jsonl:6:1: ") for line in out)
    assert out[-1] == "2 problems found"


def test_a_schema_error_in_a_job_hides_no_dangling_input_dataset(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "jobs/broken-job.yaml").write_text(
        "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: broken}\n"
        "spec:\n  model: m\n  inputDataset: capitalz\n  maxResumez: 2\n"
    )
    assert main(["validate"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [
        "jobs/broken-job.yaml:6:17: unknown dataset 'capitalz'; did you mean 'capitals'?",
        "jobs/broken-job.yaml:7:3: unknown field 'maxResumez'; did you mean 'maxResumes'?",
    ]


def test_a_job_reading_a_dataset_with_a_schema_error_is_not_told_it_is_unknown(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "jobs/bad.yaml").write_text(BAD)
    (project / "jobs/reads-bad.yaml").write_text(
        "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: reads-bad}\n"
        "spec: {model: m, inputDataset: bad}\n"
    )
    assert main(["validate"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "1 problem found"
