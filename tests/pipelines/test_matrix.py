"""spec.matrix: one declared job expands, at load time, into one job per combination."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from batchops.errors import ConfigError, InvalidInputError
from batchops.identity import parse_job_id
from batchops.manifest import load_desired
from batchops.manifest.graph import expanded_name, suffix_of
from batchops.manifest.models import NAME_MAX
from batchops.manifest.select import Selector, select

ROW = '{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'
DATASET = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: qa}
spec:
  path: data/qa.jsonl
---
"""
SWEEP = """\
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: answer}
spec:
  inputDataset: qa
  matrix:
    model: [accounts/fireworks/models/llama-v3p1-8b-instruct, gpt-4o-mini]
    temperature: [0, 0.7]
  inferenceParameters: {maxTokens: 16}
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write(tmp_path, "jobs/data/qa.jsonl", ROW)
    return tmp_path


def problems(root: Path) -> list[str]:
    with pytest.raises(InvalidInputError) as info:
        load_desired([Path("jobs")], root=root)
    return [str(d) for d in info.value.diagnostics]


def test_a_matrix_becomes_one_job_per_combination(root: Path) -> None:
    write(root, "jobs/a.yaml", DATASET + SWEEP)
    jobs = load_desired([Path("jobs")], root=root).jobs
    assert [j.name for j in jobs] == [
        "answer-gpt-4o-mini-t0",
        "answer-gpt-4o-mini-t0p7",
        "answer-llama-v3p1-8b-instruct-t0",
        "answer-llama-v3p1-8b-instruct-t0p7",
    ]
    by = {j.name: j for j in jobs}
    one = by["answer-llama-v3p1-8b-instruct-t0p7"]
    assert one.model == "accounts/fireworks/models/llama-v3p1-8b-instruct"
    assert one.inference_parameters == {"maxTokens": 16, "temperature": 0.7}
    assert one.group == "answer" and dict(one.combination)["temperature"] == "0.7"
    assert one.output_display == "results/answer-llama-v3p1-8b-instruct-t0p7.jsonl"
    assert len({j.output_path for j in jobs}) == 4


def test_an_explicit_output_path_gets_the_suffix(root: Path) -> None:
    write(root, "jobs/a.yaml", DATASET + SWEEP + "  output: {path: out/answers.jsonl}\n")
    names = {j.output_display for j in load_desired([Path("jobs")], root=root).jobs}
    assert "out/answers-gpt-4o-mini-t0.jsonl" in names and len(names) == 4


def test_long_suffixes_are_cut_deterministically_within_the_id_limit() -> None:
    suffix = suffix_of({"model": "accounts/x/models/" + "a" * 60, "temperature": 0.5})
    name = expanded_name("n" * 30, suffix)
    assert name is not None and len(name) <= NAME_MAX and name == expanded_name("n" * 30, suffix)
    assert name != expanded_name("n" * 30, suffix_of({"model": "a" * 60, "temperature": 0.6}))
    job_id = f"{name}-0123456789-t2-r3"
    assert len(job_id + "-out") <= 63 and parse_job_id(job_id) is not None
    assert expanded_name("n" * 40, suffix) is None


def test_bad_matrices_are_located_all_at_once(root: Path) -> None:
    write(
        root,
        "jobs/a.yaml",
        DATASET
        + textwrap.dedent("""\
        apiVersion: batchops/v1
        kind: BatchInferenceJob
        metadata: {name: empty}
        spec:
          inputDataset: qa
          model: gpt-4o-mini
          matrix: {temperature: []}
        ---
        apiVersion: batchops/v1
        kind: BatchInferenceJob
        metadata: {name: typo}
        spec:
          inputDataset: qa
          model: gpt-4o-mini
          matrix: {temprature: [0, 1]}
        ---
        apiVersion: batchops/v1
        kind: BatchInferenceJob
        metadata: {name: huge}
        spec:
          inputDataset: qa
          model: gpt-4o-mini
          matrix: {maxTokens: [1, 2, 3, 4, 5, 6, 7, 8, 9], topK: [1, 2, 3, 4, 5, 6, 7, 8]}
        ---
        apiVersion: batchops/v1
        kind: BatchInferenceJob
        metadata: {name: both}
        spec:
          inputDataset: qa
          model: gpt-4o-mini
          matrix: {model: [gpt-4o]}
        """),
    )
    found = problems(root)
    assert any(p.startswith("jobs/a.yaml:13:") and "temperature" in p for p in found), found
    assert any(
        p.startswith("jobs/a.yaml:21:") and "did you mean 'temperature'" in p for p in found
    ), found
    assert any(p.startswith("jobs/a.yaml:29:") and "72 combinations" in p for p in found), found
    assert any(
        p.startswith("jobs/a.yaml:34:") and "model: set in spec and in spec.matrix" in p
        for p in found
    ), found


def test_combination_names_that_collide_are_errors(root: Path) -> None:
    write(
        root,
        "jobs/a.yaml",
        DATASET
        + textwrap.dedent("""\
        apiVersion: batchops/v1
        kind: BatchInferenceJob
        metadata: {name: answer}
        spec:
          inputDataset: qa
          matrix: {model: [accounts/a/models/m, accounts/b/models/m]}
        ---
        apiVersion: batchops/v1
        kind: BatchInferenceJob
        metadata: {name: sweep}
        spec:
          inputDataset: qa
          matrix: {model: [other]}
        ---
        apiVersion: batchops/v1
        kind: BatchInferenceJob
        metadata: {name: sweep-other}
        spec:
          inputDataset: qa
          model: gpt-4o-mini
        """),
    )
    found = problems(root)
    assert any(
        "jobs/a.yaml:9:" in p and "'answer-m'" in p and "another combination" in p for p in found
    ), found
    assert any("'sweep-other' of 'sweep' collides with the declared job" in p for p in found), found


def test_a_job_selector_names_the_whole_matrix(root: Path) -> None:
    write(
        root,
        "jobs/a.yaml",
        DATASET
        + SWEEP
        + textwrap.dedent("""\
        ---
        apiVersion: batchops/v1
        kind: BatchInferenceJob
        metadata: {name: other}
        spec: {inputDataset: qa, model: gpt-4o-mini}
        """),
    )
    desired = load_desired([Path("jobs")], root=root)
    picked = select(desired, Selector.of(["answer"], None)).desired
    assert len(picked.jobs) == 4 and {j.group for j in picked.jobs} == {"answer"}
    with pytest.raises(ConfigError, match="did you mean 'answer'"):
        select(desired, Selector.of(["answr"], None))


def test_unknown_provider_in_a_matrix_is_located(root: Path) -> None:
    write(
        root,
        "jobs/a.yaml",
        DATASET + SWEEP.replace("temperature: [0, 0.7]", "provider: [fireworkz]"),
    )
    assert any(
        p.startswith("jobs/a.yaml:14:") and "unknown provider 'fireworkz'" in p
        for p in problems(root)
    )


def test_the_plan_groups_a_matrix_under_its_declared_name(root: Path) -> None:
    from batchops.plan import Observed, PlanOptions, make_plan
    from batchops.reconcile import prepare_inputs
    from batchops.render.plan import plan_text

    write(root, "jobs/a.yaml", DATASET + SWEEP)
    desired, infos = prepare_inputs(load_desired([Path("jobs")], root=root), root=root)
    plan = make_plan(desired, infos, Observed(), {}, PlanOptions(), project="p")
    assert "Stages:\n  1. answer (4 jobs): ready\n" in plan_text(plan)


def test_a_warm_load_from_the_manifest_cache_expands_the_same(root: Path) -> None:
    """The cache gives back the documents' fields, not the models: the matrix, dependsOn and
    source.job read from it expand exactly as from the YAML."""
    from batchops.manifest import load_partial
    from batchops.manifest.stored import StoredManifests

    chained = textwrap.dedent("""\
        ---
        apiVersion: batchops/v1
        kind: Dataset
        metadata: {name: judged}
        spec:
          source: {job: answer, combine: each, where: "answer.text"}
          template: {prompt: "{{ answer.text }}"}
        ---
        apiVersion: batchops/v1
        kind: BatchInferenceJob
        metadata: {name: judge}
        spec: {inputDataset: judged, model: gpt-4o-mini, dependsOn: [answer],
               output: {path: out/judge.jsonl, table: {path: out/judge.csv}}}
        """)
    write(root, "jobs/a.yaml", DATASET + SWEEP + chained)
    cold, problems = load_partial([Path("jobs")], root=root, cache=StoredManifests(root, racy_ns=0))
    assert problems == []
    cache = StoredManifests(root, racy_ns=0)
    warm, problems = load_partial([Path("jobs")], root=root, cache=cache)
    assert problems == [] and cache.reads == []  # nothing parsed again
    assert warm.jobs == cold.jobs and warm.datasets == cold.datasets
    assert len(warm.jobs) == 8 and len(warm.datasets) == 5
