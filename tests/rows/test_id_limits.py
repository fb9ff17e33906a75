"""Canary and retry job IDs never pass the provider's ID limit (issue 14): a maximal-length name
plus ``-canary-<hash>-t<k>-r<j>-out`` is shortened deterministically, keeps its uniqueness through
hashes, and is found again by the next pass."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from batchops.identity import (
    DEFAULT_ID_LIMIT,
    job_id,
    job_key,
    name_matches,
    output_dataset_id,
    parse_job_id,
)
from batchops.manifest.models import NAME_MAX
from batchops.plan import Kind, Observed, PlanOptions, make_plan
from batchops.plan.canary import canary_name
from batchops.providers.fireworks.wire import BatchInferenceJob, JobProgress
from tests.e2e.test_apply_cli import WAIT, InProcess, inproc, make_repo
from tests.test_plan import ACCOUNT, PROJECT, World, desired, facts, job_decl, simulate

__all__ = ["inproc"]  # the fixture

FIREWORKS_ID = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # the wire contract's pattern
LONG = "a" * (NAME_MAX - 4) + "-xyz"  # 40 characters, the longest a manifest allows
MAX_ATTEMPT = 10 + 100  # rowRetries (at most 10) + maxRetries (at most 100)
MAX_RESUME = 100  # maxResumes (at most 100)


def base_of(name: str) -> str:
    return job_id(
        PROJECT,
        name,
        model="m",
        input_dataset_id="d-0123456789",
        inference_parameters={},
        precision=None,
    )


SHAPES = [
    (0, 0),
    (1, 0),
    (0, 1),
    (2, 3),
    (MAX_ATTEMPT, 0),
    (0, MAX_RESUME),
    (MAX_ATTEMPT, MAX_RESUME),
    (9, 99),
    (10, 100),
]


@pytest.mark.parametrize("name", [LONG, canary_name(LONG), "short"])
@pytest.mark.parametrize(("attempt", "resume"), SHAPES)
def test_every_derived_id_fits_and_parses_back(name: str, attempt: int, resume: int) -> None:
    base = base_of(name)
    key = job_key(base, attempt=attempt, resume=resume)
    for rid in (key, output_dataset_id(key)):
        assert len(rid) <= DEFAULT_ID_LIMIT and FIREWORKS_ID.fullmatch(rid), rid
    parts = parse_job_id(key)
    assert parts is not None and (parts.attempt, parts.resume) == (attempt, resume)
    assert parts.of_base(base) and name_matches(parts.name, name)
    assert job_key(base, attempt=attempt, resume=resume) == key  # deterministic
    unshortened = f"{base}{f'-t{attempt}' if attempt else ''}{f'-r{resume}' if resume else ''}"
    if len(unshortened) + len("-out") <= DEFAULT_ID_LIMIT:
        assert key == unshortened  # IDs that fit are the IDs made before (nothing moves)


def test_before_this_the_longest_shapes_did_not_fit() -> None:
    """The regression: ``<40-char name>-<hash>-t10-r100-out`` is 67 characters."""
    base = base_of(LONG)
    assert len(output_dataset_id(f"{base}-t10-r100")) > DEFAULT_ID_LIMIT
    assert len(output_dataset_id(f"{base_of(canary_name(LONG))}-t1-r1")) > DEFAULT_ID_LIMIT


def test_shortened_ids_stay_unique_and_apart() -> None:
    """Names that share the kept head differ in their name hash; a job whose name is the head
    of another's never takes the other's IDs for its own."""
    a, b = LONG, LONG[:-1] + "w"
    ka, kb = (job_key(base_of(n), attempt=MAX_ATTEMPT, resume=MAX_RESUME) for n in (a, b))
    assert ka != kb
    pa, pb = parse_job_id(ka), parse_job_id(kb)
    assert pa is not None and pb is not None
    assert not name_matches(pa.name, b) and not name_matches(pb.name, a)
    head = pa.name.rsplit("-", 1)[0]
    assert not name_matches(pa.name, head) and not pa.of_base(base_of(head))
    assert not name_matches(pa.name, a + "x")


def wire_job(rid: str, state: str, input_id: str, display: str) -> BatchInferenceJob:
    return BatchInferenceJob(
        name=f"accounts/{ACCOUNT}/batchInferenceJobs/{rid}",
        display_name=display,
        state=state,
        model="accounts/fireworks/models/m",
        input_dataset_id=f"accounts/{ACCOUNT}/datasets/{input_id}",
        output_dataset_id=f"accounts/{ACCOUNT}/datasets/{output_dataset_id(rid)}",
        update_time="2026-01-01T00:00:01Z",
        create_time="2026-01-01T00:00:01Z",
        job_progress=JobProgress(
            percent=40, total_input_requests=3, successfully_processed_requests=1
        ),
    )


def test_the_next_pass_finds_a_shortened_attempt_again() -> None:
    """A family whose latest job has a shortened ID (attempt 10, resume 99 of a 40-character
    name): the plan resumes it once more within 63 characters, and a pass after that finds the
    continuation (no new job, no replacement), then downloads the whole lineage."""
    d = desired(["p"], [job_decl(LONG, "p", max_resumes=MAX_RESUME, max_retries=100)])
    f, world = facts(["p"]), World()
    first = make_plan(d, f, Observed(), {}, PlanOptions(), project=PROJECT)
    (create,) = [a for a in first.actions if a.job is not None]
    simulate(first, world)  # the dataset, and a job: replaced below by the shortened attempt
    base, done = create.resource.remote_id, world.jobs.pop(create.resource.remote_id)
    input_id = (done.input_dataset_id or "").rsplit("/", 1)[-1]
    latest = job_key(base, attempt=10, resume=99)
    world.jobs[latest] = wire_job(latest, "JOB_STATE_EXPIRED", input_id, done.display_name or "")
    options = PlanOptions()
    plan = make_plan(d, f, world.observed(), {}, options, project=PROJECT)
    (resume,) = plan.actions
    assert resume.kind is Kind.RESUME_JOB and resume.job is not None
    assert resume.job.continued_from == latest
    new = resume.resource.remote_id
    assert new == job_key(base, attempt=10, resume=100) and new != f"{base}-t10-r100"
    assert len(resume.job.output_dataset_id) <= DEFAULT_ID_LIMIT
    display = done.display_name or ""
    world.jobs[new] = wire_job(new, "JOB_STATE_RUNNING", input_id, display)
    (wait,) = make_plan(d, f, world.observed(), {}, options, project=PROJECT).actions
    assert wait.kind is Kind.WAIT and wait.resource.remote_id == new  # found again
    world.jobs[new] = wire_job(new, "JOB_STATE_COMPLETED", input_id, display)
    (download,) = make_plan(d, f, world.observed(), {}, options, project=PROJECT).actions
    assert download.kind is Kind.DOWNLOAD and download.download is not None
    assert download.download.job_ids == (latest, new)
    pruned = make_plan(d, f, world.observed(), {}, PlanOptions(prune=True), project=PROJECT)
    assert not [a for a in pruned.actions if a.kind is Kind.PRUNE_JOB]  # ours, declared


def test_a_provider_with_a_shorter_limit_gets_ids_that_fit_it() -> None:
    """The limit is the provider's (``Provider.max_id_length``), read per job."""
    d = desired(["p"], [job_decl(LONG, "p")])
    observed = Observed(id_limits=(("fireworks", 50),))
    plan = make_plan(d, facts(["p"]), observed, {}, PlanOptions(), project=PROJECT)
    (create,) = [a for a in plan.actions if a.job is not None]
    assert len(output_dataset_id(create.resource.remote_id)) <= 50
    assert create.job is not None and create.job.job_id == create.resource.remote_id
    parts = parse_job_id(create.resource.remote_id)
    assert parts is not None and name_matches(parts.name, LONG)


def test_a_maximal_name_with_a_canary_runs_on_the_backend(
    tmp_path: Path, inproc: InProcess
) -> None:
    """The local backend refuses IDs over 63 characters, as Fireworks does: the canary, the full
    job and a row retry of a 40-character name all run, and the next plan has nothing to do."""
    root = make_repo(tmp_path, fail={4}, jobs={LONG: {"canary": {"rows": 3}, "maxFailedRows": 1}})
    applied = inproc(root, *WAIT)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    with inproc.client() as client:
        ids = [(j.name or "").rsplit("/", 1)[-1] for j in client.list_jobs()]
    assert len(ids) == 4 and all(len(output_dataset_id(i)) <= DEFAULT_ID_LIMIT for i in ids)
    assert any("-canary-" in i for i in ids) and any(i.endswith("-t2") for i in ids), ids
    assert "No changes" in inproc(root, "plan").stdout


def test_a_spec_change_finds_the_older_specs_shortened_jobs() -> None:
    """The job of an older spec whose ID was shortened (a provider with a shorter limit) is the
    one the replacement is compared with, and is named when it keeps running."""
    f, world = facts(["p"]), World()
    observed = Observed(id_limits=(("fireworks", 50),))
    old = desired(["p"], [job_decl(LONG, "p")])
    first = make_plan(old, f, observed, {}, PlanOptions(), project=PROJECT)
    simulate(first, world, end_state="JOB_STATE_RUNNING")
    (running,) = world.jobs
    assert not running.startswith(LONG)  # shortened
    new = desired(["p"], [job_decl(LONG, "p", max_tokens=512)])
    seen = dataclasses.replace(world.observed(), id_limits=observed.id_limits)
    (replace,) = make_plan(new, f, seen, {}, PlanOptions(), project=PROJECT).actions
    assert replace.kind is Kind.REPLACE_JOB, replace.reason
    assert "inferenceParameters.maxTokens 256 -> 512" in replace.reason
    assert f"the old job {running} keeps running" in replace.reason
