"""Declared jobs beside what was observed: IDs, families of remote jobs, local results. Pure.

``JobView`` is one declared job as the world sees it (the planner, ``status`` and ``describe``
read it); ``Seen`` indexes the observed resources once per plan so that every later lookup is a
dict hit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchops.identity import (
    DEFAULT_ID_LIMIT,
    HASH_LEN,
    NAME_HASH_LEN,
    JobIdParts,
    canonical_json,
    dataset_id,
    job_id,
    name_digest,
    name_matches,
    parse_job_id,
)
from batchops.manifest.desired import Desired, JobDecl
from batchops.plan.model import DatasetFacts, Observed
from batchops.plan.rows import RowSplit
from batchops.providers import RemoteInput, RemoteJob
from batchops.results import LocalResult

Member = tuple[JobIdParts, RemoteJob]


@dataclass(frozen=True)
class JobView:
    """One declared job as the world sees it: its IDs, its remote family, its local results."""

    decl: JobDecl
    base_id: str
    input_dataset_id: str
    family: tuple[Member, ...]  # (attempt, resume) order
    foreign: RemoteJob | None  # a job with our ID that is not ours
    result: LocalResult | None
    renamed_from: str | None = None  # the old name whose jobs were adopted (`moved`)
    rows: RowSplit | None = None  # reused vs to send (None: reuse off, or a remote input)
    input_files: tuple[Path, ...] = ()  # the declared input dataset's local files

    @property
    def latest(self) -> Member | None:
        return self.family[-1] if self.family else None

    @property
    def state(self) -> str:
        """The latest job's state as its provider says it (``ABSENT``: none yet)."""
        latest = self.latest
        return latest[1].raw_state if latest else "ABSENT"

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return tuple(job.key for _, job in self.family)

    @property
    def results_current(self) -> bool:
        """The results on disk are verified and merged up to the latest job of the family."""
        latest, result = self.latest, self.result
        record = result.record if result is not None and result.verified else None
        if latest is None and self.all_reused:
            return record is not None and record.last_job_id == self.reused_key
        return latest is not None and record is not None and record.last_job_id == latest[1].key

    @property
    def all_reused(self) -> bool:
        """Every row already answered: no job, the results come from the reuse index."""
        return self.rows is not None and self.rows.total > 0 and not self.rows.send

    @property
    def reused_key(self) -> str:
        """What the results record names as their job when every row was reused."""
        return f"reused:{self.base_id}"


def wire_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Manifest parameters as jobs carry them: extraBody becomes canonical JSON text."""
    out = dict(params)
    if isinstance(out.get("extraBody"), Mapping):
        out["extraBody"] = canonical_json(out["extraBody"])
    return out


def _bare(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def input_id_of(decl: JobDecl, dataset_ids: Mapping[str, str]) -> str:
    if decl.input_dataset:
        return dataset_ids.get(decl.input_dataset, "")
    return _bare(decl.input_dataset_id or "")


def declared_dataset_ids(
    desired: Desired, infos: Mapping[str, DatasetFacts], project: str, seen: Seen | None = None
) -> dict[str, str]:
    """Each declared dataset's ID: its own, or, after a rename (`moved`), the old name's ID when
    only that one exists among ours (the dataset is adopted, not uploaded again)."""
    ids = {}
    for d in desired.datasets:
        if d.name not in infos:
            continue
        sha = infos[d.name].sha256
        ids[d.name] = own = dataset_id(project, d.name, sha)
        old = desired.moved_from("Dataset", d.name)
        if seen is not None and old is not None and own not in seen.datasets:
            adopted = dataset_id(project, old, sha)
            ids[d.name] = adopted if adopted in seen.ours_ds_ids else own
    return ids


def base_job_id(decl: JobDecl, input_id: str, project: str) -> str:
    return job_id(
        project,
        decl.name,
        model=decl.model,
        input_dataset_id=input_id,
        inference_parameters=decl.inference_parameters,
        precision=decl.precision,
        provider=decl.provider,
    )


def job_views(
    desired: Desired,
    infos: Mapping[str, DatasetFacts],
    observed: Observed,
    local: Mapping[str, LocalResult],
    *,
    project: str,
    rows: Mapping[str, RowSplit] | None = None,
) -> list[JobView]:
    """Each declared job with its family of observed jobs (ours, same base ID), sorted by name."""
    seen = Seen.of(observed, project)
    ds_ids = declared_dataset_ids(desired, infos, project, seen)
    return views_of(desired, ds_ids, seen, local, project, rows or {})


def views_of(
    desired: Desired,
    ds_ids: Mapping[str, str],
    seen: Seen,
    local: Mapping[str, LocalResult],
    project: str,
    rows: Mapping[str, RowSplit] | None = None,
) -> list[JobView]:
    views = []
    splits = rows or {}
    files_of = {d.name: d.files for d in desired.datasets}
    for decl in sorted(desired.jobs, key=lambda j: j.name):
        split = splits.get(decl.name)
        input_id = derived_id(split, project) or input_id_of(decl, ds_ids)
        base = base_job_id(decl, input_id, project)
        old = desired.moved_from("BatchInferenceJob", decl.name)
        adopted = _adopted_base(decl, old, input_id, project, seen, own=base)
        base = adopted or base
        mine, foreign = _split_owned(seen.family(base))
        # The rows the job sends: the derived input when answers are reused, else the dataset's.
        derived = split.derived if split is not None else None
        files = (derived.path,) if derived else files_of.get(decl.input_dataset or "", ())
        views.append(
            JobView(
                decl,
                base,
                input_id,
                mine,
                foreign,
                local.get(decl.name),
                renamed_from=old if adopted else None,
                rows=split,
                input_files=files,
            )
        )
    return views


def derived_id(split: RowSplit | None, project: str) -> str | None:
    """The ID of the dataset of just the rows to send, when the job reads one."""
    derived = split.derived if split is not None else None
    return dataset_id(project, derived.dataset, derived.sha256) if derived else None


def _adopted_base(
    decl: JobDecl, old: str | None, input_id: str, project: str, seen: Seen, *, own: str
) -> str | None:
    """After a rename (`moved`), the old name's base ID for the same spec, when the account has
    our jobs under it and none under the job's own ID."""
    if old is None or seen.family(own):
        return None
    base = base_job_id(dataclasses.replace(decl, name=old), input_id, project)
    return base if any(ours for _, _, ours in seen.family(base)) else None


@dataclass(frozen=True)
class Seen:
    """The observed resources indexed once per plan, each ID parsed and each owner read once, so
    that every later lookup is a dict hit: a 1,000-job plan never scans the observed jobs once per
    declared job."""

    datasets: dict[str, RemoteInput]
    jobs: dict[str, RemoteJob]
    families: dict[str, list[tuple[JobIdParts, RemoteJob, bool]]]  # base -> (.., ours)
    ours_by_name: dict[str, list[Member]]  # our jobs by the name part of their ID
    ours_ds: dict[tuple[str, int], list[str]]  # our dataset IDs by (ID minus hash, length)
    ours_ds_ids: set[str]  # our dataset IDs
    ready_at: set[tuple[str, str]]  # (provider, dataset ID) of every ready input
    items: list[tuple[str, str, bool, RemoteInput | RemoteJob]]  # (kind, ID, ours, item)
    id_limits: dict[str, int] = field(default_factory=dict)  # provider -> its longest ID
    by_digest: dict[str, list[tuple[JobIdParts, RemoteJob, bool]]] = field(default_factory=dict)
    # our jobs whose name part may be shortened (identity.job_key), by its last NAME_HASH_LEN
    # characters: the hash of the whole name
    ours_by_name_hash: dict[str, list[Member]] = field(default_factory=dict)

    @classmethod
    def of(cls, observed: Observed, project: str) -> Seen:
        seen = cls({}, {}, {}, {}, {}, set(), set(), [], dict(observed.id_limits))
        for ds in observed.datasets:
            rid, ours = ds.key, ds.owner == project
            seen.items.append(("dataset", rid, ours, ds))
            seen.add_dataset(rid, ours, ds)
        for job in observed.jobs:
            rid, ours = job.key, job.owner == project
            seen.items.append(("job", rid, ours, job))
            seen.add_job(rid, ours, job)
        return seen

    def add_job(self, rid: str, ours: bool, job: RemoteJob) -> None:
        if rid:
            self.jobs[rid] = job
        parts = parse_job_id(rid)
        if parts is None:
            return
        self.families.setdefault(parts.base, []).append((parts, job, ours))
        self.by_digest.setdefault(parts.digest, []).append((parts, job, ours))
        if ours:
            self.ours_by_name.setdefault(parts.name, []).append((parts, job))
            if len(parts.name) > NAME_HASH_LEN + 1 and parts.name[-NAME_HASH_LEN - 1] == "-":
                tail = parts.name[-NAME_HASH_LEN:]
                self.ours_by_name_hash.setdefault(tail, []).append((parts, job))

    def ours_named(self, name: str) -> list[Member]:
        """Our jobs whose ID's name part is that of ``name`` (an ID-safe manifest name): the
        name itself, or its shortened form (``identity.job_key``)."""
        shortened = [
            (parts, job)
            for parts, job in self.ours_by_name_hash.get(name_digest(name), [])
            if parts.name != name and name_matches(parts.name, name)
        ]
        return [*self.ours_by_name.get(name, []), *shortened]

    def family(self, base: str) -> list[tuple[JobIdParts, RemoteJob, bool]]:
        """The observed jobs of the full base ID ``base``: its own IDs and the shortened ones
        (``identity.job_key``), in (attempt, resume) order."""
        members = self.by_digest.get(base[-HASH_LEN:], [])
        if all(parts.base == base for parts, _, _ in members):  # the usual case: none shortened
            return members
        found = [m for m in members if m[0].of_base(base)]
        return sorted(found, key=lambda m: (m[0].attempt, m[0].resume))

    def id_limit(self, provider: str) -> int:
        """The longest ID a job on ``provider`` may have (``Provider.max_id_length``)."""
        return self.id_limits.get(provider, DEFAULT_ID_LIMIT)

    def add_dataset(self, rid: str, ours: bool, ds: RemoteInput) -> None:
        if not rid:
            return
        self.datasets[rid] = ds
        if ds.ready:
            self.ready_at.add((ds.provider, rid))
        if ours:
            self.ours_ds.setdefault((rid[:-HASH_LEN], len(rid)), []).append(rid)
            self.ours_ds_ids.add(rid)


def _split_owned(
    members: list[tuple[JobIdParts, RemoteJob, bool]],
) -> tuple[tuple[Member, ...], RemoteJob | None]:
    if len(members) == 1:  # the usual case: one job per declaration
        parts, job, ours = members[0]
        return (((parts, job),), None) if ours else ((), job)
    mine = sorted(
        ((parts, job) for parts, job, ours in members if ours),
        key=lambda m: (m[0].attempt, m[0].resume),
    )
    foreign = next((job for _, job, ours in members if not ours), None)
    return tuple(mine), foreign
