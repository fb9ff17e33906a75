"""The daemon's parts against real seams: a tmp folder with real file events, a local bare git
repository, a loopback health server, and the lock file."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from batchops.datasets import ShardInfo, StatCache
from batchops.errors import AlreadyRunningError, BatchopsError, ServerError
from batchops.watch.files import FileWatcher
from batchops.watch.git import GitSource, GitSyncError, redact
from batchops.watch.health import HealthServer, Metrics
from batchops.watch.lock import ProjectLock
from batchops.watch.loop import Outcome, PassRecord
from batchops.watch.triggers import Triggers
from tests.conftest import FakeResult

# -- file events ---------------------------------------------------------------------------------


def test_editing_a_watched_manifest_triggers_a_pass_and_other_files_do_not(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    manifest = jobs / "a.yaml"
    manifest.write_text("kind: Job\n")
    stop = threading.Event()
    triggers = Triggers(stop)
    watcher = FileWatcher([jobs], root=tmp_path, stop=stop, on_change=lambda: triggers.fire("file"))
    watcher.update([manifest])
    thread = watcher.start()
    try:
        assert watcher.ready.wait(5)
        time.sleep(0.2)  # let the OS watch settle before the first event
        (jobs / "notes.txt").write_text("ignored")  # not a manifest, not a dataset
        manifest.write_text("kind: Job\nname: b\n")
        assert triggers.wait(10.0) == {"file"}
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_the_filter_follows_what_the_manifests_reference(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stop = threading.Event()
    watcher = FileWatcher([tmp_path / "jobs"], root=tmp_path, stop=stop, on_change=lambda: None)
    watcher.update([tmp_path / "jobs" / "a.yaml", data / "in.jsonl"])
    assert watcher.accept(None, str(data / "in.jsonl"))
    assert watcher.accept(None, str(data / "new-shard.jsonl"))  # a shard folder grew
    assert watcher.accept(None, str(tmp_path / "jobs" / "b.yml"))  # a new manifest
    assert not watcher.accept(None, str(tmp_path / "results" / "a.jsonl"))
    assert not watcher.accept(None, str(tmp_path / ".batchops" / "cache.json"))
    watcher.update(None)  # the manifests do not load: any file may be the fix
    assert watcher.accept(None, str(tmp_path / "data" / "other.csv"))
    assert not watcher.accept(None, str(tmp_path / ".git" / "index"))


# -- git source ----------------------------------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def make_origin(tmp_path: Path) -> tuple[Path, Path]:
    bare, work = tmp_path / "origin.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    git("clone", "--quiet", str(bare), str(work), cwd=tmp_path)
    git("checkout", "--quiet", "-b", "main", cwd=work)
    return bare, work


def commit(work: Path, name: str, text: str) -> None:
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", f"add {name}", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)


def test_git_source_clones_then_follows_the_branch(tmp_path: Path) -> None:
    bare, work = make_origin(tmp_path)
    commit(work, "jobs/a.yaml", "a\n")
    source = GitSource(str(bare), "main", tmp_path / "project" / ".batchops" / "git")
    assert source.sync() is True
    assert (source.dest / "jobs" / "a.yaml").read_text() == "a\n"
    assert source.sync() is False  # nothing new: no pass needed
    (source.dest / "jobs" / "a.yaml").write_text("edited by hand\n")
    commit(work, "jobs/b.yaml", "b\n")
    assert source.sync() is True
    assert (source.dest / "jobs" / "b.yaml").read_text() == "b\n"
    assert (source.dest / "jobs" / "a.yaml").read_text() == "a\n"  # hard reset wins


def test_git_failures_raise_without_leaking_credentials(tmp_path: Path) -> None:
    url = "https://alice:s3cret-token@127.0.0.1:9/nowhere.git"
    source = GitSource(url, "main", tmp_path / "clone")
    with pytest.raises(GitSyncError) as info:
        source.sync()
    assert "s3cret-token" not in str(info.value)
    assert isinstance(info.value, BatchopsError) and info.value.retryable


def test_redact_hides_userinfo_only() -> None:
    assert redact("fatal: https://u:p@host/r.git and ssh://git@host/r") == (
        "fatal: https://***@host/r.git and ssh://***@host/r"
    )
    assert redact("https://host/r.git") == "https://host/r.git"


# -- health and metrics --------------------------------------------------------------------------


def record(outcome: Outcome, **states: int) -> PassRecord:
    result = FakeResult(job_states=dict(states)) if outcome is Outcome.OK else None
    error = None if result else ServerError("down", status=503)
    return PassRecord(outcome, 0.25, frozenset({"start"}), 1700000000.0, result, error)


def test_health_readiness_and_metrics_over_a_real_socket() -> None:
    metrics = Metrics()
    server = HealthServer(metrics, port=0)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        with httpx.Client(base_url=base) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/readyz").status_code == 503  # no pass yet
            metrics.observe_pass(record(Outcome.OK, RUNNING=2, COMPLETED=1))
            metrics.observe_response("POST", 200)
            metrics.observe_response("GET", 429)
            metrics.observe_rows(succeeded=10, failed=1)
            assert http.get("/readyz").status_code == 200
            text = http.get("/metrics").text
            metrics.observe_pass(record(Outcome.API_ERROR))
            assert http.get("/readyz").status_code == 503
            after = http.get("/metrics").text
            assert http.get("/nope").status_code == 404
    finally:
        server.close()
    assert 'batchops_jobs{state="RUNNING"} 2.0' in text
    assert 'batchops_passes_total{outcome="ok"} 1.0' in text
    assert 'batchops_passes_total{outcome="invalid"} 0.0' in text
    assert 'batchops_api_requests_total{code="429",method="GET"} 1.0' in text
    assert 'batchops_result_rows_total{outcome="succeeded"} 10.0' in text
    assert "batchops_last_success_timestamp_seconds 1.7e+09" in text
    assert "batchops_pass_duration_seconds_count 1.0" in text
    assert 'batchops_passes_total{outcome="api_error"} 1.0' in after
    assert 'batchops_jobs{state="RUNNING"} 2.0' in after  # kept until a pass reports again


# -- the lock ------------------------------------------------------------------------------------


def test_a_second_lock_on_the_same_folder_names_the_first_pid(tmp_path: Path) -> None:
    with ProjectLock(tmp_path) as first:
        assert first.path.read_text().strip() == str(os.getpid())
        with pytest.raises(AlreadyRunningError, match=f"PID {os.getpid()}"):
            ProjectLock(tmp_path).acquire()
    with ProjectLock(tmp_path):  # released on exit
        pass


def test_the_stat_cache_forgets_files_that_are_gone(tmp_path: Path) -> None:
    """A daemon runs for months: the cache on disk must not keep every shard it ever saw."""
    kept, gone = tmp_path / "kept.jsonl", tmp_path / "gone.jsonl"
    cache = StatCache(tmp_path / "cache.json")
    for path in (kept, gone):
        path.write_text("{}\n")
        cache.store(ShardInfo(path, 3, "0" * 64, 1), path.stat(), "chat")
    cache.save()
    gone.unlink()
    later = StatCache(tmp_path / "cache.json")
    later.store(ShardInfo(kept, 3, "1" * 64, 1), kept.stat(), "chat")
    later.save()
    assert set(StatCache(tmp_path / "cache.json").entries) == {str(kept)}
