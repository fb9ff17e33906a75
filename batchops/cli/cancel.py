"""`batchops cancel NAME...`: stop the owned jobs of NAME that are still running.

Fireworks has no cancel call: DELETE stops a running job (docs/reconciler.md), so a cancelled job
leaves the account; its finished attempts, their output datasets and the results on disk stay.
Same guards as ``delete`` (``batchops.cli.delete``): this project's mark, confirmation or ``-y``.
"""

from __future__ import annotations

import argparse
from typing import Any

from batchops.cli.delete import add_removal_flags, run_removal


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "cancel",
        parents=parents,
        help="stop owned running jobs by name (no more billing)",
        description="Stop every running job of this project named NAME, so that it is no longer "
        "billed. Finished attempts and results are kept. A job still declared by a manifest is "
        "submitted again by the next apply: remove it from the manifests, or leave it out with "
        "--job/-l.",
    )
    add_removal_flags(p)
    p.set_defaults(func=lambda args: run_removal(args, cancel=True))
