"""The pure planner: the decision table, and Hypothesis properties over an in-memory world.

The world is a dict of wire resources; ``simulate`` applies a plan to it the way the server and the
disk would (datasets become READY, jobs reach a chosen end state, downloads leave verified results).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchops.errors import ConfigError
from batchops.identity import marked_display_name, output_dataset_id
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl, Source
from batchops.plan import Kind, Observed, Plan, PlanOptions, make_plan
from batchops.providers.fireworks.provider import input_from_wire, job_from_wire
from batchops.providers.fireworks.wire import (
    BatchInferenceJob,
    Dataset,
    InferenceParameters,
    JobProgress,
    Status,
)
from batchops.results import FileStamp, LocalResult, MergeCounts, ResultRecord

PROJECT = "proj"
ROOT = Path("/repo")
ACCOUNT = "acct"


@dataclass(frozen=True)
class Facts:
    sha256: str
    rows: int
    size: int


def ds_decl(name: str) -> DatasetDecl:
    return DatasetDecl(
        name=name,
        path=f"data/{name}.jsonl",
        files=(ROOT / f"{name}.jsonl",),
        source=Source("jobs/a.yaml"),
    )


def job_decl(name: str, dataset: str, max_tokens: int = 256, **kw: object) -> JobDecl:
    return JobDecl(
        name=name,
        model="accounts/fireworks/models/m",
        source=Source("jobs/a.yaml"),
        input_dataset=dataset,
        inference_parameters={"maxTokens": max_tokens},
        output_path=ROOT / "results" / f"{name}.jsonl",
        output_display=f"results/{name}.jsonl",
        **kw,  # type: ignore[arg-type]
    )


def desired(datasets: list[str], jobs: list[JobDecl]) -> Desired:
    return Desired(root=ROOT, datasets=tuple(ds_decl(d) for d in datasets), jobs=tuple(jobs))


def facts(names: list[str], version: int = 0) -> dict[str, Facts]:
    return {n: Facts(sha256=f"{n}{version}".ljust(64, "0"), rows=3, size=100) for n in names}


@dataclass
class World:
    datasets: dict[str, Dataset] = dataclasses.field(default_factory=dict)
    jobs: dict[str, BatchInferenceJob] = dataclasses.field(default_factory=dict)
    local: dict[str, LocalResult] = dataclasses.field(default_factory=dict)
    clock: int = 0

    def observed(self, shuffle: random.Random | None = None) -> Observed:
        ds, jobs = list(self.datasets.values()), list(self.jobs.values())
        if shuffle:
            shuffle.shuffle(ds)
            shuffle.shuffle(jobs)
        return Observed(
            datasets=tuple(input_from_wire(d) for d in ds),
            jobs=tuple(job_from_wire(j) for j in jobs),
        )

    def tick(self) -> str:
        self.clock += 1
        return f"2026-01-01T00:00:{self.clock:02d}Z"


def record(name: str, last_job: str) -> LocalResult:
    stamp = FileStamp(f"/repo/results/{name}.jsonl", 1, 1, "0" * 64)
    rec = ResultRecord(name, (last_job,), stamp, stamp, MergeCounts(3, 3, 0, 0, 0))
    return LocalResult(record=rec, verified=True)


def simulate(plan: Plan, world: World, *, end_state: str = "JOB_STATE_COMPLETED") -> None:
    """What apply would leave behind, finished: the server's part and the disk's part."""
    for a in plan.actions:
        rid = a.resource.remote_id
        if a.kind is Kind.CREATE_DATASET and a.dataset:
            world.datasets[rid] = Dataset(
                name=f"accounts/{ACCOUNT}/datasets/{rid}",
                display_name=a.dataset.display_name,
                state="READY",
                example_count="3",
                create_time=(when := world.tick()),
                update_time=when,
            )
        elif a.job is not None:
            world.jobs[rid] = _job(a.job.job_id, a.job.display_name, end_state, world.tick(), a)
        elif a.kind is Kind.DOWNLOAD:
            world.local[a.resource.name] = record(a.resource.name, rid)
        elif a.kind is Kind.PRUNE_JOB:
            world.jobs.pop(rid)
        elif a.kind is Kind.PRUNE_DATASET:
            world.datasets.pop(rid)


def _job(rid: str, display: str, state: str, when: str, action: object) -> BatchInferenceJob:
    spec = action.job  # type: ignore[attr-defined]
    return BatchInferenceJob(
        name=f"accounts/{ACCOUNT}/batchInferenceJobs/{rid}",
        display_name=display,
        state=state,
        model=spec.model,
        input_dataset_id=f"accounts/{ACCOUNT}/datasets/{spec.input_dataset_id}",
        output_dataset_id=f"accounts/{ACCOUNT}/datasets/{output_dataset_id(rid)}",
        inference_parameters=InferenceParameters.model_validate(spec.inference_parameters),
        update_time=when,
        create_time=when,
        job_progress=JobProgress(
            percent=40, total_input_requests=3, successfully_processed_requests=1
        ),
    )


def plan_of(d: Desired, f: dict[str, Facts], world: World, **options: bool) -> Plan:
    return make_plan(d, f, world.observed(), world.local, PlanOptions(**options), project=PROJECT)


def kinds(plan: Plan) -> list[tuple[str, str]]:
    return [(a.kind.value, a.resource.name) for a in plan.actions]


# -- the decision table ------------------------------------------------------------------------


def test_empty_world_creates_datasets_then_jobs_with_ordering() -> None:
    d = desired(["prompts"], [job_decl("summarize", "prompts")])
    plan = plan_of(d, facts(["prompts"]), World())
    assert kinds(plan) == [("create-dataset", "prompts"), ("create-job", "summarize")]
    create_ds, create_job = plan.actions
    assert create_job.after == create_ds.resource.remote_id
    assert create_job.job is not None and create_job.job.display_name.endswith("[batchops:proj]")
    assert create_ds.details["rows"] == 3 and create_ds.details["size"] == 100


def test_completed_job_downloads_once_then_nothing() -> None:
    d, f, world = desired(["p"], [job_decl("j", "p")]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world)
    plan = plan_of(d, f, world)
    assert kinds(plan) == [("download", "j")]
    assert plan.actions[0].group == "local" and not plan.remote_changes
    simulate(plan, world)
    assert plan_of(d, f, world).actions == ()


def test_no_download_skips_local_actions() -> None:
    d, f, world = desired(["p"], [job_decl("j", "p")]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world)
    assert plan_of(d, f, world, download=False).actions == ()


def test_edited_results_are_downloaded_again() -> None:
    d, f, world = desired(["p"], [job_decl("j", "p")]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world)
    simulate(plan_of(d, f, world), world)
    rec = world.local["j"].record
    world.local["j"] = LocalResult(record=rec, verified=False)
    plan = plan_of(d, f, world)
    assert kinds(plan) == [("download", "j")]
    assert "do not match" in plan.actions[0].reason


def test_running_job_waits_with_progress_and_unknown_states_wait_too() -> None:
    d, f, world = desired(["p"], [job_decl("j", "p")]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world, end_state="JOB_STATE_RUNNING")
    wait = plan_of(d, f, world).actions
    assert [a.kind for a in wait] == [Kind.WAIT] and wait[0].details["percent"] == 40
    for job in world.jobs.values():
        job.state = "JOB_STATE_SOMETHING_NEW"
    assert [a.kind for a in plan_of(d, f, world).actions] == [Kind.WAIT]


def test_spec_change_replaces_and_says_the_old_job_keeps_running() -> None:
    f, world = facts(["p"]), World()
    simulate(
        plan_of(desired(["p"], [job_decl("j", "p")]), f, world),
        world,
        end_state="JOB_STATE_RUNNING",
    )
    plan = plan_of(desired(["p"], [job_decl("j", "p", max_tokens=512)]), f, world)
    (action,) = plan.actions
    assert action.kind is Kind.REPLACE_JOB
    assert "inferenceParameters.maxTokens 256 -> 512" in action.reason
    assert "keeps running and is billed unless pruned" in action.reason
    simulate(plan, world)
    pruned = plan_of(desired(["p"], [job_decl("j", "p", max_tokens=512)]), f, world, prune=True)
    assert [a.kind for a in pruned.actions if a.is_change] == [Kind.PRUNE_JOB, Kind.DOWNLOAD]


def test_display_name_output_path_and_labels_do_not_replace() -> None:
    f, world = facts(["p"]), World()
    d = desired(["p"], [job_decl("j", "p")])
    simulate(plan_of(d, f, world), world)
    simulate(plan_of(d, f, world), world)
    renamed = desired(["p"], [job_decl("j", "p", display_name="Pretty", labels={"a": "b"})])
    assert plan_of(renamed, f, world).actions == ()


def test_failed_job_is_reported_and_retried_only_when_asked() -> None:
    d, f, world = desired(["p"], [job_decl("j", "p")]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world, end_state="JOB_STATE_FAILED")
    for job in world.jobs.values():
        job.status = Status(code="INTERNAL", message="worker lost")
    (failed,) = plan_of(d, f, world).actions
    assert failed.kind is Kind.FAILED and not failed.is_change
    assert "worker lost" in failed.reason
    (retry,) = plan_of(d, f, world, retry_failed=True).actions
    assert retry.kind is Kind.RETRY_JOB and retry.resource.remote_id.endswith("-t1")


def fail_all(world: World, code: str, message: str) -> None:
    for job in world.jobs.values():
        job.status = Status(code=code, message=message)


def test_retry_failed_never_loops_past_max_retries() -> None:
    """Pass after pass with --retry-failed, a transient failure that keeps happening: at most
    maxRetries new jobs, then the failure is reported and nothing more is created."""
    for max_retries in (0, 1, 3):
        d = desired(["p"], [job_decl("j", "p", max_retries=max_retries)])
        f, world = facts(["p"]), World()
        for _ in range(10):
            simulate(plan_of(d, f, world, retry_failed=True), world, end_state="JOB_STATE_FAILED")
            fail_all(world, "INTERNAL", "worker lost")
        assert len(world.jobs) == 1 + max_retries
        (final,) = plan_of(d, f, world, retry_failed=True).actions
        assert final.kind is Kind.FAILED
        assert f"all {max_retries} retries used (maxRetries)" in final.reason


def test_a_permanent_failure_is_never_retried() -> None:
    for code, message in (
        ("INVALID_ARGUMENT", "Dataset has a syntax error: invalid role"),
        ("NOT_FOUND", "model accounts/x/models/nope not found"),
        ("INTERNAL", "Unknown model accounts/x/models/nope"),
    ):
        d, f, world = desired(["p"], [job_decl("j", "p", max_retries=5)]), facts(["p"]), World()
        simulate(plan_of(d, f, world), world, end_state="JOB_STATE_FAILED")
        fail_all(world, code, message)
        (failed,) = plan_of(d, f, world, retry_failed=True).actions
        assert failed.kind is Kind.FAILED
        assert "not retried: the failure is permanent" in failed.reason
        assert message in failed.reason


def test_replacement_after_a_revert_compares_with_the_matching_spec() -> None:
    """A -> B -> A with a new dataset: a dataset change against A's job, not B's parameters."""
    world = World()
    spec_a, spec_b = job_decl("j", "p"), job_decl("j", "p", max_tokens=999)
    simulate(plan_of(desired(["p"], [spec_a]), facts(["p"]), world), world)
    simulate(plan_of(desired(["p"], [spec_b]), facts(["p"]), world), world)
    plan = plan_of(desired(["p"], [spec_a]), facts(["p"], version=1), world)
    (replace,) = [a for a in plan.actions if a.kind is Kind.REPLACE_JOB]
    assert "inferenceParameters" not in replace.reason
    assert replace.reason.startswith("spec changed: input p-")
    params = {rid: job.inference_parameters for rid, job in world.jobs.items()}
    old_a = next(rid for rid, p in params.items() if p and p.max_tokens == 256)
    assert replace.details["replaces"] == old_a
    old_b = next(rid for rid in world.jobs if rid != old_a)
    world.jobs[old_b].state = "JOB_STATE_RUNNING"  # the newer spec's job still runs: say so
    plan = plan_of(desired(["p"], [spec_a]), facts(["p"], version=1), world)
    (replace,) = [a for a in plan.actions if a.kind is Kind.REPLACE_JOB]
    assert replace.details["replaces"] == old_a
    assert f"the old job {old_b} keeps running and is billed unless pruned" in replace.reason


def test_results_on_disk_without_a_record_say_record_missing() -> None:
    d, f, world = desired(["p"], [job_decl("j", "p")]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world)
    world.local["j"] = LocalResult(record=None, verified=False, present=True)
    (download,) = plan_of(d, f, world).actions
    assert download.kind is Kind.DOWNLOAD and download.reason.startswith("record missing")
    world.local["j"] = LocalResult(record=None, verified=False, present=False)
    (download,) = plan_of(d, f, world).actions
    assert download.reason == "results not on disk"


def test_expired_job_resumes_until_max_resumes_then_reports_and_downloads() -> None:
    d, f, world = desired(["p"], [job_decl("j", "p", max_resumes=2)]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world, end_state="JOB_STATE_EXPIRED")
    for k in (1, 2):
        (resume,) = plan_of(d, f, world).actions
        assert resume.kind is Kind.RESUME_JOB and resume.resource.remote_id.endswith(f"-r{k}")
        assert resume.details["attempt"] == k and resume.details["rowsLeft"] == 2
        assert resume.job is not None and resume.job.continued_from is not None
        simulate(plan_of(d, f, world), world, end_state="JOB_STATE_EXPIRED")
    final = plan_of(d, f, world)
    # the rows it never reached are retried as transient failures (rowRetries, 2 by default):
    # the partial results are merged, not reported as a failure yet
    assert kinds(final) == [("download", "j")]
    assert "the rows it never reached are sent again" in final.actions[0].reason
    download = final.actions[0].download
    assert download is not None and download.partial and len(download.job_ids) == 3
    no_retries = desired(["p"], [job_decl("j", "p", max_resumes=2, row_retries=0)])
    final = plan_of(no_retries, f, world)
    assert kinds(final) == [("expired", "j"), ("download", "j")]
    download = final.actions[1].download
    assert download is not None and download.partial and len(download.job_ids) == 3


def test_stop_on_expired_does_not_resume() -> None:
    d = desired(["p"], [job_decl("j", "p", on_expired="stop")])
    f, world = facts(["p"]), World()
    simulate(plan_of(d, f, world), world, end_state="JOB_STATE_EXPIRED")
    assert [a.kind for a in plan_of(d, f, world).actions] == [Kind.EXPIRED, Kind.DOWNLOAD]


def test_dataset_stuck_uploading_is_uploaded_again() -> None:
    d, f, world = desired(["p"], []), facts(["p"]), World()
    simulate(plan_of(d, f, world), world)
    for ds in world.datasets.values():
        ds.state = "UPLOADING"
    (action,) = plan_of(d, f, world).actions
    assert action.kind is Kind.CREATE_DATASET and "stuck" in action.reason


def test_resources_with_our_id_but_not_our_mark_are_conflicts() -> None:
    d, f, world = desired(["p"], []), facts(["p"]), World()
    simulate(plan_of(d, f, world), world)
    for ds in world.datasets.values():
        ds.display_name = "someone else's"
    (action,) = plan_of(d, f, world, prune=True).actions
    assert action.kind is Kind.CONFLICT


def test_prune_touches_only_our_project_and_refuses_an_empty_desired_set() -> None:
    d, f, world = desired(["p"], [job_decl("j", "p")]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world)
    theirs = Dataset(
        name="accounts/acct/datasets/x-0123456789",
        state="READY",
        display_name=marked_display_name("x", "other"),
    )
    world.datasets["x-0123456789"] = theirs
    with pytest.raises(ConfigError):
        plan_of(desired([], []), f, world, prune=True)
    plan = plan_of(desired([], []), f, world, prune=True, allow_empty=True)
    assert sorted(a.kind.value for a in plan.actions) == ["prune-dataset", "prune-job"]
    assert all(a.resource.remote_id != "x-0123456789" for a in plan.actions)


def test_fingerprint_moves_with_the_world() -> None:
    d, f, world = desired(["p"], [job_decl("j", "p")]), facts(["p"]), World()
    simulate(plan_of(d, f, world), world, end_state="JOB_STATE_RUNNING")
    before = plan_of(d, f, world).fingerprint
    assert plan_of(d, f, world).fingerprint == before
    for job in world.jobs.values():
        job.state, job.update_time = "JOB_STATE_COMPLETED", world.tick()
    assert plan_of(d, f, world).fingerprint != before


# -- properties --------------------------------------------------------------------------------

DATASET_NAMES = ["alpha", "beta", "gamma"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Desired, dict[str, Facts]]:
    names = draw(st.lists(st.sampled_from(DATASET_NAMES), unique=True, max_size=3))
    jobs = []
    for i in range(draw(st.integers(0, 4)) if names else 0):
        dataset = draw(st.sampled_from(names))
        jobs.append(job_decl(f"job{i}", dataset, max_tokens=draw(st.sampled_from([64, 128]))))
    return desired(names, jobs), facts(names, draw(st.integers(0, 1)))


@settings(max_examples=40, deadline=None)
@given(scenarios(), scenarios(), st.booleans())
def test_apply_then_replan_is_empty(
    before: tuple[Desired, dict[str, Facts]], after: tuple[Desired, dict[str, Facts]], prune: bool
) -> None:
    world = World()
    simulate(plan_of(*before, world), world)  # some earlier state of the account
    d, f = after
    options = {"prune": prune, "allow_empty": True}
    for _ in range(2):  # create, then download
        simulate(plan_of(d, f, world, **options), world)
    replan = plan_of(d, f, world, **options)
    assert not replan.has_changes, kinds(replan)


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_plan_of_a_world_that_matches_is_empty(scenario: tuple[Desired, dict[str, Facts]]) -> None:
    world = World()
    simulate(plan_of(*scenario, world), world)
    simulate(plan_of(*scenario, world), world)
    assert plan_of(*scenario, world).actions == ()
    assert plan_of(*scenario, world, download=False).remote_changes == []


@settings(max_examples=40, deadline=None)
@given(scenarios(), scenarios())
def test_nothing_is_deleted_without_prune(
    before: tuple[Desired, dict[str, Facts]], after: tuple[Desired, dict[str, Facts]]
) -> None:
    world = World()
    simulate(plan_of(*before, world), world)
    plan = plan_of(*after, world)
    assert not any(a.kind in (Kind.PRUNE_JOB, Kind.PRUNE_DATASET) for a in plan.actions)


@settings(max_examples=40, deadline=None)
@given(scenarios(), scenarios(), st.randoms(use_true_random=False))
def test_plan_does_not_depend_on_input_order(
    before: tuple[Desired, dict[str, Facts]],
    after: tuple[Desired, dict[str, Facts]],
    rnd: random.Random,
) -> None:
    world = World()
    simulate(plan_of(*before, world), world, end_state="JOB_STATE_RUNNING")
    d, f = after
    options = PlanOptions(prune=True, allow_empty=True)
    shuffled = Desired(
        root=ROOT,
        datasets=tuple(rnd.sample(d.datasets, len(d.datasets))),
        jobs=tuple(rnd.sample(d.jobs, len(d.jobs))),
    )
    one = make_plan(d, f, world.observed(), world.local, options, project=PROJECT)
    two = make_plan(shuffled, f, world.observed(rnd), world.local, options, project=PROJECT)
    assert one == two


def test_a_changed_dataset_names_its_newest_older_upload() -> None:
    """``content changed (was X)``: X is the upload made last, whatever the IDs' order."""
    d = desired(["prompts"], [job_decl("j", "prompts")])
    world, ids = World(), []
    for version in range(6):
        plan = plan_of(d, facts(["prompts"], version), world)
        (upload,) = [a for a in plan.actions if a.kind is Kind.CREATE_DATASET]
        if ids:
            assert upload.reason == f"content changed (was {ids[-1]})"
        ids.append(upload.resource.remote_id)
        simulate(plan, world)
    assert ids != sorted(ids)  # creation order is not the IDs' order: the test can tell
