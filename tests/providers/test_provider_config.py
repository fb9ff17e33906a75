"""Providers in the project file (`spec.providers`) and a job's `spec.provider` (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchops.config import load_settings
from batchops.errors import InvalidInputError
from batchops.manifest import load_desired
from batchops.manifest.project import load_project

PROJECT = """apiVersion: batchops/v1
kind: Project
metadata: {name: evals}
spec:
  providers:
    together:
      kind: openai
      baseUrl: https://api.together.xyz/v1
      apiKeyEnv: TOGETHER_API_KEY
      limits: {maxRequestsPerBatch: 50000, enqueuedTokens: 2000000}
    vllm-lab: {kind: openai, baseUrl: "http://10.0.0.5:8000/v1"}
"""

DATASET = """apiVersion: batchops/v1
kind: Dataset
metadata: {name: qs}
spec: {path: data/qs.jsonl}
"""


def job(name: str, provider: str | None) -> str:
    line = f"  provider: {provider}\n" if provider else ""
    return (
        f"apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {{name: {name}}}\n"
        f"spec:\n{line}  model: m\n  inputDataset: qs\n"
    )


def repo(root: Path, project: str, *jobs: str) -> Path:
    (root / "jobs" / "data").mkdir(parents=True)
    (root / "batchops.yaml").write_text(project)
    (root / "jobs" / "data" / "qs.jsonl").write_text(
        '{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'
    )
    (root / "jobs" / "ds.yaml").write_text(DATASET)
    (root / "jobs" / "jobs.yaml").write_text("---\n".join(jobs))
    return root


def test_declared_providers_load_with_their_limits(tmp_path: Path) -> None:
    project = load_project(repo(tmp_path, PROJECT, job("a", None)))
    assert project is not None
    together, lab = project.providers
    assert (together.name, together.kind, together.api_key_env) == (
        "together",
        "openai",
        "TOGETHER_API_KEY",
    )
    assert together.base_url == "https://api.together.xyz/v1"
    assert together.limits == {"maxRequestsPerBatch": 50000, "enqueuedTokens": 2000000}
    assert (lab.name, lab.api_key_env, dict(lab.limits)) == ("vllm-lab", None, {})
    assert project.provider_names == {"fireworks", "together", "vllm-lab"}


def test_keys_come_only_from_the_named_variables(tmp_path: Path) -> None:
    project = load_project(repo(tmp_path, PROJECT, job("a", None)))
    settings = load_settings({"TOGETHER_API_KEY": "sk-t"}, project_file=project)
    assert settings.provider_keys["together"].reveal() == "sk-t"
    assert "vllm-lab" not in settings.provider_keys
    assert "sk-t" not in repr(settings)


def test_a_key_in_the_project_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    text = PROJECT.replace("apiKeyEnv: TOGETHER_API_KEY", "apiKey: sk-secret")
    with pytest.raises(InvalidInputError) as caught:
        load_project(repo(tmp_path, text, job("a", None)))
    assert [str(d) for d in caught.value.diagnostics] == [
        "batchops.yaml:6:5: spec.providers.together: a key never goes in a file: "
        "name the environment variable holding it with apiKeyEnv"
    ]


def test_fireworks_is_built_in(tmp_path: Path) -> None:
    text = PROJECT + "    fireworks: {kind: fireworks}\n"
    with pytest.raises(InvalidInputError) as caught:
        load_project(repo(tmp_path, text, job("a", None)))
    assert "spec.providers: 'fireworks' is built in" in str(caught.value.diagnostics[0])


def test_kinds_are_checked(tmp_path: Path) -> None:
    text = PROJECT + "    groq: {kind: anthropic}\n"
    with pytest.raises(InvalidInputError) as caught:
        load_project(repo(tmp_path, text, job("a", None)))
    assert str(caught.value.diagnostics[0]) == (
        "batchops.yaml:12:18: spec.providers.groq.kind: Input should be 'fireworks' or 'openai'"
    )


def test_jobs_choose_a_declared_provider(tmp_path: Path) -> None:
    root = repo(tmp_path, PROJECT, job("a", None), job("b", "together"))
    desired = load_desired([root / "jobs"], root=root, project=load_project(root))
    assert {j.name: j.provider for j in desired.jobs} == {"a": "fireworks", "b": "together"}


def test_an_unknown_provider_is_located_with_a_did_you_mean(tmp_path: Path) -> None:
    root = repo(tmp_path, PROJECT, job("a", "togther"), job("b", "openai"))
    with pytest.raises(InvalidInputError) as caught:
        load_desired([root / "jobs"], root=root, project=load_project(root))
    assert [str(d) for d in caught.value.diagnostics] == [
        "jobs/jobs.yaml:5:13: unknown provider 'togther'; did you mean 'together'?; providers "
        "are declared in batchops.yaml spec.providers",
        "jobs/jobs.yaml:13:13: unknown provider 'openai' (declared: fireworks, together, "
        "vllm-lab); providers are declared in batchops.yaml spec.providers",
    ]


def test_without_a_project_file_only_fireworks_exists(tmp_path: Path) -> None:
    root = repo(tmp_path, PROJECT, job("a", "fireworks"), job("b", "together"))
    (root / "batchops.yaml").unlink()
    with pytest.raises(InvalidInputError) as caught:
        load_desired([root / "jobs"], root=root)
    assert len(caught.value.diagnostics) == 1
    assert "unknown provider 'together'" in str(caught.value.diagnostics[0])
