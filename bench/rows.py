"""Benchmark: rows, not jobs (issue 14). Reuse against a whole new job, the reuse index's lookups,
and a plan from an empty versus a warm ``.batchops/``.

Run: ``.venv/bin/python bench/rows.py [--rows 100000]``. In one process, against the embedded
local backend (echo engine) in a temp folder:

1. applies a job over ``--rows`` rows (reuse on, the default) until its results are merged;
2. in ``--rounds`` paired rounds, edits another 1% of the rows, validates it (untimed), then
   times ``reconcile.load_and_plan`` with reuse (the plan sends only the edited rows, from a
   derived dataset) and with ``reuse: false`` (what every version before reuse planned: a whole
   new job), in an order that rotates; applies the last round's edit with reuse and counts the
   rows the new job was given (goal: exactly the edited rows);
3. times request-hash lookups against the reuse index, ``--rounds`` times (goal: >= 200,000/s);
4. times the same plan from an empty ``.batchops/`` (the index rebuilt from the provider: one
   download of each earlier job's input and output; the dataset validated again) and again
   warm, ``--rounds`` times;
5. applies a job of ``--retry-rows`` rows, 5% of them failing once with a transient error and 1%
   failing for good (the echo engine's ``__transient__`` / ``__invalid__`` markers), and counts
   every row submitted to the backend (goal: all transient rows answered, <= 1.06x submissions,
   0 resubmissions of the permanent ones).
Numbers are medians measured side by side in one run; nothing here is a timed test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchlib import load, rotated

from batchops.identity import dataset_id
from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.manifest import load_desired
from batchops.plan import Kind, Plan
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider
from batchops.reconcile import PassOptions, load_and_plan, run_pass
from batchops.reuse import ReuseIndex
from batchops.reuse_rows import job_prefix
from batchops.rowid import file_requests

PROJECT = "bench"
MODEL = "accounts/fireworks/models/m"


def marker(i: int, faults: bool) -> str:
    if not faults:
        return ""
    if i % 100 == 7:  # 1%
        return " __invalid__"
    return " __transient__" if i % 20 == 3 else ""  # 5%


def write(
    root: Path,
    rows: int,
    *,
    edited: int = 0,
    offset: int = 0,
    reuse: bool = True,
    faults: bool = False,
) -> list[Path]:
    """The dataset (rows ``offset`` to ``offset + edited`` edited) and the manifests."""
    data = root / "jobs" / "data"
    data.mkdir(parents=True, exist_ok=True)
    with (data / "p.jsonl").open("w") as out:
        for i in range(rows):
            changed = offset <= i < offset + edited
            text = f"question {i}" + (" (edited)" if changed else "") + marker(i, faults)
            out.write(
                json.dumps(
                    {
                        "custom_id": f"r{i}",
                        "body": {"messages": [{"role": "user", "content": text}]},
                    }
                )
                + "\n"
            )
    (root / "batchops.yaml").write_text(
        f"apiVersion: batchops/v1\nkind: Project\nmetadata: {{name: {PROJECT}}}\n"
    )
    return manifest(root, reuse=reuse)


def manifest(root: Path, *, reuse: bool) -> list[Path]:
    """The manifests alone (the dataset file untouched: its stat, and so its validation, kept)."""
    (root / "jobs" / "m.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: data/p.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        f"spec: {{model: {MODEL}, inputDataset: p, reuse: {str(reuse).lower()}, "
        "inferenceParameters: {maxTokens: 16}}\n"
    )
    return [root / "jobs"]


def converge(paths: list[Path], root: Path, provider: FireworksProvider) -> None:
    for _ in range(10_000):
        result = run_pass(
            paths, root=root, provider=provider, project=PROJECT, options=PassOptions()
        )
        if result.errors:
            raise SystemExit(f"apply failed: {result.errors}")
        if result.converged:
            return
        threading.Event().wait(0.2)
    raise SystemExit("did not converge")


def timed_plan(paths: list[Path], root: Path, provider: FireworksProvider) -> tuple[Plan, float]:
    start = time.perf_counter()
    plan = load_and_plan(
        paths, root=root, provider=provider, project=PROJECT, options=PassOptions()
    )
    return plan, time.perf_counter() - start


def to_send(plan: Plan) -> int:
    jobs = [a for a in plan.actions if a.kind in (Kind.CREATE_JOB, Kind.REPLACE_JOB)]
    return sum(a.rows_to_send or 0 for a in jobs)


def edit_plans(
    repo: Path, rows: int, edited: int, provider: FireworksProvider, rounds: int
) -> None:
    """Paired rounds: each edits another 1% of the rows, validates it (untimed), then plans it
    with reuse and as a whole new job (``reuse: false``), in an order that rotates."""
    seconds: dict[str, list[float]] = {"reuse": [], "whole": []}
    sent: dict[str, int] = {}
    for r in range(rounds):
        write(repo, rows, edited=edited, offset=(r % 100) * edited, reuse=False)
        timed_plan([repo / "jobs"], repo, provider)  # validates the edited dataset, untimed
        for side in rotated(["reuse", "whole"], r):
            plan, took = timed_plan(manifest(repo, reuse=side == "reuse"), repo, provider)
            seconds[side].append(took)
            sent[side] = to_send(plan)
    ratios = [u / w for w, u in zip(seconds["whole"], seconds["reuse"], strict=True)]
    print(f"edit of {edited:,} rows ({edited / rows:.0%}), {rounds} paired rounds; {load()}:")
    for side, label in (("whole", "without reuse (a whole new job)"), ("reuse", "with reuse")):
        print(
            f"  plan {label:32s} median {statistics.median(seconds[side]) * 1000:,.0f} ms, "
            f"{sent[side]:,} rows to send"
        )
    print(f"  reuse / whole: median {statistics.median(ratios):.2f}x (rounds {_span(ratios)})")


def _span(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def lookups(root: Path, paths: list[Path]) -> float:
    desired = load_desired(paths, root=root)
    decl = desired.jobs[0]
    ds = desired.dataset(decl.input_dataset or "")
    assert ds is not None
    hashes = [digest for _, digest in file_requests(job_prefix(decl), ds.files)]
    with ReuseIndex.open(root) as index:
        start = time.perf_counter()
        found = index.lookup(hashes)
        elapsed = time.perf_counter() - start
    assert len(found) == len(hashes), f"{len(found):,} of {len(hashes):,} hashes known"
    return len(hashes) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--retry-rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (default 5)")
    args = parser.parse_args()
    rows, edited = args.rows, args.rows // 100
    root = Path(tempfile.mkdtemp(prefix="bench-rows-"))
    try:
        with (
            EmbeddedServer(BackendConfig(data_dir=root / "backend")) as server,
            FireworksClient(base_url=server.base_url, account_id="local", api_key=None) as client,
        ):
            provider = FireworksProvider(client)
            repo = root / "repo"
            start = time.perf_counter()
            converge(write(repo, rows), repo, provider)
            print(f"first apply of {rows:,} rows: {time.perf_counter() - start:.1f} s")

            edit_plans(repo, rows, edited, provider, args.rounds)
            paths = manifest(repo, reuse=True)  # the last round's edit, applied with reuse
            converge(paths, repo, provider)
            inputs = {
                d.name.rsplit("/", 1)[-1]: int(d.example_count or 0) for d in client.list_datasets()
            }
            given = sorted(
                inputs[(j.input_dataset_id or "").rsplit("/", 1)[-1]] for j in client.list_jobs()
            )
            print(f"  rows given to each job on the backend: {given} (goal: [{edited}, {rows}])")

            rates = [lookups(repo, paths) for _ in range(args.rounds)]
            print(
                f"request-hash lookups: {statistics.median(rates):,.0f}/s, median of "
                f"{args.rounds} (rounds {min(rates):,.0f}-{max(rates):,.0f}; goal >= 200,000/s)"
            )

            (repo / "results").rename(root / "results-old")
            empty, warm = [], []
            for _ in range(args.rounds):
                shutil.rmtree(repo / ".batchops")
                empty.append(timed_plan(paths, repo, provider)[1])
                warm.append(timed_plan(paths, repo, provider)[1])
            print(
                f"plan with reuse over {rows:,} rows: empty .batchops/ "
                f"{statistics.median(empty) * 1000:.0f} ms (the index rebuilt from the provider, "
                f"the dataset validated), warm {statistics.median(warm) * 1000:.0f} ms; medians "
                f"of {args.rounds} rounds; {load()}"
            )
        retries(root / "retries", args.retry_rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def retries(root: Path, rows: int) -> None:
    with (
        EmbeddedServer(BackendConfig(data_dir=root / "backend")) as server,
        FireworksClient(base_url=server.base_url, account_id="local", api_key=None) as client,
    ):
        provider = FireworksProvider(client)
        repo = root / "repo"
        paths = write(repo, rows, faults=True)
        converge(paths, repo, provider)
        inputs = {d.name.rsplit("/", 1)[-1]: d for d in client.list_datasets()}
        submitted = 0
        permanent_again = 0
        for job in client.list_jobs():
            ds_id = (job.input_dataset_id or "").rsplit("/", 1)[-1]
            submitted += int(inputs[ds_id].example_count or 0)
            if job.name and "-t" in job.name.rsplit("/", 1)[-1]:
                permanent_again += _invalid_rows(repo, ds_id)
        answered = {json.loads(line)["custom_id"] for line in (repo / "results" / "j.jsonl").open()}
        failed = sum(1 for _ in (repo / "results" / "j.errors.jsonl").open())
        transient = {f"r{i}" for i in range(rows) if marker(i, True) == " __transient__"}
        print(f"row retries, {rows:,} rows ({len(transient):,} transient, {failed:,} permanent):")
        print(
            f"  answered {len(answered):,} (transient rows answered: "
            f"{len(transient & answered):,} of {len(transient):,}), failed {failed:,}; rows "
            f"submitted {submitted:,} = {submitted / rows:.3f}x (goal <= 1.06x); permanent rows "
            f"sent again: {permanent_again} (goal 0)"
        )


def _invalid_rows(repo: Path, input_id: str) -> int:
    """Rows with the permanent marker in the input of a retry: the derived dataset (under
    ``.batchops/derived/``, named by its sha256) whose dataset ID is the job's input."""
    count = 0
    for path in (repo / ".batchops" / "derived").glob("*.jsonl"):
        if dataset_id(PROJECT, "p", path.stem) == input_id:
            count += sum("__invalid__" in line for line in path.open())
    return count


if __name__ == "__main__":
    main()
