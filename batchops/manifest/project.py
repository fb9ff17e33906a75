"""``batchops.yaml`` -> ``ProjectConfig``: read, validated and located like every manifest.

The CLI calls ``load_project`` once per command (through ``batchops.cli.backend``); the result goes
to ``batchops.config.load_settings`` (precedence) and to ``load_desired`` (the ``moved`` renames
and the default output folder). Every problem is a Diagnostic at file:line:col, unknown keys get
a "did you mean", and the JSON Schema comes with the manifests' (``batchops schema``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from batchops.config import PROJECT_FILE, Moved, ProjectConfig, ProviderConfig
from batchops.errors import Diagnostic, InvalidInputError
from batchops.manifest.hints import suggest
from batchops.manifest.loader import read_manifests
from batchops.money import Price, PriceOverride
from batchops.providers.catalog import PROVIDER_KINDS

if TYPE_CHECKING:  # the document may be a ``stored.Node`` read back from the manifest cache
    from batchops.manifest.cache import ManifestCache
    from batchops.manifest.models import PriceEntry, ProjectManifest

# the provider kinds batchops speaks (``spec.providers.<name>.kind``); the shipped prices are keyed
# by kind. From the catalog, not the model: a warm load imports no model (a test keeps them equal)
KINDS = frozenset(PROVIDER_KINDS)


def load_project(root: Path, *, cache: ManifestCache | None = None) -> ProjectConfig | None:
    """``<root>/batchops.yaml`` as a ProjectConfig; None when there is no such file. Raises
    InvalidInputError with every problem of the file. With a ``cache``, an unchanged file is not
    read again."""
    root = root.resolve()
    file = root / PROJECT_FILE
    if not file.is_file():
        return None
    diags: list[Diagnostic] = []
    parsed = read_manifests(file, root, diags, cache=cache)
    if cache is not None:
        cache.finish()
    projects = [p for p in parsed if p.kind == "Project"]
    for p in parsed:
        if p.kind != "Project":
            kind = p.manifest.kind  # type: ignore[attr-defined]
            message = f"{PROJECT_FILE} holds the Project only; move this {kind} under jobs/"
            diags.append(Diagnostic(p.source.path, p.source.line, p.source.col, message))
    if not projects and not diags:
        diags.append(Diagnostic(PROJECT_FILE, 1, 1, "no 'kind: Project' document"))
    for extra in projects[1:]:
        message = "a second Project document; batchops.yaml declares exactly one"
        diags.append(Diagnostic(extra.source.path, extra.source.line, extra.source.col, message))
    if not diags:
        first = projects[0]
        diags += _price_providers(
            cast("ProjectManifest", first.manifest), first.source.path, first.doc.keys
        )
    if diags:
        raise InvalidInputError(diags)
    manifest = cast("ProjectManifest", projects[0].manifest)
    return _config(manifest, file, projects[0].doc.keys)


def _price_providers(
    m: ProjectManifest, path: str, keys: dict[tuple[str | int, ...], tuple[int, int]]
) -> list[Diagnostic]:
    """Each ``prices`` entry's ``provider`` is a provider kind (its prices serve every provider
    of that kind) or a provider ``spec.providers`` declares (its own prices, over its kind's)."""
    known = {*KINDS, *m.spec.providers}
    out = []
    for i, entry in enumerate(m.spec.prices):
        if entry.provider not in known:
            line, col = keys.get(("spec", "prices", i, "provider"), (1, 1))
            message = (
                f"spec.prices[{i}].provider: unknown provider '{entry.provider}': a "
                f"provider kind ({', '.join(sorted(KINDS))}) or a provider spec.providers "
                "declares"
            )
            out.append(Diagnostic(path, line, col, message + suggest(entry.provider, known)))
    return out


def _config(
    m: ProjectManifest, file: Path, keys: dict[tuple[str | int, ...], tuple[int, int]]
) -> ProjectConfig:
    spec = m.spec
    moved = tuple(
        Moved(e.from_, e.to, e.kind, *keys.get(("spec", "moved", i, "to"), (1, 1)))
        for i, e in enumerate(spec.moved)
    )
    providers = tuple(
        ProviderConfig(
            name,
            p.kind,
            base_url=p.base_url,
            api_key_env=p.api_key_env,
            account_id=p.account_id,
            limits=p.limits.model_dump(by_alias=True, exclude_none=True),
        )
        for name, p in sorted(spec.providers.items())
    )
    return ProjectConfig(
        file=file,
        name=m.metadata.name,
        backend=spec.backend,
        paths=tuple(spec.paths),
        output_dir=spec.output_dir,
        poll_interval=spec.poll_interval,
        parallelism=spec.parallelism,
        moved=moved,
        providers=providers,
        prices=_prices(spec.prices),
        max_cost=spec.budget.max_cost,
        budget_compare=spec.budget.compare,
        tokenizers=tuple((t.model, t.path) for t in spec.tokenizers),
    )


def _prices(entries: list[PriceEntry]) -> tuple[PriceOverride, ...]:
    return tuple(
        PriceOverride(
            e.model,
            e.provider,
            Price(
                input=e.input,
                output=e.output,
                cached_input=e.cached_input,
                as_of=e.as_of or "",
                source=e.source or "the project file",
            ),
        )
        for e in entries
    )
