"""batchops.sources: tables + templates -> rendered JSONL datasets; results joined to their inputs.

Public: ``render_all`` (the reconciler, ``validate`` and ``results`` call it before datasets are
validated), ``render_dataset``, ``inputs_file``. Jinja2 and pyarrow are imported only by the
submodules that render or write Parquet, and those only when asked to.
"""

from batchops.sources.render import Artifact, inputs_file, relocate, render_all, render_dataset

__all__ = ["Artifact", "inputs_file", "relocate", "render_all", "render_dataset"]
