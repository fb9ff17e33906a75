"""Row retries end to end against the local backend (issue 14): only the rows that failed for a
passing reason are sent again, at most spec.rowRetries times; rows that failed for good never."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from batchops.plan import Kind
from batchops.providers.fireworks.client import FireworksClient
from tests.rows.test_reuse_e2e import client, converge, one_pass, sent_rows, write_repo

__all__ = ["client"]  # the fixture

PROMPTS = {f"c{i}": f"question {i}" for i in range(10)}
FAULTS = {
    **PROMPTS,
    "c1": "one __transient__",
    "c2": "two __transient__",
    "c3": "three __invalid__",
}


def error_lines(root: Path) -> dict[str, str]:
    path = root / "results" / "j.errors.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["custom_id"]: f"{row['error_code']}: {row['error']}" for row in rows}


def answered(root: Path) -> set[str]:
    lines = (root / "results" / "j.jsonl").read_text().splitlines()
    return {json.loads(line)["custom_id"] for line in lines}


def set_retries(root: Path, retries: int) -> None:
    manifest = root / "jobs" / "m.yaml"
    text = manifest.read_text().replace("reuse: true,", f"reuse: true, rowRetries: {retries},")
    manifest.write_text(text)


def test_only_transient_rows_are_sent_again(tmp_path: Path, client: FireworksClient) -> None:
    paths = write_repo(tmp_path, FAULTS)
    converge(paths, tmp_path, client)
    plan = one_pass(paths, tmp_path, client).plan
    assert plan.actions == ()  # bounded: nothing more to do
    assert sorted(sent_rows(client).values()) == [2, 10]  # the two transient rows, once more
    assert answered(tmp_path) == set(FAULTS) - {"c3"}
    assert list(error_lines(tmp_path)) == ["c3"]
    assert error_lines(tmp_path)["c3"].startswith("INVALID_ARGUMENT")


def test_the_retry_shows_in_the_plan(tmp_path: Path, client: FireworksClient) -> None:
    paths = write_repo(tmp_path, FAULTS)
    for _ in range(200):
        plan = one_pass(paths, tmp_path, client).plan
        retries = [a for a in plan.actions if a.kind is Kind.RETRY_JOB]
        if retries:
            break
    (retry,) = retries
    assert retry.rows_to_send == 2 and retry.details["permanentRows"] == 1
    assert "2 rows failed for a passing reason" in retry.reason
    assert "(row retry 1 of 2); 1 failed for good, not sent" in retry.reason


def test_row_retries_are_bounded(tmp_path: Path, client: FireworksClient) -> None:
    always = {**PROMPTS, "c4": "four __fail__"}  # INTERNAL every time: transient, never healed
    paths = write_repo(tmp_path, always)
    converge(paths, tmp_path, client)
    assert one_pass(paths, tmp_path, client).plan.actions == ()
    assert sorted(sent_rows(client).values()) == [1, 1, 10]  # rowRetries: 2 by default
    assert list(error_lines(tmp_path)) == ["c4"]
    # a fresh checkout (no .batchops/, no results) counts the attempts on the account: the
    # lineage is merged again, and the row is not sent a third time
    shutil.rmtree(tmp_path / ".batchops")
    shutil.rmtree(tmp_path / "results")
    converge(paths, tmp_path, client)
    assert one_pass(paths, tmp_path, client).plan.actions == ()
    assert sorted(sent_rows(client).values()) == [1, 1, 10]
    assert list(error_lines(tmp_path)) == ["c4"] and len(answered(tmp_path)) == 9


def test_row_retries_zero_sends_nothing_again(tmp_path: Path, client: FireworksClient) -> None:
    paths = write_repo(tmp_path, FAULTS)
    set_retries(tmp_path, 0)
    converge(paths, tmp_path, client)
    assert one_pass(paths, tmp_path, client).plan.actions == ()
    assert sorted(sent_rows(client).values()) == [10]
    assert sorted(error_lines(tmp_path)) == ["c1", "c2", "c3"]
