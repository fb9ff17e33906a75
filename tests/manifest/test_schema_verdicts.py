"""A responseFormat schema found valid once is not checked again while the manifest cache holds
its digest (``templated.schema_verdicts``): a warm load imports no jsonschema, and every
diagnostic stays what a cold load gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from batchops.manifest import load_partial
from batchops.manifest.cache import ManifestCache
from batchops.manifest.stored import StoredManifests
from batchops.manifest.templated import MAX_SCHEMA_VERDICTS, schema_digest
from tests.manifest.test_stored import cold, every_field, warm


def messages(root: Path) -> list[str]:
    (_, _, _, diags), _ = warm(root)
    return [d.message for d in diags]


def test_a_warm_load_keeps_the_verdict_and_imports_no_jsonschema(tmp_path: Path) -> None:
    every_field(tmp_path)  # two jobs with a responseFormat: a schema file and an inline schema
    _, cache = warm(tmp_path)
    assert cache.schemas == {schema_digest({"type": "object"}): None}  # both the same schema
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.manifest.test_stored import warm\n"
        "(_, _, desired, diags), _ = warm(Path(sys.argv[1]))\n"
        "assert diags == [] and len(desired.jobs) == 2, diags\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'jsonschema'))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_schema_file_changed_under_a_cached_manifest_is_checked_again(tmp_path: Path) -> None:
    every_field(tmp_path)
    warm(tmp_path)
    (tmp_path / "jobs" / "schema.json").write_text('{"type": "nope"}')
    expected = [d.message for d in cold(tmp_path)[3]]
    assert any("not a valid JSON Schema" in m for m in expected)
    assert messages(tmp_path) == expected
    assert messages(tmp_path) == expected  # an invalid verdict is never kept


def test_the_verdicts_survive_in_the_cache_file_and_are_bounded(tmp_path: Path) -> None:
    every_field(tmp_path)
    warm(tmp_path)
    assert StoredManifests(tmp_path).schemas == {schema_digest({"type": "object"}): None}
    known = dict.fromkeys(f"d{n}" for n in range(MAX_SCHEMA_VERDICTS))
    (tmp_path / "jobs" / "schema.json").write_text('{"type": "string"}')
    cache = ManifestCache(racy_ns=0)  # the watch daemon's, kept in memory
    cache.schemas = known
    _, diags = load_partial([Path("jobs")], root=tmp_path, cache=cache)
    assert not any("Schema" in d.message for d in diags)  # (its provider is in batchops.yaml)
    assert len(known) == MAX_SCHEMA_VERDICTS  # the two oldest dropped
    assert {schema_digest({"type": "string"}), schema_digest({"type": "object"})} <= set(known)
    assert "d0" not in known and "d1" not in known and "d2" in known


def test_only_plain_json_schemas_have_a_digest() -> None:
    import datetime

    assert schema_digest({"b": 1, "a": [True, None, 1.5]}) == schema_digest(
        {"a": [True, None, 1.5], "b": 1}
    )
    assert schema_digest({"a": 1}) != schema_digest({"a": 1.0})
    assert schema_digest({"a": 1}) != schema_digest({"a": True})
    assert schema_digest({1: "x"}) is None  # type: ignore[dict-item]  # would read as "1"
    assert schema_digest({"d": datetime.date(2026, 1, 1)}) is None
    assert schema_digest({"x": float("nan")}) is None
    assert schema_digest({"x": float("inf")}) is None
