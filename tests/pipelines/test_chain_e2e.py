"""Chains end to end: a matrix job, a dataset rendered from its results, a judge per
combination, run by passes against the local backend (issue 16). Assertions are on what the
server holds and what is on disk."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.plan import Kind
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider
from batchops.reconcile import PassOptions, PassResult, run_pass
from batchops.render.plan import plan_json, plan_markdown, plan_text
from batchops.textsafe import md_text

PROJECT = "proj"
PIPELINE = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: questions}
spec: {path: data/q.jsonl}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: generate}
spec:
  inputDataset: questions
  matrix: {model: [accounts/fireworks/models/alpha, accounts/fireworks/models/beta]}
  inferenceParameters: {maxTokens: 64}
---
apiVersion: batchops/v1
kind: Dataset
metadata: {name: judged}
spec:
  source: {job: generate}
  template:
    messages:
      - role: user
        content: "judge {{ answer.job }}: {{ prompt }} => {{ answer.text }}"
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: judge}
spec:
  inputDataset: judged
  model: accounts/fireworks/models/judge
  inferenceParameters: {maxTokens: 64}
"""


def write_repo(root: Path, prompts: dict[str, str], pipeline: str = PIPELINE) -> list[Path]:
    data = root / "jobs" / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"custom_id": cid, "body": {"messages": [{"role": "user", "content": text}]}})
        for cid, text in prompts.items()
    ]
    (data / "q.jsonl").write_text("\n".join(lines) + "\n")
    (root / "jobs" / "p.yaml").write_text(textwrap.dedent(pipeline))
    return [root / "jobs"]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FireworksClient]:
    with (
        EmbeddedServer(BackendConfig(data_dir=tmp_path / "backend")) as server,
        FireworksClient(base_url=server.base_url, account_id="local", api_key=None) as c,
    ):
        yield c


def one_pass(paths: list[Path], root: Path, client: FireworksClient) -> PassResult:
    return run_pass(
        paths, root=root, provider=FireworksProvider(client), project=PROJECT, options=PassOptions()
    )


def converge(paths: list[Path], root: Path, client: FireworksClient) -> list[PassResult]:
    passes = []
    for _ in range(300):
        result = one_pass(paths, root, client)
        assert result.errors == []
        passes.append(result)
        if result.converged:
            return passes
        threading.Event().wait(0.05)
    raise AssertionError("did not converge")


def sent_rows(client: FireworksClient) -> dict[str, int]:
    datasets = {d.name.rsplit("/", 1)[-1]: d for d in client.list_datasets()}
    return {
        job.name.rsplit("/", 1)[-1]: int(
            datasets[(job.input_dataset_id or "").rsplit("/", 1)[-1]].example_count or 0
        )
        for job in client.list_jobs()
    }


def sent_ids(client: FireworksClient, job: str, dest: Path) -> list[str]:
    """The custom_ids of the rows the job ``job`` (an ID) was given: its input dataset's rows."""
    found = next(j for j in client.list_jobs() if j.name.rsplit("/", 1)[-1] == job)
    files = client.download_dataset(found.input_dataset_id or "", dest)
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines() if line]
    return sorted(r["custom_id"] for r in rows)


def answers(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["custom_id"]: r["text"] for r in rows}


def test_a_two_stage_pipeline_runs_in_order_and_reuses_unchanged_rows(
    tmp_path: Path, client: FireworksClient
) -> None:
    paths = write_repo(tmp_path, {"a": "one", "b": "two", "c": "three"})
    first = one_pass(paths, tmp_path, client)
    waits = [a for a in first.plan.actions if a.kind is Kind.WAITS]
    assert sorted(a.resource.name for a in waits) == ["judge-alpha", "judge-beta"]
    assert {a.reason for a in waits} == {"waits on generate"}
    assert not first.converged
    text = plan_text(first.plan)
    assert (
        "Stages:\n  1. generate (2 jobs): " in text
        and "2. judge (2 jobs): waiting, waits on generate" in text
    )
    assert [s["name"] for s in plan_json(first.plan)["stages"]] == ["generate", "judge"]
    assert md_text("2. judge (2 jobs): waiting, waits on generate") in plan_markdown(first.plan)
    assert not [j for j in sent_rows(client) if j.startswith("judge")]  # nothing sent downstream
    converge(paths, tmp_path, client)
    sent = sent_rows(client)
    assert sorted(n.rsplit("-", 1)[0] for n in sent) == [
        "generate-alpha",
        "generate-beta",
        "judge-alpha",
        "judge-beta",
    ]
    judged = answers(tmp_path / "results" / "judge-alpha.jsonl")
    assert judged["b"] == "judge generate-alpha: two => two"
    # An upstream change: only the row whose upstream answer changed is sent again downstream.
    write_repo(tmp_path, {"a": "one", "b": "TWO", "c": "three"})
    converge(paths, tmp_path, client)
    again = {k: v for k, v in sent_rows(client).items() if k not in sent}
    assert sorted(again.values()) == [1, 1, 1, 1], again  # each new job sent the one new row
    assert sorted(n.rsplit("-", 1)[0] for n in again) == [
        "generate-alpha",
        "generate-beta",
        "judge-alpha",
        "judge-beta",
    ]
    for job in again:  # and that row is b: the one whose upstream answer changed
        assert sent_ids(client, job, tmp_path / "sent" / job) == ["b"], job
    assert answers(tmp_path / "results" / "judge-beta.jsonl")["b"] == (
        "judge generate-beta: TWO => TWO"
    )
    assert answers(tmp_path / "results" / "judge-beta.jsonl")["a"] == (
        "judge generate-beta: one => one"
    )


def test_combine_all_gives_one_row_with_every_answer(
    tmp_path: Path, client: FireworksClient
) -> None:
    pipeline = PIPELINE.replace("source: {job: generate}", "source: {job: generate, combine: all}")
    pipeline = pipeline.replace(
        '"judge {{ answer.job }}: {{ prompt }} => {{ answer.text }}"',
        "\"{{ answers | map(attribute='combination.model') | join(',') }}\"",
    )
    paths = write_repo(tmp_path, {"a": "one"}, pipeline)
    converge(paths, tmp_path, client)
    assert answers(tmp_path / "results" / "judge.jsonl") == {
        "a": "accounts/fireworks/models/alpha,accounts/fireworks/models/beta"
    }


def test_depends_on_orders_jobs_without_data(tmp_path: Path, client: FireworksClient) -> None:
    pipeline = PIPELINE.split(
        "---\napiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: judged}"
    )[0]
    pipeline += textwrap.dedent("""\
        ---
        apiVersion: batchops/v1
        kind: BatchInferenceJob
        metadata: {name: after}
        spec: {inputDataset: questions, model: accounts/fireworks/models/x, dependsOn: [generate]}
        """)
    paths = write_repo(tmp_path, {"a": "one"}, pipeline)
    first = one_pass(paths, tmp_path, client)
    assert [a.resource.name for a in first.plan.actions if a.kind is Kind.WAITS] == ["after"]
    converge(paths, tmp_path, client)
    assert (tmp_path / "results" / "after.jsonl").is_file()


def test_a_waiting_stage_keeps_its_jobs_and_a_failed_upstream_blocks_it(
    tmp_path: Path, client: FireworksClient
) -> None:
    """Stage 2 waits while stage 1 runs again; its finished jobs are neither orphans nor
    superseded (nothing for --prune). A failed upstream makes it blocked, not pending."""
    from batchops.identity import parse_job_id
    from batchops.plan.graph import gates
    from batchops.plan.views import JobView
    from batchops.providers import JobState, RemoteJob

    paths = write_repo(tmp_path, {"a": "one"})
    converge(paths, tmp_path, client)
    write_repo(tmp_path, {"a": "ONE"})
    result = one_pass(paths, tmp_path, client)
    assert [a.resource.name for a in result.plan.actions if a.kind is Kind.WAITS] == [
        "judge-alpha",
        "judge-beta",
    ]
    assert result.plan.orphan_jobs == 0
    pruned = run_pass(
        paths,
        root=tmp_path,
        provider=FireworksProvider(client),
        project=PROJECT,
        options=PassOptions(prune=True),
    )
    assert not [
        a
        for a in pruned.plan.actions
        if a.kind is Kind.PRUNE_JOB and a.resource.name.startswith("judge")
    ]
    up = JobView(
        decl=result.plan.decl("generate-alpha"),
        base_id="generate-alpha-0123456789",  # type: ignore[arg-type]
        input_dataset_id="",
        foreign=None,
        result=None,
        family=(
            (
                parse_job_id("generate-alpha-0123456789"),  # type: ignore[arg-type]
                RemoteJob(
                    key="generate-alpha-0123456789",
                    remote_id="x",
                    owner=PROJECT,
                    state=JobState.FAILED,
                    raw_state="FAILED",
                ),
            ),
        ),
    )
    down = JobView(
        decl=result.plan.decl("judge-alpha"),
        base_id="judge-alpha-0123456789",  # type: ignore[arg-type]
        input_dataset_id="",
        family=(),
        foreign=None,
        result=None,
    )
    found = gates([up, down])
    assert found["judge-alpha"].blocked and found["judge-alpha"].waits_on == ("generate",)


def test_a_stage_whose_jobs_all_finished_is_completed_not_running(
    tmp_path: Path, client: FireworksClient
) -> None:
    """Every job of the matrix finished, results not downloaded yet (`apply --no-download`):
    the stage is `completed`, and `done` once the results are merged."""
    paths = write_repo(tmp_path, {"a": "one"})
    no_download = PassOptions(download=False)
    for _ in range(300):
        run_pass(
            paths,
            root=tmp_path,
            provider=FireworksProvider(client),
            project=PROJECT,
            options=no_download,
        )
        generate = [j for j in client.list_jobs() if "/generate-" in j.name]
        if len(generate) == 2 and all(j.state == "JOB_STATE_COMPLETED" for j in generate):
            break
        threading.Event().wait(0.05)
    else:
        raise AssertionError("the matrix did not finish")
    held = run_pass(
        paths,
        root=tmp_path,
        provider=FireworksProvider(client),
        project=PROJECT,
        options=no_download,
    )
    first = held.plan.stages[0]
    assert (first.name, first.state) == ("generate", "completed")
    assert "  1. generate (2 jobs): completed" in plan_text(held.plan)
    converge(paths, tmp_path, client)
    assert one_pass(paths, tmp_path, client).plan.stages[0].state == "done"


FIELDS_PIPELINE = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: items}
spec:
  source: {path: data/items.csv, idColumn: sku}
  template:
    messages:
      - role: user
        content: '{"name": {{ name | tojson }}, "keep": {{ (keep == "yes") | tojson }}}'
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: tag}
spec:
  inputDataset: items
  model: accounts/fireworks/models/tagger
  inferenceParameters: {maxTokens: 64}
  responseFormat:
    schema:
      type: object
      required: [name, keep]
      properties: {name: {type: string}, keep: {type: boolean}}
---
apiVersion: batchops/v1
kind: Dataset
metadata: {name: kept}
spec:
  source: {job: tag, where: "answer.fields.keep"}
  template:
    messages:
      - role: user
        content: "{{ custom_id }} {{ color }} {{ answer.fields.name }} ({{ answer.text | length }})"
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: review}
spec:
  inputDataset: kept
  model: accounts/fireworks/models/reviewer
  inferenceParameters: {maxTokens: 64}
"""


def test_a_chain_sees_the_upstream_columns_and_parsed_fields_and_filters_on_them(
    tmp_path: Path, client: FireworksClient
) -> None:
    """The downstream template reads the upstream input row's table columns, the answer's text
    and its fields (the upstream declared a responseFormat); `where` keeps the approved rows."""
    paths = write_repo(tmp_path, {}, FIELDS_PIPELINE)
    (tmp_path / "jobs" / "data" / "items.csv").write_text(
        "sku,name,color,keep\na1,Kettle,red,yes\na2,Lamp,blue,no\na3,Mug,green,yes\n"
    )
    converge(paths, tmp_path, client)
    tagged = answers(tmp_path / "results" / "tag.jsonl")
    assert json.loads(tagged["a2"]) == {"name": "Lamp", "keep": False}
    assert answers(tmp_path / "results" / "review.jsonl") == {
        "a1": f"a1 red Kettle ({len(tagged['a1'])})",
        "a3": f"a3 green Mug ({len(tagged['a3'])})",
    }
    assert {n.rsplit("-", 1)[0]: k for n, k in sent_rows(client).items()} == {"tag": 3, "review": 2}


def test_a_stage_waits_for_its_upstreams_row_retries(
    tmp_path: Path, client: FireworksClient
) -> None:
    """An upstream row that failed for a passing reason is sent again (spec.rowRetries): the
    stage after it waits for that retry's results, so it runs once, on every row."""
    paths = write_repo(tmp_path, {"a": "one", "b": "two __transient__"})
    passes = converge(paths, tmp_path, client)
    for result in passes:
        kinds = {(a.kind, a.resource.name.split("-")[0]) for a in result.plan.actions}
        assert not {(Kind.RETRY_JOB, "generate"), (Kind.CREATE_JOB, "judge")} <= kinds
    jobs = sorted(j.name.rsplit("/", 1)[-1] for j in client.list_jobs())
    judges = {j.split("-")[2] for j in jobs if j.startswith("judge-alpha-")}  # its own -t1 too
    assert len(judges) == 1, jobs  # not one on the first results, then another on the retry's
    assert [j for j in jobs if j.startswith("generate-alpha")][1].endswith("-t1"), jobs
    judged = answers(tmp_path / "results" / "judge-alpha.jsonl")
    assert judged["b"] == "judge generate-alpha: two __transient__ => two __transient__"
