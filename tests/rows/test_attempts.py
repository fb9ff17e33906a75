"""Row retries (spec.rowRetries) and `apply --retry-failed` (spec.maxRetries) share the -t<k>
numbers (issue 14): one sequence, no collision, no finished attempt's ID used again, each bounded
by its own limit. The pure planner over the in-memory world of tests/test_plan.py."""

from __future__ import annotations

from pathlib import Path

from batchops.identity import parse_job_id
from batchops.plan import Action, Kind, Plan, PlanOptions, make_plan
from batchops.plan.rows import DerivedInput, FailedRows
from tests.test_plan import PROJECT, World, desired, facts, job_decl, simulate

F = facts(["p"])


def failed_rows(job: str, rows: int = 1) -> dict[str, FailedRows]:
    """The merged results of the family up to ``job`` hold ``rows`` transient failures."""
    sha = f"{job}-{rows}".encode().hex().ljust(64, "0")[:64]
    derived = DerivedInput("p", Path(f"/repo/.batchops/derived/{sha}.jsonl"), sha, rows, 10)
    cids = tuple(f"c{i}" for i in range(rows))
    return {"j": FailedRows(job, cids, (), derived)}


def plan(world: World, *, failing: str | None = None, **options: bool) -> Plan:
    d = desired(["p"], [job_decl("j", "p", max_retries=1, row_retries=2)])
    failed = failed_rows(failing) if failing else None
    return make_plan(
        d,
        F,
        world.observed(),
        world.local,
        PlanOptions(**options),
        project=PROJECT,
        failed_rows=failed,
    )


def job_action(p: Plan) -> Action:
    (action,) = [a for a in p.actions if a.job is not None or a.kind is Kind.FAILED]
    return action


def run(world: World, action: Plan, state: str) -> str:
    """Apply the plan; its job ends in ``state``, and (finished) its results are merged."""
    simulate(action, world, end_state=state)
    (job,) = [a.resource.remote_id for a in action.actions if a.job is not None]
    if state == "JOB_STATE_COMPLETED":
        simulate(plan(world), world)  # the download
    return job


def attempt(job_id: str) -> int:
    parts = parse_job_id(job_id)
    assert parts is not None
    return parts.attempt


def test_a_failed_row_retry_can_still_be_retried_with_the_same_rows() -> None:
    world = World()
    base = run(world, plan(world), "JOB_STATE_COMPLETED")
    row_retry = plan(world, failing=base)
    t1 = run(world, row_retry, "JOB_STATE_FAILED")  # the row retry fails as a whole
    assert attempt(t1) == 1 and "row retry 1 of 2" in job_action(row_retry).reason
    derived = failed_rows(base)["j"].retry
    assert derived is not None
    # a provider that uploads rows per job (OpenAI-compatible) is given just those rows
    assert job_action(row_retry).job.input_files == (derived.path,)  # type: ignore[union-attr]
    again = job_action(plan(world, failing=base, retry_failed=True)).job
    assert again is not None and again.input_files == (derived.path,)
    retry = job_action(plan(world, retry_failed=True))
    # before: "all 1 retries used (maxRetries)": the row retry had taken the retry's budget
    assert retry.kind is Kind.RETRY_JOB and attempt(retry.resource.remote_id) == 2
    assert retry.job is not None
    assert retry.job.input_dataset_id == world.jobs[t1].input_dataset_id.rsplit("/", 1)[-1]
    t2 = run(world, plan(world, retry_failed=True), "JOB_STATE_COMPLETED")
    assert t2 == retry.resource.remote_id
    second = job_action(plan(world, failing=t2))  # rows still failing: row retry 2 of 2
    assert attempt(second.resource.remote_id) == 3 and "row retry 2 of 2" in second.reason
    t3 = run(world, plan(world, failing=t2), "JOB_STATE_COMPLETED")
    assert [a for a in plan(world, failing=t3).actions if a.job is not None] == []  # bounded
    assert len(world.jobs) == 4 == len({attempt(j) for j in world.jobs})  # one number each


def test_a_retried_job_keeps_both_row_retries() -> None:
    world = World()
    base = run(world, plan(world), "JOB_STATE_FAILED")
    t1 = run(world, plan(world, retry_failed=True), "JOB_STATE_COMPLETED")
    assert (attempt(base), attempt(t1)) == (0, 1)
    first = plan(world, failing=t1)
    # before: "row retry 2 of 2", and no second one: the --retry-failed attempt counted as one
    assert "row retry 1 of 2" in job_action(first).reason
    t2 = run(world, first, "JOB_STATE_COMPLETED")
    second = plan(world, failing=t2)
    assert "row retry 2 of 2" in job_action(second).reason
    t3 = run(world, second, "JOB_STATE_COMPLETED")
    assert [attempt(j) for j in (t2, t3)] == [2, 3]
    assert [a for a in plan(world, failing=t3).actions if a.job is not None] == []  # bounded
    failed_again = plan(world, failing=t3, retry_failed=True)
    assert [a for a in failed_again.actions if a.job is not None] == []


def test_retries_are_bounded_by_max_retries_alone() -> None:
    world = World()
    run(world, plan(world), "JOB_STATE_FAILED")
    run(world, plan(world, retry_failed=True), "JOB_STATE_FAILED")
    final = job_action(plan(world, retry_failed=True))
    assert final.kind is Kind.FAILED and "all 1 retries used (maxRetries)" in final.reason
