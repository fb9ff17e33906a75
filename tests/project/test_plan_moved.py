"""The planner and `moved`: adoption of the old name's IDs, and what it does not adopt."""

from __future__ import annotations

import dataclasses

from batchops.config import Moved
from batchops.plan import Kind
from tests.test_plan import World, desired, facts, job_decl, kinds, plan_of, simulate


def renamed_world() -> World:
    """The world after `answers` (reading `prompts`) ran to completion and was downloaded."""
    world = World()
    d, f = desired(["prompts"], [job_decl("answers", "prompts")]), facts(["prompts"])
    simulate(plan_of(d, f, world), world)
    simulate(plan_of(d, f, world), world)
    return world


def test_a_renamed_job_and_dataset_are_adopted_with_their_lineage() -> None:
    world = renamed_world()
    old_job = next(iter(world.jobs))
    d = dataclasses.replace(
        desired(["questions"], [job_decl("replies", "questions")]),
        moved=(Moved("answers", "replies"), Moved("prompts", "questions", "Dataset")),
    )
    same_bytes = {"questions": facts(["prompts"])["prompts"]}
    plan = plan_of(d, same_bytes, world, prune=True)
    assert kinds(plan) == [("moved", "questions"), ("moved", "replies"), ("download", "replies")]
    moved_job = next(a for a in plan.actions if a.kind is Kind.MOVED and a.resource.kind == "job")
    assert moved_job.resource.remote_id == old_job
    assert moved_job.reason == "renamed from answers, no re-run"
    download = plan.actions[-1].download
    assert download is not None and download.output_path.name == "replies.jsonl"
    assert download.job_ids == (old_job,)
    assert not plan.remote_changes  # nothing to create, upload or prune


def test_without_moved_a_rename_is_a_new_job() -> None:
    world = renamed_world()
    d = desired(["prompts"], [job_decl("replies", "prompts")])
    assert kinds(plan_of(d, facts(["prompts"]), world)) == [("create-job", "replies")]


def test_a_rename_with_a_spec_change_replaces_the_old_names_job() -> None:
    world = renamed_world()
    old_job = next(iter(world.jobs))
    d = dataclasses.replace(
        desired(["prompts"], [job_decl("replies", "prompts", max_tokens=9)]),
        moved=(Moved("answers", "replies"),),
    )
    plan = plan_of(d, facts(["prompts"]), world)
    assert kinds(plan) == [("replace-job", "replies")]
    assert plan.actions[0].details["replaces"] == old_job
    assert "inferenceParameters.maxTokens 256 -> 9" in plan.actions[0].reason


def test_the_new_names_own_job_wins_over_the_old_one() -> None:
    world = renamed_world()
    both = desired(["prompts"], [job_decl("replies", "prompts")])
    simulate(plan_of(both, facts(["prompts"]), world), world)  # replies ran under its own name
    d = dataclasses.replace(both, moved=(Moved("answers", "replies"),))
    plan = plan_of(d, facts(["prompts"]), world)
    assert Kind.MOVED not in {a.kind for a in plan.actions}
