"""The provider rules hook: `validate` and every pass ask each job's provider (issue 13)."""

from __future__ import annotations

import json
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


def _clean_repo(root: Path) -> tuple[Path, Path]:
    """An OpenAI-compatible job (the real rules) over a clean dataset."""
    (root / "jobs" / "data").mkdir(parents=True)
    (root / "batchops.yaml").write_text(PROJECT)
    data = root / "jobs" / "data" / "qs.jsonl"
    rows = ({"custom_id": f"q{i}", "body": {"prompt": str(i)}} for i in range(20))
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    manifest = root / "jobs" / "m.yaml"
    manifest.write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: qs}\n"
        "spec: {path: data/qs.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: on-lab}\n"
        "spec: {provider: lab, model: m, inputDataset: qs, inferenceParameters: {maxTokens: 8}}\n"
    )
    return data, manifest


def test_a_clean_job_is_not_checked_again_while_its_files_and_settings_are_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rules read every row (1 GB: ~12 s on every validate and pass); a clean verdict is
    # remembered under the files' stat and the job's settings, a problem never is.
    from batchops import checks

    data, manifest = _clean_repo(tmp_path)
    reads: list[int] = []
    iter_rows = checks.iter_rows

    def counted(files: tuple[Path, ...], root: Path) -> object:
        reads.append(1)
        return iter_rows(files, root)

    monkeypatch.setattr(checks, "iter_rows", counted)

    def problems() -> list[str]:
        project = load_project(tmp_path)
        desired = load_desired([tmp_path / "jobs"], root=tmp_path, project=project)
        return [str(d) for d in provider_problems(desired, root=tmp_path, project=project)]

    assert (problems(), len(reads)) == ([], 1)
    assert (problems(), len(reads)) == ([], 1)  # unchanged: the rows are not read
    assert (tmp_path / ".batchops" / "cache" / "checks.json").stat().st_mode & 0o077 == 0
    manifest.write_text(manifest.read_text().replace("maxTokens: 8", "maxTokens: 9"))
    assert (problems(), len(reads)) == ([], 2)  # another setting: read again
    with data.open("a") as f:  # another row: read again, and its problem found each time
        f.write('{"custom_id": "has space", "body": {"prompt": "x"}}\n')
    expected = [
        "jobs/data/qs.jsonl:21:1: custom_id must be printable ASCII without spaces for "
        "OpenAI-compatible providers"
    ]
    assert (problems(), len(reads)) == (expected, 3)
    assert (problems(), len(reads)) == (expected, 4)
    (tmp_path / ".batchops" / "cache" / "checks.json").write_text("{not json")
    data.write_text(data.read_text().replace("has space", "no-space"))
    assert (problems(), len(reads)) == ([], 5)  # a corrupt cache is an empty one
    assert (problems(), len(reads)) == ([], 5)


def test_a_layout_is_not_computed_again_for_unchanged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchops import checks
    from batchops.checkcache import CheckCache

    data, _ = _clean_repo(tmp_path)
    (tmp_path / "batchops.yaml").write_text(
        PROJECT.replace(
            '"http://127.0.0.1:9/v1"', '"http://127.0.0.1:9/v1", limits: {maxRequestsPerBatch: 8}'
        )
    )
    project = load_project(tmp_path)

    def layout() -> tuple[int, ...] | None:
        cache = CheckCache(tmp_path)
        found = checks.job_layout(
            "lab", "m", {}, [data], root=tmp_path, project=project, cache=cache
        )
        cache.save()
        return None if found is None else found.parts

    assert layout() == (8, 8, 4)

    def no_read(*_: object) -> object:
        raise AssertionError("the rows were read again")

    monkeypatch.setattr(checks, "iter_rows", no_read)
    assert layout() == (8, 8, 4)
    with data.open("a") as f:
        f.write('{"custom_id": "q20", "body": {"prompt": "x"}}\n')
    monkeypatch.undo()
    assert layout() == (8, 8, 5)
