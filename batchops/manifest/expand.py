"""Matrix jobs and per-combination chains -> the jobs and datasets that run. Pure but for path
checks.

Called by ``batchops.manifest.build`` with the declared (base) jobs and datasets and the graph's
order (``batchops.manifest.graph.check_graph``), upstream first: a dataset rendered from a matrix
job's results becomes one dataset per combination (``combine: each``), and a job reading it one
job per combination, each named ``<name>-<suffix>`` like the upstream combination it follows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from batchops.errors import Diagnostic
from batchops.manifest import paths as P
from batchops.manifest.desired import DatasetDecl, JobDecl
from batchops.manifest.graph import (
    DATASET,
    NAME_MAX,
    Key,
    Variant,
    combinations,
    expanded_name,
    join_suffix,
    shown,
    suffix_of,
    unique_names,
)
from batchops.manifest.templated import Problem, table_decl

if TYPE_CHECKING:
    from batchops.manifest.loader import Parsed
    from batchops.manifest.models import BatchInferenceJobManifest, TableSpec

_NOT_PARAMS = frozenset({"model", "provider"})


@dataclass
class Expander:
    root: Path
    output_dir: str
    dirs: P.Dirs
    diags: list[Diagnostic]
    jobs_in: Mapping[str, tuple[Parsed, JobDecl]]
    datasets_in: Mapping[str, DatasetDecl]
    dataset_at: Mapping[str, Diagnostic]  # the chained datasets' metadata.name positions

    def __post_init__(self) -> None:
        self.jobs: dict[str, list[tuple[Variant, JobDecl]]] = {}
        self.datasets: dict[str, list[tuple[Variant, DatasetDecl]]] = {}

    def run(self, order: Sequence[Key]) -> tuple[list[DatasetDecl], list[JobDecl]]:
        for kind, name in order:
            if kind == DATASET:
                self._dataset(name)
            else:
                self._job(name)
        return self._unique()

    # -- datasets ------------------------------------------------------------------------------

    def _dataset(self, name: str) -> None:
        decl = self.datasets_in.get(name)
        if decl is None:
            return
        render = decl.render
        if render is None or not render.upstream:
            self.datasets[name] = [(Variant(name), decl)]
            return
        ups = self.jobs.get(render.upstream[0], [])
        if not ups:
            return  # the upstream job did not load: its problem is reported
        if render.combine == "all" or not any(v.suffix for v, _ in ups):
            upstream = tuple(j.name for _, j in ups)
            self.datasets[name] = [(Variant(name), _with_upstream(decl, name, upstream))]
            return
        found = []
        for v, job in ups:
            expanded = self._name(name, v.suffix, self.dataset_at[name])
            if expanded is not None:
                variant = Variant(expanded, v.suffix, v.combination)
                found.append((variant, _with_upstream(decl, expanded, (job.name,))))
        self.datasets[name] = found

    # -- jobs ------------------------------------------------------------------------------------

    def _job(self, name: str) -> None:
        entry = self.jobs_in.get(name)
        if entry is None:
            return
        p, base = entry
        m = cast("BatchInferenceJobManifest", p.manifest)  # a model, or the cache's Node
        inputs: list[tuple[Variant, DatasetDecl | None]]
        if base.input_dataset is not None:
            inputs = list(self.datasets.get(base.input_dataset, []))
            if not inputs:
                return  # the dataset did not load: its problem is reported
        else:
            inputs = [(Variant(name), None)]
        deps = m.spec.depends_on
        needs = tuple(j.name for dep in deps for _, j in self.jobs.get(dep, [])) if deps else ()
        if m.spec.matrix is None and needs == base.depends_on and len(inputs) == 1:
            dataset = inputs[0][1]
            if dataset is None or dataset.render is None or not dataset.render.upstream:
                self.jobs[name] = [(Variant(name), base)]  # nothing to expand (the usual job)
                return
        found: list[tuple[Variant, JobDecl]] = []
        for dv, dataset in inputs:
            for combo in combinations(m.spec.matrix):
                suffix = join_suffix(dv.suffix, suffix_of(combo))
                expanded = self._name(name, suffix, _name_at(p))
                if expanded is None:
                    continue
                variant = Variant(expanded, suffix, dv.combination + shown(combo))
                decl = self._variant(p, base, variant, combo, dataset, needs, len(found))
                if decl is not None:
                    found.append((variant, decl))
        self.jobs[name] = found

    def _variant(
        self,
        p: Parsed,
        base: JobDecl,
        v: Variant,
        combo: Mapping[str, Any],
        dataset: DatasetDecl | None,
        needs: tuple[str, ...],
        position: int,
    ) -> JobDecl | None:
        upstream = dataset.render.upstream if dataset and dataset.render else ()
        params = {k: x for k, x in combo.items() if k not in _NOT_PARAMS}
        decl = dataclasses.replace(
            base,
            name=v.name,
            group=base.name if v.suffix else None,
            combination=v.combination,
            position=position,
            model=combo.get("model", base.model),
            provider=combo.get("provider", base.provider),
            inference_parameters={**base.inference_parameters, **params},
            input_dataset=dataset.name if dataset is not None else base.input_dataset,
            depends_on=tuple(dict.fromkeys((*upstream, *needs))),
        )
        if not v.suffix:
            return decl
        return self._outputs(p, decl, v.name.removeprefix(base.name + "-"))

    def _outputs(self, p: Parsed, decl: JobDecl, tail: str) -> JobDecl | None:
        """A combination's own results file (and table): the declared path with the suffix."""
        m = cast("BatchInferenceJobManifest", p.manifest)
        written = m.spec.output.path
        written = (
            _suffixed(written, tail)
            if written
            else f"{self.output_dir.rstrip('/')}/{decl.name}.jsonl"
        )
        try:
            output = P.output_file(written, self.root, dirs=self.dirs)
        except P.PathProblem as exc:
            self.diags.append(_at(p, ("spec", "output", "path"), str(exc)))
            return None
        table = decl.table
        if m.spec.output.table is not None:
            spec = m.spec.output.table
            if spec.path:  # the model, or the cache's Node: no model_copy
                fields = {"format": spec.format, "columns": spec.columns}
                spec = cast("TableSpec", SimpleNamespace(path=_suffixed(spec.path, tail), **fields))
            try:
                table = table_decl(spec, output, self.root)
            except Problem as exc:
                self.diags.append(_at(p, exc.loc, str(exc)))
                return None
        return dataclasses.replace(
            decl, output_path=output, output_display=P.display(output, self.root), table=table
        )

    # -- names -----------------------------------------------------------------------------------

    def _name(self, name: str, suffix: str, at: Diagnostic) -> str | None:
        expanded = expanded_name(name, suffix)
        if expanded is None:
            room = NAME_MAX - 6
            self.diags.append(
                Diagnostic(
                    at.path,
                    at.line,
                    at.col,
                    (
                        f"name '{name}' leaves no room for its combinations' suffix ('{suffix}'): "
                        f"a job or dataset that is expanded may have at most {room} characters"
                    ),
                )
            )
        return expanded

    def _unique(self) -> tuple[list[DatasetDecl], list[JobDecl]]:
        job_names = {n for n in self.jobs_in}
        clash = unique_names(
            (
                (j.name, name, _name_at(self.jobs_in[name][0]))
                for name, vs in self.jobs.items()
                for _, j in vs
                if j.name != name  # not expanded: nothing to collide (and no position made)
            ),
            self.diags,
            lambda n: n in job_names,
        )
        ds_names = set(self.datasets_in)
        clash_ds = unique_names(
            (
                (d.name, name, self.dataset_at[name])
                for name, vs in self.datasets.items()
                if name in self.dataset_at  # only a chained dataset is expanded
                for _, d in vs
            ),
            self.diags,
            lambda n: n in ds_names,
        )
        jobs = [j for vs in self.jobs.values() for _, j in vs if j.name not in clash]
        datasets = [d for vs in self.datasets.values() for _, d in vs if d.name not in clash_ds]
        return datasets, jobs


def _with_upstream(decl: DatasetDecl, name: str, upstream: tuple[str, ...]) -> DatasetDecl:
    assert decl.render is not None
    render = dataclasses.replace(decl.render, upstream=upstream)
    return dataclasses.replace(decl, name=name, render=render)


def _suffixed(written: str, tail: str) -> str:
    """``results/x.jsonl`` -> ``results/x-<tail>.jsonl``."""
    head, _, last = written.rpartition("/")
    stem, dot, ext = last.partition(".")
    name = f"{stem}-{tail}{dot}{ext}"
    return f"{head}/{name}" if head else name


def _name_at(p: Parsed) -> Diagnostic:
    return _at(p, ("metadata", "name"), "")


def _at(p: Parsed, loc: tuple[Any, ...], message: str) -> Diagnostic:
    pos = p.doc.values.get(loc, (p.source.line, p.source.col))
    return Diagnostic(p.source.path, *pos, message)
