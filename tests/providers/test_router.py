"""Several providers behind one: ``ProviderSet`` routing, and the planner across providers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from batchops.errors import NotFoundError
from batchops.identity import dataset_id
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl, Source
from batchops.plan import Kind, Observed, PlanOptions, make_plan
from batchops.providers import (
    DatasetSpec,
    JobSpec,
    JobState,
    ProgressFn,
    Provider,
    RemoteInput,
    RemoteJob,
)
from batchops.providers.router import ProviderSet

PROJECT = "proj"
ROOT = Path("/repo")


class Memory:
    """An in-memory provider: the seam tests replace (no method of ours is patched)."""

    kind = "memory"
    max_id_length = 63

    def __init__(self, name: str) -> None:
        self.name = name
        self.jobs: dict[str, RemoteJob] = {}
        self.inputs: dict[str, RemoteInput] = {}
        self.duplicates_cancelled: list[str] = []

    def list_jobs(self, *, project: str | None = None) -> list[RemoteJob]:
        return [j for j in self.jobs.values() if project in (None, j.owner)]

    def list_inputs(self, *, project: str | None = None) -> list[RemoteInput]:
        return [i for i in self.inputs.values() if project in (None, i.owner)]

    def get_input(self, key: str) -> RemoteInput:
        if key not in self.inputs:
            raise NotFoundError(key)
        return self.inputs[key]

    def get_job(self, key: str) -> RemoteJob:
        if key not in self.jobs:
            raise NotFoundError(key)
        return self.jobs[key]

    def create_input(
        self,
        spec: DatasetSpec,
        *,
        project: str,
        progress: ProgressFn | None = None,
        stop: threading.Event | None = None,
        ready_timeout: float = 600.0,
    ) -> None:
        self.inputs[spec.dataset_id] = RemoteInput(
            spec.dataset_id, spec.dataset_id, project, ready=True, provider=self.name
        )

    def create_job(self, spec: JobSpec, *, project: str) -> None:
        remote = f"batch_{len(self.jobs)}"
        self.jobs[spec.job_id] = RemoteJob(
            spec.job_id, remote, project, JobState.WAITING, "queued", provider=self.name
        )

    def delete_job(self, key: str) -> None:
        if self.jobs.pop(key, None) is None:
            raise NotFoundError(key)

    def cancel_duplicates(self, key: str) -> None:
        self.duplicates_cancelled.append(key)

    def cancel_job(self, key: str) -> None:
        job = self.get_job(key)
        cancelled = msgspec.structs.replace(job, state=JobState.CANCELLED, raw_state="cancelled")
        self.jobs[key] = cancelled

    def delete_input(self, key: str) -> None:
        if self.inputs.pop(key, None) is None:
            raise NotFoundError(key)

    def download_outputs(
        self, job_keys: Sequence[str], target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        return [target / self.name / key for key in job_keys]

    def download_input(
        self, key: str, target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        if key not in self.inputs:
            raise NotFoundError(key)
        return [target / self.name / key / "rows.jsonl"]

    def close(self) -> None:
        pass

    def set_deadline(self, deadline: float | None) -> None:
        pass


def spec(job: str, provider: str) -> JobSpec:
    return JobSpec(job, "j", "m", "d", {}, None, f"{job}-out", "j", None, provider=provider)


def test_memory_is_a_provider() -> None:
    assert isinstance(Memory("x"), Provider)


def test_creates_go_where_the_spec_says_and_the_rest_where_the_key_was_listed() -> None:
    fw, tg = Memory("fireworks"), Memory("together")
    both = ProviderSet({"fireworks": fw, "together": tg})
    both.create_job(spec("a-1", "fireworks"), project=PROJECT)
    both.create_job(spec("b-1", "together"), project=PROJECT)
    assert (list(fw.jobs), list(tg.jobs)) == (["a-1"], ["b-1"])
    listed = both.list_jobs()
    assert sorted((j.key, j.provider) for j in listed) == [
        ("a-1", "fireworks"),
        ("b-1", "together"),
    ]
    assert both.download_outputs(["b-1"], Path("t")) == [Path("t/together/b-1")]
    ds = DatasetSpec("d-1", "d", (), 1, 1, "d", None, providers=("together",))
    both.create_input(ds, project=PROJECT)
    both.list_inputs()
    assert both.download_input("d-1", Path("t")) == [Path("t/together/d-1/rows.jsonl")]
    both.delete_job("b-1")
    assert tg.jobs == {} and list(fw.jobs) == ["a-1"]
    with pytest.raises(NotFoundError):
        both.delete_job("b-1")


def test_an_input_goes_to_every_provider_that_lacks_it_and_is_deleted_from_each() -> None:
    fw, tg = Memory("fireworks"), Memory("together")
    both = ProviderSet({"fireworks": fw, "together": tg})
    ds = DatasetSpec("d-1", "d", (), 1, 1, "d", None, providers=("fireworks", "together"))
    both.create_input(ds, project=PROJECT)
    assert list(fw.inputs) == list(tg.inputs) == ["d-1"]
    both.list_inputs()
    both.delete_input("d-1")
    assert fw.inputs == tg.inputs == {}
    with pytest.raises(NotFoundError):
        both.delete_input("d-1")


def _desired() -> Desired:
    ds = DatasetDecl(
        name="qs", path="data/qs.jsonl", files=(ROOT / "qs.jsonl",), source=Source("jobs/a.yaml")
    )
    jobs = tuple(
        JobDecl(
            name=name,
            model="m",
            source=Source("jobs/a.yaml"),
            input_dataset="qs",
            output_path=ROOT / f"{name}.jsonl",
            output_display=f"{name}.jsonl",
            provider=provider,
        )
        for name, provider in (("on-fw", "fireworks"), ("on-tg", "together"))
    )
    return Desired(root=ROOT, datasets=(ds,), jobs=jobs)


class Facts:
    sha256, rows, size = "a" * 64, 3, 100


def test_a_dataset_is_planned_on_each_provider_whose_jobs_read_it() -> None:
    desired, facts = _desired(), {"qs": Facts()}
    key = dataset_id(PROJECT, "qs", "a" * 64)
    on_fw = RemoteInput(key, key, PROJECT, ready=True, provider="fireworks")
    plan = make_plan(
        desired, facts, Observed(datasets=(on_fw,)), {}, PlanOptions(), project=PROJECT
    )
    create_ds = [a for a in plan.actions if a.kind is Kind.CREATE_DATASET]
    assert len(create_ds) == 1 and create_ds[0].dataset is not None
    assert create_ds[0].dataset.providers == ("together",)
    assert create_ds[0].reason == "new on together"
    jobs = {a.resource.name: a.job for a in plan.actions if a.kind is Kind.CREATE_JOB}
    assert {name: j.provider for name, j in jobs.items() if j} == {
        "on-fw": "fireworks",
        "on-tg": "together",
    }


def test_the_provider_is_part_of_a_jobs_identity_except_the_default() -> None:
    desired, facts = _desired(), {"qs": Facts()}
    plan = make_plan(desired, facts, Observed(), {}, PlanOptions(), project=PROJECT)
    ids = {a.resource.name: a.resource.remote_id for a in plan.actions if a.job}
    same_spec = Desired(
        root=ROOT,
        datasets=desired.datasets,
        jobs=(
            JobDecl(
                name="on-tg",
                model="m",
                source=Source("jobs/a.yaml"),
                input_dataset="qs",
                output_path=ROOT / "x.jsonl",
                output_display="x.jsonl",
            ),
        ),
    )
    default = make_plan(same_spec, facts, Observed(), {}, PlanOptions(), project=PROJECT)
    assert [a.resource.remote_id for a in default.actions if a.job] != [ids["on-tg"]]


def test_apply_then_replan_across_providers_is_empty(tmp_path: Path) -> None:
    from batchops.apply import apply_plan

    fw, tg = Memory("fireworks"), Memory("together")
    both = ProviderSet({"fireworks": fw, "together": tg})
    desired, facts = _desired(), {"qs": Facts()}
    observed = Observed(tuple(both.list_inputs()), tuple(both.list_jobs()))
    plan = make_plan(desired, facts, observed, {}, PlanOptions(), project=PROJECT)
    result = apply_plan(plan, provider=both, root=tmp_path)
    assert result.errors == []
    assert len(fw.jobs) == len(tg.jobs) == 1
    assert list(fw.inputs) == list(tg.inputs)
    again = Observed(tuple(both.list_inputs()), tuple(both.list_jobs()))
    replan = make_plan(desired, facts, again, {}, PlanOptions(download=False), project=PROJECT)
    assert [a.kind for a in replan.actions] == [Kind.WAIT, Kind.WAIT]


def test_cancel_asks_the_provider_to_cancel_and_delete_to_delete(tmp_path: Path) -> None:
    from batchops.apply import apply_plan
    from batchops.plan import Action, Plan, Resource

    tg = Memory("together")
    both = ProviderSet({"fireworks": Memory("fireworks"), "together": tg})
    both.create_job(spec("a-1", "together"), project=PROJECT)
    both.create_job(spec("b-1", "together"), project=PROJECT)
    both.list_jobs()
    actions = (
        Action(Kind.PRUNE_JOB, Resource("job", "a", "a-1"), "cancel", {"cancel": True}),
        Action(Kind.PRUNE_JOB, Resource("job", "b", "b-1"), "delete"),
    )
    result = apply_plan(Plan(actions, "", PROJECT), provider=both, root=tmp_path)
    assert result.errors == []
    assert list(tg.jobs) == ["a-1"] and tg.jobs["a-1"].state is JobState.CANCELLED


def test_apply_cancels_a_planned_duplicate_on_the_provider_that_listed_it(tmp_path: Path) -> None:
    """A ``cancel-duplicate`` in the plan reaches the provider (it was shown and then skipped)."""
    from batchops.apply import apply_plan
    from batchops.plan import Action, Plan, Resource

    fw, tg = Memory("fireworks"), Memory("together")
    both = ProviderSet({"fireworks": fw, "together": tg})
    both.create_job(spec("a-1", "together"), project=PROJECT)
    both.list_jobs()
    action = Action(Kind.CANCEL_DUPLICATE, Resource("job", "a", "a-1"), "1 duplicate")
    result = apply_plan(Plan((action,), "", PROJECT), provider=both, root=tmp_path)
    assert result.errors == [] and result.done == [action]
    assert tg.duplicates_cancelled == ["a-1"] and fw.duplicates_cancelled == []
