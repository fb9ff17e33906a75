"""`batchops init`: start a project in a folder. Writes a commented ``batchops.yaml``, the
``.gitignore`` entries, and an example job with its dataset; never overwrites a file unless
``--force`` says so (existing files are kept and listed).

The project name written into ``batchops.yaml`` (``--name``, default: the folder's name) pins the
project's identity from then on: a clone under any other folder name plans the same resources.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from batchops.config import PROJECT_FILE
from batchops.errors import EXIT_OK, ConfigError
from batchops.identity import slugify
from batchops.manifest.models import NAME_MAX, NAME_RE

PROJECT_TEMPLATE = """\
# The batchops project file (docs/project.md). Commit it: it pins the project's identity.
apiVersion: batchops/v1
kind: Project
metadata:
  # The project's name, part of every remote ID and of the ownership mark
  # ("[batchops:{name}]" in display names). Renaming it makes everything new.
  name: {name}
spec:
  # fireworks (needs FIREWORKS_API_KEY and FIREWORKS_ACCOUNT_ID) or local (the embedded
  # backend, data in .batchops/local). Unset: Fireworks with a key, else local outside CI.
  {backend_line}
  paths: [jobs]              # manifest files or folders (PATHS default)
  outputDir: results         # a job's results default to <outputDir>/<job name>.jsonl
  # pollInterval: 15s        # between passes of `apply --wait` (15, 15s, 2m)
  # parallelism: 8           # concurrent uploads, creates and downloads
  # moved:                   # renames without re-running (docs/project.md#moved)
  #   - {{from: old-job-name, to: new-job-name}}
"""

EXAMPLE_JOB = """\
# An example: a two-row dataset and a job answering it. `batchops plan` shows what would run.
apiVersion: batchops/v1
kind: Dataset
metadata:
  name: example
spec:
  path: data/example.jsonl   # relative to this file's folder
  format: CHAT
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata:
  name: example-llama8b
spec:
  model: accounts/fireworks/models/llama-v3p1-8b-instruct
  inputDataset: example
  inferenceParameters:
    maxTokens: 64
    temperature: 0.0
"""

EXAMPLE_ROWS = (
    '{"custom_id": "example-1", "body": {"messages": [{"role": "user", '
    '"content": "Name a prime number between 10 and 20."}]}}\n'
    '{"custom_id": "example-2", "body": {"messages": [{"role": "user", '
    '"content": "What is the capital of Canada?"}]}}\n'
)


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init",
        parents=parents,
        help="start a project: batchops.yaml, .gitignore, an example",
        description="Write a commented batchops.yaml, .gitignore entries for .batchops/ (and "
        "results/, unless --no-ignore-results) and an example job with its dataset in jobs/. "
        "Existing files are kept unless --force is given.",
    )
    p.add_argument("dir", nargs="?", type=Path, default=Path(), help="folder (default: here)")
    p.add_argument("--name", help="project name (default: the folder's name)")
    p.add_argument("--backend", choices=("fireworks", "local"), help="pin the backend")
    p.add_argument(
        "--ignore-results",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="git-ignore results/ (default: yes)",
    )
    p.add_argument("--no-example", action="store_true", help="skip the example job")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = args.dir.resolve()
    name = args.name or slugify(root.name)[:NAME_MAX].strip("-")
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid project name '{name}': lowercase letters, digits and '-'")
    backend = f"backend: {args.backend}" if args.backend else "# backend: fireworks"
    files = {PROJECT_FILE: PROJECT_TEMPLATE.format(name=name, backend_line=backend)}
    if not args.no_example:
        files |= {"jobs/example.yaml": EXAMPLE_JOB, "jobs/data/example.jsonl": EXAMPLE_ROWS}
    for relative, text in files.items():
        print(_write(root / relative, text, force=args.force, shown=relative))
    ignores = [".batchops/"] + (["/results/"] if args.ignore_results else [])
    added = _add_ignores(root / ".gitignore", ignores)
    print(f"  .gitignore: {'added ' + ', '.join(added) if added else 'already ignores them'}")
    print(f"Project '{name}' in {root}. Next: `batchops validate`, then `batchops plan`.")
    return EXIT_OK


def _write(path: Path, text: str, *, force: bool, shown: str) -> str:
    if path.exists() and not force:
        print(f"batchops: kept {shown}: it exists (--force overwrites it)", file=sys.stderr)
        return f"  = {shown} (kept)"
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return f"  {'~' if existed else '+'} {shown}"


def _add_ignores(path: Path, entries: list[str]) -> list[str]:
    """Append the entries the file lacks (appending never loses a line of the user's)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {line.strip().strip("/") for line in text.splitlines()}
    missing = [e for e in entries if e.strip("/") not in present]
    if missing:
        sep = "" if not text or text.endswith("\n") else "\n"
        path.write_text(text + sep + "".join(f"{e}\n" for e in missing), encoding="utf-8")
    return missing
