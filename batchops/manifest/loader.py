"""Manifest files -> ``Desired``: discover, parse, validate, cross-check; collect every problem.

``load_desired`` is the public entry (re-exported by ``batchops.manifest``); the CLI, the planner's
callers and the watch daemon call it. Nothing here stops at the first problem: every file is read,
every document validated, and all Diagnostics are raised together in one InvalidInputError.
"""

from __future__ import annotations

import functools
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchops.config import BUILTIN_PROVIDER, DEFAULT_OUTPUT_DIR, ProjectConfig
from batchops.errors import Diagnostic, InvalidInputError
from batchops.gcpause import gc_paused
from batchops.manifest import paths as P
from batchops.manifest.build import build_desired, with_moved
from batchops.manifest.cache import ManifestCache
from batchops.manifest.desired import Desired, Source
from batchops.manifest.doc import YamlDocument
from batchops.manifest.hints import suggest
from batchops.manifest.templated import schema_verdicts

if TYPE_CHECKING:  # imported where a file is parsed: a warm load needs neither (see stored.py)
    from collections.abc import Callable, Mapping

    from pydantic import BaseModel, ValidationError

    _Validation = tuple[
        type[ValidationError],
        Callable[..., list[Diagnostic]],
        Mapping[str, type[BaseModel]],
        str,
        type[BaseModel],
        Callable[[dict[str, Any]], object | None],
    ]

MANIFEST_SUFFIXES = (".yaml", ".yml")
MAX_MANIFEST_BYTES = 16 * 2**20  # a thousand jobs take ~300 KB


@dataclass(frozen=True)
class Parsed:
    """One valid document: its model, where it came from, and its key/value positions.
    ``manifest`` is the validated model, or (read back from the manifest cache) a
    ``stored.Node`` holding the same fields."""

    manifest: BaseModel
    file: Path
    source: Source
    doc: YamlDocument

    @functools.cached_property  # asked a dozen times per document by the builder's passes
    def kind(self) -> str:
        """``Dataset``, ``BatchInferenceJob`` or ``Project``: how the builder tells them apart."""
        return self.manifest.kind  # type: ignore[attr-defined, no-any-return]


@dataclass(frozen=True)
class Unchecked:
    """What an invalid document still tells: its kind and name, and the dataset a job reads
    (with where that is written), so that its other problems are found too."""

    kind: str
    name: str | None
    input_dataset: str | None
    at: Diagnostic  # the position of ``spec.inputDataset`` (message unused)


def load_desired(
    paths: Sequence[Path],
    *,
    root: Path,
    project: ProjectConfig | None = None,
    cache: ManifestCache | None = None,
) -> Desired:
    """Load every manifest under ``paths`` (files or folders, searched recursively; relative
    paths are taken from ``root``). Raises InvalidInputError with all problems of all files.
    ``project`` (batchops.yaml) gives the default output folder and the renames. With a
    ``cache`` (one per root), files unchanged since the last load are not read again."""
    desired, diags = load_partial(paths, root=root, project=project, cache=cache)
    if diags:
        raise InvalidInputError(diags)
    return desired


def load_partial(
    paths: Sequence[Path],
    *,
    root: Path,
    project: ProjectConfig | None = None,
    cache: ManifestCache | None = None,
) -> tuple[Desired, list[Diagnostic]]:
    """The declarations of every valid document, and every problem of the others: callers check
    the valid ones' datasets too, so one run reports every problem (manifests and datasets).
    With a ``cache``, files unchanged since its last load are not read again."""
    root = root.resolve()
    diags: list[Diagnostic] = []
    unchecked: list[Unchecked] = []
    output_dir = project.output_dir if project else DEFAULT_OUTPUT_DIR
    with gc_paused():  # 10,000 jobs: 3x faster (DESIGN.md section 10)
        files = discover(paths, root, diags)
        if cache is not None:
            cache.start(files)
        parsed = [
            p for file in files for p in read_manifests(file, root, diags, unchecked, cache=cache)
        ]
        providers = project.provider_names if project else frozenset({BUILTIN_PROVIDER})
        tokenizers = tuple(project.tokenizer_files().values()) if project else ()
        with schema_verdicts(cache.schemas if cache is not None else None):
            desired = build_desired(
                parsed,
                files,
                root,
                diags,
                unchecked,
                output_dir=output_dir,
                providers=providers,
                tokenizers=tokenizers,
            )
    if cache is not None:
        cache.finish()
    if project is not None and project.moved:
        desired = with_moved(desired, project, diags)
    return desired, diags


def discover(paths: Sequence[Path], root: Path, diags: list[Diagnostic]) -> list[Path]:
    """The manifest files, resolved, deduplicated and sorted (so argument order never matters)."""
    found: set[Path] = set()
    for given in paths:
        path = Path(root, given)
        real = P.resolved(path)
        if real is not None and not P.inside(real, root):
            diags.append(Diagnostic(str(given), 1, 1, f"'{given}' is outside the root {root}"))
        elif path.is_dir():
            found.update(_manifests_in(path, root))
        elif path.is_file() or real is None or path.exists():
            found.add(real or path)  # a symlink loop, a FIFO: reported when read
        else:
            shown = P.display(path, root)
            diags.append(Diagnostic(shown, 1, 1, _missing(shown)))
    return sorted(found)


def _missing(shown: str) -> str:
    """A bare name (no folder, no suffix: a command's PATHS reach here absolute, so the name
    relative to the root) is likely a job's name: say how to pick a job."""
    if "/" in shown or Path(shown).suffix:
        return "no such file or folder"
    return f"no such file or folder (to pick a job by name: --job {shown})"


def _manifests_in(folder: Path, root: Path) -> set[Path]:
    """YAML files under ``folder``, skipping hidden folders (.git, .batchops). Links outside the
    root, broken links and link loops are kept (and reported when read): skipping them silently
    would drop their declarations, and with --prune delete what they declare."""
    found = set()
    for path in folder.rglob("*"):
        if path.suffix not in MANIFEST_SUFFIXES:
            continue
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts[:-1])
        broken_link = path.is_symlink() and not path.exists()
        special = path.exists() and not path.is_file() and not path.is_dir()  # reported when read
        if not hidden and (path.is_file() or broken_link or special):
            real = None if broken_link else P.resolved(path)  # a broken link is shown as itself
            found.add(real if real is not None and P.inside(real, root) else path)
    return found


def read_manifests(
    file: Path,
    root: Path,
    diags: list[Diagnostic],
    unchecked: list[Unchecked] | None = None,
    *,
    cache: ManifestCache | None = None,
) -> list[Parsed]:
    shown = P.display(file, root)
    real = P.resolved(file)
    if real is not None and not P.inside(real, root):
        diags.append(Diagnostic(shown, 1, 1, "manifest is a symlink to a place outside the root"))
        return []
    unchecked = unchecked if unchecked is not None else []
    if cache is None:
        return _parse_file(file, shown, diags, unchecked)
    key, entry = cache.get(file)
    if entry is not None:
        diags.extend(entry.diags)
        unchecked.extend(entry.unchecked)
        return list(entry.parsed)
    found: list[Diagnostic] = []
    invalid: list[Unchecked] = []
    parsed = _parse_file(file, shown, found, invalid)
    cache.put(file, key, parsed, found, invalid)
    diags.extend(found)
    unchecked.extend(invalid)
    return parsed


def _parse_file(
    file: Path, shown: str, diags: list[Diagnostic], unchecked: list[Unchecked]
) -> list[Parsed]:
    from batchops.manifest.yamlsrc import parse_documents  # only a file that must be parsed

    text = _read_text(file, shown, diags)
    if text is None:
        return []
    docs, problems = parse_documents(text)
    diags.extend(Diagnostic(shown, *p.pos, p.message) for p in problems)
    return [m for doc in docs if (m := _validate(doc, file, shown, diags, unchecked)) is not None]


def _read_text(file: Path, shown: str, diags: list[Diagnostic]) -> str | None:
    """The file's text, or None after a Diagnostic: unreadable (a broken link, a link loop) or
    not UTF-8 (located at the first bad byte)."""
    try:
        data = _read_bounded(file)
    except _NotReadable as exc:
        diags.append(Diagnostic(shown, 1, 1, str(exc)))
        return None
    except OSError as exc:
        link = f" (a symlink to '{file.readlink()}')" if file.is_symlink() else ""
        diags.append(Diagnostic(shown, 1, 1, f"cannot read: {exc.strerror}{link}"))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        diags.append(Diagnostic(shown, line, col, "not UTF-8 text"))
        return None


class _NotReadable(Exception):
    """A manifest path that is not a regular file, or too big to be a manifest."""


def _read_bounded(file: Path) -> bytes:
    """The file's bytes; a FIFO (which would block), a device (which never ends) or a file over
    MAX_MANIFEST_BYTES is refused before reading."""
    st = file.stat()
    if not stat.S_ISREG(st.st_mode):
        raise _NotReadable("not a regular file (a FIFO, device or socket); refused")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise _NotReadable(
            f"file is {st.st_size:,} bytes; a manifest may have at most {MAX_MANIFEST_BYTES:,}"
        )
    return file.read_bytes()


def _validate(
    doc: YamlDocument, file: Path, shown: str, diags: list[Diagnostic], unchecked: list[Unchecked]
) -> Parsed | None:
    validation = _validation()
    if not isinstance(doc.data, dict):
        diags.append(Diagnostic(shown, *doc.start, "a manifest must be a mapping"))
        return None
    proven = validation[-1](doc.data)  # a plain document, proven valid without its model
    if proven is not None:
        return Parsed(proven, file, Source(shown, *doc.start), doc)  # type: ignore[arg-type]
    invalid, located = validation[0], validation[1]
    model = _model_for(doc, shown, diags)
    if model is None:
        return None
    try:
        manifest = model.model_validate(doc.data)
    except invalid as exc:
        diags.extend(located(exc, doc, model, shown))
        unchecked.append(_unchecked(doc, shown))
        return None
    return Parsed(manifest, file, Source(shown, *doc.start), doc)


def _unchecked(doc: YamlDocument, shown: str) -> Unchecked:
    metadata, spec = doc.data.get("metadata"), doc.data.get("spec")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    ref = spec.get("inputDataset") if isinstance(spec, dict) else None
    pos = doc.values.get(("spec", "inputDataset"), doc.start)
    return Unchecked(
        kind=str(doc.data.get("kind")),
        name=name if isinstance(name, str) else None,
        input_dataset=ref if isinstance(ref, str) else None,
        at=Diagnostic(shown, *pos, ""),
    )


@functools.cache  # once per process: an import statement per document costs 10,000 lookups
def _validation() -> _Validation:
    """What validating a document needs, imported when the first file must be parsed: pydantic's
    error, the locator, the model of each kind, the Project's, and the quick proof."""
    from pydantic import ValidationError

    from batchops.manifest.locate import validation_diagnostics
    from batchops.manifest.models import KINDS, PROJECT_KIND, ProjectManifest
    from batchops.manifest.quick import quick_manifest

    return (
        ValidationError,
        validation_diagnostics,
        KINDS,
        PROJECT_KIND,
        ProjectManifest,
        quick_manifest,
    )


def _model_for(doc: YamlDocument, shown: str, diags: list[Diagnostic]) -> type[BaseModel] | None:
    *_, models, project_kind, project_model, _ = _validation()
    kind = doc.data.get("kind")
    if isinstance(kind, str) and kind in models:  # ``kind: [x]`` is unknown, not a crash
        return models[kind]
    if kind == project_kind:
        return project_model
    kinds = ", ".join(sorted(models))
    if kind is None:
        diags.append(Diagnostic(shown, *doc.start, f"missing required field 'kind' ({kinds})"))
    else:
        hint = suggest(str(kind), [*models, project_kind]) or f"; expected one of {kinds}"
        diags.append(Diagnostic(shown, *doc.values[("kind",)], f"unknown kind '{kind}'{hint}"))
    return None
