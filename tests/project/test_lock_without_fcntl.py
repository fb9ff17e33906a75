"""The daemon's lock where ``fcntl`` does not exist (Windows): commands still import and run, and
the lock-file fallback still keeps a second daemon out. The missing modules are simulated by
``sys.modules[name] = None``, which makes their import raise ImportError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchops.errors import AlreadyRunningError
from batchops.watch.lock import ProjectLock

REPO = Path(__file__).resolve().parents[2]


def test_validate_runs_where_fcntl_cannot_be_imported() -> None:
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "from batchops.cli import main\n"
        "sys.exit(main(['validate']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO / "jobs",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("valid:")


@pytest.fixture
def no_lock_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", None)


@pytest.mark.usefixtures("no_lock_modules")
def test_the_lock_file_fallback_keeps_a_second_daemon_out(tmp_path: Path) -> None:
    with ProjectLock(tmp_path) as first:
        assert first.path.read_text().strip() == str(os.getpid())
        with pytest.raises(AlreadyRunningError, match=f"PID {os.getpid()}"):
            ProjectLock(tmp_path).acquire()
    assert not (tmp_path / ".batchops" / "watch.lock").exists()  # released: removed
    with ProjectLock(tmp_path):
        pass


@pytest.mark.usefixtures("no_lock_modules")
def test_the_lock_file_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lock = tmp_path / ".batchops" / "watch.lock"
    lock.parent.mkdir()
    lock.write_text(f"{dead}\n")
    with ProjectLock(tmp_path) as taken:
        assert taken.path.read_text().strip() == str(os.getpid())
