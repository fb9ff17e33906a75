"""Selectors and prune scope: the pure parts (``manifest.select`` and the planner's prune scope)."""

from __future__ import annotations

import pytest

from batchops.errors import ConfigError
from batchops.manifest.desired import JobDecl
from batchops.manifest.select import Selector, select
from batchops.plan import Kind, Plan
from batchops.render.plan import note_lines, plan_json, plan_text
from tests.test_plan import World, desired, facts, job_decl, kinds, plan_of, simulate


def labelled(name: str, dataset: str, **labels: str) -> JobDecl:
    return job_decl(name, dataset, labels=dict(labels))


def test_selectors_narrow_jobs_and_the_datasets_they_read() -> None:
    d = desired(
        ["a", "b"],
        [
            labelled("ja", "a", team="x", tier="1"),
            labelled("jb", "b", team="x"),
            labelled("jc", "b", team="y"),
        ],
    )
    by_label = select(d, Selector.of(None, ["team=x", "tier=1"]))
    assert [j.name for j in by_label.desired.jobs] == ["ja"]
    assert [ds.name for ds in by_label.desired.datasets] == ["a"]
    assert (by_label.outside_jobs, by_label.outside_datasets) == (2, 1)
    by_name = select(d, Selector.of(["jc", "jb"], None))
    assert [j.name for j in by_name.desired.jobs] == ["jb", "jc"]
    assert [ds.name for ds in by_name.desired.datasets] == ["b"]
    assert select(d, Selector()).desired is d


def test_unknown_job_name_is_an_error_with_a_did_you_mean() -> None:
    d = desired(["a"], [job_decl("capitals", "a")])
    with pytest.raises(ConfigError, match=r"no job named 'capitols'.*did you mean 'capitals'"):
        select(d, Selector.of(["capitols"], None))
    with pytest.raises(ConfigError, match="key=value"):
        Selector.of(None, ["team"])


def test_labels_that_select_no_job_are_an_error_with_the_labels_in_use() -> None:
    d = desired(["a"], [labelled("capitals", "a", team="geo"), labelled("poems", "a", team="art")])
    with pytest.raises(ConfigError) as exc:
        select(d, Selector.of(None, ["team=typo"]))
    assert str(exc.value) == (
        "no declared job has the labels team=typo; labels in use: team=art, team=geo"
    )
    with pytest.raises(ConfigError, match="team=art among the jobs 'capitals'"):
        select(d, Selector.of(["capitals"], ["team=art"]))
    unlabelled = desired(["a"], [job_decl("capitals", "a")])
    with pytest.raises(ConfigError, match="no declared job has labels"):
        select(unlabelled, Selector.of(None, ["team=geo"]))


def test_an_older_spec_of_a_declared_job_is_superseded_not_undeclared() -> None:
    both = desired(["p"], [job_decl("a", "p"), job_decl("b", "p")])
    f, world = facts(["p"]), World()
    simulate(plan_of(both, f, world), world)
    changed = desired(["p"], [job_decl("a", "p", max_tokens=64)])  # a replaced, b undeclared
    plan = plan_of(changed, f, world)
    assert (plan.orphan_jobs, plan.superseded_jobs) == (1, 1)
    assert note_lines(plan) == [
        "1 owned job is superseded (an older spec of a declared job, replaced by it).",
        "1 owned job is declared by no manifest; `batchops apply --prune` deletes it and the "
        "superseded one.",
    ]
    assert plan_json(plan)["summary"]["supersededJobs"] == 1
    only_a = desired(["p"], [job_decl("a", "p", max_tokens=64)])
    simulate(plan_of(desired(["p"], [job_decl("a", "p")]), f, world, prune=True), world)  # b gone
    alone = plan_of(only_a, f, world)
    assert (alone.orphan_jobs, alone.superseded_jobs) == (0, 1)
    assert note_lines(alone) == [
        "1 owned job is superseded (an older spec of a declared job, "
        "replaced by it); `batchops apply --prune` deletes it."
    ]
    pruned = plan_of(only_a, f, world, prune=True)
    prune = next(a for a in pruned.actions if a.kind is Kind.PRUNE_JOB)
    assert prune.reason.startswith("superseded: an older spec of a declared job")


@pytest.mark.parametrize(
    ("superseded", "orphans", "last"),
    [
        (
            3,
            2,
            "2 owned jobs are declared by no manifest; `batchops apply --prune` deletes them "
            "and the superseded ones.",
        ),
        (
            2,
            1,
            "1 owned job is declared by no manifest; `batchops apply --prune` deletes it "
            "and the superseded ones.",
        ),
        (
            1,
            4,
            "4 owned jobs are declared by no manifest; `batchops apply --prune` deletes them "
            "and the superseded one.",
        ),
        (0, 2, "2 owned jobs are declared by no manifest; `batchops apply --prune` deletes them."),
    ],
)
def test_the_prune_note_counts_right_for_every_mix(
    superseded: int, orphans: int, last: str
) -> None:
    """Never "deletes both" of five jobs (three superseded, two undeclared)."""
    plan = Plan((), "", "p", orphan_jobs=orphans, superseded_jobs=superseded)
    lines = note_lines(plan)
    assert lines[-1] == last
    assert all("both" not in line for line in lines)


def test_scoped_prune_deletes_only_resources_of_the_selected_names() -> None:
    both = desired(["p"], [job_decl("capitals", "p"), job_decl("rivers", "p")])
    f, world = facts(["p"]), World()
    simulate(plan_of(both, f, world), world)
    only_capitals = desired(["p"], [job_decl("capitals", "p", max_tokens=64)])
    scope = frozenset({"capitals", "p"})
    plan = plan_of(only_capitals, f, world, prune=True, prune_scope=scope)  # type: ignore[arg-type]
    assert [n for k, n in kinds(plan) if k == "prune-job"] == ["capitals"]  # the old version only
    unscoped = plan_of(only_capitals, f, world, prune=True)
    assert sorted(n for k, n in kinds(unscoped) if k == "prune-job") == ["capitals", "rivers"]


def test_owned_undeclared_jobs_are_counted_in_one_line_with_how_to_prune() -> None:
    both = desired(["p"], [job_decl("a", "p"), job_decl("b", "p"), job_decl("c", "p")])
    f, world = facts(["p"]), World()
    simulate(plan_of(both, f, world), world)
    plan = plan_of(desired(["p"], [job_decl("a", "p")]), f, world)
    assert plan.orphan_jobs == 2 and not [a for a in plan.actions if a.kind is Kind.PRUNE_JOB]
    text = plan_text(plan)
    assert (
        "2 owned jobs are declared by no manifest; `batchops apply --prune` deletes them." in text
    )
    assert plan_json(plan)["summary"]["orphanJobs"] == 2
    assert plan_of(desired(["p"], [job_decl("a", "p")]), f, world, prune=True).orphan_jobs == 0
