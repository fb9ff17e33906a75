"""Settings from flags, the environment and the project file. The one place environment variables
are read.

Precedence (DESIGN.md section 7): flags, then ``FIREWORKS_*`` / ``BATCHOPS_*`` variables, then the
project file (``batchops.yaml``, parsed and validated by ``batchops.manifest.project`` into a
``ProjectConfig``), then defaults. The API key is held as a ``Secret`` whose repr and str never
show it; only the HTTP client reads ``.reveal()``. The backend is never chosen silently:
``Settings.backend_choice`` refuses the embedded backend under CI unless it was asked for.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from batchops.errors import ConfigError
from batchops.money import Compare, PriceOverride, PriceTable, shipped_prices
from batchops.private import private_dir, write_atomic_text

DEFAULT_BASE_URL = "https://api.fireworks.ai"
LOCAL_ACCOUNT_ID = "local"
STATE_DIR = ".batchops"  # caches only; deleting it is safe
PROJECT_FILE = "batchops.yaml"
DEFAULT_PATHS = ("jobs",)
DEFAULT_OUTPUT_DIR = "results"
DEFAULT_WORKERS = 8  # actions apply runs at once (`--parallelism`)

Backend = Literal["fireworks", "local"]
BackendChoice = Literal["fireworks", "serve", "embedded"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION = 366 * 86400.0  # longer waits overflow the platform's timeouts (Event.wait)


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """``30``, ``30s``, ``1.5s``, ``500ms``, ``2m``, ``1h`` -> seconds: the one parser of
    every duration (flags, and any file that gives one). Plain numbers are seconds. Zero is
    refused unless ``allow_zero`` (a delay of none); negative, NaN, infinite and over a year are
    refused always. Raises ValueError with the accepted forms."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else math.nan
    if not (0 < seconds <= MAX_DURATION or (allow_zero and seconds == 0)):
        low = "zero or more" if allow_zero else "positive"
        raise ValueError(f"not a {low} duration: {text!r} (e.g. 30, 30s, 500ms, 2m, 1h)")
    return seconds


class Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Moved:
    """``moved: [{from: old, to: new}]`` in the project file: ``new`` was called ``old``."""

    old: str
    new: str
    kind: str | None = None  # "Dataset" | "BatchInferenceJob" | None (both kinds)
    line: int = 1  # where the entry is in the project file, for diagnostics
    col: int = 1

    def applies_to(self, kind: str) -> bool:
        return self.kind is None or self.kind == kind


BUILTIN_PROVIDER = "fireworks"  # exists without a declaration; FIREWORKS_* variables


@dataclass(frozen=True)
class ProviderConfig:
    """One provider of the project file's ``spec.providers`` (or the built-in ``fireworks``):
    its name, kind, where it is and which environment variable holds its key.

    Keys are never stored here, only the variable's name. ``limits`` are the provider's caps and
    quotas as declared (``maxRequestsPerBatch``, ``maxBytesPerBatch``, ``enqueuedTokens``)."""

    name: str
    kind: str  # "fireworks" | "openai"
    base_url: str | None = None
    api_key_env: str | None = None
    account_id: str | None = None
    limits: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ProjectConfig:
    """What ``batchops.yaml`` says, validated. Later sections (providers, prices, budget) become
    more fields here, each with a default, so older project files stay valid."""

    file: Path  # absolute; its folder is the project root
    name: str  # the project's name in IDs and in the ownership mark
    backend: Backend | None = None
    paths: tuple[str, ...] = DEFAULT_PATHS  # manifest paths, relative to the root
    output_dir: str = DEFAULT_OUTPUT_DIR  # default folder of results/<job>.jsonl
    poll_interval: float | None = None  # seconds between passes of `apply --wait`
    parallelism: int | None = None  # concurrent actions of `apply`
    moved: tuple[Moved, ...] = ()
    providers: tuple[ProviderConfig, ...] = ()  # declared in `spec.providers`, by name
    prices: tuple[PriceOverride, ...] = ()  # the project file's `prices`
    max_cost: float | None = None  # budget.maxCost
    budget_compare: Compare = "worstCase"  # budget.compare
    tokenizers: tuple[tuple[str, str], ...] = ()  # (model, tokenizer.json relative to the root)

    def tokenizer_files(self) -> dict[str, Path]:
        return {model: self.root / path for model, path in self.tokenizers}

    @property
    def root(self) -> Path:
        return self.file.parent

    @property
    def provider_names(self) -> frozenset[str]:
        """The names a job's ``spec.provider`` may use: the declared ones and ``fireworks``."""
        return frozenset({BUILTIN_PROVIDER, *(p.name for p in self.providers)})

    @property
    def provider_kinds(self) -> dict[str, str]:
        """Each provider name a job may use -> its kind (what its prices are looked up by)."""
        return {BUILTIN_PROVIDER: BUILTIN_PROVIDER, **{p.name: p.kind for p in self.providers}}


def price_table(project: ProjectConfig | None) -> PriceTable:
    """The shipped prices with the project file's ``prices`` over them, knowing each declared
    provider's kind: what plan, status, describe and results price a job's tokens with."""
    if project is None:
        return shipped_prices()
    return shipped_prices().with_overrides(project.prices, project.provider_kinds)


def find_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding a ``batchops.yaml``, like git finds
    ``.git``; None when there is none."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    return None


def ensure_state_dir(root: Path) -> Path:
    """``<root>/.batchops``, created if needed with a ``.gitignore`` of ``*`` in it, so that
    ``git add -A`` never commits the local backend's signing key or caches."""
    state = private_dir(root / STATE_DIR, root=root)  # 0700: it can hold keys and URLs
    ignore = state / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by batchops: caches and local data, never committed\n*\n")
    return state


def ensure_state_dir_above(path: Path) -> None:
    """``ensure_state_dir`` for the ``.batchops`` folder that is ``path`` or holds it, if any
    (say ``batchops serve --data-dir .batchops/local``); other paths are left alone."""
    path = path.absolute()
    state = next((p for p in (path, *path.parents) if p.name == STATE_DIR), None)
    if state is not None:
        ensure_state_dir(state.parent)


def save_state_file(path: Path, text: str, *, root: Path, prefix: str) -> None:
    """Write one of the state files under ``root/.batchops/`` (a cache) atomically, in a private
    folder (``batchops.private``)."""
    ensure_state_dir_above(path.parent)
    private_dir(path.parent, root=root)
    write_atomic_text(path, text, prefix=prefix)


def proxies_in_env(env: Mapping[str, str] | None = None) -> bool:
    """Whether httpx would mount proxies from the environment (HTTPS_PROXY, ALL_PROXY, ...)."""
    env = os.environ if env is None else env
    names = ("http_proxy", "https_proxy", "all_proxy")
    return any(key.lower() in names and value for key, value in env.items())


def is_ci(env: Mapping[str, str]) -> bool:
    """``CI`` or ``GITHUB_ACTIONS`` set to anything non-empty."""
    return bool(env.get("CI") or env.get("GITHUB_ACTIONS"))


@dataclass(frozen=True)
class Settings:
    api_key: Secret | None = None
    account_id: str | None = None
    base_url: str = DEFAULT_BASE_URL
    project: str | None = None  # the ownership mark's project name; None = derive from the root
    project_source: str = "the root folder's name"  # where ``project`` came from, for notices
    github_actions: bool = False
    step_summary: Path | None = None  # $GITHUB_STEP_SUMMARY
    backend: Backend | None = None  # asked for by --local or the project file; None = by the key
    backend_source: str = ""  # "--local" or the project file, for messages
    ci: bool = False
    project_file: ProjectConfig | None = None
    # each declared provider's key, by provider name, from its `apiKeyEnv` variable
    provider_keys: Mapping[str, Secret] = field(default_factory=dict)

    @property
    def uses_local_backend(self) -> bool:
        """No API key means the embedded local backend (unless a base URL points elsewhere)."""
        return self.backend == "local" or self.api_key is None

    def backend_choice(self) -> BackendChoice:
        """Fireworks, a `batchops serve` at ``base_url``, or the embedded backend. Raises
        ConfigError rather than fall back to a local backend nobody asked for (under CI, or when
        the project file says ``backend: fireworks``)."""
        custom_url = self.base_url != DEFAULT_BASE_URL
        if self.backend == "local":
            return "serve" if custom_url else "embedded"
        if self.api_key is not None:
            return "fireworks"
        if custom_url:
            return "serve"  # named explicitly (FIREWORKS_BASE_URL / --base-url): not silent
        if self.backend == "fireworks":
            raise ConfigError(
                f"{self.backend_source} says backend: fireworks, but FIREWORKS_API_KEY is not "
                "set (or empty); set it, or pass --local to use the embedded local backend"
            )
        if self.ci:
            raise ConfigError(
                "FIREWORKS_API_KEY is not set (or empty) and this is a CI run (CI or "
                "GITHUB_ACTIONS is set): refusing to fall back to a throwaway local backend. "
                "Provide the key (a repository secret; forks do not get secrets), or ask for the "
                "local backend with --local or `backend: local` in batchops.yaml"
            )
        return "embedded"


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    base_url: str | None = None,
    account_id: str | None = None,
    project: str | None = None,
    local: bool = False,
    project_file: ProjectConfig | None = None,
) -> Settings:
    env = os.environ if env is None else env
    key = env.get("FIREWORKS_API_KEY") or None
    summary = env.get("GITHUB_STEP_SUMMARY") or None
    name, source = _project_name(env, project, project_file)
    backend: Backend | None = "local" if local else None
    if not local and project_file is not None:
        backend = project_file.backend
    where = "--local" if local else (project_file.file.name if project_file else "")
    return Settings(
        api_key=Secret(key) if key else None,
        account_id=account_id or env.get("FIREWORKS_ACCOUNT_ID") or None,
        base_url=(base_url or env.get("FIREWORKS_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
        project=name,
        project_source=source,
        github_actions=env.get("GITHUB_ACTIONS") == "true",
        step_summary=Path(summary) if summary else None,
        backend=backend,
        backend_source=where,
        ci=is_ci(env),
        project_file=project_file,
        provider_keys=_provider_keys(env, project_file),
    )


def _provider_keys(env: Mapping[str, str], project_file: ProjectConfig | None) -> dict[str, Secret]:
    """Each declared provider's key from the variable its ``apiKeyEnv`` names (never a file)."""
    providers = project_file.providers if project_file is not None else ()
    keys = {p.name: env.get(p.api_key_env or "") for p in providers if p.api_key_env}
    return {name: Secret(key) for name, key in keys.items() if key}


def _project_name(
    env: Mapping[str, str], flag: str | None, project_file: ProjectConfig | None
) -> tuple[str | None, str]:
    if flag:
        return flag, "--project"
    if env.get("BATCHOPS_PROJECT"):
        return env["BATCHOPS_PROJECT"], "$BATCHOPS_PROJECT"
    if project_file is not None:
        return project_file.name, str(project_file.file.name)
    return None, "the root folder's name"
