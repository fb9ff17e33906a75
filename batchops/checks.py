"""Provider rules over the declared jobs: the hook ``validate`` and every pass run after the
manifests and datasets validated, so that nothing is sent for a job its provider would refuse.

Called by ``batchops.cli.validate`` and ``batchops.reconcile.load_inputs``. Each job's provider
(``spec.provider``) gives the rules (``batchops.providers.rules``); its input dataset's rows are
read only when those rules ask for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from batchops.checkcache import CheckCache
from batchops.config import ProjectConfig
from batchops.datasets import iter_rows
from batchops.errors import Diagnostic
from batchops.manifest.desired import Desired, JobDecl, Source
from batchops.providers.layout import Layout, layout_fn
from batchops.providers.rules import DatasetRow, JobCheck, RowsFn, provider_config, rules_for


def provider_problems(
    desired: Desired, *, root: Path, project: ProjectConfig | None = None
) -> list[Diagnostic]:
    """Every problem the jobs' providers find, sorted. A job found clean is not checked again
    while its settings and its dataset's files are unchanged (``batchops.checkcache``)."""
    problems: list[Diagnostic] = []
    cache = CheckCache(root)
    for decl in desired.jobs:
        config = provider_config(decl.provider, project)
        rules = rules_for(config.kind)
        if rules is None:
            continue
        settings = [
            config.kind,
            dict(config.limits),
            decl.model,
            dict(decl.inference_parameters),
            decl.precision,
        ]
        files = _files(desired, decl)
        key = CheckCache.key("rules", settings, files)
        if cache.get(key) is True:
            continue
        check = JobCheck(
            name=decl.name,
            provider=config,
            model=decl.model,
            parameters=decl.inference_parameters,
            precision=decl.precision,
            path=decl.source.path,
            line=decl.source.line,
            col=decl.source.col,
            limits=config.limits,
            locate=partial(field_position, root, decl.source),
        )
        found = rules(check, _rows(files, root))
        if not found:
            cache.put(key, True)
        problems += found
    cache.save()
    return sorted(set(problems))


def field_position(root: Path, source: Source, field: str) -> tuple[int, int] | None:
    """Where ``spec.<field>`` (a dotted path) of the document at ``source`` is written, or the
    matrix list that gives it. The file is parsed again: only a problem asks."""
    from batchops.manifest.yamlsrc import parse_documents  # PyYAML: not for a warm plan

    try:
        text = (root / source.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    docs, _ = parse_documents(text)
    doc = next((d for d in docs if d.start[0] == source.line), None)
    if doc is None:
        return None
    parts = tuple(field.split("."))
    for loc in (("spec", *parts), ("spec", "matrix", parts[-1])):
        if loc in doc.keys:
            return doc.keys[loc]
    return None


def _files(desired: Desired, decl: JobDecl) -> tuple[Path, ...]:
    dataset = desired.dataset(decl.input_dataset) if decl.input_dataset else None
    return dataset.files if dataset is not None else ()


def _rows(files: Sequence[Path], root: Path) -> RowsFn:
    def rows() -> Iterator[DatasetRow]:
        return (DatasetRow(path, line, row) for path, line, row in iter_rows(files, root))

    return rows


def job_layout(
    provider: str,
    model: str,
    parameters: Mapping[str, Any],
    files: Sequence[Path],
    *,
    root: Path,
    project: ProjectConfig | None = None,
    cache: CheckCache | None = None,
) -> Layout | None:
    """The parts and waves a job sending the rows of ``files`` goes out in on its provider; None
    when the provider sends every job as one batch (what ``plan`` shows: ``reconcile``). With
    ``cache``, unchanged files are not read again for the same settings (the caller saves it)."""
    config = provider_config(provider, project)
    layout = layout_fn(config.kind)
    if layout is None or not files:
        return None
    settings = [config.kind, dict(config.limits), model, dict(parameters)]
    key = CheckCache.key("layout", settings, files) if cache is not None else None
    known = cache.get(key) if cache is not None else None
    if isinstance(known, dict):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return Layout(tuple(known["parts"]), known["waves"], known["enqueuedTokens"])
    found = layout(config.limits, model, parameters, (row for _, _, row in iter_rows(files, root)))
    if cache is not None:
        cache.put(key, found.to_json())
    return found
