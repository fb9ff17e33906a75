"""Validated documents -> ``Desired``: names, references and paths checked across all files.

Called by ``batchops.manifest.loader``. Documents are handled in (file, line) order, so duplicate
names are reported against the first declaration whatever order the files were given in; the
result is sorted by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from batchops.config import BUILTIN_PROVIDER, PROJECT_FILE, ProjectConfig
from batchops.errors import Diagnostic
from batchops.manifest import paths as P
from batchops.manifest.desired import Canary, DatasetDecl, Desired, JobDecl
from batchops.manifest.expand import Expander
from batchops.manifest.graph import Key, Node, Ref, check_graph
from batchops.manifest.hints import suggest
from batchops.manifest.outputs import output_problems
from batchops.manifest.templated import (
    Problem,
    chain_decl,
    response_schema,
    source_decl,
    table_decl,
)

if TYPE_CHECKING:
    from batchops.manifest.doc import Loc
    from batchops.manifest.loader import Parsed, Unchecked
    from batchops.manifest.models import BatchInferenceJobManifest, DatasetManifest

# The documents are the validated models, or the same fields read back from the manifest cache
# (``batchops.manifest.stored``): they are told apart by ``kind``, never by class, so that a warm
# load imports no model.
DATASET, JOB, PROJECT = "Dataset", "BatchInferenceJob", "Project"


def build_desired(
    parsed: Sequence[Parsed],
    files: Sequence[Path],
    root: Path,
    diags: list[Diagnostic],
    unchecked: Sequence[Unchecked] = (),
    *,
    output_dir: str = "results",
    providers: frozenset[str] = frozenset({BUILTIN_PROVIDER}),
    tokenizers: Sequence[Path] = (),
) -> Desired:
    ordered = sorted(parsed, key=lambda p: (p.source.path, p.source.line, p.source.col))
    _misplaced_projects(ordered, root, diags)
    unique = _unique_names(ordered, diags)
    dirs: P.Dirs = {}  # each folder resolved once in this load
    declared = {d.name: d for p in unique if (d := _dataset(p, root, diags, dirs)) is not None}
    names = {m.metadata.name for p in unique if (m := _dataset_of(p)) is not None}
    # A Dataset document with a schema error still declares its name: a job reading it is not
    # told "unknown dataset" on top of the dataset's own problem (hints list the valid ones).
    invalid = {u.name for u in unchecked if u.kind == "Dataset" and u.name}
    bases = {
        p.manifest.metadata.name: (p, j)  # type: ignore[attr-defined]
        for p in unique
        if (j := _job(p, names, root, diags, invalid, output_dir, dirs)) is not None
    }
    order = _graph_order(unique, unchecked, diags)
    at = {
        m.metadata.name: _at(p, ("metadata", "name"), "")
        for p in unique
        if (m := _dataset_of(p)) is not None
        and m.spec.source is not None
        and m.spec.source.job is not None
    }
    datasets, jobs = Expander(root, output_dir, dirs, diags, bases, declared, at).run(order)
    _dangling_in_unchecked(unchecked, names, diags, invalid)
    _check_providers(unique, providers, diags)
    read = _read_by_jobs(unique, root)
    read.update((f, f"a tokenizer file named in {PROJECT_FILE}") for f in tokenizers)
    _check_outputs(jobs, datasets, files, root, unique, diags, read)
    return Desired(
        root=root,
        datasets=tuple(sorted(datasets, key=lambda d: d.name)),
        jobs=tuple(sorted(jobs, key=lambda j: j.name)),
        manifest_files=tuple(files),
    )


def _dataset_of(p: Parsed) -> DatasetManifest | None:
    return cast("DatasetManifest", p.manifest) if p.kind == DATASET else None


def _job_of(p: Parsed) -> BatchInferenceJobManifest | None:
    return cast("BatchInferenceJobManifest", p.manifest) if p.kind == JOB else None


def _check_providers(
    parsed: Sequence[Parsed], providers: frozenset[str], diags: list[Diagnostic]
) -> None:
    """Each job's ``spec.provider`` is ``fireworks`` or a provider the project file declares."""
    for p in parsed:
        m = _job_of(p)
        if m is None or (not m.spec.provider and m.spec.matrix is None):
            continue  # the built-in provider (most jobs)
        named: list[tuple[str, Loc]] = (
            [(m.spec.provider, ("spec", "provider"))] if m.spec.provider else []
        )
        swept = m.spec.matrix.provider if m.spec.matrix and m.spec.matrix.provider else []
        named += [(name, ("spec", "matrix", "provider")) for name in swept]
        for name, loc in named:
            if name in providers:
                continue
            known = ", ".join(sorted(providers))
            hint = suggest(name, providers) or f" (declared: {known})"
            message = f"unknown provider '{name}'{hint}; providers are declared in "
            diags.append(_at(p, loc, message + f"{PROJECT_FILE} spec.providers"))


def _misplaced_projects(ordered: Sequence[Parsed], root: Path, diags: list[Diagnostic]) -> None:
    """A Project document counts only as the root's batchops.yaml (read by load_project)."""
    for p in ordered:
        if p.kind == PROJECT and p.file != root / PROJECT_FILE:
            message = f"a Project belongs in {PROJECT_FILE} at the root ({root.name}/), not here"
            diags.append(_at(p, ("kind",), message))


def with_moved(desired: Desired, project: ProjectConfig, diags: list[Diagnostic]) -> Desired:
    """Attach the project file's renames after checking each one: the new name is declared,
    the old one no longer is (else both would claim the same remote resources)."""
    shown = P.display(project.file, desired.root)
    names = {
        "Dataset": {d.name for d in desired.datasets},
        "BatchInferenceJob": {j.name for j in desired.jobs},
    }
    for m in project.moved:
        kinds = [k for k in names if m.applies_to(k)]
        if not any(m.new in names[k] for k in kinds):
            message = f"moved: '{m.new}' is not declared by any manifest"
            diags.append(Diagnostic(shown, m.line, m.col, message))
        if any(m.old in names[k] for k in kinds):
            message = f"moved: '{m.old}' is still declared; a rename keeps only the new name"
            diags.append(Diagnostic(shown, m.line, m.col, message))
    return dataclasses.replace(desired, moved=project.moved)


def _at(p: Parsed, loc: Loc, message: str) -> Diagnostic:
    pos = p.doc.values.get(loc, (p.source.line, p.source.col))
    return Diagnostic(p.source.path, *pos, message)


def _unique_names(ordered: Sequence[Parsed], diags: list[Diagnostic]) -> list[Parsed]:
    first: dict[tuple[str, str], Parsed] = {}
    for p in ordered:
        key = (p.kind, p.manifest.metadata.name)  # type: ignore[attr-defined]
        if key in first:
            kind, name = p.manifest.kind, key[1]  # type: ignore[attr-defined]
            was = first[key].source
            where = f"{was.path}:{was.line}:{was.col}"
            diags.append(
                _at(p, ("metadata", "name"), f"duplicate {kind} name '{name}' (first at {where})")
            )
        else:
            first[key] = p
    return list(first.values())


def _dataset(p: Parsed, root: Path, diags: list[Diagnostic], dirs: P.Dirs) -> DatasetDecl | None:
    m = _dataset_of(p)
    if m is None:
        return None
    if m.spec.source is not None and m.spec.template is not None:
        return _rendered(p, m, root, diags)
    assert m.spec.path is not None  # the model requires path or source
    try:
        path, files = P.dataset_files(m.spec.path, p.file, root, dirs=dirs)
    except P.PathProblem as exc:
        diags.append(_at(p, ("spec", "path"), str(exc)))
        return None
    return DatasetDecl(
        name=m.metadata.name,
        path=P.display(path, root),
        files=files,
        source=p.source,
        format=m.spec.format,
        labels=dict(m.metadata.labels),
    )


def _rendered(
    p: Parsed, m: DatasetManifest, root: Path, diags: list[Diagnostic]
) -> DatasetDecl | None:
    """A dataset rendered from a table (``source: {path}``), or from a job's results once they
    are verified (``source: {job: NAME}``)."""
    assert m.spec.source is not None and m.spec.template is not None
    declare = chain_decl if m.spec.source.job is not None else source_decl
    try:
        render = declare(p, m.spec.source, m.spec.template, root)
    except Problem as exc:
        diags.append(_at(p, exc.loc, str(exc)))
        return None
    return DatasetDecl(
        name=m.metadata.name,
        path=render.path,
        files=(),
        source=p.source,
        format=m.spec.format,
        labels=dict(m.metadata.labels),
        render=render,
    )


def _graph_order(
    unique: Sequence[Parsed], unchecked: Sequence[Unchecked], diags: list[Diagnostic]
) -> list[Key]:
    """Declared datasets and jobs, upstream first. Without any ``source.job`` or ``dependsOn``
    (most projects) no cycle can exist: datasets, then jobs, with no walk (a 10,000-job load
    pays nothing for pipelines)."""
    docs = [p for p in unique if p.kind in (DATASET, JOB)]
    if not any(_linked(p) for p in docs):  # datasets first, each kind in its order (stable)
        keyed = [(p.kind, p.manifest.metadata.name) for p in docs]  # type: ignore[attr-defined]
        return [k for k in keyed if k[0] == DATASET] + [k for k in keyed if k[0] != DATASET]
    broken = {(u.kind, u.name) for u in unchecked if u.name}
    return check_graph([_node(p) for p in docs], diags, invalid=broken)


def _linked(p: Parsed) -> bool:
    if (job := _job_of(p)) is not None:
        return bool(job.spec.depends_on)
    ds = _dataset_of(p)
    return ds is not None and ds.spec.source is not None and ds.spec.source.job is not None


def _node(p: Parsed) -> Node:
    """A declared job or dataset and the names it refers to (graph.check_graph). Positions are
    found only when a problem is reported."""
    name = p.manifest.metadata.name  # type: ignore[attr-defined]
    node = Node((p.kind, name), partial(_at, p, ("metadata", "name"), ""))
    if (ds := _dataset_of(p)) is not None:
        if ds.spec.source is not None and ds.spec.source.job is not None:
            at = partial(_at, p, ("spec", "source", "job"), "")
            node.refs.append(Ref((JOB, ds.spec.source.job), at))
        return node
    job = _job_of(p)
    assert job is not None
    if job.spec.input_dataset is not None:
        at = partial(_at, p, ("spec", "inputDataset"), "")
        node.refs.append(Ref((DATASET, job.spec.input_dataset), at))
    deps = partial(_at, p, ("spec", "dependsOn"), "")
    for dep in job.spec.depends_on:
        node.refs.append(Ref((JOB, dep), deps))
    return node


def _extras(
    p: Parsed, m: BatchInferenceJobManifest, output: Path, root: Path, diags: list[Diagnostic]
) -> dict[str, Any] | None:
    """responseFormat and output.table; None when either is invalid."""
    extras: dict[str, Any] = {}
    try:
        if m.spec.response_format is not None:
            extras["response_schema"] = response_schema(p, m.spec.response_format, root)
        if m.spec.output.table is not None:
            extras["table"] = table_decl(m.spec.output.table, output, root)
    except Problem as exc:
        diags.append(_at(p, exc.loc, str(exc)))
        return None
    return extras


def _parameters(m: BatchInferenceJobManifest, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The wire's inferenceParameters; a responseFormat travels in extraBody, which the server
    applies to every row of the job, so hand-written and rendered datasets both get it."""
    params = m.spec.inference_parameters.model_dump(by_alias=True, exclude_none=True)
    if schema is not None:
        fmt = {"type": "json_schema", "json_schema": {"name": m.metadata.name, "schema": schema}}
        params["extraBody"] = {**params.get("extraBody", {}), "response_format": fmt}
    return params


def _unknown_dataset(ref: str, datasets: set[str]) -> str:
    declared = f" (declared: {', '.join(sorted(datasets))})" if datasets else ""
    return f"unknown dataset '{ref}'{suggest(ref, datasets) or declared}"


def _dangling_in_unchecked(
    unchecked: Sequence[Unchecked], datasets: set[str], diags: list[Diagnostic], invalid: set[str]
) -> None:
    """A job with a schema error is still checked for a dangling ``inputDataset``, unless a
    Dataset document is too broken to name itself (the job may well mean that one)."""
    if any(u.kind == "Dataset" and u.name is None for u in unchecked):
        return
    for u in unchecked:
        ref = u.input_dataset
        if u.kind == "BatchInferenceJob" and ref and ref not in datasets | invalid:
            diags.append(dataclasses.replace(u.at, message=_unknown_dataset(ref, datasets)))


def _job(
    p: Parsed,
    datasets: set[str],
    root: Path,
    diags: list[Diagnostic],
    invalid: set[str],
    output_dir: str,
    dirs: P.Dirs,
) -> JobDecl | None:
    m = _job_of(p)
    if m is None:
        return None
    spec, name = m.spec, m.metadata.name
    ref = spec.input_dataset
    ok = ref not in invalid  # reads a Dataset whose own problem is reported
    if ref is not None and ref not in datasets and ok:  # no union of the two sets per job
        diags.append(_at(p, ("spec", "inputDataset"), _unknown_dataset(ref, datasets)))
        ok = False
    written = spec.output.path or f"{output_dir.rstrip('/')}/{name}.jsonl"
    try:
        output = P.output_file(written, root, dirs=dirs)
    except P.PathProblem as exc:
        diags.append(_at(p, ("spec", "output", "path"), str(exc)))
        return None
    extras = _extras(p, m, output, root, diags)
    in_extra = "response_format" in (spec.inference_parameters.extra_body or {})
    if spec.response_format is not None and in_extra:
        message = "set the response format in responseFormat, not in extraBody"
        diags.append(_at(p, ("spec", "inferenceParameters", "extraBody"), message))
        ok = False
    if not ok or extras is None:
        return None
    return JobDecl(
        name=name,
        model=spec.model or "",  # a matrix sets it per combination
        source=p.source,
        input_dataset=spec.input_dataset,
        input_dataset_id=spec.input_dataset_id,
        display_name=spec.display_name,
        inference_parameters=_parameters(m, extras.get("response_schema")),
        precision=spec.precision,
        output_path=output,
        output_display=P.display(output, root),
        on_expired=spec.on_expired,
        max_resumes=spec.max_resumes,
        reuse=spec.reuse,
        row_retries=spec.row_retries,
        canary=Canary(spec.canary.rows, spec.canary.max_failed_rows) if spec.canary else None,
        max_cost=spec.budget.max_cost if spec.budget else None,
        labels=dict(m.metadata.labels),
        **extras,
        **_failure_limit(spec.max_failed_rows),
        max_retries=spec.max_retries,
        provider=spec.provider or BUILTIN_PROVIDER,
        depends_on=tuple(spec.depends_on),  # expanded when a name is a matrix (manifest.expand)
    )


def _read_by_jobs(parsed: Sequence[Parsed], root: Path) -> dict[Path, str]:
    """The schema files jobs read (``responseFormat.schemaFile``) -> what each is."""
    read: dict[Path, str] = {}
    for p in parsed:
        m = _job_of(p)
        if m is not None and m.spec.response_format is not None:
            written = m.spec.response_format.schema_file
            if written is None:
                continue
            try:
                path = P.confine(written, p.file.parent, root)
            except P.PathProblem:
                continue  # reported where the schema is read
            read[path] = f"the schema file of job '{m.metadata.name}'"
    return read


def _failure_limit(value: int | str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"max_failed_rows": 0, "max_failed_percent": float(value.removesuffix("%"))}
    return {"max_failed_rows": value, "max_failed_percent": None}


def _check_outputs(
    jobs: Sequence[JobDecl],
    datasets: Sequence[DatasetDecl],
    files: Sequence[Path],
    root: Path,
    parsed: Sequence[Parsed],
    diags: list[Diagnostic],
    read: dict[Path, str],
) -> None:
    """Results that would overwrite a dataset, a manifest, git's or batchops' files, or another
    job's results (both jobs of a collision are reported)."""
    by_name = {
        p.manifest.metadata.name: p  # type: ignore[attr-defined]
        for p in parsed
        if p.kind == JOB
    }
    for job, kind, message in output_problems(jobs, datasets, files, root, read):
        p = by_name[job.declared_name]
        at: Loc = ("spec", "output", "path")
        if kind == "table":  # spec.output.table.path, or the table's own line when derived
            at = ("spec", "output", "table", "path")
            at = at if at in p.doc.values else at[:-1]
        diags.append(_at(p, at, message))
    parquet = {j.declared_name for j in jobs if j.table is not None and j.table.format == "parquet"}
    if parquet and not _pyarrow_installed():  # found now, not after the job has run and been paid
        for name in sorted(parquet):
            p = by_name[name]
            at = ("spec", "output", "table", "format")
            diags.append(_at(p, at if at in p.doc.values else at[:-1], WRITING_PARQUET))


WRITING_PARQUET = (
    "writing Parquet needs pyarrow: pip install 'batchops[parquet]' (or pip install pyarrow)"
)


def _pyarrow_installed() -> bool:
    """Whether pyarrow can be imported, without importing it (a second of start-up)."""
    import importlib.util

    try:
        return importlib.util.find_spec("pyarrow") is not None
    except (ImportError, ValueError):
        return False
