"""The graph is checked with the manifests: dangling references and cycles, located, all at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from batchops.errors import Diagnostic, InvalidInputError
from batchops.manifest import load_desired
from batchops.manifest.graph import JOB, Node, Ref, check_graph

ROW = '{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'
GRAPH = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: qa}
spec: {path: data/qa.jsonl}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: generate}
spec: {inputDataset: looped, model: m}
---
apiVersion: batchops/v1
kind: Dataset
metadata: {name: looped}
spec:
  source: {job: generate}
  template: {prompt: "{{ answer.text }}"}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: judge}
spec:
  inputDataset: qa
  model: m
  dependsOn: [generat]
---
apiVersion: batchops/v1
kind: Dataset
metadata: {name: fed}
spec:
  source: {job: jugde}
  template: {prompt: "{{ answer.text }}"}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: a}
spec: {inputDataset: qa, model: m, dependsOn: [b]}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: b}
spec: {inputDataset: qa, model: m, dependsOn: [a]}
"""


def test_dangling_references_and_cycles_are_located_all_at_once(tmp_path: Path) -> None:
    (tmp_path / "jobs" / "data").mkdir(parents=True)
    (tmp_path / "jobs" / "data" / "qa.jsonl").write_text(ROW)
    (tmp_path / "jobs" / "g.yaml").write_text(textwrap.dedent(GRAPH))
    with pytest.raises(InvalidInputError) as info:
        load_desired([Path("jobs")], root=tmp_path)
    found = {str(d) for d in info.value.diagnostics}
    assert found == {
        "jobs/g.yaml:8:18: a cycle: job 'generate' -> dataset 'looped' -> job 'generate'",
        "jobs/g.yaml:24:14: unknown job 'generat'; did you mean 'generate'?",
        "jobs/g.yaml:30:17: unknown job 'jugde'; did you mean 'judge'?",
        "jobs/g.yaml:35:18: a cycle: job 'a' -> job 'b' -> job 'a'",
    }, found


def test_the_walk_is_linear_on_a_long_chain() -> None:
    """10,000 stages in a line: no recursion limit, every node in upstream-first order."""
    at = Diagnostic("x.yaml", 1, 1, "")
    nodes = [
        Node((JOB, f"j{i}"), at, [Ref((JOB, f"j{i - 1}"), at)] if i else []) for i in range(10_000)
    ]
    diags: list[Diagnostic] = []
    order = check_graph(list(reversed(nodes)), diags)
    assert diags == [] and order == [n.key for n in nodes]
