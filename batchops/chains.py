"""Pipeline stages' datasets: rendered from their upstream jobs' verified results, stage by stage.

``render_inputs`` is what the reconciler, ``validate`` and ``results`` call instead of
``sources.render_all`` alone: the tables first, then each dataset whose source is a job
(``source: {job: NAME}``), upstream first, once every upstream job's results are verified on disk
(``batchops.results.local_state``). A dataset whose upstream has no verified results yet is left
out and named in ``Desired.waiting``; the planner shows the jobs reading it as waiting. Whether
the results are *current* (merged up to the upstream's latest job) is the planner's question:
it sends nothing downstream until they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from itertools import islice
from pathlib import Path

from batchops.errors import Diagnostic, InvalidInputError
from batchops.layout import errors_path
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl
from batchops.manifest.hints import suggest
from batchops.results import ResultRecord, local_records, local_state
from batchops.sources import render_all, render_dataset
from batchops.sources.chain import Upstream, chain_table
from batchops.sources.join import kept_rows
from batchops.sources.render import CACHE_FILE, SourceCache, inputs_file


def render_inputs(desired: Desired, *, root: Path, problems: list[Diagnostic]) -> Desired:
    """``desired`` with every dataset that can be rendered pointing at its artifact; problems
    appended to ``problems``."""
    files = render_all(desired, root=root, problems=problems)
    staged = [d for d in desired.datasets if d.render is not None and d.render.upstream]
    if staged:
        files.update(_render_stages(desired, staged, dict(files), root, problems))
    problems.extend(_table_columns(desired, files))
    return desired.with_files(files, desired.root)


_COLUMNS_READ = 1_000  # rows whose columns are read to check a table's (a table's header: one)


def _table_columns(desired: Desired, files: Mapping[str, Path]) -> list[Diagnostic]:
    """``output.table.columns`` that name no column of the job's input: each one a problem at
    the job's manifest (a typo would otherwise drop the column from every table silently)."""
    problems = []
    read: dict[Path, set[str]] = {}  # each input read once, whatever the jobs reading it
    for job in desired.jobs:
        table, name = job.table, job.input_dataset
        if table is None or table.columns is None or name is None:
            continue
        decl = desired.dataset(name)
        rendered = files.get(name)
        if rendered is not None:
            sidecar = inputs_file(rendered)
            if sidecar is not None and sidecar not in read:
                read[sidecar] = _columns(sidecar)
            columns = read[sidecar] if sidecar is not None else None
        elif decl is not None and decl.render is None:
            columns = {"prompt"}  # a hand-written dataset's only input column (sources.join)
        else:
            columns = None  # a pipeline stage not rendered yet, or a remote dataset
        if not columns:
            continue
        known = ", ".join(sorted(columns))
        for i, column in enumerate(table.columns):
            if column not in columns:
                message = (
                    f"{job.name}: spec.output.table.columns[{i}]: '{column}' is not a column of "
                    f"dataset '{name}'{suggest(column, columns)} (its columns: {known})"
                )
                problems.append(Diagnostic(job.source.path, job.source.line, 1, message))
    return problems


def _columns(inputs: Path) -> set[str]:
    columns: set[str] = set()
    for _, row in islice(kept_rows(inputs), _COLUMNS_READ):
        columns.update(row)
    return columns


def _render_stages(
    desired: Desired,
    staged: list[DatasetDecl],
    files: dict[str, Path],
    root: Path,
    problems: list[Diagnostic],
) -> dict[str, Path]:
    jobs = {j.name: j for j in desired.jobs}
    plain = {d.name: d.files for d in desired.datasets if d.render is None}
    records = local_records(root)
    cache = SourceCache(root / CACHE_FILE)
    for decl in sorted(staged, key=lambda d: _depth(d, desired, jobs, {})):
        assert decl.render is not None
        ups = [jobs.get(name) for name in decl.render.upstream]
        found = [_upstream(j, files, plain, records, root) for j in ups if j is not None]
        if len(found) != len(ups) or any(u is None for u in found):
            continue  # waits: an upstream is outside the selection or not verified yet
        table = chain_table(
            decl.name, [u for u in found if u is not None], combine=decl.render.combine, root=root
        )
        ready = dataclasses.replace(decl, render=dataclasses.replace(decl.render, files=(table,)))
        try:
            files[decl.name] = render_dataset(ready, root=root, cache=cache).rows
        except InvalidInputError as exc:
            problems.extend(exc.diagnostics)
    cache.save()
    return files


def _upstream(
    job: JobDecl,
    files: Mapping[str, Path],
    plain: Mapping[str, tuple[Path, ...]],
    records: Mapping[str, ResultRecord],
    root: Path,
) -> Upstream | None:
    local = local_state(root, job.name, job.output_path, records=records)
    if not local.verified or local.record is None:
        return None
    inputs: tuple[Path, ...] = ()
    if job.input_dataset:
        given = files.get(job.input_dataset)
        inputs = (given,) if given is not None else plain.get(job.input_dataset, ())
        if not inputs:
            return None  # its own input waits on a stage before it
    return Upstream(
        job=job.name,
        model=job.model,
        combination=job.combination,
        input_files=inputs,
        output=job.output_path,
        errors=errors_path(job.output_path),
        output_sha256=local.record.output.sha256,
        parse_fields=job.response_schema is not None,
    )


def _depth(
    decl: DatasetDecl, desired: Desired, jobs: Mapping[str, JobDecl], memo: dict[str, int]
) -> int:
    """Stages before this dataset (memoised; the graph has no cycles once loaded)."""
    if decl.name in memo:
        return memo[decl.name]
    memo[decl.name] = 0
    depth = 0
    for name in decl.render.upstream if decl.render else ():
        job = jobs.get(name)
        source = desired.dataset(job.input_dataset) if job and job.input_dataset else None
        if source is not None:
            depth = max(depth, 1 + _depth(source, desired, jobs, memo))
    memo[decl.name] = depth
    return depth
