"""``gc_paused``: no cyclic garbage collection around bulk work that makes no cycles.

Used by the manifest loader, dataset validation and the reconciler (DESIGN.md section 10). Bulk
loads make hundreds of thousands of acyclic objects that all live until the work ends; the
collector would walk them again and again as they age (at 10,000 jobs, most of a manifest load
was collection). Reference counting still frees everything as usual, and a cycle, if any, is
found by the next collection after the block.

At the block's end its survivors are moved straight to the oldest generation (``gc.freeze()`` then
``gc.unfreeze()``: two list splices): re-enabled as it was, the collector's next young collection
walked every one of them (at 10,000 jobs, ~15% of the load), only to promote them anyway. They
stay collectable: a cycle among them is found by the next full collection. The interpreter would
not count them towards its next full collection, so we do: after ``FULL_AFTER`` objects were
promoted this way (a long-running ``watch`` makes many blocks), the block ends with one.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

FULL_AFTER = 2_000_000  # objects promoted by blocks before a full collection (~10,000-job loads: 4)
_promoted = 0  # since the last full collection we ran


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
        global _promoted
        _promoted += gc.get_count()[0]  # tracked objects made (net) since the last collection
        gc.freeze()  # every tracked object to the permanent generation ...
        gc.unfreeze()  # ... and from there to the oldest one, where collections are rare
        gc.enable()
        if _promoted > FULL_AFTER:
            _promoted = 0
            gc.collect()
