"""Result records sum the usage of the answers merged: spend so far and history, no API call."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from batchops.merge import merge_lineage
from batchops.money import Price, spent
from batchops.results import ResultRecord, Usage, local_records


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


def _lines(path: Path, rows: list[dict[str, object]]) -> Path:
    path.mkdir(parents=True)
    (path / "BIJOutputSet.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "error-data").write_text("")
    return path


def _answer(cid: str, text: str, pt: int, ct: int, job: str | None = None) -> dict[str, object]:
    row: dict[str, object] = {
        "custom_id": cid,
        "text": text,
        "usage": {"input_tokens": pt, "output_tokens": ct, "cached_tokens": 0},
    }
    return row if job is None else {**row, "job": job}


def test_spend_counts_the_jobs_own_runs_refused_answers_included_reused_ones_left_out(
    tmp_path: Path,
) -> None:
    """Spend so far is what this job's runs were billed for: an answer reused from another
    job is that job's spend (counting it here counts it twice), an answer of an older spec of
    this job or of its canary is this job's, and an answer responseFormat refused was still
    generated and billed."""
    reused = _lines(
        tmp_path / "reused",
        [
            _answer("a", '{"ok": true}', 100, 10, job="other-0123456789"),  # another job's
            _answer("b", '{"ok": true}', 7, 3, job="qa-0123456789"),  # an older spec of qa
            _answer("c", '{"ok": true}', 5, 2, job="qa-canary-abcdefabcd"),  # qa's canary
        ],
    )
    own = _lines(
        tmp_path / "own",
        [_answer("d", '{"ok": true}', 11, 4), _answer("e", "not json", 13, 6)],
    )

    def check(line: bytes) -> str | None:
        return None if b'\\"ok\\"' in line else "the answer is not JSON"

    record = merge_lineage(
        [reused, own],
        job_name="qa",
        job_ids=["qa-fedcba9876"],
        output=tmp_path / "results" / "qa.jsonl",
        expected_ids=["a", "b", "c", "d", "e"],
        root=tmp_path,
        check=check,
    )
    assert record.counts.failed == 1  # e, refused
    assert record.usage == Usage(rows=4, prompt_tokens=123, completion_tokens=19)  # answers
    assert record.spend == Usage(rows=4, prompt_tokens=36, completion_tokens=15)  # b c d e
    assert record.spent_usage == record.spend


def test_a_job_every_row_of_which_is_reused_spent_nothing(tmp_path: Path) -> None:
    reused = _lines(tmp_path / "reused", [_answer("a", "x", 100, 10, job="other-0123456789")])
    record = merge_lineage(
        [reused],
        job_name="qa",
        job_ids=[],
        output=tmp_path / "results" / "qa.jsonl",
        expected_ids=["a"],
        root=tmp_path,
    )
    assert record.spend == Usage(rows=0, prompt_tokens=0, completion_tokens=0)
    assert spent(record.spent_usage, Price(input=1.0, output=2.0)) == 0.0
