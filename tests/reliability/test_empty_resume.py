"""A resume with no rows left (issue 11, section 3): a job that expired after answering every
row (say while writing its results) is not continued by an empty job; its results are whole and
are downloaded as a completed job's are, with no "expired" report (exit 0, not 3)."""

from __future__ import annotations

from batchops.plan import Kind
from batchops.providers.fireworks.wire import JobProgress
from tests.test_plan import World, desired, facts, job_decl, plan_of, simulate


def expire_with(world: World, *, total: int, succeeded: int) -> None:
    for job in world.jobs.values():
        job.state = "JOB_STATE_EXPIRED"
        job.job_progress = JobProgress(
            percent=100, total_input_requests=total, successfully_processed_requests=succeeded
        )


def test_an_expired_job_with_no_rows_left_is_downloaded_not_resumed() -> None:
    d, f, world = desired(["p"], [job_decl("j", "p", max_resumes=3)]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world)
    expire_with(world, total=3, succeeded=3)
    plan = plan_of(d, f, world)
    assert [a.kind for a in plan.actions] == [Kind.DOWNLOAD]
    download = plan.actions[0].download
    assert download is not None and not download.partial


def test_an_empty_continuation_is_not_continued_again() -> None:
    """A continuation that was given no rows at all (total 0) expired: nothing to resume."""
    d, f, world = desired(["p"], [job_decl("j", "p", max_resumes=3)]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world, end_state="JOB_STATE_EXPIRED")
    (resume,) = plan_of(d, f, world).actions
    assert resume.kind is Kind.RESUME_JOB  # rows were left: the control case resumes
    simulate(plan_of(d, f, world), world)
    expire_with(world, total=0, succeeded=0)
    assert [a.kind for a in plan_of(d, f, world).actions] == [Kind.DOWNLOAD]
