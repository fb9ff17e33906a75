"""reconcile.run_pass against the local backend on a loopback socket (the seam), in-process.

Assertions are on what the server holds and what is on disk after passes.
"""

from __future__ import annotations

import gc
import json
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchops import gcpause
from batchops.apply import NullReporter
from batchops.errors import BatchopsError, InvalidInputError, OwnershipError
from batchops.local.config import BackendConfig, FaultConfig
from batchops.local.server import EmbeddedServer
from batchops.plan import Action, Kind, Plan
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider as FP
from batchops.providers.fireworks.wire import Dataset
from batchops.reconcile import (
    PassOptions,
    PassResult,
    gc_paused,
    load_and_plan,
    load_inputs,
    run_pass,
)

PROJECT = "proj"
ROWS = 6


def make_repo(root: Path, *, tokens: int = 16, rows: int = ROWS) -> list[Path]:
    data = root / "jobs" / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {"custom_id": f"c{i}", "body": {"messages": [{"role": "user", "content": f"q{i}"}]}}
        )
        for i in range(rows)
    ]
    (data / "p.jsonl").write_text("\n".join(lines) + "\n")
    (root / "jobs" / "m.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: p}\nspec: {path: data/p.jsonl}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        "spec: {model: accounts/fireworks/models/m, inputDataset: p, "
        f"inferenceParameters: {{maxTokens: {tokens}}}}}\n"
    )
    return [root / "jobs"]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FireworksClient]:
    with (
        EmbeddedServer(BackendConfig(data_dir=tmp_path / "backend")) as server,
        FireworksClient(base_url=server.base_url, account_id="local", api_key=None) as c,
    ):
        yield c


def converge(paths: list[Path], root: Path, client: FireworksClient, **options: bool) -> PassResult:
    for _ in range(200):
        result = run_pass(
            paths, root=root, provider=FP(client), project=PROJECT, options=PassOptions(**options)
        )
        if result.converged or result.errors:
            return result
        threading.Event().wait(0.05)
    raise AssertionError("did not converge")


def test_passes_converge_and_report_states(tmp_path: Path, client: FireworksClient) -> None:
    paths = make_repo(tmp_path)
    first = run_pass(
        paths, root=tmp_path, provider=FP(client), project=PROJECT, options=PassOptions()
    )
    assert not first.converged and first.job_states == {"ABSENT": 1}
    final = converge(paths, tmp_path, client)
    assert final.errors == [] and final.failed_jobs == []
    assert final.job_states == {"JOB_STATE_COMPLETED": 1}
    lines = (tmp_path / "results" / "j.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in lines) == [f"c{i}" for i in range(ROWS)]
    again = run_pass(
        paths, root=tmp_path, provider=FP(client), project=PROJECT, options=PassOptions()
    )
    assert again.converged and again.plan.actions == ()


def test_invalid_input_raises_and_sends_nothing(tmp_path: Path, client: FireworksClient) -> None:
    paths = make_repo(tmp_path)
    (tmp_path / "jobs" / "m.yaml").write_text("apiVersion: batchops/v1\nkind: Nope\n")
    with pytest.raises(InvalidInputError):
        run_pass(paths, root=tmp_path, provider=FP(client), project=PROJECT, options=PassOptions())
    assert client.list_datasets() == [] and client.list_jobs() == []


def test_concurrent_passes_converge_on_the_same_resources(
    tmp_path: Path, client: FireworksClient
) -> None:
    paths = make_repo(tmp_path)
    results: list[PassResult] = []
    threads = [
        threading.Thread(target=lambda: results.append(converge(paths, tmp_path, client)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.errors for r in results] == [[], [], []]
    assert len(client.list_jobs()) == 1 and len(client.list_datasets()) == 2  # input + output
    assert Counter(d.state for d in client.list_datasets()) == Counter({"READY": 2})


def test_a_foreign_resource_with_our_id_is_never_touched(
    tmp_path: Path, client: FireworksClient
) -> None:
    paths = make_repo(tmp_path)
    plan = run_pass(
        paths,
        root=tmp_path,
        provider=FP(client),
        project="elsewhere",
        options=PassOptions(download=False),
    ).plan
    ours = next(a for a in plan.actions if a.dataset is not None)
    foreign_id = ours.resource.remote_id
    client.delete_dataset(foreign_id)
    client.create_dataset(foreign_id, Dataset(display_name="made by hand", example_count="1"))
    result = run_pass(
        paths,
        root=tmp_path,
        provider=FP(client),
        project="elsewhere",
        options=PassOptions(prune=True),
    )
    assert any(isinstance(e, OwnershipError) for e in result.errors)
    assert client.get_dataset(foreign_id).display_name == "made by hand"


class Recorder(NullReporter):
    def __init__(self) -> None:
        self.finished: list[tuple[str, BatchopsError | None]] = []

    def action_finished(self, action: Action, error: BatchopsError | None) -> None:
        self.finished.append((action.kind.value, error))


class FakeTime:
    """The client's clock and sleep: sleeping advances the clock at once (Retry-After costs 0 s)."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_limited_backend_still_converges_without_duplicates(tmp_path: Path) -> None:
    faults = FaultConfig(rate_429=0.3, seed=7)
    fake = FakeTime()
    with (
        EmbeddedServer(BackendConfig(data_dir=tmp_path / "b", faults=faults)) as server,
        FireworksClient(
            base_url=server.base_url,
            account_id="local",
            api_key=None,
            sleep=fake.sleep,
            clock=fake.clock,
        ) as client,
    ):
        paths = make_repo(tmp_path)
        reporter = Recorder()
        run_pass(
            paths,
            root=tmp_path,
            provider=FP(client),
            project=PROJECT,
            options=PassOptions(),
            reporter=reporter,
        )
        assert [kind for kind, error in reporter.finished if error is None] == [
            "create-dataset",
            "create-job",
        ]
        assert converge(paths, tmp_path, client).errors == []
        assert len(client.list_jobs()) == 1


def test_gc_is_paused_for_the_block_and_restored_after_it() -> None:
    assert gc.isenabled()
    with pytest.raises(KeyError), gc_paused():
        assert not gc.isenabled()
        raise KeyError("a pass that fails")
    assert gc.isenabled()
    gc.disable()  # whoever turned it off keeps it off
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_a_paused_block_made_goes_to_the_oldest_generation() -> None:
    """The next young collection does not walk the block's survivors again (only to promote
    them), and they stay collectable: a cycle made in the block is found by a full collection."""
    with gc_paused():
        kept = [[i] for i in range(1000)]
        probe = weakref.ref(_Node([]))  # garbage only a collection can free (a cycle)
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert id(kept) in oldest and id(kept[0]) in oldest
    assert all(o is not kept for o in gc.get_objects(generation=0))
    assert probe() is not None
    gc.collect()
    assert probe() is None  # not frozen for good: the full collection freed the cycle


def test_blocks_that_promoted_many_objects_end_with_a_full_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long-running watch makes block after block: their garbage cycles do not pile up."""
    monkeypatch.setattr(gcpause, "FULL_AFTER", 500)
    with gc_paused():
        probe = weakref.ref(_Node([]))
        made = [[i] for i in range(1000)]  # over FULL_AFTER
    assert probe() is None  # collected at the end of the block, with no gc.collect() of ours
    assert len(made) == 1000


class _Node:
    """A weakly referenceable object kept alive by a reference cycle."""

    def __init__(self, cycle: list[object]) -> None:
        cycle.append(self)
        self.cycle = cycle


def plan_requests(paths: list[Path], root: Path, url: str) -> tuple[int, Plan]:
    with FireworksClient(base_url=url, account_id="local", api_key=None) as fresh:
        plan = load_and_plan(
            paths, root=root, provider=FP(fresh), project=PROJECT, options=PassOptions()
        )
        return sum(fresh.requests_total.values()), plan


def add_foreign_datasets(client: FireworksClient, count: int) -> None:
    for i in range(count):
        client.create_dataset(
            f"other-{i}", Dataset(display_name=f"someone else's {i}", example_count="1")
        )


def test_a_busy_account_costs_a_plan_no_more_requests(
    tmp_path: Path, client: FireworksClient
) -> None:
    """The lists ask for this project's resources only: 450 foreign datasets (three pages
    unfiltered) change neither the number of requests nor the plan."""
    paths = make_repo(tmp_path)
    assert converge(paths, tmp_path, client).errors == []
    quiet, quiet_plan = plan_requests(paths, tmp_path, client.base_url)
    add_foreign_datasets(client, 450)
    busy, busy_plan = plan_requests(paths, tmp_path, client.base_url)
    assert busy == quiet == 2
    assert busy_plan.actions == quiet_plan.actions == ()


def test_a_dataset_named_by_id_is_found_though_the_lists_are_filtered(
    tmp_path: Path, client: FireworksClient
) -> None:
    make_repo(tmp_path)
    add_foreign_datasets(client, 1)
    (tmp_path / "jobs" / "m.yaml").write_text(
        "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: k}\n"
        "spec: {model: accounts/fireworks/models/m, inputDatasetId: other-0}\n"
        "---\napiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: g}\n"
        "spec: {model: accounts/fireworks/models/m, inputDatasetId: gone}\n"
    )
    _, plan = plan_requests([tmp_path / "jobs"], tmp_path, client.base_url)
    kinds = {a.resource.name: (a.kind, a.reason) for a in plan.actions}
    assert kinds["k"][0] is Kind.CREATE_JOB
    assert kinds["g"] == (Kind.FAILED, "input dataset gone does not exist")


def test_load_inputs_reports_manifest_and_dataset_problems_together(tmp_path: Path) -> None:
    paths = make_repo(tmp_path)
    (tmp_path / "jobs" / "data" / "p.jsonl").write_text("not json\n")
    (tmp_path / "jobs" / "other.yaml").write_text("apiVersion: batchops/v1\nkind: Nope\n")
    with pytest.raises(InvalidInputError) as caught:
        load_inputs(paths, root=tmp_path)
    assert sorted({d.path for d in caught.value.diagnostics}) == [
        "jobs/data/p.jsonl",
        "jobs/other.yaml",
    ]


def test_retry_failed_does_not_resubmit_a_permanent_failure_pass_after_pass(
    tmp_path: Path, client: FireworksClient
) -> None:
    """A deterministic failure (a remote dataset with an invalid row) under --retry-failed, as
    `watch --retry-failed` runs it: one job is ever created, however many passes run."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"custom_id": "x", "body": {"messages": [{"role": "bananas", "content": "hi"}]}})
        + "\n"
    )
    client.create_dataset(
        "bad", Dataset(display_name="by hand", example_count="1", user_uploaded={})
    )
    client.upload_dataset_files("bad", [bad])
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "j.yaml").write_text(
        "apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {name: j}\n"
        "spec: {model: accounts/fireworks/models/m, inputDatasetId: bad, maxRetries: 3}\n"
    )
    paths = [tmp_path / "jobs"]
    result = converge(paths, tmp_path, client, retry_failed=True)
    for _ in range(5):
        result = run_pass(
            paths,
            root=tmp_path,
            provider=FP(client),
            project=PROJECT,
            options=PassOptions(retry_failed=True),
        )
    assert len(client.list_jobs()) == 1
    assert result.failed_jobs == ["j"] and result.converged
    (failed,) = result.plan.actions
    assert "invalid role bananas" in failed.reason and "permanent" in failed.reason
