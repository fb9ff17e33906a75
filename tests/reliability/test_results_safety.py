"""Results are never lost or silently wrong (issue 11, section 1).

A download that comes back incomplete or wrong never replaces good results and is never recorded
as verified; a disk that fills up, a folder that refuses the rename or a path that cannot hold a
file is a clear error with nothing lost and no temp file left; a killed run's temp files are swept
by the next run (and a live run's never are). The server is the local backend behind the test
gate; faults come from what the server holds (its stored output, damaged as a server bug would)
and from seams on the OS calls (``os.fsync``, ``os.replace``), never from our own functions.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from batchops.cli import main
from batchops.identity import project_from_root
from batchops.merge import merge_lineage
from batchops.providers.fireworks.wire import RESULTS_FILE, resource_id
from batchops.results import (
    FileStamp,
    MergeCounts,
    ResultRecord,
    ResultsError,
    check_target,
    local_state,
    save_record,
)
from batchops.scratch import LEGACY_AGE, LOCK_SUFFIX, Scratch, sweep, tmp_root
from tests.conftest import ids_in
from tests.reliability.conftest import (
    APPLY,
    GatedServer,
    Hold,
    assert_results_verified,
    remote,
    spawn,
    status_json,
    write_project,
)

pytestmark = [pytest.mark.e2e]

ROWS = 200
IDS = [f"r{i}" for i in range(ROWS)]


def project(tmp_path: Path, server: GatedServer) -> tuple[Path, list[str]]:
    """A converged one-job project: (root, the apply arguments)."""
    root = tmp_path / "p"
    write_project(root, rows=ROWS, jobs=1)
    args = [*APPLY, "--root", str(root), "--base-url", server.base_url]
    assert main(args) == 0
    assert len(ids_in(root / "results" / "job0.jsonl")) == ROWS
    return root, args


def stored_output(server: GatedServer, root: Path) -> Path:
    """The results file the server holds for job0 (its output dataset's BIJOutputSet.jsonl)."""
    (job,) = remote(server.base_url, "local", project_from_root(root))[0]
    dataset = resource_id(job.output_dataset_id or "")
    return server.backend.file_path("local", dataset, RESULTS_FILE)


def forget_record(root: Path) -> None:
    """The record is a cache; without it the next pass downloads again."""
    for name in ("results.db", "results.db-wal", "results.db-shm"):
        (root / ".batchops" / name).unlink(missing_ok=True)


def leftovers(root: Path) -> list[str]:
    """Temp files anywhere: in .batchops/tmp, in old .batchops/downloads, beside the results."""
    tmp = [p.name for p in tmp_root(root).glob("*")]
    downloads = [p.name for p in (root / ".batchops" / "downloads").glob("*")]
    beside = [
        p.name
        for p in (root / "results").iterdir()
        if p.name not in ("job0.jsonl", "job0.errors.jsonl")
    ]
    return tmp + downloads + beside


def half(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[: len(lines) // 2])


def foreign(data: bytes) -> bytes:
    return data.replace(b'"custom_id": "r7"', b'"custom_id": "not-in-the-input"', 1).replace(
        b'"custom_id":"r7"', b'"custom_id":"not-in-the-input"', 1
    )


def torn(data: bytes) -> bytes:
    return data[: len(data) - 20]  # the last line cut inside its JSON


@pytest.mark.parametrize("damage", [half, foreign, torn], ids=["half", "foreign-row", "torn"])
def test_a_wrong_download_never_replaces_good_results_nor_is_verified(
    tmp_path: Path,
    gated: Callable[..., GatedServer],
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[bytes], bytes],
) -> None:
    """Used to: 100 lines replaced 200, the record was saved, and from then on status said
    verified, plan said no changes and apply exited 0, even after the server was fixed."""
    server = gated()
    root, args = project(tmp_path, server)
    good = (root / "results" / "job0.jsonl").read_bytes()
    stored = stored_output(server, root)
    full = stored.read_bytes()
    stored.write_bytes(damage(full))
    assert stored.read_bytes() != full
    forget_record(root)
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "results on disk are unchanged" in err and "Traceback" not in err, err
    assert (root / "results" / "job0.jsonl").read_bytes() == good
    assert status_json(root, server.base_url, "local", capsys)["jobs"][0]["resultsState"] != (
        "verified"
    )
    assert main(args) == 1  # still refused, never "no changes"
    assert leftovers(root) == []
    stored.write_bytes(full)  # the server is fixed: the next apply converges
    assert main(args) == 0
    assert_results_verified(root, server.base_url, "local", IDS, capsys)


def test_a_first_download_that_is_incomplete_writes_nothing(
    tmp_path: Path, gated: Callable[..., GatedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = gated()
    root, args = project(tmp_path, server)
    stored = stored_output(server, root)
    full = stored.read_bytes()
    stored.write_bytes(half(full))
    for path in (root / "results").iterdir():
        path.unlink()
    forget_record(root)
    assert main(args) == 1
    assert list((root / "results").iterdir()) == []
    stored.write_bytes(full)
    assert main(args) == 0
    assert_results_verified(root, server.base_url, "local", IDS, capsys)


def test_a_torn_download_of_a_remote_only_input_is_refused(tmp_path: Path) -> None:
    """With no local input to count against, a line without a readable custom_id is the sign."""
    lineage = tmp_path / "d1"
    lineage.mkdir()
    (lineage / RESULTS_FILE).write_text('{"custom_id": "a"}\n{"custom_id": "b", "resp')
    output = tmp_path / "results" / "job.jsonl"
    with pytest.raises(ResultsError, match="1 output lines have no readable custom_id"):
        merge_lineage(
            [lineage],
            job_name="job",
            job_ids=["j"],
            output=output,
            expected_ids=None,
            root=tmp_path,
        )
    assert not output.exists() and not local_state(tmp_path, "job", output).verified


def test_a_record_of_an_incomplete_merge_is_not_verified(tmp_path: Path) -> None:
    """Records saved before the gap was found (older versions) must not keep saying verified."""
    output = tmp_path / "results" / "job.jsonl"
    output.parent.mkdir()
    output.write_text('{"custom_id": "a"}\n')
    errors = output.with_name("job.errors.jsonl")
    errors.write_text("")
    stamps = [
        FileStamp(str(p), p.stat().st_size, p.stat().st_mtime_ns, "") for p in (output, errors)
    ]
    counts = MergeCounts(expected=2, succeeded=1, failed=0, missing=1, unexpected=0)
    save_record(tmp_path, ResultRecord("job", ("j",), *stamps, counts))
    assert not local_state(tmp_path, "job", output).verified
    save_record(tmp_path, ResultRecord("job", ("j",), *stamps, counts, partial=True))
    assert local_state(tmp_path, "job", output).verified  # an expired job's partial results


def test_an_expired_jobs_partial_results_are_written_once_and_verified(
    tmp_path: Path, gated: Callable[..., GatedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """Partial results may miss rows: written, recorded as partial, and not fetched again."""
    server = gated(row_delay=0.01, max_job_duration=0.5)
    root = tmp_path / "p"
    write_project(root, rows=ROWS, jobs=1)
    manifest = root / "jobs" / "all.yaml"
    text = manifest.read_text()
    manifest.write_text(
        text.replace("inputDataset: prompts,", "inputDataset: prompts, onExpired: stop,")
    )
    args = [*APPLY, "--root", str(root), "--base-url", server.base_url]
    assert main(args) == 3
    results = root / "results" / "job0.jsonl"
    done = ids_in(results) + ids_in(results.with_name("job0.errors.jsonl"))
    # the rows it never reached are error lines (EXPIRED: a passing reason, for row retries)
    assert 0 < len(ids_in(results)) < ROWS == len(done) == len(set(done))
    stamp = results.stat().st_mtime_ns
    assert main(args) == 3  # reported again, but nothing downloaded again
    assert results.stat().st_mtime_ns == stamp
    assert status_json(root, server.base_url, "local", capsys)["jobs"][0]["resultsState"] == (
        "verified"
    )


# -- the disk says no --------------------------------------------------------------------------


def _fails_for(name_part: str, error: int, real: Callable[..., object]) -> Callable[..., object]:
    """A seam on an OS call: raise ``error`` when it is about a path containing ``name_part``."""

    def fake(*args: object, **kwargs: object) -> object:
        given = [*args, *kwargs.values()]
        paths = [os.readlink(f"/proc/self/fd/{a}") if isinstance(a, int) else str(a) for a in given]
        if any(name_part in p for p in paths):
            raise OSError(error, os.strerror(error))
        return real(*args, **kwargs)

    return fake


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the seam reads /proc")
@pytest.mark.parametrize(
    ("module", "call", "part", "error"),
    [
        (os, "fsync", "job0.errors.jsonl.", errno.ENOSPC),  # the disk fills up on the 2nd file
        (tempfile, "mkstemp", ".BIJOutputSet", errno.ENOSPC),  # ... or before downloading
        (os, "replace", "results/job0.jsonl", errno.EROFS),  # the folder refuses the rename
        (os, "replace", "results/job0.jsonl", errno.EACCES),
    ],
    ids=["enospc-writing", "enospc-downloading", "read-only", "no-permission"],
)
def test_a_disk_error_is_a_clear_error_with_nothing_lost(
    tmp_path: Path,
    gated: Callable[..., GatedServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    call: str,
    part: str,
    error: int,
) -> None:
    server = gated()
    root, args = project(tmp_path, server)
    good = (root / "results" / "job0.jsonl").read_bytes()
    forget_record(root)
    monkeypatch.setattr(module, call, _fails_for(part, error, getattr(module, call)))
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert os.strerror(error) in err and "Traceback" not in err, err
    assert "job0: results not written" in err
    monkeypatch.undo()
    assert (root / "results" / "job0.jsonl").read_bytes() == good
    assert leftovers(root) == []
    assert main(args) == 0
    assert_results_verified(root, server.base_url, "local", IDS, capsys)


def test_results_across_filesystems_leave_no_temp_file_and_sweep_a_dead_runs(
    tmp_path: Path,
    gated: Callable[..., GatedServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """.batchops/ on another filesystem (EXDEV): the file is staged beside the results under a
    recognisable name; one left by a killed run is swept, and a disk-full there leaves none."""
    server = gated()
    root, args = project(tmp_path, server)
    good = (root / "results" / "job0.jsonl").read_bytes()
    dead = root / "results" / ".job0.jsonl.run-1-0123456789ab.batchops-tmp"
    dead.write_bytes(b"half a file from a killed run")
    real_replace, real_fsync = os.replace, os.fsync

    def across(src: object, dst: object) -> None:  # .batchops/ -> results: another filesystem
        if "/.batchops/" in str(src) and "/.batchops/" not in str(dst):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", across)
    monkeypatch.setattr(os, "fsync", _fails_for(".batchops-tmp", errno.ENOSPC, real_fsync))
    forget_record(root)
    assert main(args) == 1
    assert (root / "results" / "job0.jsonl").read_bytes() == good
    assert leftovers(root) == []  # the dead run's file swept, ours removed
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(args) == 0
    assert leftovers(root) == []
    assert_results_verified(root, server.base_url, "local", IDS, capsys)


# -- paths that cannot hold results ------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda r: (r / "results").write_text("a file where the folder should be"),
        lambda r: (r / "results").symlink_to("nowhere"),
        lambda r: (r / "results" / "job.jsonl").mkdir(parents=True),
        lambda r: (r / "results" / "job.errors.jsonl").mkdir(parents=True),
        lambda r: (
            os.mkfifo(r / "results" / "job.jsonl") if (r / "results").mkdir() is None else None
        ),
    ],
    ids=[
        "folder-is-a-file",
        "folder-is-a-broken-link",
        "is-a-folder",
        "errors-is-a-folder",
        "is-a-fifo",
    ],
)
def test_a_path_that_cannot_hold_results_is_refused_before_anything_is_created(
    tmp_path: Path, make: Callable[[Path], object]
) -> None:
    """Checked before the download (the state can change after validate): an error, no file."""
    root = tmp_path / "root"
    root.mkdir()
    make(root)
    before = sorted(str(p) for p in root.rglob("*"))
    with pytest.raises(ResultsError, match="cannot write results to 'results/"):
        check_target(root / "results" / "job.jsonl", root=root)
    assert sorted(str(p) for p in root.rglob("*")) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_results_folder_is_refused_up_front(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "results").mkdir(parents=True)
    (root / "results").chmod(0o555)
    try:
        with pytest.raises(ResultsError, match="is not writable"):
            check_target(root / "results" / "job.jsonl", root=root)
    finally:
        (root / "results").chmod(0o755)


def test_a_symlinked_results_file_is_replaced_never_written_through(
    tmp_path: Path, gated: Callable[..., GatedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """A link to a file of the user's (inside the root): the link is replaced, its target kept."""
    server = gated()
    root, args = project(tmp_path, server)
    notes = root / "notes.txt"
    notes.write_text("mine")
    results = root / "results" / "job0.jsonl"
    results.unlink()
    results.symlink_to("../notes.txt")
    assert main(args) == 0
    assert notes.read_text() == "mine"
    assert not results.is_symlink() and len(ids_in(results)) == ROWS


def test_a_long_results_name_gets_temp_names_that_fit(tmp_path: Path) -> None:
    """A 245-byte name (its errors file's is 252): temp names used to add 13 bytes to it."""
    lineage = tmp_path / "d1"
    lineage.mkdir()
    (lineage / RESULTS_FILE).write_text('{"custom_id": "a"}\n')
    output = tmp_path / "results" / ("é" * 119 + "n.jsonl")
    assert len(output.name.encode()) == 245
    merge_lineage(
        [lineage], job_name="job", job_ids=["j"], output=output, expected_ids=["a"], root=tmp_path
    )
    assert ids_in(output) == ["a"] and local_state(tmp_path, "job", output).verified


# -- a killed run's temp files -----------------------------------------------------------------


def test_a_killed_runs_temp_files_are_swept_by_the_next_run(
    tmp_path: Path, gated: Callable[..., GatedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = gated()
    root = tmp_path / "p"
    write_project(root, rows=ROWS, jobs=1)
    hold = Hold("local", "GET", r"^/signed/.*/BIJOutputSet", when="half-answer")
    server.gate.holds.append(hold)
    proc = spawn(root, server.base_url, *APPLY)
    deadline = time.monotonic() + 60
    while not hold.reached.is_set() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hold.reached.is_set(), "the download was never reached"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    hold.released.set()
    assert list(tmp_root(root).iterdir()), "the killed run left nothing to sweep"
    assert main([*APPLY, "--root", str(root), "--base-url", server.base_url]) == 0
    assert list(tmp_root(root).iterdir()) == []
    assert_results_verified(root, server.base_url, "local", IDS, capsys)


def test_a_live_runs_scratch_is_never_swept(tmp_path: Path) -> None:
    base = tmp_root(tmp_path)
    with Scratch(tmp_path) as live:
        (live.path / "half.tmp").write_bytes(b"x")
        dead = base / "run-1-deadbeef0000"
        dead.mkdir()
        (base / f"{dead.name}{LOCK_SUFFIX}").write_text("")  # nobody holds it
        orphan = base / "run-2-deadbeef0001"  # its lock already removed: the run is over
        orphan.mkdir()
        assert sweep(base) == [dead.name]
        assert (live.path / "half.tmp").exists()
        assert sorted(p.name for p in base.iterdir()) == [live.id, f"{live.id}{LOCK_SUFFIX}"]
    assert list(base.iterdir()) == []


def test_a_lock_files_staging_name_left_by_a_killed_run_is_swept(tmp_path: Path) -> None:
    # A run killed between creating its lock file (``.run-<pid>-<hex>.new``) and renaming it
    # left that name behind for good (seen once in the kill test). It is swept once its
    # process is gone; one whose process is alive (in that window) is never touched.
    base = tmp_root(tmp_path)
    base.mkdir(parents=True)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = base / f".run-{int(gone.stdout)}-deadbeef0000.new"
    alive = base / f".run-{os.getpid()}-deadbeef0001.new"
    for path in (dead, alive):
        path.write_text("")
    sweep(base)
    assert sorted(p.name for p in base.iterdir()) == [alive.name]
    old = time.time() - 2 * LEGACY_AGE  # ... or it is older than any run could take for it
    os.utime(alive, (old, old))
    sweep(base)
    assert list(base.iterdir()) == []
