"""A two-stage pipeline over three models is six jobs, run in order; `kill -9` of
`apply --wait` at ten random points, one after another on the same project, then a fresh
`apply --wait` converges: six jobs, no duplicate, and no row sent twice (issue 16).

Each judge row names its upstream job, so no two jobs ask the same request (with row reuse,
identical requests are answered once and the later jobs would not exist at all).

The points are drawn from a seeded generator over the run's length (the worker is slowed so a
run takes a few seconds), so they fall in both stages: while the first stage is uploaded or runs,
while its results are merged, and while the second stage is rendered, uploaded or runs.
"""

from __future__ import annotations

import random
import signal
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.identity import parse_job_id
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.wire import resource_id
from tests.reliability.conftest import (
    APPLY,
    GatedServer,
    assert_no_duplicates,
    assert_results_verified,
    spawn,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODELS = ("alpha", "beta", "gamma")
ROWS = 30
PIPELINE = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: prompts}
spec: {path: data/prompts.jsonl}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: gen}
spec:
  inputDataset: prompts
  matrix: {model: [accounts/fireworks/models/alpha, accounts/fireworks/models/beta,
                   accounts/fireworks/models/gamma]}
  inferenceParameters: {maxTokens: 64}
---
apiVersion: batchops/v1
kind: Dataset
metadata: {name: judged}
spec:
  source: {job: gen}
  template: {messages: [{role: user, content: "judge {{ answer.job }}: {{ answer.text }}"}]}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: judge}
spec: {inputDataset: judged, model: accounts/fireworks/models/judge,
       inferenceParameters: {maxTokens: 64}}
"""


def write_pipeline(root: Path, rows: int = ROWS) -> None:
    data = root / "jobs" / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = [
        f'{{"custom_id": "r{i}", "body": {{"messages": [{{"role": "user", '
        f'"content": "question {i}"}}]}}}}'
        for i in range(rows)
    ]
    (data / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    (root / "jobs" / "p.yaml").write_text(textwrap.dedent(PIPELINE))


def kill_at(root: Path, url: str, delays: list[float], account: str) -> int:
    """``apply --wait`` killed with SIGKILL after each delay; how many were still running."""
    killed = 0
    for delay in delays:
        proc = spawn(root, url, *APPLY, account=account)
        time.sleep(delay)
        killed += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    return killed


def sent_rows(url: str, account: str) -> Counter[str]:
    """Rows each job was given (its input dataset's row count), by job name."""
    with FireworksClient(base_url=url, account_id=account, api_key=None) as client:
        datasets = {resource_id(d.name or ""): d for d in client.list_datasets()}
        return Counter(
            {
                parse_job_id(resource_id(j.name or "")).name:  # type: ignore[union-attr]
                int(datasets[resource_id(j.input_dataset_id or "")].example_count or 0)
                for j in client.list_jobs()
            }
        )


def in_order(url: str, account: str) -> bool:
    """Each judge job was created after its upstream job had finished."""
    with FireworksClient(base_url=url, account_id=account, api_key=None) as client:
        jobs = {
            parse_job_id(resource_id(j.name or "")).name: j  # type: ignore[union-attr]
            for j in client.list_jobs()
        }
    return all(
        (jobs[f"judge-{m}"].create_time or "") >= (jobs[f"gen-{m}"].update_time or "~")
        for m in MODELS
    )


def test_kill_nine_at_ten_random_points_then_the_pipeline_converges(
    tmp_path: Path, gated: Callable[..., GatedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    # Rows slow enough that the pipeline is still running at each kill: at 0.03 s a converged
    # `apply --wait` became quick enough to exit before the ninth kill (7 of 10 hit a live run).
    server = gated(row_delay=0.06)
    root = tmp_path / "proj"
    write_pipeline(root)
    rng = random.Random(16)
    delays = [rng.uniform(0.3, 1.5) for _ in range(10)]
    assert kill_at(root, server.base_url, delays, "acct") >= 8  # most kills hit a live run
    code = main(
        [*APPLY, "--root", str(root), "--base-url", server.base_url, "--account-id", "acct"]
    )
    assert code == 0
    jobs = [f"{stage}-{m}" for stage in ("gen", "judge") for m in MODELS]
    assert_no_duplicates(
        server.base_url,
        "acct",
        root,
        jobs=jobs,
        datasets=["prompts", *(f"judged-{m}" for m in MODELS)],
    )
    assert sent_rows(server.base_url, "acct") == Counter({j: ROWS for j in jobs})
    assert in_order(server.base_url, "acct")
    assert_results_verified(root, server.base_url, "acct", [f"r{i}" for i in range(ROWS)], capsys)
