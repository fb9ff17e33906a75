"""``gc_paused``: no cyclic garbage collection around bulk work that makes no cycles.

Used by the manifest loader, dataset validation and the reconciler (DESIGN.md section 10). Bulk
loads make hundreds of thousands of acyclic objects that all live until the work ends; the
collector would walk them again and again as they age (at 10,000 jobs, most of a manifest load
was collection). Reference counting still frees everything as usual, and a cycle, if any, is
found by the next collection after the block.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block (nested blocks leave it to the outermost)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
