"""Jobs by name on the account: what `delete`, `cancel` and `describe` act on. Pure; no I/O.

``batchops.cli.delete`` / ``cancel`` turn NAMEs into prune actions with ``targets`` (the same
ownership guard as ``--prune``: only jobs carrying this project's mark), and ``batchops.cli.
describe`` builds a ``JobHistory`` (every attempt, continuation and older spec of one name) that
``batchops.render.describe`` prints. A NAME is a manifest job name (every job whose ID starts with
it) or one job's full ID.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from batchops.config import Moved
from batchops.errors import ConfigError, OwnershipError
from batchops.identity import CANARY_SUFFIX, name_matches, output_dataset_id, parse_job_id
from batchops.providers import DONE_STATES, JobState, RemoteJob


def job_id_of(job: RemoteJob) -> str:
    return job.key


def name_of(job_id: str) -> str:
    """The manifest name part of a job ID we made (the ID itself for other shapes)."""
    parts = parse_job_id(job_id)
    return parts.name if parts else job_id


def matches(name: str, job: RemoteJob) -> bool:
    rid = job_id_of(job)
    return rid == name or name_matches(name_of(rid), name)


def owned_by_name(name: str, jobs: Iterable[RemoteJob], project: str) -> list[RemoteJob]:
    """The owned jobs of one NAME, oldest first (none is an answer, not an error)."""
    return sorted((j for j in jobs if j.owner == project and matches(name, j)), key=_age)


def current_name(name: str, moved: Sequence[Moved]) -> str:
    """The job's name after the project file's renames (``moved``): an old name gives the new."""
    seen = {name}
    while True:
        new = next((m.new for m in moved if m.old == name and m.applies_to(_JOB)), None)
        if new is None or new in seen:
            return name
        seen.add(new)
        name = new


def former_names(name: str, moved: Sequence[Moved]) -> list[str]:
    """Every name a job ``name`` had before its renames, whose jobs it adopted."""
    found: list[str] = []
    todo = [name]
    while todo:
        new = todo.pop()
        for m in moved:
            if m.new == new and m.applies_to(_JOB) and m.old != name and m.old not in found:
                found.append(m.old)
                todo.append(m.old)
    return found


def owned_following_moves(
    names: Sequence[str], jobs: Iterable[RemoteJob], project: str, moved: Sequence[Moved]
) -> dict[str, list[RemoteJob]]:
    """``owned_jobs`` after ``moved``: an old NAME is its new name, and a name's jobs include
    those of its former names (adopted, their IDs keep the old name). Keyed by current name."""
    listed = list(jobs)
    found: dict[str, list[RemoteJob]] = {}
    plain: list[str] = []
    for given in names:
        name = current_name(given, moved)
        mine = {
            j.key: j
            for n in (name, *former_names(name, moved))
            for j in owned_by_name(n, listed, project)
        }
        if mine:
            found[name] = sorted(
                {**{j.key: j for j in found.get(name, [])}, **mine}.values(), key=_age
            )
        else:
            plain.append(given)
    if plain:
        found.update(owned_jobs(plain, listed, project))
    return found


_JOB = "BatchInferenceJob"


def owned_jobs(
    names: Sequence[str], jobs: Iterable[RemoteJob], project: str
) -> dict[str, list[RemoteJob]]:
    """Each NAME's owned jobs, oldest first; an unknown NAME (with a did-you-mean) or one that
    matches only jobs without our mark is an error, and then nothing is touched."""
    listed = list(jobs)
    ours = [j for j in listed if j.owner == project]
    found: dict[str, list[RemoteJob]] = {}
    problems: list[str] = []
    for name in names:
        mine = sorted((j for j in ours if matches(name, j)), key=_age)
        if mine:
            found[name] = mine
        elif any(matches(name, j) for j in listed):
            problems.append(
                f"job {name!r} exists but is not ours (no [batchops:{project}] "
                "mark in its display name); not touching it"
            )
        else:
            problems.append(_unknown(name, sorted({name_of(job_id_of(j)) for j in ours})))
    if problems:
        error = OwnershipError if all("not ours" in p for p in problems) else ConfigError
        raise error("; ".join(problems))
    return found


def _age(job: RemoteJob) -> tuple[str, str]:
    return job.created, job.key


def _unknown(name: str, owned_names: list[str]) -> str:
    close = difflib.get_close_matches(name, owned_names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    combos = [n for n in owned_names if n.startswith(f"{name}-")]
    if combos:  # a matrix no longer declared: its jobs are <name>-<suffix>
        more = f" and {len(combos) - 5} more" if len(combos) > 5 else ""
        hint = (
            f"; the account has jobs named '{name}-…', as a matrix's are: "
            f"{', '.join(combos[:5])}{more} (name each one)"
        )
    return f"no job of this project named {name!r} on the account{hint}"


@dataclass(frozen=True)
class Target:
    """One job to delete or cancel, and its batchops-named output dataset when that goes too."""

    name: str
    job_id: str
    state: str
    output_dataset: str | None


def targets(found: dict[str, list[RemoteJob]], *, running_only: bool) -> list[Target]:
    """Delete: every owned job of each NAME, with its `<id>-out` dataset. Cancel: only the jobs
    still running (Fireworks has no cancel call; DELETE stops a running job), outputs kept."""
    out: dict[str, Target] = {}
    for jobs in found.values():
        for job in jobs:
            rid = job.key
            if job.state is JobState.DELETING or (running_only and job.state in DONE_STATES):
                continue
            output = job.output_id or ""
            keep_output = running_only or output != output_dataset_id(rid)
            out[rid] = Target(name_of(rid), rid, job.raw_state, None if keep_output else output)
    return sorted(out.values(), key=lambda t: (t.name, t.job_id))


@dataclass(frozen=True)
class Step:
    """One job of a name's history: an attempt, a continuation, or a job of an older spec."""

    job_id: str
    kind: str  # "attempt N" | "continuation N of <id>" | "canary" | "job" (another shape)
    state: str
    created: str
    updated: str
    expires: str
    message: str
    total: int
    succeeded: int
    failed: int
    tokens_in: int
    tokens_out: int
    output_dataset: str
    current: bool  # of the spec the manifests declare now


@dataclass(frozen=True)
class JobHistory:
    name: str
    declared: str | None  # "jobs/x.yaml:3" when a manifest declares it
    current_base: str | None  # the ID the manifests' spec gives (None: not declared)
    results_path: str | None
    results_state: str | None  # "verified" | "stale" | "missing"
    results_from: str | None  # the last job merged into the results on disk
    steps: tuple[Step, ...]
    spent: float | None = None  # what the results on disk cost, from their usage (issue 15)
    stage: str | None = None  # where its pipeline stage stands (issue 16); None: no pipeline


def history(
    name: str,
    jobs: Sequence[RemoteJob],
    *,
    current_base: str | None = None,
    declared: str | None = None,
    results: tuple[str, str, str | None] | None = None,
) -> JobHistory:
    """``jobs`` are the name's owned jobs, oldest first (``owned_jobs``)."""
    path, state, last = results if results is not None else (None, None, None)
    steps = tuple(_step(j, current_base, name) for j in jobs)
    return JobHistory(name, declared, current_base, path, state, last, steps)


def _step(job: RemoteJob, current_base: str | None, name: str) -> Step:
    rid = job.key
    parts = parse_job_id(rid)
    rows = job.rows
    kind = "job"
    if parts is not None:
        kind = f"attempt {parts.attempt + 1}"
        if parts.resume:
            kind = f"continuation {parts.resume} of {job.continued_from or ''}"
        if name_matches(parts.name, name + CANARY_SUFFIX):  # the sample run first (spec.canary)
            kind = "canary"
    return Step(
        job_id=rid,
        kind=kind,
        state=job.raw_state,
        created=job.created,
        updated=job.updated,
        expires=job.expires,
        message=job.message,
        total=rows.total if rows else 0,
        succeeded=rows.succeeded if rows else 0,
        failed=rows.failed if rows else 0,
        tokens_in=job.tokens.input,
        tokens_out=job.tokens.output,
        output_dataset=job.output_id or "",
        current=parts is not None and current_base is not None and parts.of_base(current_base),
    )
