"""`batchops schema`: print the JSON Schema of the manifests, for editors (YAML language server)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from batchops.manifest import manifest_json_schema


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "schema",
        parents=parents,
        help="print the JSON Schema of the manifests",
        description="Print the JSON Schema of one manifest document (a oneOf over 'kind'). Save "
        "it and point your editor at it, e.g. with a first line "
        "'# yaml-language-server: $schema=./batchops.schema.json' (see docs/manifests.md).",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(manifest_json_schema(), indent=2, sort_keys=True))
    return 0
