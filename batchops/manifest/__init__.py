"""batchops.manifest: YAML manifests -> the typed desired state, every problem located.

Public: ``load_desired`` and ``load_partial`` (used by the CLI, the reconciler and the watch
daemon) and ``manifest_json_schema`` (for ``batchops schema``); ``ManifestCache`` lets a
long-lived caller (the watch daemon) skip files unchanged since its last load. The desired-state
types live in
``desired``. Nothing here imports pydantic or a YAML library until a file must be parsed.
"""

from typing import Any

from batchops.manifest.cache import ManifestCache
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl, Source
from batchops.manifest.loader import load_desired, load_partial


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of every manifest kind (``batchops.manifest.models``, imported here)."""
    from batchops.manifest.models import manifest_json_schema as schema

    return schema()


__all__ = [
    "DatasetDecl",
    "Desired",
    "JobDecl",
    "ManifestCache",
    "Source",
    "load_desired",
    "load_partial",
    "manifest_json_schema",
]
