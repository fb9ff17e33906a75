"""The canary end to end against the local backend (issue 14): a sample runs first, the full job
only after it passed, reusing its answers (no row paid twice); --canary-only stops there."""

from __future__ import annotations

import threading
from pathlib import Path

from batchops.plan import Kind
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider
from batchops.reconcile import PassOptions, PassResult, run_pass
from tests.rows.test_reuse_e2e import PROJECT, client, one_pass, results, sent_rows, write_repo

__all__ = ["client"]  # the fixture

PROMPTS = {f"c{i:02}": f"question {i}" for i in range(20)}


def with_canary(root: Path, rows: int = 5, max_failed: int = 0) -> None:
    manifest = root / "jobs" / "m.yaml"
    canary = f"canary: {{rows: {rows}, maxFailedRows: {max_failed}}}, "
    manifest.write_text(manifest.read_text().replace("reuse: true, ", "reuse: true, " + canary))


def until_done(
    paths: list[Path], root: Path, client: FireworksClient, **options: bool
) -> PassResult:
    for _ in range(200):
        result = run_pass(
            paths,
            root=root,
            provider=FireworksProvider(client),
            project=PROJECT,
            options=PassOptions(**options),
        )
        assert result.errors == []
        if result.converged:
            return result
        threading.Event().wait(0.05)
    raise AssertionError("did not converge")


def test_the_full_job_runs_after_its_canary_and_reuses_its_answers(
    tmp_path: Path, client: FireworksClient
) -> None:
    paths = write_repo(tmp_path, PROMPTS)
    with_canary(tmp_path)
    first = one_pass(paths, tmp_path, client).plan
    kinds = sorted(
        (a.kind.value, a.details.get("canary") or a.details.get("canaryFor")) for a in first.actions
    )
    assert kinds == [("create-dataset", "j"), ("create-job", True)]  # no full job, no upload
    (canary,) = [a for a in first.actions if a.kind is Kind.CREATE_JOB]
    assert canary.rows_to_send == 5 and "canary: 5 of 20 rows to send run first" in canary.reason
    assert "-canary-" in canary.resource.remote_id
    until_done(paths, tmp_path, client)
    sent = sent_rows(client)
    (canary_job,) = [job for job in sent if "-canary-" in job]
    assert sorted(sent.values()) == [5, 15]  # no row paid for twice
    merged = results(tmp_path)
    assert sorted(merged) == sorted(PROMPTS)
    assert sum(row["job"] == canary_job for row in merged.values()) == 5
    assert one_pass(paths, tmp_path, client).plan.actions == ()


def test_a_failed_canary_stops_the_full_job(tmp_path: Path, client: FireworksClient) -> None:
    bad = {cid: text + " __invalid__" for cid, text in PROMPTS.items()}
    paths = write_repo(tmp_path, bad)
    with_canary(tmp_path, rows=4, max_failed=1)
    result = until_done(paths, tmp_path, client)
    assert result.failed_jobs == ["j"]
    (failed,) = result.plan.actions
    assert failed.kind is Kind.FAILED
    assert "canary failed: 4 of 4 rows failed (canary.maxFailedRows 1)" in failed.reason
    assert list(sent_rows(client).values()) == [4]  # the full job was never sent


def test_canary_only_runs_just_the_canary(tmp_path: Path, client: FireworksClient) -> None:
    paths = write_repo(tmp_path, PROMPTS)
    with_canary(tmp_path)
    until_done(paths, tmp_path, client, canary_only=True)
    assert list(sent_rows(client).values()) == [5]
    uploaded = [
        d.example_count for d in client.list_datasets() if not (d.name or "").endswith("-out")
    ]
    assert uploaded == ["5"]  # the sample only: the whole dataset waits for the full job
    assert one_pass(paths, tmp_path, client).plan.count(Kind.CREATE_JOB) == 1  # the full job, now


def with_response_format(root: Path) -> None:
    manifest = root / "jobs" / "m.yaml"
    schema = "responseFormat: {schema: {type: object, required: [n]}}, "
    manifest.write_text(manifest.read_text().replace("reuse: true, ", "reuse: true, " + schema))


def test_a_canary_whose_answers_break_response_format_fails(
    tmp_path: Path, client: FireworksClient
) -> None:
    """The server calls every row done; the answers (echoed prompts, not JSON) break the job's
    responseFormat: failed rows of the canary, which stops the full job."""
    paths = write_repo(tmp_path, PROMPTS)
    with_canary(tmp_path, rows=4, max_failed=1)
    with_response_format(tmp_path)
    result = until_done(paths, tmp_path, client)
    assert result.failed_jobs == ["j"]
    (failed,) = result.plan.actions
    assert failed.kind is Kind.FAILED
    assert "canary failed: 4 of 4 rows failed (canary.maxFailedRows 1)" in failed.reason
    assert "4 answers did not match responseFormat" in failed.reason
    assert failed.details["failedRows"] == 4 and failed.details["nonconformingRows"] == 4
    (outcome,) = result.plan.canaries
    assert (outcome.state, outcome.failed_rows) == ("failed", 4)
    assert list(sent_rows(client).values()) == [4]  # the full job was never sent


def test_a_canary_whose_answers_match_response_format_passes(
    tmp_path: Path, client: FireworksClient
) -> None:
    paths = write_repo(tmp_path, {cid: f'{{"n": {i}}}' for i, cid in enumerate(PROMPTS)})
    with_canary(tmp_path, rows=4)
    with_response_format(tmp_path)
    result = until_done(paths, tmp_path, client)
    assert result.failed_jobs == [] and result.row_failures == []
    assert sorted(sent_rows(client).values()) == [4, 16]  # canary answers reused, checked too
    assert sorted(results(tmp_path)) == sorted(PROMPTS)


def test_prune_keeps_a_declared_jobs_canary_before_and_after_the_full_job(
    tmp_path: Path, client: FireworksClient
) -> None:
    """A canary belongs to its job: ``--prune`` neither calls it undeclared nor deletes it, while
    it gates the full job (deleting it would run and bill it again) or after (its answers are
    the full job's)."""
    paths = write_repo(tmp_path, PROMPTS)
    with_canary(tmp_path)
    until_done(paths, tmp_path, client, canary_only=True)
    gating = until_done(paths, tmp_path, client, canary_only=True, prune=True).plan
    assert gating.orphan_jobs == 0 and gating.superseded_jobs == 0
    assert [a for a in gating.actions if a.kind in (Kind.PRUNE_JOB, Kind.PRUNE_DATASET)] == []
    until_done(paths, tmp_path, client)
    after = one_pass(paths, tmp_path, client).plan
    assert after.orphan_jobs == 0 and after.superseded_jobs == 0
    pruned = until_done(paths, tmp_path, client, prune=True).plan
    assert pruned.actions == ()
    assert sorted(sent_rows(client).values()) == [5, 15]  # both jobs still on the account
