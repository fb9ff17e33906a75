"""`batchops results NAME...`: a job's answers joined to the inputs that asked them.

Reads only local files: the merged results of each named job (``batchops apply`` wrote them) and
the input rows of the first job's dataset (a rendered dataset's source columns, or a hand-written
one's prompt), joined by custom_id in flat memory (``batchops.sources.join``). Several jobs line
up side by side, one set of columns per job. A table by default (``--limit`` rows, ``--columns``);
``--output json|jsonl|csv|parquet`` writes the whole table to stdout or ``--out FILE``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from batchops.chains import render_inputs
from batchops.cli.backend import root_of
from batchops.config import ProjectConfig, price_table
from batchops.errors import EXIT_OK, ConfigError, Diagnostic, InvalidInputError
from batchops.layout import errors_path
from batchops.manifest import Desired, JobDecl, load_desired
from batchops.manifest.hints import closest, suggest
from batchops.manifest.project import load_project
from batchops.money import Price, money_text, on_provider, spent
from batchops.render.status import summary_lines
from batchops.results import ResultRecord, Usage, local_records, write_atomic
from batchops.row_retries import failure_summary
from batchops.scratch import Scratch
from batchops.sources.join import FIELDS, JobResults, Joined, input_rows, kept_rows
from batchops.sources.writers import cell, chunks
from batchops.stamps import inputs_unchanged, same_inputs
from batchops.textsafe import inert

DEFAULT_LIMIT = 20


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "results",
        help="answers joined to their inputs (table, json, jsonl, csv, parquet)",
        description="Join the named jobs' merged results (written by `batchops apply`) to their "
        "input rows by custom_id and show them: a table, or the whole join as json, jsonl, csv "
        "or parquet on stdout or in --out FILE. Several jobs are lined up side by side.",
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="declared jobs")
    p.add_argument(
        "--output",
        "-o",
        default="text",
        help="output format",
        choices=("text", "json", "jsonl", "csv", "parquet"),
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more detail")
    p.add_argument("--out", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help=f"rows to show (table: default {DEFAULT_LIMIT}; other formats: all); 0 = all",
    )
    p.add_argument(
        "--columns",
        type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
        metavar="A,B",
        help="the input columns to show (default: all)",
    )
    p.add_argument(
        "--manifests",
        action="append",
        type=Path,
        metavar="PATH",
        help="manifest files or folders (default: the project file's paths, or jobs/); repeatable",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = root_of(args)  # the nearest folder with batchops.yaml, like git
    project = load_project(root)
    default = [root / p for p in project.paths] if project else [root / "jobs"]
    desired, problems = _load([p.resolve() for p in args.manifests or ()] or default, root, project)
    jobs = _jobs(desired, args.names)
    results = [JobResults(j.name, j.output_path, errors_path(j.output_path)) for j in jobs]
    missing = [j.output_display for j in jobs if not j.output_path.is_file()]
    if len(missing) == len(jobs):
        raise ConfigError(f"no results on disk ({', '.join(missing)}); run `batchops apply`")
    for shown in missing:
        print(f"note: no results on disk at {inert(shown)}; its columns are empty", file=sys.stderr)
    records = local_records(root)
    inputs, orphans = _inputs(desired, jobs, records, problems)
    key = _key(desired, jobs[0])
    with (
        Scratch(root) as scratch,
        Joined(
            inputs, results, tmp_dir=scratch.path, columns=args.columns, key=key, orphans=orphans
        ) as joined,
    ):
        if args.columns is not None:
            _check_columns(args.columns, joined.available, key)
        if joined.orphans:
            _note(
                f"{joined.orphans:,} answer(s) to rows the input no longer holds: listed last, "
                "without input columns"
            )
        limit = args.limit if args.limit is not None else _default_limit(args.output)
        rows = joined.rows() if not limit else islice(joined.rows(), limit)
        prices = [_price(project, j) for j in jobs]
        if args.output == "text":
            _table(joined.columns, rows, limit, args.out, every_column=args.columns is None)
            for job, price in zip(jobs, prices, strict=True):
                print(_spent_line(job, price, _usage(records, job), several=len(jobs) > 1))
            _print_failures(jobs, sys.stdout)
        else:
            columns, priced = _with_spent(joined.columns, rows, [j.name for j in jobs], prices)
            _write(args.output, columns, priced, args.out, root)
            _print_failures(jobs, sys.stderr)  # stdout holds the rows, nothing else
    return EXIT_OK


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def _record(records: dict[str, ResultRecord], job: JobDecl) -> ResultRecord | None:
    record = records.get(job.name)
    return record if record is not None and record.output.path == str(job.output_path) else None


def _key(desired: Desired, job: JobDecl) -> str | None:
    """The input column that is the custom_id (the dataset's ``idColumn``), shown once."""
    dataset = desired.dataset(job.input_dataset) if job.input_dataset else None
    return dataset.render.id_column if dataset is not None and dataset.render else None


def _inputs(
    desired: Desired,
    jobs: list[JobDecl],
    records: dict[str, ResultRecord],
    problems: list[Diagnostic],
) -> tuple[Iterator[tuple[str, dict[str, Any]]] | None, bool]:
    """The input rows to join and whether answers they lack are shown too: the rows the first
    job's results answer (recorded when they were merged), not the input as it is now. A
    rendered dataset that changed since is read from the copy kept for the job; a hand-written
    one that changed is read as it is now, with a note, and every answer is still shown. The
    input's problems (a table being edited) stop this only when the rows are not kept."""
    first = jobs[0]
    dataset = desired.dataset(first.input_dataset) if first.input_dataset else None
    record = _record(records, first)
    used = record.inputs if record is not None else None
    if dataset is None:  # did not render now, waits on its upstream, or is a remote input
        if used is not None and used.kept is not None and Path(used.kept).is_file():
            _note(
                f"dataset '{inert(first.input_dataset or '')}' cannot be rendered as it is now; "
                f"showing the rows {inert(first.name)} ran with"
            )
            return kept_rows(Path(used.kept)), False
        if problems:
            raise InvalidInputError(problems)
        return None, False  # the answers' custom_ids are the rows
    if used is None:  # merged by an older batchops: the input as it is now, and every answer
        return input_rows(dataset.files), True
    orphans = False
    for other in jobs[1:]:
        theirs = _record(records, other)
        if (
            theirs is not None
            and theirs.inputs is not None
            and not same_inputs(theirs.inputs, used)
        ):
            what = (
                "another version of the input than"
                if other.input_dataset == first.input_dataset
                else f"dataset '{inert(other.input_dataset or '')}', not that of"
            )
            _note(
                f"{inert(other.name)} answered {what} {inert(first.name)}; its answers are lined "
                "up by custom_id"
            )
            orphans = True
    if inputs_unchanged(used, dataset.files):
        return input_rows(dataset.files), orphans
    if used.kept is not None and Path(used.kept).is_file():
        _note(
            f"dataset '{inert(dataset.name)}' changed since {inert(first.name)}'s results were "
            "merged; showing the rows it ran with (`batchops plan` shows what a run would send)"
        )
        return kept_rows(Path(used.kept)), orphans
    _note(
        f"dataset '{inert(dataset.name)}' changed since {inert(first.name)}'s results were "
        "merged; its input columns show the rows as they are now, which may not be what was asked"
    )
    return input_rows(dataset.files), True


def _print_failures(jobs: list[JobDecl], stream: TextIO) -> None:
    """Each job's failed rows by class and reason, as `status` and `describe` show them."""
    for job in jobs:
        summary = failure_summary(errors_path(job.output_path))
        if summary is not None:
            print("\n".join(summary_lines(inert(job.name), summary)), file=stream)


def _price(project: ProjectConfig | None, job: JobDecl) -> Price | None:
    return price_table(project).lookup(job.model, job.provider)


def _usage(records: dict[str, ResultRecord], job: JobDecl) -> Usage | None:
    """The usage summed when the results were merged (no API call), like ``status``'s SPENT."""
    record = _record(records, job)
    return record.spent_usage if record is not None else None


def _spent_line(job: JobDecl, price: Price | None, usage: Usage | None, *, several: bool) -> str:
    """``spent: $0.0012 (622 input, 142 output tokens)``: the spend of what ran (issue 15)."""
    head = f"{inert(job.name)} spent" if several else "spent"
    if usage is None:
        return f"{head}: unknown (no usage recorded with the results)"
    if price is None:
        why = f"no price for {inert(job.model)}{inert(on_provider(job.provider))}"
        return (
            f"{head}: unknown ({why}; {usage.prompt_tokens:,} input, "
            f"{usage.completion_tokens:,} output tokens)"
        )
    return (
        f"{head}: {money_text(spent(usage, price))} ({usage.prompt_tokens:,} input, "
        f"{usage.completion_tokens:,} output tokens)"
    )


Rows = Iterator[tuple[Any, ...]]


def _with_spent(
    columns: list[str], rows: Rows, names: list[str], prices: list[Price | None]
) -> tuple[list[str], Rows]:
    """Each answer's cost as a ``spent`` column per job (its prompt and completion tokens x the
    model's price; None when either is unknown), after that job's other columns."""
    several = len(names) > 1
    prefix = [f"{n}." if several else "" for n in names]
    picks = [
        (columns.index(f"{p}prompt_tokens"), columns.index(f"{p}completion_tokens"), price)
        for p, price in zip(prefix, prices, strict=True)
    ]

    def priced() -> Iterator[tuple[Any, ...]]:
        for row in rows:
            yield (*row, *(_row_cost(row[i], row[o], price) for i, o, price in picks))

    return [*columns, *(f"{p}spent" for p in prefix)], priced()


def _row_cost(prompt: Any, completion: Any, price: Price | None) -> float | None:
    if price is None or not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return price.cost(prompt, completion)


def _default_limit(output: str) -> int:
    return DEFAULT_LIMIT if output == "text" else 0


def _load(
    paths: list[Path], root: Path, project: ProjectConfig | None
) -> tuple[Desired, list[Diagnostic]]:
    """The declarations (a manifest problem is an error) with the datasets that render now; the
    rendering problems are returned, for ``_inputs`` to raise when they matter."""
    desired = load_desired(paths, root=root, project=project)
    problems: list[Diagnostic] = []
    return render_inputs(desired, root=root, problems=problems), problems


def _jobs(desired: Desired, names: list[str]) -> list[JobDecl]:
    """The named jobs; a matrix's declared name stands for all its combinations, side by side,
    in the order the matrix declares them (``desired.jobs`` is sorted by name)."""
    declared = {j.name: [j] for j in desired.jobs}
    for job in sorted(desired.jobs, key=lambda j: j.position):
        if job.group is not None:
            declared.setdefault(job.group, []).append(job)
    unknown = [n for n in names if n not in declared]
    if unknown:
        hint = suggest(unknown[0], declared) or f" (declared: {', '.join(sorted(declared))})"
        raise ConfigError(f"unknown job '{unknown[0]}'{hint}")
    return list({j.name: j for n in names for j in declared[n]}.values())


def _check_columns(asked: list[str], available: list[str], key: str | None) -> None:
    """``--columns`` names input columns: one that is not (a typo) is an error naming it, with
    a did-you-mean and the columns there are, never silently left out. The key (``custom_id``,
    which shows the dataset's ``idColumn``) and answer columns are always shown, so naming them
    is harmless."""
    always = {"custom_id", *FIELDS, *([key] if key else [])}
    unknown = [c for c in asked if c not in available and c not in always]
    if not unknown:
        return
    named = []
    for column in unknown:
        close = closest(column, available)
        hint = f" (did you mean '{inert(close)}'?)" if close else ""
        named.append(f"'{inert(column)}'{hint}")
    there = ", ".join(inert(c) for c in available) or "none: the input is remote-only"
    if key and key != "custom_id":
        there += f" (and {inert(key)}, shown as custom_id)"
    noun = "column" if len(unknown) == 1 else "columns"
    raise ConfigError(
        f"--columns: unknown input {noun} {', '.join(named)}; the input columns: {there}"
    )


def _write(
    fmt: str, columns: list[str], rows: Iterator[tuple[Any, ...]], out: Path | None, root: Path
) -> None:
    if out is not None:
        write_atomic(out.resolve(), chunks(fmt, columns, rows), root=root)
        return
    if fmt == "parquet" and sys.stdout.isatty():
        raise ConfigError("parquet is binary: write it with --out FILE or pipe it")
    for chunk in chunks(fmt, columns, rows):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


def _table(
    columns: list[str],
    rows: Iterator[tuple[Any, ...]],
    limit: int,
    out: Path | None,
    *,
    every_column: bool,
) -> None:
    """A compact view: tokens as "in+out", and columns empty in every shown row left out. Every
    header and cell is data: control characters are made inert, and rich ``Text`` shows markup
    (``[bold]``) literally."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    names, shown = _compact(columns, [tuple(cell(v) for v in row) for row in rows])
    table = Table()
    for name in names:  # column names come from the input table: data too
        table.add_column(Text(inert(name)), overflow="fold", max_width=60)
    for row in shown:
        table.add_row(*(Text(inert(value)) for value in row))
    if out is None:
        Console().print(table)
    else:
        with out.open("w", encoding="utf-8") as fh:
            Console(file=fh, width=200).print(table)
    if limit and len(shown) == limit:  # with --columns, -o csv writes only those columns too
        also = ", -o csv writes every column" if every_column else ""
        print(f"(first {limit} rows; --limit 0 shows all{also})")


def _compact(columns: list[str], rows: list[tuple[str, ...]]) -> tuple[list[str], list[list[str]]]:
    names: list[str] = []
    picks: list[tuple[int, ...]] = []
    for i, name in enumerate(columns):
        field = name.rsplit(".", 1)[-1]
        if field == "completion_tokens":
            continue  # shown with prompt_tokens
        if field == "prompt_tokens":
            names.append(name.replace("prompt_tokens", "tokens"))
            picks.append((i, i + 1))
        else:
            names.append(name.replace("finish_reason", "finish"))
            picks.append((i,))
    table = [["+".join(row[i] for i in pick if row[i]) for pick in picks] for row in rows]
    keep = [n for n in range(len(names)) if any(row[n] for row in table)] or list(range(len(names)))
    return [names[n] for n in keep], [[row[n] for n in keep] for row in table]
