"""Results joined to their inputs: responseFormat checked at merge, output.table, `results`.

End to end through reconcile.run_pass against the local backend on a loopback socket (its echo
engine answers with the last user message, so a template decides what each answer is).
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batchops.cli import main
from batchops.errors import InvalidInputError
from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.manifest import load_desired
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider as FP
from batchops.reconcile import PassOptions, PassResult, run_pass
from batchops.render.plan import summary_line
from batchops.results import local_records
from batchops.sources.join import JobResults, Joined, input_rows
from batchops.sources.writers import chunks

CSV = "sku,product,price\np1,Kettle,30\np2,Toaster,cheap\np3,Fan,12\n"
MANIFEST = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: prices}
spec:
  source: {path: data/products.csv, idColumn: sku}
  template:
    messages:
      - {role: user, content: '{"product": "{{ product }}", "price": {{ price }}}'}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: a}
spec:
  model: accounts/fireworks/models/m
  inputDataset: prices
  responseFormat:
    schema:
      type: object
      required: [product, price]
      properties: {price: {type: number, maximum: 20}}
  output:
    table: {format: csv, columns: [product]}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: b}
spec: {model: accounts/fireworks/models/other, inputDataset: prices}
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FireworksClient]:
    with (
        EmbeddedServer(BackendConfig(data_dir=tmp_path / "backend")) as server,
        FireworksClient(base_url=server.base_url, account_id="local", api_key=None) as c,
    ):
        yield c


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "jobs/data").mkdir(parents=True)
    (tmp_path / "jobs/data/products.csv").write_text(CSV)
    (tmp_path / "jobs/m.yaml").write_text(MANIFEST)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def converge(root: Path, client: FireworksClient) -> PassResult:
    for _ in range(200):
        result = run_pass(
            [root / "jobs"], root=root, provider=FP(client), project="proj", options=PassOptions()
        )
        if result.converged or result.errors:
            return result
        threading.Event().wait(0.05)
    raise AssertionError("did not converge")


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_response_format_is_sent_and_checked_and_the_table_written(
    project: Path, client: FireworksClient
) -> None:
    result = converge(project, client)
    assert result.errors == []
    job = next(j for j in client.list_jobs() if "/a-" in j.name)
    assert job.inference_parameters is not None
    sent = json.loads(job.inference_parameters.to_wire()["extraBody"])
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["product", "price"]
    # p1 is over the maximum, p2 is not JSON: failed rows with the reason; p3 conforms.
    assert [r["custom_id"] for r in lines(project / "results/a.jsonl")] == ["p3"]
    errors = {e["custom_id"]: e["error"] for e in lines(project / "results/a.errors.jsonl")}  # type: ignore[index]
    assert errors["p1"]["code"] == "RESPONSE_FORMAT"
    assert "at /price: 30 is greater than the maximum of 20" in errors["p1"]["message"]
    assert errors["p2"]["message"] == "the answer is not JSON, but responseFormat asks for JSON"
    counts = local_records(project)["a"].counts
    assert (counts.succeeded, counts.failed, counts.nonconforming) == (1, 2, 2)
    # The job without a response format writes every answer as a success, and no table.
    assert len(lines(project / "results/b.jsonl")) == 3
    assert not (project / "results/b.table.csv").exists()
    table = list(csv.DictReader(io.StringIO((project / "results/a.table.csv").read_text())))
    assert [(r["custom_id"], r["product"], r["error"] != "") for r in table] == [
        ("p1", "Kettle", True),
        ("p2", "Toaster", True),
        ("p3", "Fan", False),
    ]
    assert table[2]["answer"] == '{"product": "Fan", "price": 12}' and "price" not in table[2]


def test_results_command_joins_jobs_side_by_side(
    project: Path, client: FireworksClient, capsys: pytest.CaptureFixture[str]
) -> None:
    converge(project, client)
    capsys.readouterr()
    assert main(["results", "a", "b", "-o", "csv", "--columns", "product"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0])[:4] == ["custom_id", "product", "a.answer", "a.finish_reason"]
    assert [(r["product"], r["a.answer"] != "", r["b.answer"] != "") for r in rows] == [
        ("Kettle", False, True),
        ("Toaster", False, True),
        ("Fan", True, True),
    ]
    assert main(["results", "b", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "Kettle" in out and "Toaster" in out and "Fan" not in out and "(first 2 rows" in out
    assert main(["results", "b", "-o", "parquet", "--out", "b.parquet"]) == 0
    assert pq.read_table(project / "b.parquet").column("price").to_pylist() == ["30", "cheap", "12"]
    assert main(["results", "b", "-o", "json"]) == 0
    assert [r["custom_id"] for r in json.loads(capsys.readouterr().out)] == ["p1", "p2", "p3"]
    assert main(["results", "bb"]) == 1
    assert "unknown job 'bb'; did you mean 'b'?" in capsys.readouterr().err


def test_results_table_shows_dataset_text_inert_and_literal(
    project: Path,
    client: FireworksClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The terminal table prints dataset and answer text: escape sequences, C1 controls and bidi
    overrides are shown as escapes, rich markup as written. Machine formats stay the raw data."""
    hostile = "\x1b[31mKettle\u202e [bold]x[/bold]\x9b"
    (project / "jobs/data/products.csv").write_text(f'sku,product,price\np1,"{hostile}",3\n')
    converge(project, client)
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "400")  # one line per row: nothing folded
    assert main(["results", "b", "--columns", "product"]) == 0
    out = capsys.readouterr().out
    assert not {"\x1b", "\u202e", "\x9b"} & set(out)
    assert "\\x1b[31mKettle\\u202e [bold]x[/bold]\\x9b" in out
    assert main(["results", "b", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["product"] == hostile


def test_join_of_a_hand_written_dataset_and_a_remote_one(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text(
        '{"custom_id": "x", "body": {"messages": [{"role": "system", "content": "s"},'
        ' {"role": "user", "content": "hi"}]}}\n{"custom_id": "y", "body": {"prompt": "yo"}}\n'
    )
    out, err = tmp_path / "r.jsonl", tmp_path / "r.errors.jsonl"
    out.write_text(
        '{"custom_id": "y", "response": {"choices": [{"text": "hey", '
        '"finish_reason": "length"}], "usage": {"prompt_tokens": 2}}}\n'
    )
    err.write_text(  # y failed in an earlier attempt: its success wins
        '{"custom_id": "x", "error": {"message": "boom"}}\n'
        '{"custom_id": "y", "error": {"message": "expired"}}\n'
    )
    job = JobResults("j", out, err)
    with Joined(input_rows([data]), [job], tmp_dir=tmp_path / "tmp") as joined:
        assert joined.columns[:2] == ["custom_id", "prompt"]
        assert list(joined.rows()) == [
            ("x", "hi", None, None, None, None, "boom"),
            ("y", "yo", "hey", "length", 2, None, None),
        ]
    with Joined(None, [job], tmp_dir=tmp_path / "tmp") as joined:  # remote input: by custom_id
        assert [row[0] for row in joined.rows()] == ["x", "y"]
    assert list((tmp_path / "tmp").iterdir()) == []  # the index is removed


def test_join_reads_the_neutral_fields_of_every_provider(tmp_path: Path) -> None:
    """Result lines in the neutral schema (docs/reconciler.md) line up whatever the provider: an
    OpenAI line's raw ``response`` is ``{status_code, request_id, body}``, not a completion."""
    fw, oa = tmp_path / "fw.jsonl", tmp_path / "oa.jsonl"
    fw.write_text(
        json.dumps(
            {
                "custom_id": "q1",
                "text": "Paris",
                "finish_reason": "stop",
                "usage": {"input_tokens": 31, "output_tokens": 2, "cached_tokens": 0},
                "error": None,
                "error_code": None,
                "job": "fw-1",
                "response": {"choices": [{"message": {"content": "Paris"}}]},
            }
        )
        + "\n"
    )
    oa.write_text(
        json.dumps(
            {
                "custom_id": "q1",
                "text": "Paris.",
                "finish_reason": "length",
                "usage": {"input_tokens": 29, "output_tokens": 3, "cached_tokens": 0},
                "error": None,
                "error_code": None,
                "job": "batch_1",
                "response": {"status_code": 200, "request_id": "r", "body": {"choices": []}},
            }
        )
        + "\n"
    )
    (tmp_path / "oa.errors.jsonl").write_text(
        json.dumps(
            {
                "custom_id": "q2",
                "text": None,
                "finish_reason": None,
                "usage": {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0},
                "error": "rate limited",
                "error_code": "rate_limit",
                "job": "batch_1",
                "response": None,
            }
        )
        + "\n"
    )
    jobs = [
        JobResults("fw", fw, tmp_path / "fw.errors.jsonl"),
        JobResults("oa", oa, tmp_path / "oa.errors.jsonl"),
    ]
    with Joined(None, jobs, tmp_dir=tmp_path / "tmp") as joined:
        assert joined.columns[1:4] == ["fw.answer", "fw.finish_reason", "fw.prompt_tokens"]
        assert list(joined.rows()) == [
            ("q1", "Paris", "stop", 31, 2, None, "Paris.", "length", 29, 3, None),
            ("q2", None, None, None, None, None, None, None, None, None, "rate limited"),
        ]


def test_writers_stream_valid_files(tmp_path: Path) -> None:
    columns = ["custom_id", "note", "prompt_tokens"]
    rows = [(f"c{i}", {"n": i} if i % 2 else None, i) for i in range(12_001)]
    body = b"".join(chunks("json", columns, iter(rows)))
    assert json.loads(body)[1] == {"custom_id": "c1", "note": {"n": 1}, "prompt_tokens": 1}
    (tmp_path / "t.parquet").write_bytes(b"".join(chunks("parquet", columns, iter(rows))))
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.num_rows == 12_001 and table.column("note").to_pylist()[:2] == [None, '{"n":1}']
    text = b"".join(chunks("csv", columns, iter(rows))).decode()
    assert text.splitlines()[:3] == ["custom_id,note,prompt_tokens", "c0,,0", 'c1,"{""n"":1}",1']


def test_response_format_manifest_rules(project: Path) -> None:
    (project / "jobs/schema.json").write_text('{"type": "object", "required": ["x"]}')
    manifest = MANIFEST.replace(
        "    schema:\n      type: object\n      required: [product, price]\n"
        "      properties: {price: {type: number, maximum: 20}}\n",
        "    schemaFile: schema.json\n",
    )
    conflicting = (
        "spec:\n  model: m\n  inputDataset: prices\n  responseFormat: {schema: {type: nope}}\n"
        "  inferenceParameters: {extraBody: {response_format: {type: json_object}}}"
    )
    manifest = manifest.replace(
        "spec: {model: accounts/fireworks/models/other, inputDataset: prices}", conflicting
    )
    (project / "jobs/m.yaml").write_text(manifest)
    with pytest.raises(InvalidInputError) as caught:
        load_desired([project / "jobs"], root=project)
    messages = [str(d) for d in caught.value.diagnostics]
    assert any("'nope' is not valid under any of the given schemas" in m for m in messages)
    assert any("set the response format in responseFormat, not in extraBody" in m for m in messages)
    only_a = manifest.split(
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: b}"
    )
    (project / "jobs/m.yaml").write_text(only_a[0])
    (job,) = load_desired([project / "jobs"], root=project).jobs
    assert job.response_schema == {"type": "object", "required": ["x"]}
    assert job.inference_parameters["extraBody"]["response_format"]["json_schema"]["name"] == "a"


def test_a_parquet_table_without_pyarrow_is_a_manifest_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by validate, before the job runs, not when its first merge cannot write it."""
    import sys

    manifest = MANIFEST.replace("table: {format: csv,", "table: {format: parquet,")
    (project / "jobs/m.yaml").write_text(manifest)
    assert len(load_desired([project / "jobs"], root=project).jobs) == 2  # installed: fine
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(InvalidInputError) as caught:
        load_desired([project / "jobs"], root=project)
    assert [str(d) for d in caught.value.diagnostics] == [
        "jobs/m.yaml:22:21: writing Parquet needs pyarrow: pip install 'batchops[parquet]' "
        "(or pip install pyarrow)"
    ]


def test_watch_passes_render_sources_and_watch_their_tables(
    project: Path, client: FireworksClient
) -> None:
    from batchops.watch.files import FileWatcher
    from batchops.watch.service import WatchConfig, _pass_function

    stop = threading.Event()
    jobs = project / "jobs"
    watcher = FileWatcher([jobs], root=project, stop=stop, on_change=lambda: None)
    config = WatchConfig(paths=(Path("jobs"),), root=project, project="proj")
    one_pass = _pass_function(config, [jobs], project, FP(client), stop, None, watcher)
    assert one_pass().errors == []
    assert watcher.accept(None, str(jobs / "data/products.csv"))  # an edit re-renders
    assert watcher.accept(None, str(jobs / "data/more.csv"))  # maybe a new shard
    assert not watcher.accept(None, str(jobs / "other.csv"))


def test_a_join_that_fails_leaves_no_index_behind(tmp_path: Path) -> None:
    def torn() -> Iterator[tuple[str, dict[str, object]]]:
        yield "a", {"x": 1}
        raise ValueError("torn input")

    job = JobResults("j", tmp_path / "none.jsonl", tmp_path / "none.errors.jsonl")
    with pytest.raises(ValueError, match="torn input"):
        Joined(torn(), [job], tmp_dir=tmp_path / "tmp")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_results_join_the_rows_the_job_ran_with(
    project: Path, client: FireworksClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table changed after the job ran: `results` joins the answers to the rows that asked
    them (kept when they were merged), says so, and never pairs an answer with a changed row.
    The next merge joins the new rows, and the old kept copy goes."""
    converge(project, client)
    (project / "jobs/data/products.csv").write_text(
        "sku,product,price\np1,Induction wok,30\np3,Fan,12\np4,Lamp,9\n"
    )
    capsys.readouterr()
    assert main(["results", "b", "-o", "csv", "--columns", "product"]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["custom_id"], r["product"]) for r in rows] == [
        ("p1", "Kettle"),
        ("p2", "Toaster"),
        ("p3", "Fan"),
    ]
    assert all('"product": "%s"' % r["product"] in r["answer"] for r in rows)  # noqa: UP031
    assert (
        "note: dataset 'prices' changed since b's results were merged; showing the rows it ran with"
    ) in err
    # A table being edited that does not render now still shows the results of what ran.
    table = (project / "jobs/data/products.csv").read_text()
    (project / "jobs/data/products.csv").write_text("sku,product,price\np1,,30\n")
    assert main(["results", "b", "-o", "csv", "--columns", "product"]) == 0
    out, err = capsys.readouterr()
    assert [r["product"] for r in csv.DictReader(io.StringIO(out))] == ["Kettle", "Toaster", "Fan"]
    assert "note: dataset 'prices' cannot be rendered as it is now; showing the rows b ran" in err
    (project / "jobs/data/products.csv").write_text(table)
    converge(project, client)
    capsys.readouterr()
    assert main(["results", "b", "-o", "csv", "--columns", "product"]) == 0
    out, err = capsys.readouterr()
    assert [r["product"] for r in csv.DictReader(io.StringIO(out))] == [
        "Induction wok",
        "Fan",
        "Lamp",
    ]
    assert err == ""
    assert len(list((project / ".batchops/inputs/b").iterdir())) == 1


def test_results_of_a_changed_hand_written_dataset_say_so_and_drop_no_answer(
    project: Path, client: FireworksClient, capsys: pytest.CaptureFixture[str]
) -> None:
    line = '{"custom_id": "%s", "body": {"prompt": "%s"}}\n'
    (project / "jobs/data/hand.jsonl").write_text(line % ("h1", "one") + line % ("h2", "two"))
    (project / "jobs/h.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: hand}\n"
        "spec: {path: data/hand.jsonl}\n---\n"
        "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: h}\n"
        "spec: {model: accounts/fireworks/models/m, inputDataset: hand}\n"
    )
    converge(project, client)
    (project / "jobs/data/hand.jsonl").write_text(line % ("h2", "two"))
    capsys.readouterr()
    assert main(["results", "h", "-o", "csv"]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["custom_id"], r["prompt"], r["answer"]) for r in rows] == [
        ("h2", "two", "two"),
        ("h1", "", "one"),  # its row is gone: the answer is still shown, without a prompt
    ]
    assert "note: dataset 'hand' changed since h's results were merged" in err
    assert "note: 1 answer(s) to rows the input no longer holds: listed last" in err
    # Side by side with a job on another dataset: its answers are not silently dropped.
    assert main(["results", "b", "h", "-o", "csv", "--columns", "product"]) == 0
    out, err = capsys.readouterr()
    assert [r["custom_id"] for r in csv.DictReader(io.StringIO(out))] == [
        "p1",
        "p2",
        "p3",
        "h1",
        "h2",
    ]
    assert "note: h answered dataset 'hand', not that of b" in err


def test_a_table_column_the_input_does_not_have_is_a_problem_before_anything_is_sent(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelled ``output.table.columns`` entry would drop the column from every table
    silently; it is a problem at the job's manifest, with every other, and nothing is sent."""
    from batchops.cli import main

    manifest = MANIFEST.replace("columns: [product]}", "columns: [product, prise]}")
    (project / "jobs/m.yaml").write_text(manifest)
    problem = (
        "jobs/m.yaml:10:1: a: spec.output.table.columns[1]: 'prise' is not a column of dataset "
        "'prices'; did you mean 'price'? (its columns: price, product, sku)"
    )
    for command in (["validate"], ["apply", "--local", "-y"]):
        code = main(command)
        shown = capsys.readouterr()
        assert code == 1 and problem in shown.out + shown.err, shown
    assert not list(project.glob("results/*"))  # nothing ran


def test_a_changed_or_deleted_table_is_written_again_from_the_results_on_disk(
    project: Path, client: FireworksClient
) -> None:
    """``output.table`` follows its spec: a change of columns (or format, or path) or a deleted
    table file is a plan action that writes the table again from the results on disk, with no
    download and no merge; then nothing is left to do."""
    assert converge(project, client).errors == []
    results = project / "results/a.jsonl"
    merged = results.stat().st_mtime_ns
    manifest = MANIFEST.replace("columns: [product]}", "columns: [product, price]}")
    (project / "jobs/m.yaml").write_text(manifest)
    options = PassOptions()
    plan = run_pass(
        [project / "jobs"], root=project, provider=FP(client), project="proj", options=options
    ).plan
    (action,) = plan.actions
    assert action.kind.value == "download" and action.download is not None
    assert action.download.table_only
    assert action.reason.startswith("table a.table.csv written for another spec.output.table")
    assert summary_line(plan) == "Plan: 1 table to write again."
    table = list(csv.DictReader(io.StringIO((project / "results/a.table.csv").read_text())))
    assert [r["price"] for r in table] == ["30", "cheap", "12"]
    assert results.stat().st_mtime_ns == merged  # the results were not merged again
    (project / "results/a.table.csv").unlink()
    plan = run_pass(
        [project / "jobs"], root=project, provider=FP(client), project="proj", options=options
    ).plan
    (action,) = plan.actions
    assert action.reason.startswith("table a.table.csv missing")
    assert (project / "results/a.table.csv").is_file()
    assert results.stat().st_mtime_ns == merged
    assert converge(project, client).plan.actions == ()


def test_the_table_shows_the_id_column_once_as_custom_id_like_results(
    project: Path, client: FireworksClient
) -> None:
    manifest = MANIFEST.replace("table: {format: csv, columns: [product]}", "table: {format: csv}")
    (project / "jobs/m.yaml").write_text(manifest)
    assert converge(project, client).errors == []
    header = (project / "results/a.table.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["custom_id", "product", "price"] and "sku" not in header
