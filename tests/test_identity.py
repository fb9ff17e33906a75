"""Identity: deterministic content-addressed IDs, their grammar, and the ownership mark."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from batchops.identity import (
    attempt_id,
    continuation_id,
    dataset_id,
    is_ours,
    job_id,
    marked_display_name,
    output_dataset_id,
    owner_of,
    parse_job_id,
    project_from_root,
    slugify,
)

FIREWORKS_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,38}[a-z0-9]", fullmatch=True)


def _job(name: str = "summarize", **overrides: object) -> str:
    spec: dict[str, object] = {
        "model": "accounts/fireworks/models/llama",
        "input_dataset_id": "prompts-0123456789",
        "inference_parameters": {"maxTokens": 256, "temperature": 0.2},
        "precision": None,
    }
    spec.update(overrides)
    return job_id("proj", name, **spec)  # type: ignore[arg-type]


def test_dataset_id_is_deterministic_and_content_addressed() -> None:
    a = dataset_id("proj", "prompts", "a" * 64)
    assert a == dataset_id("proj", "prompts", "a" * 64)
    assert a != dataset_id("proj", "prompts", "b" * 64)
    assert a != dataset_id("other", "prompts", "a" * 64)
    assert a.startswith("prompts-") and FIREWORKS_ID.match(a)


def test_job_id_hashes_what_changes_the_computation() -> None:
    base = _job()
    assert _job() == base
    assert _job(model="accounts/fireworks/models/other") != base
    assert _job(input_dataset_id="prompts-abcdefabcd") != base
    assert _job(inference_parameters={"maxTokens": 512, "temperature": 0.2}) != base
    assert _job(precision="FP8") != base


def test_job_id_ignores_parameter_order() -> None:
    swapped = _job(inference_parameters={"temperature": 0.2, "maxTokens": 256})
    assert swapped == _job()


@settings(max_examples=50, deadline=None)
@given(NAMES, st.integers(0, 9), st.integers(0, 9))
def test_every_derived_id_fits_fireworks_rules_and_parses_back(name: str, t: int, r: int) -> None:
    base = _job(name)
    job = continuation_id(attempt_id(base, t), r)
    assert FIREWORKS_ID.match(job) and FIREWORKS_ID.match(output_dataset_id(job))
    parts = parse_job_id(job)
    assert parts is not None
    assert (parts.base, parts.name, parts.attempt, parts.resume) == (base, name, t, r)


def test_parse_rejects_ids_we_did_not_make() -> None:
    assert parse_job_id("bij-n1729dlh") is None
    assert parse_job_id("My_Job") is None


_PROJECTS = st.from_regex(r"[a-z0-9][a-z0-9-]{0,12}", fullmatch=True)


@given(st.text(max_size=20), _PROJECTS, _PROJECTS, st.sampled_from(["", " ", "\n", "]", "x", "-a"]))
def test_is_ours_agrees_with_owner_of(base: str, project: str, other: str, tail: str) -> None:
    for name in (
        None,
        base,
        f"{base} [batchops:{project}]{tail}",
        f"{base} [batchops:{other}]{tail}",
        f"{base}[batchops:{other}-{project}]{tail}",
    ):
        assert is_ours(name, project) == (owner_of(name) == project), name
    assert is_ours(marked_display_name(base or "x", project), project)


def test_mark_round_trips_and_foreign_names_have_no_owner() -> None:
    assert owner_of(marked_display_name("Nightly summaries", "proj")) == "proj"
    assert owner_of("summarize [batchops:team-a]") == "team-a"
    assert owner_of("made by hand") is None
    assert owner_of(None) is None
    assert owner_of("[batchops:proj] at the start only") is None


def test_project_defaults_to_the_slugified_root_name(tmp_path: Path) -> None:
    root = tmp_path / "My Repo_2"
    root.mkdir()
    assert project_from_root(root) == "my-repo-2"
    assert slugify("--") == "default"
