"""The input rows a job's results answer, kept beside its record while the dataset moves on.

``batchops results`` joins answers to their input rows. A rendered dataset's artifact
(``.batchops/rendered/<dataset>/<key>/``) is replaced as soon as its table or template changes,
so when ``batchops.apply`` merges a job's results it keeps the artifact's ``inputs.jsonl`` as
``.batchops/inputs/<job>/<key>.jsonl`` (a hard link: no copy while the artifact lives; a copy
where links are refused) and the record names it (``batchops.stamps.InputsUsed``). The
artifact's files are only ever replaced, never written in place, so the link keeps exactly the
rows the job ran with. Hand-written datasets are not kept (they can be large, and a user's file
can be changed in place); their stamps in the record say that they changed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from batchops.config import STATE_DIR, ensure_state_dir
from batchops.private import private_dir
from batchops.sources.render import inputs_file

KEPT_DIR = Path(STATE_DIR, "inputs")


def keep_inputs(root: Path, job_name: str, files: Sequence[Path]) -> Path | None:
    """The kept input rows of a rendered dataset's ``files``, made if missing; None for a
    hand-written (or remote) dataset."""
    sidecar = inputs_file(files[0]) if len(files) == 1 else None
    if sidecar is None:
        return None
    ensure_state_dir(root)
    folder = private_dir(root / KEPT_DIR / job_name, root=root)
    target = folder / f"{files[0].parent.name}.jsonl"  # the artifact's key: content-addressed
    if target.is_file():
        return target
    staged = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        try:
            os.link(sidecar, staged)
        except OSError:  # a file system without hard links
            shutil.copyfile(sidecar, staged)
        staged.replace(target)
    finally:
        staged.unlink(missing_ok=True)
    return target


def forget_other_inputs(root: Path, job_name: str, kept: Path | None) -> None:
    """Once the record names ``kept``, the job's other kept inputs are referred to no more."""
    folder = root / KEPT_DIR / job_name
    if not folder.is_dir():
        return
    for other in folder.iterdir():
        if other != kept and other.suffix == ".jsonl":
            with contextlib.suppress(OSError):
                other.unlink()
