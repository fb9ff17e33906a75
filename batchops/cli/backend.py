"""Opening the client for plan/apply/status/watch: the real service, a shared server, or embedded.

With ``FIREWORKS_API_KEY`` the client talks to Fireworks (``client_from_settings``). Without a key
but with ``FIREWORKS_BASE_URL`` (say a shared ``batchops serve``), it talks to that URL with no key.
With neither, it starts the embedded local backend (data in ``.batchops/local``) for the duration of
the command and says so in one line on stderr. Also holds the flags these commands share.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batchops.api import FireworksClient, client_from_settings
from batchops.config import DEFAULT_BASE_URL, STATE_DIR, Settings, load_settings
from batchops.identity import project_from_root, slugify
from batchops.private import private_dir

NOTICE = (
    "batchops: no FIREWORKS_API_KEY; using the embedded local backend in .batchops/local "
    "(see `batchops serve`)"
)


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """--base-url, --account-id, --project, --root: shared by plan, apply, status and watch."""
    parser.add_argument("--base-url", help="API base URL (default: $FIREWORKS_BASE_URL)")
    parser.add_argument("--account-id", help="account ID (default: $FIREWORKS_ACCOUNT_ID)")
    parser.add_argument(
        "--project", help="ownership mark's project (default: $BATCHOPS_PROJECT or the root's name)"
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="repository root (default: the current folder)"
    )


def root_of(args: argparse.Namespace) -> Path:
    root: Path | None = getattr(args, "root", None)
    return (root or Path.cwd()).resolve()


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings(
        base_url=getattr(args, "base_url", None),
        account_id=getattr(args, "account_id", None),
        project=getattr(args, "project", None),
    )


def project_of(settings: Settings, root: Path) -> str:
    return slugify(settings.project) if settings.project else project_from_root(root)


def default_paths(args: argparse.Namespace, root: Path) -> list[Path]:
    """PATHS as given (relative to the current folder), or ``<root>/jobs``."""
    given: list[str] = getattr(args, "paths", None) or []
    return [Path(p).resolve() for p in given] if given else [root / "jobs"]


def paths_narrowed(args: argparse.Namespace, root: Path) -> bool:
    """PATHS name part of the project rather than the default (all of it): pruning is then
    limited to what those paths declare."""
    return bool(getattr(args, "paths", None)) and default_paths(args, root) != [root / "jobs"]


def _notice_stderr(message: str) -> None:
    print(message, file=sys.stderr)


@contextlib.contextmanager
def open_client(
    settings: Settings,
    *,
    root: Path,
    notice: Callable[[str], None] = _notice_stderr,
    **client_options: Any,
) -> Iterator[FireworksClient]:
    """A client for the remote, a shared server, or an embedded backend started for the block."""
    if settings.api_key is not None or settings.base_url != DEFAULT_BASE_URL:
        with client_from_settings(settings, **client_options) as client:
            yield client
        return
    from batchops.local.config import BackendConfig  # only when embedding
    from batchops.local.server import EmbeddedServer

    data_dir = private_dir(root / STATE_DIR / "local", root=root)
    with EmbeddedServer(BackendConfig(data_dir=data_dir), port=0) as server:
        notice(NOTICE)
        with client_from_settings(settings, base_url=server.base_url, **client_options) as client:
            yield client
