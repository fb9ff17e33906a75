"""The provider rules hook: `validate` and every pass ask each job's provider (issue 13)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from batchops.checks import provider_problems
from batchops.cli import main
from batchops.errors import Diagnostic, InvalidInputError
from batchops.manifest import load_desired
from batchops.manifest.project import load_project
from batchops.providers import rules
from batchops.providers.rules import JobCheck, RowsFn, rules_for
from batchops.reconcile import load_inputs

PROJECT = """apiVersion: batchops/v1
kind: Project
metadata: {name: evals}
spec:
  providers:
    lab: {kind: openai, baseUrl: "http://127.0.0.1:9/v1"}
"""


def strict_ids(job: JobCheck, rows: RowsFn) -> list[Diagnostic]:
    """A kind whose custom_ids must be short: reads the rows, reports each at file:line."""
    found = [
        Diagnostic(r.path, r.line, 1, f"custom_id {r.row['custom_id']!r} is too long")
        for r in rows()
        if len(r.row["custom_id"]) > 3
    ]
    if job.parameters.get("topK") is not None:
        found.append(job.at("topK is not accepted"))
    return found


@pytest.fixture
def strict_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("strict_rules")
    module.check_job = strict_ids  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "strict_rules", module)
    monkeypatch.setitem(rules.RULES, "openai", "strict_rules:check_job")


def repo(root: Path) -> Path:
    (root / "jobs" / "data").mkdir(parents=True)
    (root / "batchops.yaml").write_text(PROJECT)
    (root / "jobs" / "data" / "qs.jsonl").write_text(
        '{"custom_id": "ok", "body": {"messages": [{"role": "user", "content": "a"}]}}\n'
        '{"custom_id": "far-too-long", "body": {"messages": [{"role": "user", "content": "b"}]}}\n'
    )
    (root / "jobs" / "m.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: qs}\n"
        "spec: {path: data/qs.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: on-fw}\n"
        "spec: {model: m, inputDataset: qs, inferenceParameters: {topK: 5}}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: on-lab}\n"
        "spec: {provider: lab, model: m, inputDataset: qs, inferenceParameters: {topK: 5}}\n"
    )
    return root


@pytest.mark.usefixtures("strict_kind")
def test_the_jobs_provider_checks_its_rows_and_parameters_at_file_line(tmp_path: Path) -> None:
    root = repo(tmp_path)
    project = load_project(root)
    desired = load_desired([root / "jobs"], root=root, project=project)
    shown = [str(d) for d in provider_problems(desired, root=root, project=project)]
    assert shown == [
        "jobs/data/qs.jsonl:2:1: custom_id 'far-too-long' is too long",
        "jobs/m.yaml:11:1: on-lab: topK is not accepted",
    ]  # the fireworks job with the same rows and topK is fine: its rules are Fireworks'


@pytest.mark.usefixtures("strict_kind")
def test_a_pass_sends_nothing_and_validate_fails_when_a_provider_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = repo(tmp_path)
    with pytest.raises(InvalidInputError) as caught:
        load_inputs([root / "jobs"], root=root, project_file=load_project(root))
    assert len(caught.value.diagnostics) == 2
    monkeypatch.chdir(root)
    assert main(["validate"]) == 1
    shown = capsys.readouterr().out
    assert "jobs/data/qs.jsonl:2:1: custom_id 'far-too-long' is too long" in shown


def test_fireworks_has_rules_and_they_read_no_rows() -> None:
    check = rules_for("fireworks")
    assert check is not None
    job = JobCheck("j", rules.provider_config("fireworks", None), "m", {}, "FP8", "a.yaml", 3)

    def rows() -> list[rules.DatasetRow]:
        raise AssertionError("Fireworks rules must not read the rows again")

    assert check(job, rows) == []
    assert check(JobCheck("j", job.provider, "m", {}, "FP99", "a.yaml", 3), rows) == [
        Diagnostic("a.yaml", 3, 1, "j: precision FP99 is not one Fireworks offers")
    ]
