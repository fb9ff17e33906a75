"""Result records sum the usage of the answers merged: spend so far and history, no API call."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from batchops.money import Price, spent
from batchops.results import ResultRecord, Usage, local_records, merge_lineage


def _folder(path: Path, rows: dict[str, dict[str, object] | None]) -> Path:
    path.mkdir(parents=True)
    lines = []
    for cid, usage in rows.items():
        response: dict[str, object] = {"choices": []}
        if usage is not None:
            response["usage"] = usage
        lines.append(json.dumps({"custom_id": cid, "response": response}))
    (path / "BIJOutputSet.jsonl").write_text("\n".join(lines) + "\n")
    (path / "error-data").write_text("")
    return path


def test_the_merged_answers_usage_is_recorded_later_answers_win(tmp_path: Path) -> None:
    first = _folder(tmp_path / "d1", {"a": {"prompt_tokens": 100, "completion_tokens": 50}})
    second = _folder(
        tmp_path / "d2",
        {
            "a": {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
            "b": {"prompt_tokens": 20, "completion_tokens": 7},
            "c": None,  # no usage reported: not counted, and not guessed
        },
    )
    record = merge_lineage(
        [first, second],
        job_name="job",
        job_ids=["j", "j-r1"],
        output=tmp_path / "results" / "job.jsonl",
        expected_ids=["a", "b", "c"],
        root=tmp_path,
    )
    assert record.usage == Usage(rows=2, prompt_tokens=30, completion_tokens=12, cached_tokens=4)
    assert local_records(tmp_path)["job"].usage == record.usage
    price = Price(input=1.0, output=2.0, cached_input=0.5)
    assert spent(record.usage, price) == (26 * 1.0 + 4 * 0.5 + 12 * 2.0) / 1e6
    assert spent(record.usage, None) is None


def test_records_written_before_usage_was_summed_still_read() -> None:
    old = {
        "job_name": "j",
        "job_ids": ["x"],
        "output": _stamp(),
        "errors": _stamp(),
        "counts": {"expected": 1, "succeeded": 1, "failed": 0, "missing": 0, "unexpected": 0},
    }
    record = msgspec.json.decode(json.dumps(old).encode(), type=ResultRecord)
    assert record.usage is None


def _stamp() -> dict[str, object]:
    return {"path": "r.jsonl", "size": 1, "mtime_ns": 1, "sha256": "0" * 64}
