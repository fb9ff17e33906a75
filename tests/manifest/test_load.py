"""load_desired: every manifest rule, each problem located exactly, all reported together."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from batchops.errors import InvalidInputError
from batchops.manifest import load_desired

ROW = '{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'
DATASET = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: qa}
spec:
  path: data/qa.jsonl
"""
JOB = """\
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: qa-job}
spec:
  model: accounts/fireworks/models/llama-v3p1-8b-instruct
  inputDataset: qa
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write(tmp_path, "jobs/data/qa.jsonl", ROW)
    return tmp_path


def problems(root: Path, *paths: str) -> list[str]:
    with pytest.raises(InvalidInputError) as info:
        load_desired([Path(p) for p in paths or ("jobs",)], root=root)
    return [str(d) for d in info.value.diagnostics]


def test_valid_manifests_fill_every_field(root: Path) -> None:
    extra = (
        "  displayName: QA\n"
        "  inferenceParameters: {maxTokens: 8, temperature: 0.5, topP: 1, topK: 4, n: 3,\n"
        '                        extraBody: {stop: ["\\n"]}}\n'
        "  precision: FP8\n"
        "  output: {path: out/qa.jsonl}\n"
        "  onExpired: stop\n"
        "  maxResumes: 1\n"
    )
    write(root, "jobs/qa.yaml", DATASET + "---\n" + JOB + extra)
    desired = load_desired([Path("jobs")], root=root)
    (ds,), (job,) = desired.datasets, desired.jobs
    assert (ds.name, ds.path, ds.files, ds.format) == (
        "qa",
        "jobs/data/qa.jsonl",
        (root.resolve() / "jobs/data/qa.jsonl",),
        None,
    )
    assert (ds.source.path, ds.source.line, ds.source.col) == ("jobs/qa.yaml", 1, 1)
    assert job.inference_parameters == {
        "maxTokens": 8,
        "temperature": 0.5,
        "topP": 1.0,
        "topK": 4,
        "n": 3,
        "extraBody": {"stop": ["\n"]},
    }
    assert (job.precision, job.on_expired, job.max_resumes, job.display_name) == (
        "FP8",
        "stop",
        1,
        "QA",
    )
    assert (
        job.output_path == root.resolve() / "out/qa.jsonl" and job.output_display == "out/qa.jsonl"
    )
    assert job.source.line == 7 and job.input_dataset == "qa"
    assert desired.manifest_files == (root.resolve() / "jobs/qa.yaml",)


def test_defaults(root: Path) -> None:
    write(root, "jobs/qa.yml", DATASET + "---\n" + JOB)
    (job,) = load_desired([Path("jobs")], root=root).jobs
    assert job.output_display == "results/qa-job.jsonl"
    assert (job.on_expired, job.max_resumes, job.inference_parameters) == ("resume", 3, {})


def test_unknown_field_points_at_the_key_with_a_suggestion(root: Path) -> None:
    write(
        root,
        "jobs/qa.yaml",
        DATASET + "---\n" + JOB + "  inferenceParameters:\n    max_tokens: 5\n",
    )
    assert problems(root) == [
        "jobs/qa.yaml:14:5: unknown field 'max_tokens'; did you mean 'maxTokens'?"
    ]


def test_bad_values_point_at_the_value(root: Path) -> None:
    write(
        root,
        "jobs/qa.yaml",
        DATASET
        + "---\n"
        + JOB
        + """\
  inferenceParameters: {temperature: 3, maxTokens: "256"}
  precision: FP9
  onExpired: retry
""",
    )
    assert problems(root) == [
        "jobs/qa.yaml:13:38: spec.inferenceParameters.temperature: Input should be less than or "
        "equal to 2",
        "jobs/qa.yaml:13:52: spec.inferenceParameters.maxTokens: Input should be a valid integer",
        "jobs/qa.yaml:14:14: spec.precision: unknown precision 'FP9'; one of "
        "PRECISION_UNSPECIFIED, FP16, FP8, FP8_MM, FP8_AR, FP8_MM_KV_ATTN, FP8_KV, FP8_MM_V2, "
        "FP8_V2, FP8_MM_KV_ATTN_V2, NF4, FP4, BF16, FP4_BLOCKSCALED_MM, FP4_MX_MOE",
        "jobs/qa.yaml:15:14: spec.onExpired: Input should be 'resume' or 'stop'",
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Bad_Name",
            "invalid name 'Bad_Name': use lowercase letters, digits and '-', starting "
            "and ending with a letter or digit",
        ),
        (
            "-x",
            "invalid name '-x': use lowercase letters, digits and '-', starting and ending "
            "with a letter or digit",
        ),
        ("a" * 41, f"name '{'a' * 41}' is 41 characters long; at most 40"),
    ],
)
def test_names(root: Path, name: str, message: str) -> None:
    write(root, "jobs/qa.yaml", DATASET.replace("name: qa", f"name: {name}"))
    assert problems(root) == [f"jobs/qa.yaml:3:18: metadata.name: {message}"]


def test_forty_character_name_is_fine(root: Path) -> None:
    write(root, "jobs/qa.yaml", DATASET.replace("name: qa", f"name: {'a' * 40}"))
    assert load_desired([Path("jobs")], root=root).datasets[0].name == "a" * 40


def test_missing_fields_kind_and_api_version(root: Path) -> None:
    write(
        root,
        "jobs/a.yaml",
        """\
        apiVersion: batchops/v2
        kind: Dataset
        metadata: {name: a}
        ---
        apiVersion: batchops/v1
        kind: Datasett
        ---
        apiVersion: batchops/v1
        metadata: {name: b}
        ---
        - just a list
    """,
    )
    assert problems(root) == [
        "jobs/a.yaml:1:1: missing required field 'spec'",
        "jobs/a.yaml:1:13: apiVersion: Input should be 'batchops/v1'",
        "jobs/a.yaml:6:7: unknown kind 'Datasett'; did you mean 'Dataset'?",
        "jobs/a.yaml:8:1: missing required field 'kind' (BatchInferenceJob, Dataset)",
        "jobs/a.yaml:11:1: a manifest must be a mapping",
    ]


def test_exactly_one_input(root: Path) -> None:
    write(root, "jobs/qa.yaml", DATASET + "---\n" + JOB + "  inputDatasetId: remote-1\n")
    write(
        root,
        "jobs/b.yaml",
        JOB.replace("inputDataset: qa", "displayName: x").replace("qa-job", "b"),
    )
    assert problems(root) == [
        "jobs/b.yaml:4:1: spec: set exactly one of inputDataset and inputDatasetId",
        "jobs/qa.yaml:10:1: spec: set exactly one of inputDataset and inputDatasetId",
    ]


def test_remote_input_dataset_id(root: Path) -> None:
    write(root, "jobs/j.yaml", JOB.replace("inputDataset: qa", "inputDatasetId: my-remote-ds"))
    (job,) = load_desired([Path("jobs")], root=root).jobs
    assert (job.input_dataset, job.input_dataset_id) == (None, "my-remote-ds")


def test_duplicates_and_missing_reference_across_files(root: Path) -> None:
    write(root, "jobs/a.yaml", DATASET + "---\n" + JOB)
    write(
        root, "jobs/b.yaml", DATASET + "---\n" + JOB.replace("inputDataset: qa", "inputDataset: qb")
    )
    assert problems(root) == [
        "jobs/b.yaml:3:18: duplicate Dataset name 'qa' (first at jobs/a.yaml:1:1)",
        "jobs/b.yaml:9:18: duplicate BatchInferenceJob name 'qa-job' (first at jobs/a.yaml:7:1)",
    ]
    write(
        root,
        "jobs/b.yaml",
        JOB.replace("inputDataset: qa", "inputDataset: qb").replace("qa-job", "b"),
    )
    assert problems(root) == ["jobs/b.yaml:6:17: unknown dataset 'qb' (declared: qa)"]


def test_same_output_path_twice(root: Path) -> None:
    """Both jobs of a collision are reported: either one could be the mistake."""
    write(root, "jobs/a.yaml", DATASET + "---\n" + JOB + "  output: {path: results/b.jsonl}\n")
    write(root, "jobs/b.yaml", JOB.replace("qa-job", "b"))
    assert problems(root) == [
        "jobs/a.yaml:13:18: output path 'results/b.jsonl' is also the output of job 'b'",
        "jobs/b.yaml:1:1: output path 'results/b.jsonl' is also the output of job 'qa-job'",
    ]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("/etc/passwd", "absolute path '/etc/passwd' is not allowed; use a relative path"),
        ("../../outside.jsonl", "path '../../outside.jsonl' points outside the root"),
        ("data/none.jsonl", "dataset path 'jobs/data/none.jsonl' does not exist"),
        ("data/empty", "dataset folder 'jobs/data/empty' has no top-level .jsonl files"),
        ("data/notes.txt", "dataset path 'jobs/data/notes.txt' is not a .jsonl file or a folder"),
    ],
)
def test_dataset_path_rules(root: Path, written: str, message: str) -> None:
    (root / "jobs/data/empty/nested").mkdir(parents=True)
    (root / "jobs/data/empty/nested/x.jsonl").write_text(ROW)
    (root / "jobs/data/notes.txt").write_text("x")
    write(root, "jobs/qa.yaml", DATASET.replace("data/qa.jsonl", written))
    assert problems(root) == [f"jobs/qa.yaml:5:9: {message}"]


def test_dotdot_inside_the_root_is_fine(root: Path) -> None:
    write(root, "jobs/sub/qa.yaml", DATASET.replace("data/qa.jsonl", "../data/qa.jsonl"))
    assert load_desired([Path("jobs")], root=root).datasets[0].path == "jobs/data/qa.jsonl"


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "secret"
    write(outside, "rows.jsonl", ROW)
    (root / "jobs/data").mkdir(parents=True)
    (root / "jobs/data/link.jsonl").symlink_to(outside / "rows.jsonl")
    (root / "jobs/data/dir").symlink_to(outside)
    write(root, "jobs/a.yaml", DATASET.replace("data/qa.jsonl", "data/link.jsonl"))
    write(root, "jobs/b.yaml", DATASET.replace("data/qa.jsonl", "data/dir").replace("qa}", "qb}"))
    write(
        root,
        "jobs/c.yaml",
        JOB.replace("inputDataset: qa", "inputDatasetId: x")
        + "  output: {path: jobs/data/dir/out.jsonl}\n",
    )
    assert problems(root) == [
        "jobs/a.yaml:5:9: path 'data/link.jsonl' is a symlink to a place outside the root",
        "jobs/b.yaml:5:9: path 'data/dir' is a symlink to a place outside the root",
        "jobs/c.yaml:7:18: path 'jobs/data/dir/out.jsonl' is a symlink to a place outside the root",
    ]


def test_output_path_rules(root: Path) -> None:
    write(
        root,
        "jobs/a.yaml",
        JOB.replace("inputDataset: qa", "inputDatasetId: x") + "  output: {path: ../x.jsonl}\n",
    )
    write(
        root,
        "jobs/b.yaml",
        JOB.replace("inputDataset: qa", "inputDatasetId: x").replace("qa-job", "b")
        + "  output: {path: /tmp/x.jsonl}\n",
    )
    assert problems(root) == [
        "jobs/a.yaml:7:18: path '../x.jsonl' points outside the root",
        "jobs/b.yaml:7:18: absolute path '/tmp/x.jsonl' is not allowed; use a relative path",
    ]


def test_manifest_outside_the_root_and_missing_path(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    write(tmp_path, "elsewhere/x.yaml", DATASET)
    assert problems(root, "../elsewhere", str(root / "nope"), "jobs/gone.yaml") == [
        f"../elsewhere:1:1: '../elsewhere' is outside the root {root.resolve()}",
        "jobs/gone.yaml:1:1: no such file or folder",
        "nope:1:1: no such file or folder (to pick a job by name: --job nope)",
    ]


def test_yaml_problems_are_located(root: Path) -> None:
    write(root, "jobs/a.yaml", "apiVersion: batchops/v1\nkind: [Dataset\n")
    write(root, "jobs/b.yaml", DATASET + "metadata: {name: again}\n")
    write(root, "jobs/c.yaml", "a: !!python/object:os.system x\n")
    assert problems(root) == [
        "jobs/a.yaml:3:1: invalid YAML: expected ',' or ']', but got '<stream end>'",
        "jobs/b.yaml:6:1: duplicate key 'metadata'",
        "jobs/c.yaml:1:4: invalid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object:os.system'",
    ]


def test_alias_bomb_is_refused(root: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    write(root, "jobs/bomb.yaml", "\n".join(levels) + "\n")
    assert problems(root) == [
        "jobs/bomb.yaml:1:37: document too large: more than 100000 YAML nodes after expanding "
        "aliases; refused"
    ]


def test_recursive_alias_is_refused(root: Path) -> None:
    write(root, "jobs/loop.yaml", "a: &x [1, *x]\n")
    assert problems(root) == ["jobs/loop.yaml:1:4: recursive alias or nesting too deep; refused"]


def test_all_problems_from_all_files_at_once(root: Path) -> None:
    write(root, "jobs/a.yaml", DATASET.replace("path:", "pth:"))
    write(root, "jobs/nested/b.yml", JOB.replace("model:", "modle:").replace("qa-job", "b"))
    write(root, "jobs/.hidden/c.yaml", "not: [valid")
    assert problems(root) == [
        "jobs/a.yaml:4:1: missing required field 'path' in spec",
        "jobs/a.yaml:5:3: unknown field 'pth'; did you mean 'path'?",
        "jobs/nested/b.yml:4:1: missing required field 'model' in spec",
        "jobs/nested/b.yml:5:3: unknown field 'modle'; did you mean 'model'?",
    ]


def test_result_does_not_depend_on_file_or_document_order(root: Path) -> None:
    write(root, "jobs/data/qb.jsonl", ROW)
    write(root, "jobs/x.yaml", JOB + "---\n" + DATASET.replace("qa", "qb"))
    write(root, "jobs/y.yaml", DATASET + "---\n" + JOB.replace("qa-job", "a-job"))
    one = load_desired([Path("jobs/y.yaml"), Path("jobs/x.yaml")], root=root)
    two = load_desired([Path("jobs/x.yaml"), Path("jobs"), Path("jobs/y.yaml")], root=root)
    assert one == two
    assert [d.name for d in one.datasets] == ["qa", "qb"]
    assert [j.name for j in one.jobs] == ["a-job", "qa-job"]


def test_empty_documents_are_skipped(root: Path) -> None:
    write(root, "jobs/a.yaml", "---\n" + DATASET + "---\n---\n")
    assert len(load_desired([Path("jobs")], root=root).datasets) == 1


def test_output_table_paths_are_checked_like_results(root: Path) -> None:
    """``spec.output.table`` is one of the files batchops writes for a job (layout.derived_paths):
    a table over another job's results, over a dataset file or over the job's own errors file
    is a manifest error, located at the table's path (or at ``table`` when it is derived)."""
    write(root, "jobs/qa.yaml", DATASET)
    write(
        root,
        "jobs/a.yaml",
        JOB.replace("qa-job", "a") + "  output: {table: {format: jsonl, path: results/b.jsonl}}\n",
    )
    write(root, "jobs/b.yaml", JOB.replace("qa-job", "b"))
    write(
        root,
        "jobs/c.yaml",
        JOB.replace("qa-job", "c")
        + "  output: {table: {format: jsonl, path: jobs/data/qa.jsonl}}\n",
    )
    write(
        root,
        "jobs/d.yaml",
        JOB.replace("qa-job", "d") + "  output: {path: out/d.jsonl, table: {format: csv}}\n",
    )
    write(root, "jobs/e.yaml", JOB.replace("qa-job", "e") + "  output: {path: out/d.table.csv}\n")
    write(
        root,
        "jobs/f.yaml",
        JOB.replace("qa-job", "f")
        + "  output: {table: {format: jsonl, path: results/f.errors.jsonl}}\n",
    )
    assert problems(root) == [
        "jobs/a.yaml:7:41: output path 'results/a.jsonl': its table 'results/b.jsonl' is also "
        "the output of job 'b'",
        "jobs/b.yaml:1:1: output path 'results/b.jsonl' is also the table of job 'a'",
        "jobs/c.yaml:7:41: output path 'results/c.jsonl': its table 'jobs/data/qa.jsonl' is a "
        "file of dataset 'qa'; it would be overwritten",
        "jobs/d.yaml:7:38: output path 'out/d.jsonl': its table 'out/d.table.csv' is also the "
        "output of job 'e'",
        "jobs/e.yaml:7:18: output path 'out/d.table.csv' is also the table of job 'd'",
        "jobs/f.yaml:7:41: the table would overwrite the results' errors file",
    ]


@pytest.mark.parametrize(
    ("written", "rows", "percent"), [("0", 0, None), ("7", 7, None), ('"2.5%"', 0, 2.5)]
)
def test_max_failed_rows_is_a_count_or_a_share(
    root: Path, written: str, rows: int, percent: float | None
) -> None:
    write(root, "jobs/qa.yml", DATASET + "---\n" + JOB + f"  maxFailedRows: {written}\n")
    (job,) = load_desired([Path("jobs")], root=root).jobs
    assert (job.max_failed_rows, job.max_failed_percent, job.max_retries) == (rows, percent, 1)
    assert job.allowed_failures(200) == (rows if percent is None else 5)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (
            '"two"',
            "maxFailedRows must be a count of rows (an integer >= 0) or a share of the "
            "input rows such as '2%', not 'two'",
        ),
        (
            "-1",
            "maxFailedRows must be a count of rows (an integer >= 0) or a share of the "
            "input rows such as '2%', not -1",
        ),
        ('"150%"', "maxFailedRows '150%' is over 100%"),
    ],
)
def test_max_failed_rows_problems_are_one_clear_message(
    root: Path, written: str, message: str
) -> None:
    write(root, "jobs/qa.yml", DATASET + "---\n" + JOB + f"  maxFailedRows: {written}\n")
    assert problems(root) == [f"jobs/qa.yml:13:18: spec.maxFailedRows: {message}"]
