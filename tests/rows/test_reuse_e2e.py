"""Reuse end to end: run_pass against the local backend (issue 14). Assertions are on what the
server holds and what is on disk."""

from __future__ import annotations

import json
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

PROJECT = "proj"
MODEL = "accounts/fireworks/models/m"


def write_repo(
    root: Path, prompts: dict[str, str], *, reuse: bool = True, tokens: int = 16
) -> list[Path]:
    data = root / "jobs" / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"custom_id": cid, "body": {"messages": [{"role": "user", "content": text}]}})
        for cid, text in prompts.items()
    ]
    (data / "p.jsonl").write_text("\n".join(lines) + "\n")
    (root / "jobs" / "m.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: data/p.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        f"spec: {{model: {MODEL}, inputDataset: p, reuse: {str(reuse).lower()}, "
        f"inferenceParameters: {{maxTokens: {tokens}}}}}\n"
    )
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


def converge(paths: list[Path], root: Path, client: FireworksClient) -> PassResult:
    for _ in range(200):
        result = one_pass(paths, root, client)
        assert result.errors == []
        if result.converged:
            return result
        threading.Event().wait(0.05)
    raise AssertionError("did not converge")


def results(root: Path) -> dict[str, dict[str, object]]:
    lines = (root / "results" / "j.jsonl").read_text().splitlines()
    return {row["custom_id"]: row for row in map(json.loads, lines)}


def sent_rows(client: FireworksClient) -> dict[str, int]:
    """Rows each job of the account was given to answer (its input dataset's row count)."""
    datasets = {d.name.rsplit("/", 1)[-1]: d for d in client.list_datasets()}
    return {
        job.name.rsplit("/", 1)[-1]: int(
            datasets[(job.input_dataset_id or "").rsplit("/", 1)[-1]].example_count or 0
        )
        for job in client.list_jobs()
    }


def asked(row: dict[str, object]) -> str:
    """The prompt an echo-engine answer answers."""
    return json.dumps(row["response"])


PROMPTS = {f"c{i}": f"question {i}" for i in range(10)}


def test_a_changed_dataset_sends_only_its_new_rows(tmp_path: Path, client: FireworksClient) -> None:
    paths = write_repo(tmp_path, PROMPTS)
    converge(paths, tmp_path, client)
    first = results(tmp_path)
    (job1,) = sent_rows(client)
    assert {row["job"] for row in first.values()} == {job1}

    edited = {**PROMPTS, "c3": "question three", "c10": "question 10"}
    paths = write_repo(tmp_path, edited)
    plan = one_pass(paths, tmp_path, client).plan
    (create,) = [a for a in plan.actions if a.kind is Kind.REPLACE_JOB]
    assert create.rows_to_send == 2 and create.details["rowsReused"] == 9
    assert "2 new rows, 9 reused from j" in create.reason
    assert plan.cost is not None  # cost counts only the rows to send
    assert [(c.job, c.rows) for c in plan.cost.actions] == [("j", 2)]
    uploads = [a for a in plan.actions if a.kind is Kind.CREATE_DATASET]
    assert [(a.details["derivedFor"], a.details["rows"]) for a in uploads] == [("j", 2)]
    assert uploads[0].reason == "the 2 new rows of job j"
    converge(paths, tmp_path, client)

    sent = sent_rows(client)
    (job2,) = set(sent) - {job1}
    assert sent == {job1: 10, job2: 2}  # only the changed and the added row were sent
    merged = results(tmp_path)
    assert sorted(merged) == sorted(edited)
    assert {cid for cid, row in merged.items() if row["job"] == job2} == {"c3", "c10"}
    for cid, row in merged.items():  # each row answers its own request
        assert edited[cid] in asked(row)
        assert cid in ("c3", "c10") or asked(row) == asked(first[cid])
    again = one_pass(paths, tmp_path, client)
    assert again.converged and again.plan.actions == ()  # stable: the job is its own, not reused


def test_every_row_reused_needs_no_job(tmp_path: Path, client: FireworksClient) -> None:
    paths = write_repo(tmp_path, PROMPTS)
    converge(paths, tmp_path, client)
    fewer = {cid: text for cid, text in PROMPTS.items() if cid != "c5"}
    paths = write_repo(tmp_path, fewer)
    plan = one_pass(paths, tmp_path, client).plan
    assert [a.kind for a in plan.actions] == [Kind.DOWNLOAD]
    assert "all 9 rows reused from j" in plan.actions[0].reason
    converge(paths, tmp_path, client)
    assert len(sent_rows(client)) == 1 and sorted(results(tmp_path)) == sorted(fewer)
    assert one_pass(paths, tmp_path, client).plan.actions == ()


def test_reuse_false_and_a_changed_parameter_send_every_row(
    tmp_path: Path, client: FireworksClient
) -> None:
    paths = write_repo(tmp_path, PROMPTS)
    converge(paths, tmp_path, client)
    converge(write_repo(tmp_path, PROMPTS, tokens=17), tmp_path, client)
    assert sorted(sent_rows(client).values()) == [10, 10]  # a parameter: every request is new
    paths = write_repo(tmp_path, {**PROMPTS, "c0": "x"}, tokens=17, reuse=False)
    (replace,) = [a for a in one_pass(paths, tmp_path, client).plan.actions if a.job is not None]
    assert replace.rows_to_send == 10 and "reused" not in replace.reason
    converge(paths, tmp_path, client)
    assert sorted(sent_rows(client).values()) == [10, 10, 10]


def test_an_empty_state_dir_finds_earlier_answers_through_the_provider(
    tmp_path: Path, client: FireworksClient
) -> None:
    """A fresh CI checkout: no .batchops/ and no results; earlier answers are downloaded."""
    paths = write_repo(tmp_path, PROMPTS)
    converge(paths, tmp_path, client)
    (job1,) = sent_rows(client)
    first = results(tmp_path)
    fresh = tmp_path / "fresh"
    paths = write_repo(fresh, {**PROMPTS, "c3": "question three"})
    (fresh / "batchops.yaml").write_text(
        f"apiVersion: batchops/v1\nkind: Project\nmetadata: {{name: {PROJECT}}}\n"
    )
    plan = one_pass(paths, fresh, client).plan
    (upload,) = [a for a in plan.actions if a.kind is Kind.CREATE_DATASET]
    assert upload.reason == "the 1 new row of job j"
    converge(paths, fresh, client)
    sent = sent_rows(client)
    assert sorted(sent.values()) == [1, 10]
    merged = results(fresh)
    assert {cid for cid, row in merged.items() if row["job"] != job1} == {"c3"}
    assert all(asked(merged[cid]) == asked(first[cid]) for cid in PROMPTS if cid != "c3")
    assert one_pass(paths, fresh, client).plan.actions == ()


def test_prune_keeps_the_jobs_whose_answers_are_reused_so_a_fresh_checkout_pays_nothing_again(
    tmp_path: Path, client: FireworksClient
) -> None:
    """``--prune`` deletes superseded jobs, but not one whose answers the declared job reuses,
    nor its input: a fresh checkout (empty .batchops/) finds those answers again and sends
    nothing."""
    paths = write_repo(tmp_path, PROMPTS)
    converge(paths, tmp_path, client)
    (job1,) = sent_rows(client)
    edited = {**PROMPTS, "c3": "question three"}
    paths = write_repo(tmp_path, edited)
    converge(paths, tmp_path, client)
    assert sorted(sent_rows(client).values()) == [1, 10]
    pruning = PassOptions(prune=True)
    plan = run_pass(
        paths, root=tmp_path, provider=FireworksProvider(client), project=PROJECT, options=pruning
    ).plan
    assert [a for a in plan.actions if a.kind is Kind.PRUNE_JOB] == []
    assert [a for a in plan.actions if a.kind is Kind.PRUNE_DATASET] == []
    assert plan.superseded_jobs == 0 and plan.orphan_jobs == 0

    fresh = tmp_path / "fresh"  # a fresh checkout of the same commit
    paths = write_repo(fresh, edited)
    (fresh / "batchops.yaml").write_text(
        f"apiVersion: batchops/v1\nkind: Project\nmetadata: {{name: {PROJECT}}}\n"
    )
    plan = one_pass(paths, fresh, client).plan
    assert [a.kind for a in plan.actions] == [Kind.DOWNLOAD]
    assert "(1 new row, 9 reused from j)" in plan.actions[0].reason
    converge(paths, fresh, client)
    assert sorted(sent_rows(client).values()) == [1, 10]  # nothing sent again
    merged = results(fresh)
    assert sorted(merged) == sorted(edited) and merged["c3"]["job"] != job1


def test_prune_deletes_a_superseded_job_no_declared_job_reuses(
    tmp_path: Path, client: FireworksClient
) -> None:
    paths = write_repo(tmp_path, PROMPTS)
    converge(paths, tmp_path, client)
    paths = write_repo(tmp_path, PROMPTS, tokens=17)  # every request new: nothing reused
    converge(paths, tmp_path, client)
    pruning = PassOptions(prune=True)
    plan = run_pass(
        paths, root=tmp_path, provider=FireworksProvider(client), project=PROJECT, options=pruning
    ).plan
    (prune,) = [a for a in plan.actions if a.kind is Kind.PRUNE_JOB]
    assert prune.reason.startswith("superseded")


def test_the_input_tokens_of_the_rows_sent_are_counted_not_prorated(
    tmp_path: Path, client: FireworksClient
) -> None:
    """A job reusing most rows sends a file of its new rows: the plan counts exactly those rows'
    tokens (the same count the local backend bills), not the dataset's share by row count."""
    short = {f"c{i}": "hi" for i in range(10)}
    paths = write_repo(tmp_path, short)
    converge(paths, tmp_path, client)
    edited = {**short, "c3": "a much longer question than any other row asks, by far"}
    paths = write_repo(tmp_path, edited)
    plan = one_pass(paths, tmp_path, client).plan
    assert plan.cost is not None
    (cost,) = plan.cost.actions
    assert cost.rows == 1
    converge(paths, tmp_path, client)
    billed = [row for row in results(tmp_path).values() if row["job"] == cost.remote_id]
    assert len(billed) == 1
    usage = billed[0]["usage"]
    assert isinstance(usage, dict)
    assert cost.input_tokens == usage["input_tokens"]
