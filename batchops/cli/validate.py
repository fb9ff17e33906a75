"""`batchops validate`: load the manifests, validate every dataset, report every problem.

Exit 0 with a one-line summary when all is valid; 1 with every diagnostic (``path:line:col:
message``) and a count when not. Under GitHub Actions the diagnostics are also printed as
``::error`` annotations, so they show up on the pull request's diff.
"""

from __future__ import annotations

import argparse
import json
from itertools import islice
from pathlib import Path
from typing import Any

from batchops.chains import render_inputs
from batchops.checks import provider_problems
from batchops.config import ProjectConfig, find_root, load_settings
from batchops.datasets import DEFAULT_MAX_BYTES, DatasetInfo, StatCache, dataset_facts, inspect_all
from batchops.errors import EXIT_ERROR, EXIT_OK, ConfigError, Diagnostic, InvalidInputError
from batchops.manifest import Desired, load_partial
from batchops.manifest.hints import suggest
from batchops.manifest.project import load_project
from batchops.manifest.stored import StoredManifests
from batchops.render.diagnostics import diagnostics_json, diagnostics_text, github_annotations
from batchops.render.units import human_size
from batchops.sources import relocate
from batchops.textsafe import inert, json_text
from batchops.tokencache import dataset_tokens

_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def byte_size(text: str) -> int:
    """'500M' -> 524288000; plain numbers are bytes."""
    unit = _UNITS.get(text[-1:].upper(), 1)
    number = text[:-1] if unit > 1 else text
    try:
        value = int(number) * unit
    except ValueError as exc:
        message = f"not a size: {text!r} (e.g. 1048576, 512K, 500M, 2G)"
        raise argparse.ArgumentTypeError(message) from exc
    if value <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return value


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        parents=parents,
        help="check manifests and datasets; report every problem with file:line:col",
        description="Load every manifest (*.yaml, *.yml, searched recursively) under PATHS and "
        "validate every dataset they declare, without calling any API. Exit 0 when all is "
        "valid, 1 otherwise, after printing every problem as path:line:col: message.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="manifest files or folders (default: jobs/)",
    )
    p.add_argument(
        "--max-dataset-bytes",
        type=byte_size,
        default=DEFAULT_MAX_BYTES,
        metavar="SIZE",
        help="refuse dataset files larger than this (bytes, or with K/M/G; default 500M)",
    )
    p.add_argument(
        "--show-rendered",
        metavar="NAME",
        help="also print the first rows of dataset NAME exactly as they will be uploaded: "
        "one JSONL line each (control and bidi characters shown as escapes)",
    )
    p.add_argument(
        "--rows", type=int, default=3, metavar="N", help="rows --show-rendered prints (default 3)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = find_root(Path.cwd()) or Path.cwd()  # the nearest folder with batchops.yaml, like git
    try:
        project = load_project(root, cache=StoredManifests(root))
    except InvalidInputError as exc:  # reported with the manifests' problems, all at once
        project, project_diags = None, exc.diagnostics
    else:
        project_diags = []
    default = [root / p for p in project.paths] if project else [root / "jobs"]
    paths = [p.resolve() for p in args.paths] or default
    desired, infos, diags = check(paths, root, args.max_dataset_bytes, project=project)
    diags = project_diags + diags
    shown = _rendered(desired, args.show_rendered, args.rows) if args.show_rendered else None
    files = project.tokenizer_files() if project is not None else {}
    tokens = job_tokens(desired, infos, root, files) if desired is not None and not diags else {}
    if args.output == "json":
        body = {**_json(desired, infos, diags), "inputTokens": tokens}
        if shown is not None:
            body["rendered"] = [json.loads(line) for line in shown]
        print(json_text(body, indent=2))
    elif diags:
        print(diagnostics_text(diags))
    else:
        for line in shown or ():  # dataset text: the line as uploaded, but no escape sequence
            print(inert(line))  # reaches the terminal
        print(summary(desired, infos) + _tokens_text(tokens))
    if diags and load_settings().github_actions:
        print(github_annotations(diags))
    return EXIT_ERROR if diags else EXIT_OK


def check(
    paths: list[Path], root: Path, max_bytes: int, *, project: ProjectConfig | None = None
) -> tuple[Desired | None, dict[str, DatasetInfo], list[Diagnostic]]:
    """Every problem at once: the manifests, and the datasets of every valid Dataset document
    (rendered, when built from a table) even when other documents are invalid (a manifest error
    hides no dataset problem)."""
    cache = StoredManifests(root)  # unchanged manifests are not parsed again
    desired, diags = load_partial(paths, root=root, project=project, cache=cache)
    problems: list[Diagnostic] = []  # rendering and validating
    desired = render_inputs(desired, root=root, problems=problems)
    shown = None if diags else desired
    try:
        infos = inspect_all(desired, root=root, cache=StatCache.for_root(root), max_bytes=max_bytes)
    except InvalidInputError as exc:
        return shown, {}, sorted(set(diags + problems + relocate(exc.diagnostics, desired)))
    found = diags + problems + provider_problems(desired, root=root, project=project)
    return shown, ({} if found else infos), sorted(set(found))


def _rendered(desired: Desired | None, name: str, count: int) -> list[str]:
    """The first ``count`` lines of dataset ``name``, exactly as they will be uploaded (the
    artifact's own lines, without their newline)."""
    dataset = desired.dataset(name) if desired is not None else None
    if desired is not None and dataset is None:
        names = [d.name for d in desired.datasets]
        raise ConfigError(f"unknown dataset '{name}'{suggest(name, names)}")
    rows: list[str] = []
    for file in dataset.files if dataset is not None else ():
        with file.open("rb") as fh:
            lines = islice(fh, max(0, count - len(rows)))
            rows += [line.decode().rstrip("\r\n") for line in lines if line.strip()]
    return rows


def job_tokens(
    desired: Desired, infos: dict[str, DatasetInfo], root: Path, tokenizers: dict[str, Path]
) -> dict[str, Any]:
    """Each job's input tokens (issue 15): counted now, once per dataset content and model, so
    a later plan finds them in the token cache."""
    counted = dataset_tokens(desired.jobs, infos, root=root, tokenizers=tokenizers)
    out = {}
    for job in desired.jobs:
        found = counted.get((job.input_dataset or "", job.model))
        if found is not None:
            out[job.name] = {
                "tokens": found.input_tokens,
                "exact": found.exact,
                "counter": found.counter,
                "template": found.template.name,
            }
    return out


def _tokens_text(tokens: dict[str, Any]) -> str:
    if not tokens:
        return ""
    total = sum(t["tokens"] for t in tokens.values())
    exact = all(t["exact"] for t in tokens.values())
    return f"; {total:,} input tokens{'' if exact else ' (estimated)'} for the jobs"


def summary(desired: Desired | None, infos: dict[str, DatasetInfo]) -> str:
    if desired is None:
        return ""
    rows = sum(i.rows for i in infos.values())
    size = human_size(sum(i.size for i in infos.values()))
    return (
        f"valid: {_n(len(desired.manifest_files), 'manifest file')}, "
        f"{_n(len(desired.datasets), 'dataset')} ({_n(rows, 'row')}, {size}), "
        f"{_n(len(desired.jobs), 'job')}"
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _json(
    desired: Desired | None, infos: dict[str, DatasetInfo], diags: list[Diagnostic]
) -> dict[str, Any]:
    body = diagnostics_json(diags)
    if desired is not None:
        body["manifestFiles"] = [str(p.relative_to(desired.root)) for p in desired.manifest_files]
        body["datasets"] = dataset_facts(infos) if infos else {d.name: {} for d in desired.datasets}
        body["jobs"] = [j.name for j in desired.jobs]
    return body
