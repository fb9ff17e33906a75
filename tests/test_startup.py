"""What a command imports at start-up (DESIGN.md section 10): a check of the import graph, not a
timing. Each case runs the real entry point in a fresh interpreter and reads back the modules it
loaded, and whether a CA bundle was loaded (an SSL context that verifies certificates).
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from batchops.cli import COMMANDS
from batchops.local.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]

# Run the CLI, then write {"modules": [...], "ca_loaded": n} to argv[1] at exit.
DRIVER = """
import atexit, json, ssl, sys
loaded = []
_load = ssl.SSLContext.load_verify_locations
def _spy(self, *args, **kwargs):
    loaded.append(1)
    return _load(self, *args, **kwargs)
ssl.SSLContext.load_verify_locations = _spy
out = sys.argv[1]
def _dump():
    with open(out, "w") as fh:
        mods = sorted(k for k, v in sys.modules.items() if v is not None)  # None: refused
        json.dump({"modules": mods, "ca_loaded": len(loaded)}, fh)
atexit.register(_dump)
sys.argv = ["batchops", *sys.argv[2:]]
from batchops.cli import run
run()
"""

# Never needed by plan, apply, status or validate: the daemon's metrics, the local server,
# httpx's own command-line tool (which pulls in click and rich), file watching.
NEVER_FOR_A_PASS = {
    "prometheus_client",
    "uvicorn",
    "starlette",
    "watchfiles",
    "httpx._main",
    "click",
    "rich",
    "batchops.watch",
    "batchops.local.app",
}
# What a plain `--version` or `--help` must not pay for.
HEAVY = NEVER_FOR_A_PASS | {
    "pydantic",
    "yaml",
    "httpx",
    "msgspec",
    "orjson",
    "batchops.manifest",
    "batchops.plan",
    "batchops.reconcile",
    "batchops.datasets",
}


def started(tmp_path: Path, *argv: str, cwd: Path | None = None) -> tuple[set[str], int]:
    out = tmp_path / "modules.json"
    argv_all = [sys.executable, "-c", DRIVER, str(out), *argv]
    done = subprocess.run(argv_all, cwd=cwd or tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    return set(report["modules"]), report["ca_loaded"]


def loaded(modules: set[str], names: set[str]) -> set[str]:
    return {m for m in modules if m in names or m.split(".")[0] in names}


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_import_no_command_and_no_heavy_library(
    tmp_path: Path, argv: list[str]
) -> None:
    modules, ca_loaded = started(tmp_path, *argv)
    assert loaded(modules, HEAVY) == set()
    assert {f"batchops.cli.{name}" for name in COMMANDS} & modules == set()
    assert ca_loaded == 0


@pytest.mark.parametrize("command", ["schema", "init"])
def test_a_command_imports_only_its_own_module(tmp_path: Path, command: str) -> None:
    modules, _ = started(tmp_path, command)
    commands = {f"batchops.cli.{name}" for name in COMMANDS}
    assert commands & modules == {f"batchops.cli.{command}"}


def example_project(tmp_path: Path, *, project_file: bool = True) -> Path:
    """The example jobs, with the repository's batchops.yaml or (the folder-name fallback)
    without it."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "jobs", project / "jobs")
    if project_file:
        shutil.copy(ROOT / "batchops.yaml", project / "batchops.yaml")
    else:  # its provider (`openai`) is declared in batchops.yaml
        (project / "jobs/capitals-openai.yaml").unlink()
    return project


@pytest.mark.parametrize("project_file", [True, False])
def test_validate_imports_no_network_or_daemon_code(tmp_path: Path, project_file: bool) -> None:
    project = example_project(tmp_path, project_file=project_file)
    modules, ca_loaded = started(tmp_path, "validate", cwd=project)
    network = {"httpx", "batchops.providers.fireworks.client"}
    assert loaded(modules, NEVER_FOR_A_PASS | network) == set()
    assert ca_loaded == 0


def test_validate_with_warm_caches_loads_no_tokenizer(tmp_path: Path) -> None:
    """Token counts of unchanged datasets come from the token cache: the tokenizers' vocabularies
    (most of a second to load) are not imported to name the counter."""
    project = example_project(tmp_path)
    started(tmp_path, "validate", cwd=project)  # counts the tokens, fills the caches
    assert (project / ".batchops" / "cache" / "tokens.json").is_file()
    modules, _ = started(tmp_path, "validate", cwd=project)
    assert loaded(modules, {"bpe_openai", "tokenizers"}) == set()


def test_warm_validate_and_plan_load_no_manifest_models_nor_yaml(
    tmp_path: Path, make_server: Callable[..., EmbeddedServer]
) -> None:
    """Manifests validated by an earlier command come from the manifest cache
    (``batchops.manifest.stored``): neither PyYAML nor the manifest models are imported, and
    ``validate`` (which calls no API) imports no pydantic at all."""
    server = make_server(worker=False)
    project = example_project(tmp_path)
    time.sleep(2.1)  # files changed within 2 s are not trusted by their stat (manifest/cache.py)
    started(tmp_path, "validate", cwd=project)  # fills the caches
    modules, _ = started(tmp_path, "validate", cwd=project)
    validation = {"pydantic", "pydantic_core", "yaml", "batchops.manifest.models"}
    assert loaded(modules, validation) == set()
    modules, _ = started(tmp_path, "plan", "--base-url", server.base_url, cwd=project)
    assert "batchops.plan" in modules  # it did plan
    assert loaded(modules, {"yaml", "batchops.manifest.models"}) == set()


# What a warm `plan` (the steady state CI sees) does without: the schema checker (a known-valid
# responseFormat is checked once, batchops.manifest.templated), the code that executes a plan,
# and pydantic: list pages are decoded with msgspec (batchops.providers.fireworks.pages); the
# wire models are for requests that send a body and for pages only they can decide.
NOT_FOR_A_WARM_PLAN = {
    "jsonschema",
    "batchops.apply",
    "batchops.sources.conform",
    "pydantic",
    "pydantic_core",
    "batchops.providers.fireworks.wire",
    "zipfile",
}


def test_a_warm_plan_imports_no_schema_checker_no_apply_and_no_pydantic(
    tmp_path: Path, make_server: Callable[..., EmbeddedServer]
) -> None:
    server = make_server(worker=False)
    project = example_project(tmp_path)
    assert "responseFormat:" in (project / "jobs" / "capitals-judge.yaml").read_text()
    time.sleep(2.1)  # files changed within 2 s are not trusted by their stat (manifest/cache.py)
    started(tmp_path, "validate", cwd=project)  # fills the caches
    modules, _ = started(tmp_path, "plan", "--base-url", server.base_url, cwd=project)
    assert "batchops.plan" in modules  # it did plan
    assert loaded(modules, NOT_FOR_A_WARM_PLAN) == set()


def test_plan_with_warm_caches_loads_no_tokenizer(
    tmp_path: Path, make_server: Callable[..., EmbeddedServer]
) -> None:
    server = make_server(worker=False)
    project = example_project(tmp_path)
    started(tmp_path, "validate", cwd=project)  # counts the tokens, fills the caches
    modules, _ = started(tmp_path, "plan", "--base-url", server.base_url, cwd=project)
    assert "batchops.plan" in modules  # it did plan
    assert loaded(modules, {"bpe_openai", "tokenizers"}) == set()


@pytest.mark.parametrize("project_file", [True, False])
def test_plan_against_a_plain_http_server_loads_no_tls_and_no_daemon_code(
    tmp_path: Path, make_server: Callable[..., EmbeddedServer], project_file: bool
) -> None:
    server = make_server(worker=False)
    project = example_project(tmp_path, project_file=project_file)
    modules, ca_loaded = started(tmp_path, "plan", "--base-url", server.base_url, cwd=project)
    assert "batchops.plan" in modules  # it did plan
    assert loaded(modules, NEVER_FOR_A_PASS) == set()
    assert ca_loaded == 0  # no certificate store for http://127.0.0.1


def test_https_still_verifies_certificates() -> None:
    from batchops.providers.fireworks.transport import LazyTLSTransport

    transport = LazyTLSTransport()
    with pytest.raises(httpx.ConnectError):  # nothing listens there; the context exists by then
        transport.handle_request(httpx.Request("GET", "https://127.0.0.1:9/"))
    context = transport._tls._pool._ssl_context  # type: ignore[union-attr]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    transport.close()


def test_every_command_module_has_a_row_in_the_lazy_table() -> None:
    """A command module missing from COMMANDS would be neither listed in --help nor runnable."""
    cli = ROOT / "batchops" / "cli"
    modules = {p.stem for p in cli.glob("*.py") if "\ndef register(" in p.read_text()}
    assert modules == set(COMMANDS)


def test_importing_the_commands_builds_no_pydantic_validator() -> None:
    """Models build their validators at first use (``defer_build``): importing ``plan`` and
    ``validate`` (and the ~40 wire and manifest models they may use) builds none of them; a run
    pays only for what it touches."""
    code = (
        "import batchops.cli.plan, batchops.cli.validate, json\n"
        "import batchops.manifest.models, batchops.providers.fireworks.wire\n"
        "import batchops.providers.openai.wire\n"
        "from pydantic import BaseModel\n"
        "def walk(c):\n"
        "    for s in c.__subclasses__():\n"
        "        yield s\n"
        "        yield from walk(s)\n"
        "ours = {c for c in walk(BaseModel) if c.__module__.startswith('batchops.')}\n"
        "print(json.dumps([len(ours), sorted(c.__qualname__ for c in ours\n"
        "                                    if c.__pydantic_complete__)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    count, built = json.loads(done.stdout)
    assert count > 20  # the models were imported ...
    assert built == []  # ... and none was built


def test_importing_the_pass_commands_loads_no_validation_or_yaml_library() -> None:
    """The manifest models, pydantic and PyYAML are imported where a manifest file must be
    parsed, not when ``plan`` or ``validate`` is imported: with a warm manifest cache a run never
    needs them (``batchops.manifest.stored``)."""
    code = (
        "import sys, json, batchops.cli.plan, batchops.cli.validate, batchops.manifest\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    heavy = {"pydantic", "pydantic_core", "yaml", "batchops.manifest.models", "httpx"}
    assert loaded(set(json.loads(done.stdout)), heavy) == set()


def test_the_light_catalog_names_the_provider_kinds_the_model_accepts() -> None:
    """``batchops.providers.catalog.PROVIDER_KINDS`` stands in for ``ProviderSpec.kind`` where the
    models are not imported (the project file's price checks on a warm load)."""
    from typing import get_args

    from batchops.manifest.models import ProviderSpec
    from batchops.providers.catalog import PROVIDER_KINDS

    assert set(PROVIDER_KINDS) == set(get_args(ProviderSpec.model_fields["kind"].annotation))
