"""Datasets rendered from tables and templates: rows, ids, diagnostics, artifacts and the cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchops.cli import main
from batchops.errors import InvalidInputError
from batchops.manifest import Desired, load_desired
from batchops.reconcile import load_inputs
from batchops.sources import render_all

HEADER = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: reviews}
spec:
"""
CHAT = (
    HEADER
    + """\
  source: {path: data/products.csv, idColumn: sku}
  template:
    messages:
      - role: system
        content: You write short reviews.
      - role: user
        content: |
          Write a {{ tone }} review
          of {{ product }}.
"""
)
CSV = 'sku,product,tone\np1,Kettle,warm\np2,"Blender, large",dry\n'


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "jobs/data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(root: Path, manifest: str, table: str = CSV, name: str = "products.csv") -> None:
    (root / "jobs/reviews.yaml").write_text(manifest)
    (root / "jobs/data" / name).write_text(table)


def rendered(root: Path) -> tuple[Desired, list[dict[str, object]]]:
    desired = load_desired([root / "jobs"], root=root)
    desired = desired.with_files(render_all(desired, root=root), desired.root)
    (file,) = desired.datasets[0].files
    return desired, [json.loads(line) for line in file.read_text().splitlines()]


def problems(root: Path) -> list[str]:
    with pytest.raises(InvalidInputError) as caught:
        load_inputs([root / "jobs"], root=root)
    return [str(d) for d in caught.value.diagnostics]


def test_chat_template_renders_every_row(root: Path) -> None:
    write(root, CHAT)
    _, rows = rendered(root)
    assert rows == [
        {
            "custom_id": "p1",
            "body": {
                "messages": [
                    {"role": "system", "content": "You write short reviews."},
                    {"role": "user", "content": "Write a warm review\nof Kettle."},
                ]
            },
        },
        {
            "custom_id": "p2",
            "body": {
                "messages": [
                    {"role": "system", "content": "You write short reviews."},
                    {"role": "user", "content": "Write a dry review\nof Blender, large."},
                ]
            },
        },
    ]


def test_rendered_dataset_goes_through_dataset_validation(root: Path) -> None:
    write(root, CHAT)
    desired, infos = load_inputs([root / "jobs"], root=root)
    assert infos["reviews"].rows == 2 and infos["reviews"].format == "CHAT"
    assert desired.datasets[0].files[0].name == "rows.jsonl"


def test_completion_prompt_where_and_limit(root: Path) -> None:
    manifest = HEADER + (
        "  source: {path: data/products.csv, idColumn: sku, where: \"tone != 'dry'\", limit: 1}\n"
        "  template: {prompt: 'Review {{ product }}:'}\n"
    )
    write(root, manifest, CSV + "p3,Toaster,cold\n")
    _, rows = rendered(root)
    assert rows == [{"custom_id": "p1", "body": {"prompt": "Review Kettle:"}}]


def test_hash_ids_do_not_depend_on_row_order(root: Path) -> None:
    manifest = CHAT.replace(", idColumn: sku", "")
    write(root, manifest)
    first = {r["custom_id"]: r["body"] for r in rendered(root)[1]}
    lines = CSV.splitlines()
    write(root, manifest, "\n".join([lines[0], lines[2], lines[1]]) + "\n")
    again = {r["custom_id"]: r["body"] for r in rendered(root)[1]}
    assert first == again and len(first) == 2


def test_template_file_tsv_jsonl_and_parquet_sources(root: Path) -> None:
    (root / "jobs/t.j2").write_text("Hello\n{{ product }}!\n")
    manifest = HEADER + (
        "  source: {path: data/products.tsv, idColumn: sku}\n  template: {promptFile: t.j2}\n"
    )
    write(root, manifest, "sku\tproduct\np1\tKettle\n", "products.tsv")
    assert rendered(root)[1] == [{"custom_id": "p1", "body": {"prompt": "Hello\nKettle!"}}]
    write(
        root,
        manifest.replace(".tsv", ".jsonl"),
        '{"sku": 7, "product": "Mixer"}\n',
        "products.jsonl",
    )
    assert rendered(root)[1] == [{"custom_id": "7", "body": {"prompt": "Hello\nMixer!"}}]
    table = pa.table({"sku": ["a", "b"], "product": ["Fan", "Lamp"]})
    pq.write_table(table, root / "jobs/data/products.parquet")
    (root / "jobs/reviews.yaml").write_text(manifest.replace(".tsv", ".parquet"))
    assert [r["body"] for r in rendered(root)[1]] == [
        {"prompt": "Hello\nFan!"},
        {"prompt": "Hello\nLamp!"},
    ]


def test_folder_of_shards(root: Path) -> None:
    (root / "jobs/data/shards").mkdir()
    (root / "jobs/data/shards/a.csv").write_text("sku,product,tone\np1,Kettle,warm\n")
    (root / "jobs/data/shards/b.csv").write_text("sku,product,tone\np2,Fan,dry\n")
    write(root, CHAT.replace("data/products.csv", "data/shards"))
    assert [r["custom_id"] for r in rendered(root)[1]] == ["p1", "p2"]


def test_every_problem_with_both_locations(root: Path) -> None:
    write(root, CHAT.replace("{{ product }}", "{{ prodcut }}"))
    assert problems(root) == [
        "jobs/reviews.yaml:13:17: template uses undefined variable 'prodcut'; "
        "did you mean 'product'?"
    ]
    table = CSV + "p3,Toaster,\np1,Fan,dry\n"
    write(root, CHAT, table)
    assert problems(root) == [
        "jobs/data/products.csv:4:1: column 'tone' is empty",
        "jobs/data/products.csv:5:1: duplicate custom_id 'p1': the same key is first at "
        "jobs/data/products.csv:2",
    ]


def test_a_template_error_does_not_hide_the_tables_problems(root: Path) -> None:
    table = CSV + "p3,Toaster,\np1,Fan,dry\n,Mixer,warm\n"
    write(root, CHAT.replace("{{ product }}", "{{ prodcut }}"), table)
    assert problems(root) == [  # in (file, line) order
        "jobs/data/products.csv:4:1: column 'tone' is empty",
        "jobs/data/products.csv:5:1: duplicate custom_id 'p1': the same key is first at "
        "jobs/data/products.csv:2",
        "jobs/data/products.csv:6:1: idColumn 'sku' is empty",
        "jobs/reviews.yaml:13:17: template uses undefined variable 'prodcut'; "
        "did you mean 'product'?",
    ]


def test_template_syntax_and_runtime_errors_point_at_the_template(root: Path) -> None:
    write(root, CHAT.replace("of {{ product }}.", "of {{ product }"))
    assert problems(root) == ["jobs/reviews.yaml:13:11: template syntax error: unexpected '}'"]
    (root / "jobs/t.j2").write_text("line one\n{{ product | int // 0 }}\n")
    manifest = HEADER + (
        "  source: {path: data/products.csv, idColumn: sku, limit: 1}\n"
        "  template: {promptFile: t.j2}\n"
    )
    write(root, manifest)
    assert problems(root) == [
        "jobs/data/products.csv:2:1: cannot render: integer division or modulo by zero "
        "(template at jobs/t.j2:2)"
    ]


def test_an_unknown_filter_is_a_located_problem_not_a_crash(root: Path) -> None:
    """Jinja2 finds an unknown filter or test when it compiles, not when it parses: every
    template, file or inline, and the where expression, say so at their own line."""
    (root / "jobs/t.j2").write_text("line one\n{{ product | nosuchfilter }}\n")
    manifest = CHAT.replace("{{ tone }}", "{{ tone is nosuchtest }}").replace(
        "idColumn: sku", 'idColumn: sku, where: "tone | nosuch"'
    )
    manifest = manifest.replace("content: You write short reviews.", "contentFile: t.j2")
    write(root, manifest)
    assert problems(root) == [
        "jobs/reviews.yaml:5:60: where: syntax error: No filter named 'nosuch'.",
        "jobs/reviews.yaml:12:11: template syntax error: No test named 'nosuchtest'.",
        "jobs/t.j2:2:1: template syntax error: No filter named 'nosuchfilter'.",
    ]


def test_sandbox_refuses_python_internals(root: Path) -> None:
    write(
        root,
        HEADER
        + (
            "  source: {path: data/products.csv, idColumn: sku, limit: 1}\n"
            "  template: {prompt: '{{ product.__class__.__mro__[1].__subclasses__() }}'}\n"
        ),
    )
    (message,) = problems(root)
    assert message.startswith("jobs/data/products.csv:2:1: cannot render: access to attribute")


def test_id_column_and_where_mistakes(root: Path) -> None:
    manifest = CHAT.replace("idColumn: sku", "idColumn: skus, where: \"tonne == 'x'\"")
    write(root, manifest)
    assert problems(root) == [
        "jobs/reviews.yaml:5:47: idColumn 'skus' is not a column; did you mean 'sku'?",
        "jobs/reviews.yaml:5:61: where: template uses undefined variable 'tonne'; "
        "did you mean 'tone'?",
    ]


def test_nothing_is_sent_while_a_source_is_invalid(root: Path) -> None:
    write(root, CHAT.replace("{{ product }}", "{{ prodcut }}"))
    (root / "jobs/job.yaml").write_text(
        "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        "spec: {model: m, inputDataset: reviews}\n"
    )
    assert main(["apply", "jobs"]) == 1
    assert not (root / ".batchops/local").exists()


def test_artifact_is_reused_and_rebuilt_only_on_change(root: Path) -> None:
    write(root, CHAT)
    desired, _ = rendered(root)
    artifact = desired.datasets[0].files[0]
    stamp = artifact.stat().st_mtime_ns
    rendered(root)
    assert artifact.stat().st_mtime_ns == stamp  # nothing rendered the second time
    os.utime(root / "jobs/data/products.csv")  # touched, same bytes: same key, same artifact
    assert rendered(root)[0].datasets[0].files[0] == artifact
    write(root, CHAT, CSV + "p3,Toaster,cold\n")
    changed = rendered(root)[0].datasets[0].files[0]
    assert changed != artifact and not artifact.parent.exists()  # the old key is gone
    write(root, CHAT.replace("short", "long"), CSV + "p3,Toaster,cold\n")
    assert rendered(root)[0].datasets[0].files[0] != changed


def test_missing_pyarrow_is_a_clear_message(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    manifest = HEADER + "  source: {path: data/t.parquet}\n  template: {prompt: '{{ a }}'}\n"
    write(root, manifest, "", "t.parquet")
    (message,) = problems(root)
    assert "pip install 'batchops[parquet]'" in message


def test_show_rendered(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(root, CHAT)
    assert main(["validate", "--show-rendered", "reviews", "--rows", "1"]) == 0
    out = capsys.readouterr().out
    # The line that will be uploaded, byte for byte: not a pretty-printed copy of it.
    (artifact,) = root.glob(".batchops/rendered/reviews/*/rows.jsonl")
    first = artifact.read_text(encoding="utf-8").splitlines()[0]
    assert out.splitlines()[0] == first
    assert '"content":"Write a warm review\\nof Kettle."' in first
    assert '"p2"' not in out
    assert main(["validate", "-o", "json", "--show-rendered", "reviews"]) == 0
    assert [r["custom_id"] for r in json.loads(capsys.readouterr().out)["rendered"]] == ["p1", "p2"]


def test_show_rendered_prints_dataset_text_inert(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rendered rows are dataset text: a bidi override, a C1 control sequence introducer or a
    DEL in a cell reaches the terminal as a visible escape, never as itself (JSON alone escapes
    only C0). The JSON output stays exactly the data."""
    write(root, CHAT, 'sku,product,tone\np1,"Kettle\u202e\x9b31m\x7f",warm\n')
    assert main(["validate", "--show-rendered", "reviews"]) == 0
    out = capsys.readouterr().out
    assert not {"\u202e", "\x9b", "\x7f"} & set(out)
    assert "of Kettle\\u202e\\x9b31m\\x7f." in out
    assert main(["validate", "-o", "json", "--show-rendered", "reviews"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rendered"]
    assert row["body"]["messages"][1]["content"].endswith("of Kettle\u202e\x9b31m\x7f.")


def test_two_templated_messages_render_like_each_alone(root: Path) -> None:
    """Several templated parts are rendered as one template and split (bench/render.py): the
    texts must be exactly those of each part alone, even when a cell holds the separator."""
    manifest = CHAT.replace("You write short reviews.", "'{# note #}For {{ sku }}:'")
    write(root, manifest, CSV + 'p3,"nul\x00byte",cold\n')
    _, rows = rendered(root)
    assert [[m["content"] for m in r["body"]["messages"]] for r in rows] == [  # type: ignore[index]
        ["For p1:", "Write a warm review\nof Kettle."],
        ["For p2:", "Write a dry review\nof Blender, large."],
        ["For p3:", "Write a cold review\nof nul\x00byte."],
    ]


@pytest.mark.parametrize(
    "text",
    [
        "{{ a }} and {{ b }}",
        "{ braces } {{ a }}}}",
        "{{ a }}\n{{ b }}\n",
        "{% if b %}{{ a }}{% endif %}",
    ],
)
@pytest.mark.parametrize(
    "row",
    [{"a": "é ü", "b": "{x}"}, {"a": 3, "b": 2.5}, {"a": {"k": [1, None]}, "b": True}],
)
def test_fast_path_renders_exactly_like_jinja2(text: str, row: dict[str, object]) -> None:
    """Text-and-names templates skip Jinja2 (str.format_map); the output must not change."""
    from batchops.manifest.desired import Source, TemplatePart
    from batchops.sources import templates

    env = templates.environment()
    compiled = templates.compile_part(env, TemplatePart(text, Source("m", 1, 1)), ["a", "b"], [])
    assert compiled is not None and compiled.render is not None
    assert compiled.simple == ("{%" not in text)
    assert compiled.render(row) == env.from_string(text).render(row)


def test_a_render_that_loses_the_race_keeps_the_winners_artifact(root: Path) -> None:
    """Two processes rendering the same key (a watch daemon and an apply): the second finds the
    folder made, keeps it (same inputs, same bytes) and raises nothing."""
    from batchops.sources.render import _Renderer

    write(root, CHAT)
    desired, rows = rendered(root)
    artifact = desired.datasets[0].files[0]
    decl = load_desired([root / "jobs"], root=root).datasets[0]
    assert decl.render is not None
    inode = artifact.stat().st_ino  # a reader (an upload) may hold this very file open
    _Renderer(decl, decl.render, root).write(artifact.parent)  # the loser of the race
    assert artifact.stat().st_ino == inode
    assert [json.loads(line) for line in artifact.read_text().splitlines()] == rows
    assert [p.name for p in artifact.parent.parent.iterdir()] == [artifact.parent.name]


def test_a_where_that_fails_on_a_row_is_a_problem_of_that_row(root: Path) -> None:
    write(root, CHAT.replace("idColumn: sku", "idColumn: sku, where: 'tone > 3'"))
    assert problems(root) == [
        "jobs/data/products.csv:2:1: where: '>' not supported between instances of 'str' and 'int'",
        "jobs/data/products.csv:3:1: where: '>' not supported between instances of 'str' and 'int'",
    ]


def test_a_damaged_parquet_file_is_a_located_problem(root: Path) -> None:
    table = pa.table({"a": [f"v{i}" for i in range(1000)]})
    path = root / "jobs/data/t.parquet"
    pq.write_table(table, path, row_group_size=500)
    data = bytearray(path.read_bytes())
    data[8:400] = b"\xff" * 392  # the first row group's pages; the footer still reads
    path.write_bytes(bytes(data))
    (root / "jobs/reviews.yaml").write_text(
        HEADER + "  source: {path: data/t.parquet}\n  template: {prompt: '{{ a }}'}\n"
    )
    (message,) = problems(root)
    assert message.startswith("jobs/data/t.parquet:1:1: not a readable Parquet file:")


@pytest.mark.parametrize(
    ("roles", "texts"),
    [
        (["system", "user"], ['Be 100% "exact".', "東京 %s {x} \\ \n\t\x00 😀"]),
        (["user"], [None]),
        (['role % with "quotes"', "assistant", "user"], ["a", "", "%%"]),
    ],
)
def test_rendered_row_bytes_are_orjson_of_the_row(roles: list[str], texts: list[str]) -> None:
    # Rows are written from a prebuilt byte template (not a dict per row): the bytes must be
    # exactly orjson's, so that artifacts and their content addresses do not change.
    import orjson

    from batchops.sources.render import _line_template

    template, used = _line_template(True, roles)
    body = {"messages": [{"role": r, "content": t} for r, t in zip(roles, texts, strict=True)]}
    expected = orjson.dumps({"custom_id": "id-%1", "body": body})
    assert template % (orjson.dumps("id-%1"), *map(orjson.dumps, texts[:used])) == expected
    template, used = _line_template(False, [None])
    expected = orjson.dumps({"custom_id": "c", "body": {"prompt": texts[0]}})
    assert template % (orjson.dumps("c"), *map(orjson.dumps, texts[:used])) == expected


def test_a_quoted_template_or_where_is_located_at_the_name_not_at_its_quote(root: Path) -> None:
    """Double-quoted, single-quoted and plain scalars: the column is that of the unknown name
    itself (the quote is not part of the template)."""
    manifest = CHAT.replace("idColumn: sku}", "idColumn: sku, where: \"tonne == 'x'\"}").replace(
        "        content: You write short reviews.\n",
        '        content: "Be {{ tonne }}."\n'
        "      - role: user\n"
        "        content: 'Of {{ prodct }}.'\n"
        "      - role: user\n"
        "        content: On {{ skuu }}.\n",
    )
    write(root, manifest)
    lines = manifest.splitlines()

    def col(line: int, name: str) -> int:
        return lines[line - 1].index(name) + 1

    found = problems(root)
    where = [p for p in found if "where:" in p]
    assert where == [
        f"jobs/reviews.yaml:5:{col(5, 'tonne')}: where: template uses undefined variable "
        "'tonne'; did you mean 'tone'?"
    ]
    located = {p.split(": template")[0] for p in found if "where:" not in p}
    assert located == {
        f"jobs/reviews.yaml:9:{col(9, 'tonne')}",
        f"jobs/reviews.yaml:11:{col(11, 'prodct')}",
        f"jobs/reviews.yaml:13:{col(13, 'skuu')}",
    }
