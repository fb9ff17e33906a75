"""The manifest cache on disk (``batchops.manifest.stored``): a warm load reads no manifest, and
gives exactly what a cold load gives (the same desired state, the same diagnostics, in the same
order), for the examples, a manifest using every field, and every case of the bad-input corpus.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from batchops.config import ProjectConfig
from batchops.errors import Diagnostic, InvalidInputError
from batchops.manifest import Desired, Source, load_partial
from batchops.manifest.project import load_project
from batchops.manifest.stored import CACHE_FILE, StoredManifests

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "reliability" / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())

EVERY_FIELD = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: rows, labels: {team: evals}}
spec: {path: data/rows.jsonl, format: CHAT}
---
apiVersion: batchops/v1
kind: Dataset
metadata: {name: table}
spec:
  source: {path: data/t.csv, idColumn: id, where: "n > 1", limit: 5}
  template:
    messages:
      - role: system
        content: |
          Be brief.
          Really.
      - role: user
        contentFile: ask.j2
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: every, labels: {a: b}}
spec:
  provider: other
  model: accounts/fireworks/models/m
  inputDataset: rows
  displayName: Every field
  inferenceParameters:
    maxTokens: 16
    temperature: 0.5
    topP: 1.0
    topK: 3
    n: 1
    extraBody: {stop: ["\\n"], seed: 7, nested: {x: null}}
  precision: FP8
  output: {path: out/every.jsonl, table: {format: jsonl, columns: [q]}}
  onExpired: stop
  maxResumes: 2
  reuse: true
  canary: {rows: 5, maxFailedRows: 1}
  rowRetries: 1
  responseFormat: {schemaFile: schema.json}
  maxFailedRows: "2.5%"
  maxRetries: 2
  budget: {maxCost: 1.25}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: inline}
spec:
  model: m
  inputDataset: table
  responseFormat: {schema: {type: object}}
  maxFailedRows: 3
"""

PROJECT = """\
apiVersion: batchops/v1
kind: Project
metadata: {name: proj}
spec:
  paths: [jobs]
  outputDir: results
  pollInterval: 2m
  parallelism: 3
  moved:
    - {from: old, to: every, kind: BatchInferenceJob}
  providers:
    other:
      kind: openai
      baseUrl: http://127.0.0.1:9/v1
      apiKeyEnv: OTHER_KEY
      limits: {maxRequestsPerBatch: 10}
  prices:
    - {model: m, input: 0.1, output: 0.2, asOf: "2026-01-01"}
  tokenizers:
    - {model: m, path: tok.json}
  budget: {maxCost: 5}
"""


def every_field(root: Path) -> None:
    (root / "jobs" / "data").mkdir(parents=True)
    (root / "jobs" / "all.yaml").write_text(EVERY_FIELD)
    (root / "jobs" / "data" / "rows.jsonl").write_text(
        '{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'
    )
    (root / "jobs" / "data" / "t.csv").write_text("id,n,q\n1,2,x\n")
    (root / "jobs" / "ask.j2").write_text("Say {{ q }}\n")
    (root / "jobs" / "schema.json").write_text('{"type": "object"}')
    (root / "batchops.yaml").write_text(PROJECT)
    (root / "tok.json").write_text("{}")


def cold(root: Path) -> tuple[ProjectConfig | None, list[Diagnostic], Desired, list[Diagnostic]]:
    project, project_diags = None, []
    try:
        project = load_project(root)
    except InvalidInputError as exc:
        project_diags = exc.diagnostics
    desired, diags = load_partial([Path("jobs")], root=root, project=project)
    return project, project_diags, desired, diags


def warm(root: Path) -> tuple[tuple[object, ...], StoredManifests]:
    """A load through a fresh StoredManifests (as each command makes one)."""
    cache = StoredManifests(root, racy_ns=0)  # the files here were all just written
    project, project_diags = None, []
    try:
        project = load_project(root, cache=cache)
    except InvalidInputError as exc:
        project_diags = exc.diagnostics
    desired, diags = load_partial([Path("jobs")], root=root, project=project, cache=cache)
    return (project, project_diags, desired, diags), cache


def assert_warm_equals_cold(root: Path) -> StoredManifests:
    expected = cold(root)
    first, _ = warm(root)  # reads every file and writes the cache
    assert first == expected
    again, cache = warm(root)
    assert again == expected
    return cache


def test_a_warm_load_of_the_examples_reads_no_manifest(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    shutil.copy(ROOT / "batchops.yaml", tmp_path / "batchops.yaml")
    cache = assert_warm_equals_cold(tmp_path)
    assert cache.reads == []
    assert (tmp_path / CACHE_FILE).stat().st_mode & 0o077 == 0  # private, like every cache


def test_a_warm_load_of_every_field_reads_no_manifest(tmp_path: Path) -> None:
    every_field(tmp_path)
    cache = assert_warm_equals_cold(tmp_path)
    assert cache.reads == []
    project, _, desired, diags = cold(tmp_path)
    assert diags == [] and project is not None and project.moved  # the fixture is valid
    assert [j.name for j in desired.jobs] == ["every", "inline"] and len(desired.datasets) == 2


@pytest.mark.parametrize("case", CASES)
def test_a_warm_load_of_bad_input_gives_the_same_diagnostics(tmp_path: Path, case: str) -> None:
    root = tmp_path / "repo"
    shutil.copytree(CORPUS / case, root, symlinks=True)
    (root / "jobs").mkdir(exist_ok=True)
    assert_warm_equals_cold(root)


def test_a_changed_file_is_validated_again(tmp_path: Path) -> None:
    every_field(tmp_path)
    warm(tmp_path)
    manifest = tmp_path / "jobs" / "all.yaml"
    manifest.write_text(EVERY_FIELD.replace("maxTokens: 16", "maxTokenz: 16"))
    (_, _, _, diags), cache = warm(tmp_path)
    assert cache.reads == [manifest]
    assert [d.message for d in diags][:1] == [
        "unknown field 'maxTokenz'; did you mean 'maxTokens'?"
    ]
    assert warm(tmp_path)[0] == cold(tmp_path)


def test_a_value_json_cannot_keep_leaves_its_file_out(tmp_path: Path) -> None:
    """A document holding a value JSON would not give back exactly (a date; schema validation
    refuses them today, so this goes through the cache's own interface) is not stored: its file
    is validated every time, the others still come from the cache."""
    import datetime

    from batchops.manifest.doc import YamlDocument
    from batchops.manifest.loader import Parsed
    from batchops.manifest.models import DatasetManifest

    every_field(tmp_path)
    warm(tmp_path)
    dated = tmp_path / "jobs" / "all.yaml"
    data = {
        "apiVersion": "batchops/v1",
        "kind": "Dataset",
        "metadata": {"name": "d"},
        "spec": {"path": "data/rows.jsonl"},
    }
    model = DatasetManifest.model_validate(data)
    when = model.spec.model_copy(update={"path": datetime.date(2024, 1, 1)})
    parsed = Parsed(
        model.model_copy(update={"spec": when}),
        dated,
        Source("jobs/all.yaml"),
        YamlDocument(data, (1, 1)),
    )
    cache = StoredManifests(tmp_path, racy_ns=0)
    key, _ = cache.get(dated)
    cache.put(dated, key, [parsed], [])
    cache.finish()
    again = StoredManifests(tmp_path, racy_ns=0)
    assert again.get(dated)[1] is None  # read and validated again next time
    assert again.get(tmp_path / "batchops.yaml")[1] is not None


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        '{"format": 1, "code": "another batchops", "aliases": {}, "files": {}}',
        '{"format": 1, "code": "%s", "aliases": {}, "files": {"%s": {"stat": "x"}}}',
        '{"format": 1, "code": "%s", "aliases": {}, "files": {"%s": {"stat": %s}}}',
        '{"format": 2, "code": "%s", "models": {"M": 3}, "files": {"%s": {"stat": %s}}}',
        '{"format": 2, "code": "%s", "models": {}, "files": {"%s": {"stat": %s, "parsed": 1}}}',
        '{"format": 2, "code": "%s", "models": {}, "files": {"%s": {"stat": %s, "parsed": [1],'
        ' "shown": "x", "diags": [], "unchecked": []}}}',
    ],
)
def test_a_damaged_or_foreign_cache_is_ignored(tmp_path: Path, body: str) -> None:
    """A forged, truncated or stale file never changes the answer; a stale code stamp (another
    batchops, Python or pydantic) empties it."""
    from batchops.manifest.stored import code_stamp

    every_field(tmp_path)
    warm(tmp_path)
    file = tmp_path / "jobs" / "all.yaml"
    st = file.stat()
    key = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    args = (json.dumps(code_stamp())[1:-1], str(file), json.dumps(key))
    (tmp_path / CACHE_FILE).write_text(body % args[: body.count("%s")])
    assert warm(tmp_path)[0] == cold(tmp_path)


def test_a_stale_code_stamp_validates_everything_again(tmp_path: Path) -> None:
    every_field(tmp_path)
    warm(tmp_path)
    path = tmp_path / CACHE_FILE
    data = json.loads(path.read_text())
    data["code"] = "0.0.0|" + data["code"]
    path.write_text(json.dumps(data))
    _, cache = warm(tmp_path)
    assert cache.reads == [tmp_path / "jobs" / "all.yaml"]  # (reads: the last load's only)


def test_a_project_too_big_to_gain_keeps_no_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``MAX_DOCUMENTS`` reading documents back costs more than validating them: the file
    is removed, and every load validates (with the same answers)."""
    import batchops.manifest.stored as stored

    every_field(tmp_path)
    warm(tmp_path)
    assert (tmp_path / CACHE_FILE).is_file()
    monkeypatch.setattr(stored, "MAX_DOCUMENTS", 3)  # the fixture has 5 documents
    (tmp_path / "jobs" / "all.yaml").write_text(EVERY_FIELD + "\n")  # one file read again
    assert warm(tmp_path)[0] == cold(tmp_path)
    assert not (tmp_path / CACHE_FILE).exists()
    again, cache = warm(tmp_path)
    assert again == cold(tmp_path) and len(cache.reads) == 1  # jobs/all.yaml, validated again
