"""Each provider's own rules on the jobs declared for it, checked at ``validate`` time (and before
every plan) with file:line, after the manifests and datasets are valid.

Called by ``batchops.cli.validate.check`` and ``batchops.reconcile.load_inputs``. Today only the
OpenAI-compatible kind has rules of its own (``batchops.providers.openai.rules``): custom_id length
and characters, a request line past the per-batch byte cap, parameters it does not accept. Row
checks are remembered per (dataset digest, model, parameters, cap) in this process, so a watch
loop pays for them once per dataset version.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path

from batchops.config import ProjectConfig
from batchops.errors import Diagnostic
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl
from batchops.providers.openai.lines import RequestShape, rows_of
from batchops.providers.openai.provider import limits_from
from batchops.providers.openai.rules import row_problems, spec_problems


def problems(
    desired: Desired, digests: Mapping[str, str], project: ProjectConfig | None
) -> list[Diagnostic]:
    """Every rule broken by a job on an OpenAI-compatible provider; ``digests`` maps dataset
    names to their sha256 (from ``batchops.datasets``)."""
    kinds = {p.name: p for p in (project.providers if project else ())}
    datasets = {d.name: d for d in desired.datasets}
    found: list[Diagnostic] = []
    for job in desired.jobs:
        config = kinds.get(job.provider)
        if config is None or config.kind != "openai":
            continue
        shape = _shape(job)
        for field, message in spec_problems(job.inference_parameters | _precision(job), shape):
            where = job.source
            found.append(Diagnostic(where.path, where.line, where.col,
                                    f"{job.name}: {field}: {message}"))  # fmt: skip
        decl = datasets.get(job.input_dataset or "")
        if decl is not None and decl.name in digests:
            cap = limits_from(config.limits).max_bytes
            found.extend(_row_diagnostics(decl, digests[decl.name], shape, cap, desired.root))
    return sorted(set(found), key=lambda d: (d.path, d.line, d.col, d.message))


def _precision(job: JobDecl) -> dict[str, str]:
    return {"precision": job.precision} if job.precision else {}


def _shape(job: JobDecl) -> RequestShape:
    params = {k: v for k, v in job.inference_parameters.items() if k != "extraBody"}
    extra = job.inference_parameters.get("extraBody")
    return RequestShape.from_manifest(job.model, {**params, "extraBody": json.dumps(extra or {})})


def _row_diagnostics(
    decl: DatasetDecl, digest: str, shape: RequestShape, cap: int, root: Path
) -> list[Diagnostic]:
    params = json.dumps(dict(shape.params), sort_keys=True, default=str)
    return list(_rows_checked(decl.files, digest, shape.model, params, cap, root))


@functools.lru_cache(maxsize=64)
def _rows_checked(
    files: tuple[Path, ...], digest: str, model: str, params: str, cap: int, root: Path
) -> tuple[Diagnostic, ...]:
    """``digest`` makes the cache entry specific to one version of the dataset."""
    shape = RequestShape(model, json.loads(params))
    found: list[Diagnostic] = []
    for path in files:
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        with path.open("rb") as handle:
            problems = row_problems(rows_of(handle), shape, max_bytes=cap)
        found.extend(Diagnostic(shown, p.line, 1, p.message) for p in problems)
    return tuple(found)
