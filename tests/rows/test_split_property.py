"""Never stale: random edits of rows and parameters send exactly the changed rows, and every
result row (reused or new) answers its own request (issue 14)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from batchops.manifest.desired import JobDecl, Source
from batchops.plan.rows import job_prefix, split_rows
from batchops.rowid import canonical_body, request_hash, request_prefix

PROMPTS = st.text(alphabet="abc xyz", min_size=0, max_size=6)
PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "maxTokens": st.integers(1, 4),
        "temperature": st.sampled_from([0.0, 0.5]),
        "extraBody": st.fixed_dictionaries({}, optional={"seed": st.integers(0, 1)}),
    },
)
# what a job's every request shares: provider, model, parameters, precision (plan.rows.job_prefix)
JOB = st.builds(
    lambda provider, model, params, precision: JobDecl(
        name="j",
        model=model,
        source=Source("jobs/a.yaml"),
        input_dataset="d",
        inference_parameters=params,
        precision=precision,
        provider=provider,
    ),
    st.sampled_from(["fireworks", "openai"]),
    st.sampled_from(["m1", "m2"]),
    PARAMS,
    st.sampled_from([None, "fp8"]),
)
EDIT = st.sampled_from(["keep", "edit", "drop", "rename"])


@dataclass(frozen=True)
class Answer:
    job: str
    text: str


def engine(prefix: bytes, row: dict[str, Any]) -> str:
    """A deterministic model: the answer depends on the whole request and nothing else."""
    return (prefix + canonical_body(row)).hex()


def requests(prefix: bytes, rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    return [(r["custom_id"], request_hash(prefix, canonical_body(r))) for r in rows]


@settings(max_examples=150, deadline=None)
@given(
    prompts=st.lists(PROMPTS, min_size=1, max_size=12),
    edits=st.lists(st.tuples(EDIT, PROMPTS), min_size=12, max_size=12),
    added=st.lists(PROMPTS, max_size=3),
    jobs=st.tuples(JOB, JOB),
)
def test_rows_sent_are_exactly_the_changed_ones(
    prompts: list[str],
    edits: list[tuple[str, str]],
    added: list[str],
    jobs: tuple[JobDecl, JobDecl],
) -> None:
    old_rows = [{"custom_id": f"r{i}", "body": {"prompt": p}} for i, p in enumerate(prompts)]
    old_prefix = job_prefix(jobs[0])
    # run 1: every row answered by job-1 and recorded in the index
    old_reqs = requests(old_prefix, old_rows)
    index = {
        digest: Answer("job-1", engine(old_prefix, row))
        for row, (_, digest) in zip(old_rows, old_reqs, strict=True)
    }
    new_rows = []
    for row, (edit, text) in zip(old_rows, edits, strict=False):
        if edit == "edit":
            new_rows.append({"custom_id": row["custom_id"], "body": {"prompt": text + "!"}})
        elif edit == "rename":
            new_rows.append({"custom_id": row["custom_id"] + "-x", "body": row["body"]})
        elif edit == "keep":
            new_rows.append(row)
    new_rows += [{"custom_id": f"n{i}", "body": {"prompt": p}} for i, p in enumerate(added)]
    new_prefix = job_prefix(jobs[1])
    reqs = requests(new_prefix, new_rows)
    split = split_rows(reqs, index)

    old, new = jobs
    same_request = (old.provider, old.model, old.precision) == (
        new.provider,
        new.model,
        new.precision,
    ) and {k: v for k, v in old.inference_parameters.items() if v is not None} == {
        k: v for k, v in new.inference_parameters.items() if v is not None
    }
    old_bodies = {canonical_body(r) for r in old_rows}
    changed = [
        r["custom_id"] for r in new_rows if not same_request or canonical_body(r) not in old_bodies
    ]
    assert list(split.send) == changed
    assert split.reused == len(new_rows) - len(changed)
    # run 2 answers only the rows sent; the merged results answer each row's own request
    sent = set(split.send)
    merged = {
        cid: engine(new_prefix, row) if cid in sent else index[digest].text
        for row, (cid, digest) in zip(new_rows, reqs, strict=True)
    }
    assert merged == {r["custom_id"]: engine(new_prefix, r) for r in new_rows}


def test_describe_names_the_jobs_that_answered() -> None:
    prefix = request_prefix("fireworks", "m", {})
    rows = [{"custom_id": f"r{i}", "body": {"p": i}} for i in range(10)]
    reqs = requests(prefix, rows)
    job = "reviews-v1-" + "a" * 10
    known = {digest: Answer(job, "") for _, digest in reqs[:9]}
    split = split_rows(reqs, known)
    assert split.describe() == "1 new row, 9 reused from reviews-v1"
    every = tuple(f"r{i}" for i in range(10))
    assert split_rows(reqs, known, exclude_jobs=frozenset({job})).send == every
