"""``OutputCache``: a lineage is served from the outputs the pass already holds, the rest asked
of the provider, in lineage order, with the provider's own rule for missing outputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest

from batchops.errors import NotFoundError
from batchops.outputcache import OutputCache
from batchops.providers import ProgressFn, Provider


class Outputs:
    """The provider seam: ``download_outputs`` over a dict of job -> output, counting asks."""

    def __init__(self, have: set[str]) -> None:
        self.have = have
        self.asked: list[str] = []

    def download_outputs(
        self, job_keys: Sequence[str], target: Path, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        folders = []
        for number, key in enumerate(job_keys):
            self.asked.append(key)
            if key not in self.have:
                if number == len(job_keys) - 1:
                    raise NotFoundError(key)
                continue
            folder = target / key
            folder.mkdir(parents=True)
            folders.append(folder)
        return folders


def test_a_lineage_takes_what_the_pass_holds_and_asks_only_for_the_rest(tmp_path: Path) -> None:
    fake = Outputs({"j", "j-r1", "j-t1"})
    provider = cast(Provider, fake)
    with OutputCache(tmp_path) as cache:
        kept = cache.job(provider, "j-t1")  # the reuse index read it
        assert cache.job(provider, "j-t1") == kept and fake.asked == ["j-t1"]  # once
        folders = cache.lineage(provider, ["j", "j-r1", "j-failed", "j-t1"], tmp_path / "dl")
        assert [f.name for f in folders] == ["j", "j-r1", "j-t1"]  # lineage order
        assert folders[-1] == kept[0]
        assert fake.asked == ["j-t1", "j", "j-r1", "j-failed"]  # j-t1 not again
        with pytest.raises(NotFoundError):  # the last job's output missing: as the provider
            cache.lineage(provider, ["j-t1", "j-gone"], tmp_path / "dl2")
        untouched = cache.lineage(provider, ["j"], tmp_path / "dl3")  # nothing kept: one call
        assert [f.name for f in untouched] == ["j"]
    assert not kept[0].exists()  # the pass's scratch folder is gone
