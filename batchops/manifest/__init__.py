"""batchops.manifest: YAML manifests -> the typed desired state, every problem located.

Public: ``load_desired`` and ``load_partial`` (used by the CLI, the reconciler and the watch
daemon) and ``manifest_json_schema`` (for ``batchops schema``); ``ManifestCache`` lets a
long-lived caller (the watch daemon) skip files unchanged since its last load. The desired-state
types live in
``desired``.
"""

from batchops.manifest.cache import ManifestCache
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl, Source
from batchops.manifest.loader import load_desired, load_partial
from batchops.manifest.models import manifest_json_schema

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
