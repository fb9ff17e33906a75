"""batchops.yaml as a manifest (located problems, schema), the settings' precedence, and `init`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.config import ProjectConfig, load_settings
from batchops.errors import InvalidInputError
from batchops.manifest.project import load_project


def write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "batchops.yaml").write_text(text)
    return root


def test_a_project_file_loads_with_its_defaults(tmp_path: Path) -> None:
    root = write(tmp_path, "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: evals}\n")
    project = load_project(root)
    assert project is not None
    assert (project.name, project.backend, project.paths, project.output_dir) == (
        "evals",
        None,
        ("jobs",),
        "results",
    )
    assert load_project(tmp_path / "elsewhere") is None


def test_every_problem_of_the_project_file_is_located(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        (
            "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: Evals}\n"
            "spec:\n  backend: cloud\n  outputdir: out\n  pollInterval: 0\n  paths: [../x]\n"
        ),
    )
    with pytest.raises(InvalidInputError) as caught:
        load_project(root)
    shown = sorted(str(d) for d in caught.value.diagnostics)
    assert shown[0].startswith("batchops.yaml:3:18: metadata.name: invalid name 'Evals'")
    assert shown[1].startswith("batchops.yaml:5:12: spec.backend: Input should be 'fireworks'")
    assert shown[2] == "batchops.yaml:6:3: unknown field 'outputdir'; did you mean 'outputDir'?"
    assert shown[3].startswith(
        "batchops.yaml:7:17: spec.pollInterval: not a positive duration: '0'"
    )
    assert shown[4] == (
        "batchops.yaml:8:10: spec.paths: '../x' must be a relative path inside the root, "
        "without '..'"
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30.0), ("30s", 30.0), ("2m", 120.0), ("1.5", 1.5), ("500ms", 0.5)]
)
def test_poll_interval_takes_the_flags_durations(tmp_path: Path, text: str, seconds: float) -> None:
    """pollInterval goes through the one duration parser of the flags (config.parse_duration)."""
    root = write(
        tmp_path,
        (
            "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: evals}\n"
            f"spec:\n  pollInterval: {text}\n"
        ),
    )
    project = load_project(root)
    assert project is not None and project.poll_interval == seconds


@pytest.mark.parametrize("text", ["0", "0s", "-5", "-2m", "'0'", "soon", "true", "[30]"])
def test_a_zero_negative_or_odd_poll_interval_is_refused_at_its_line(
    tmp_path: Path, text: str
) -> None:
    root = write(
        tmp_path,
        (
            "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: evals}\n"
            f"spec:\n  backend: local\n  pollInterval: {text}\n"
        ),
    )
    with pytest.raises(InvalidInputError) as caught:
        load_project(root)
    [shown] = [str(d) for d in caught.value.diagnostics]
    assert shown.startswith("batchops.yaml:6:17: spec.pollInterval: not a ")
    assert "duration" in shown and "(e.g. 30, 30s, 500ms, 2m, 1h)" in shown


def test_validate_reports_the_project_file_with_the_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write(tmp_path, "apiVersion: batchops/v1\nkind: Projekt\nmetadata: {name: x}\n")
    (root / "jobs").mkdir()
    (root / "jobs" / "bad.yaml").write_text("apiVersion: batchops/v1\nkind: Dataset\n")
    monkeypatch.chdir(root)
    assert main(["validate"]) == 1
    out = capsys.readouterr().out
    assert "batchops.yaml:2:7: unknown kind 'Projekt'; did you mean 'Project'?" in out
    assert "jobs/bad.yaml:1:1: missing required field 'metadata'" in out


def test_a_project_document_outside_the_root_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "p.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: x}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 1
    assert "jobs/p.yaml:2:7: a Project belongs in batchops.yaml" in capsys.readouterr().out


def test_output_dir_and_paths_come_from_the_project_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write(
        tmp_path,
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: x}\n"
        "spec: {paths: [manifests], outputDir: out/answers}\n",
    )
    (root / "manifests").mkdir()
    (root / "manifests" / "d.jsonl").write_text(
        '{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'
    )
    (root / "manifests" / "j.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: d}\nspec: {path: d.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        "spec: {model: m, inputDataset: d}\n"
    )
    monkeypatch.chdir(root)
    assert main(["plan", "--local", "-o", "json"]) == 0
    assert main(["apply", "--local", "--wait", "--timeout", "50", "--poll-interval", "0.1"]) == 0
    capsys.readouterr()
    assert (root / "out" / "answers" / "j.jsonl").is_file()


def test_precedence_flags_then_environment_then_project_file(tmp_path: Path) -> None:
    project = ProjectConfig(file=tmp_path / "batchops.yaml", name="from-file", backend="local")
    assert load_settings({}, project_file=project).project == "from-file"
    env = {"BATCHOPS_PROJECT": "from-env"}
    assert load_settings(env, project_file=project).project == "from-env"
    assert load_settings(env, project="from-flag", project_file=project).project == "from-flag"
    assert load_settings({}, project_file=project).backend_choice() == "embedded"
    assert load_settings({}).project is None  # the folder name, as before


def test_the_schema_covers_the_project_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "Project" in schema["discriminator"]["mapping"]
    spec = schema["$defs"]["ProjectSpec"]["properties"]
    assert {"backend", "paths", "outputDir", "pollInterval", "parallelism", "moved"} <= set(spec)


# -- init ----------------------------------------------------------------------------------------


def test_init_writes_a_project_that_validates_and_plans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "My Project"
    root.mkdir()
    (root / ".gitignore").write_text("node_modules/")  # no final newline: appended after it
    assert main(["init", str(root)]) == 0
    assert "name: my-project" in (root / "batchops.yaml").read_text()
    assert (root / ".gitignore").read_text().splitlines() == [
        "node_modules/",
        ".batchops/",
        "/results/",
    ]
    project = load_project(root)
    assert project is not None and project.name == "my-project"
    monkeypatch.chdir(root)
    assert main(["validate"]) == 0
    assert main(["plan", "--local"]) == 0
    assert "comes from the folder name" not in capsys.readouterr().err


def test_init_never_overwrites_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "batchops.yaml").write_text("mine\n")
    assert main(["init", str(tmp_path), "--no-ignore-results", "--name", "x"]) == 0
    assert (tmp_path / "batchops.yaml").read_text() == "mine\n"
    assert "kept batchops.yaml" in capsys.readouterr().err
    assert (tmp_path / ".gitignore").read_text() == ".batchops/\n"
    assert (tmp_path / "jobs" / "example.yaml").is_file()
    assert main(["init", str(tmp_path), "--force", "--name", "x", "--backend", "local"]) == 0
    assert "backend: local" in (tmp_path / "batchops.yaml").read_text()
    assert (tmp_path / ".gitignore").read_text() == ".batchops/\n/results/\n"  # never twice
