"""Opening the client for plan/apply/status/watch: the real service, a shared server, or embedded.

The project root is the nearest folder holding ``batchops.yaml`` (looking upward, like git), or
``--root``, or the current folder. ``Settings.backend_choice`` picks the backend and refuses to
pick silently: with ``FIREWORKS_API_KEY`` the client talks to Fireworks; with ``--local`` or
``backend: local`` to the embedded local backend (data in ``.batchops/local``) or a ``batchops
serve`` at ``FIREWORKS_BASE_URL``; with no key outside CI to the embedded backend, saying so on
stderr; under CI with no key it stops. Also holds the flags these commands share.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batchops.config import (
    LOCAL_ACCOUNT_ID,
    PROJECT_FILE,
    STATE_DIR,
    Settings,
    ensure_state_dir,
    find_root,
    load_settings,
)
from batchops.errors import TransportError
from batchops.identity import project_from_root, slugify
from batchops.private import private_dir
from batchops.providers import Provider
from batchops.providers.registry import BUILTIN_FIREWORKS, build
from batchops.providers.router import ProviderSet

NOTICE = (
    "batchops: no FIREWORKS_API_KEY; using the embedded local backend in .batchops/local "
    "(see `batchops serve`)"
)
LOCAL_NOTICE = "batchops: using the embedded local backend in .batchops/local (asked by {where})"


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """--base-url, --account-id, --project, --root, --local: for plan, apply, status, watch."""
    parser.add_argument("--base-url", help="API base URL (default: $FIREWORKS_BASE_URL)")
    parser.add_argument("--account-id", help="account ID (default: $FIREWORKS_ACCOUNT_ID)")
    parser.add_argument(
        "--project",
        help="project name in IDs and the ownership mark (default: $BATCHOPS_PROJECT, then "
        "metadata.name in batchops.yaml)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="project root (default: the nearest folder upward holding batchops.yaml, else the "
        "current folder)",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="use the local backend (embedded, or the `batchops serve` at --base-url), even "
        "under CI",
    )


def root_of(args: argparse.Namespace) -> Path:
    root: Path | None = getattr(args, "root", None)
    if root is not None:
        return root.resolve()
    return find_root(Path.cwd()) or Path.cwd().resolve()


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags, environment and the root's batchops.yaml (validated: InvalidInputError)."""
    from batchops.manifest.project import load_project
    from batchops.manifest.stored import StoredManifests

    root = root_of(args)
    return load_settings(
        base_url=getattr(args, "base_url", None),
        account_id=getattr(args, "account_id", None),
        project=getattr(args, "project", None),
        local=bool(getattr(args, "local", False)),
        project_file=load_project(root, cache=StoredManifests(root)),
    )


def project_of(settings: Settings, root: Path) -> str:
    """The project's name (``open_provider`` says so when it comes from the folder's name)."""
    return slugify(settings.project) if settings.project else project_from_root(root)


def project_notice(settings: Settings, root: Path) -> str | None:
    """When the name comes from the folder's name: say so (a clone under another name would be
    another project) and how to pin it."""
    if settings.project:
        return None
    return (
        f"batchops: project name '{project_from_root(root)}' comes from the folder name ({root}); "
        "a checkout under another name would plan everything again. Pin it with `batchops init` "
        f"or metadata.name in {PROJECT_FILE}"
    )


def default_paths(
    args: argparse.Namespace, root: Path, settings: Settings | None = None
) -> list[Path]:
    """PATHS as given (relative to the current folder), or the project file's ``paths`` (relative
    to the root), or ``<root>/jobs``."""
    given: list[str] = getattr(args, "paths", None) or []
    if given:
        return [Path(p).resolve() for p in given]
    project = settings.project_file if settings else None
    return [root / p for p in project.paths] if project else [root / "jobs"]


def describe_backend(settings: Settings, root: Path) -> dict[str, str]:
    """Which backend a command talks to, for the plan's header (text, JSON, step summary)."""
    choice = settings.backend_choice()
    if choice == "fireworks":
        account = settings.account_id or LOCAL_ACCOUNT_ID
        text = f"Fireworks account {account} at {settings.base_url}"
        return {"kind": choice, "url": settings.base_url, "account": account, "text": text}
    if choice == "serve":
        text = f"`batchops serve` at {settings.base_url}"
        return {"kind": choice, "url": settings.base_url, "text": text}
    where = (root / STATE_DIR / "local").as_posix()
    return {
        "kind": choice,
        "path": where,
        "text": f"the embedded local backend at {STATE_DIR}/local",
    }


_REMOTE_TITLES = {
    "fireworks": "the Fireworks account",
    "serve": "`batchops serve`",
    "embedded": "the embedded local backend",
}


def remote_title(backend: dict[str, str]) -> str:
    """The plan's heading of remote actions names the backend's kind (``describe_backend``)."""
    return _REMOTE_TITLES.get(backend["kind"], "the backend")


def paths_narrowed(args: argparse.Namespace, root: Path, settings: Settings | None = None) -> bool:
    """PATHS name part of the project rather than the default (all of it): pruning is then
    limited to what those paths declare."""
    if not getattr(args, "paths", None):
        return False
    whole = default_paths(argparse.Namespace(paths=None), root, settings)
    return default_paths(args, root, settings) != whole


def _notice_stderr(message: str) -> None:
    print(message, file=sys.stderr)


@contextlib.contextmanager
def open_provider(
    settings: Settings,
    *,
    root: Path,
    notice: Callable[[str], None] = _notice_stderr,
    **client_options: Any,
) -> Iterator[Provider]:
    """The providers (the built-in ``fireworks`` and every one the project file declares) for
    the remote, a shared server, or an embedded backend started for the block, which every
    provider then talks to. Raises ConfigError when no backend may be chosen (no key under CI)."""
    choice = settings.backend_choice()
    if (about_project := project_notice(settings, root)) is not None:
        notice(about_project)
    if choice == "serve":  # a shared `batchops serve`: it speaks every provider's API
        settings = dataclasses.replace(settings, provider_keys={})  # keys never go to it
        with contextlib.closing(_providers(settings, settings.base_url, client_options)) as shared:
            try:
                yield shared
            except TransportError as exc:
                raise TransportError(
                    f"{exc.server_message} (is `batchops serve` running at {settings.base_url}? "
                    "FIREWORKS_BASE_URL names it)",
                    method=exc.method,
                    path=exc.path,
                ) from exc
        return
    if choice != "embedded":
        with contextlib.closing(_providers(settings, None, client_options)) as provider:
            yield provider
        return
    from batchops.local.config import BackendConfig  # only when embedding
    from batchops.local.server import EmbeddedServer

    # keys never go to a local server
    settings = dataclasses.replace(settings, api_key=None, provider_keys={})
    data_dir = private_dir(ensure_state_dir(root) / "local", root=root)
    with EmbeddedServer(BackendConfig(data_dir=data_dir), port=0) as server:
        asked = settings.backend == "local"
        notice(LOCAL_NOTICE.format(where=settings.backend_source) if asked else NOTICE)
        local = _providers(settings, server.base_url, client_options)
        with contextlib.closing(local) as provider:
            yield provider


def _providers(settings: Settings, base_url: str | None, options: dict[str, Any]) -> Provider:
    """The built-in ``fireworks`` provider from the settings (FIREWORKS_* variables), alone or
    beside the declared ones (``base_url``: the embedded backend or the `batchops serve` every
    provider then uses)."""
    fireworks = build(BUILTIN_FIREWORKS, settings=settings, base_url=base_url, **options)
    declared = settings.project_file.providers if settings.project_file else ()
    if not declared:
        return fireworks
    providers = {fireworks.name: fireworks}
    for config in declared:
        where = {"base_url": base_url} if base_url else {}
        key = settings.provider_keys.get(config.name)
        providers[config.name] = build(config, api_key=key, **where, **options)
    return ProviderSet(providers)
