"""Where ``fcntl`` does not exist (Windows), the command line still imports and runs, and the
cache's locks still exclude: exclusive locks come from ``filelock``; a shared hold becomes an
exclusive lock that the holds of one process share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from uncollapse.cache import lock

REPO = Path(__file__).resolve().parents[2]

NO_FCNTL = "import sys; sys.modules['fcntl'] = None\n"


def python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=3600)


def test_the_cli_imports_and_runs_without_fcntl(tmp_path):
    result = python(NO_FCNTL + (
        "import importlib.util\n"
        "assert importlib.util.find_spec('fcntl') is None or sys.modules['fcntl'] is None\n"
        "from click.testing import CliRunner\n"
        "import uncollapse.cache.lock, uncollapse.trainers.run_lock\n"
        "from uncollapse.cli import main\n"
        "runner = CliRunner()\n"
        "help = runner.invoke(main, ['--help'])\n"
        "path = runner.invoke(main, ['cache', 'path'])\n"
        "print(help.exit_code, path.exit_code, path.output.strip())\n"
        "print('fcntl' in sys.modules and sys.modules['fcntl'] is not None)\n"),
        UNCOLLAPSE_CACHE=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    codes, imported = result.stdout.splitlines()
    assert codes == f"0 0 {tmp_path / 'cache'}"
    assert imported == "False"


def holds_exclusively(path: Path) -> bool:
    """Whether another process finds ``path`` locked (it cannot take it without waiting)."""
    result = python(f"from uncollapse.cache.lock import try_exclusive\n"
                    f"with try_exclusive({str(path)!r}) as free: print(free)")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "False"


@pytest.fixture
def without_fcntl(monkeypatch):
    monkeypatch.setattr(lock, "fcntl", None)


def test_without_fcntl_a_shared_hold_is_shared_within_the_process_only(tmp_path,
                                                                       without_fcntl):
    use = tmp_path / "key.use"
    first, second = lock.SharedHold(use), lock.SharedHold(use)
    assert first.fd == second.fd  # one descriptor, one lock, for both holds of this process
    assert lock.wait_for_readers(use, timeout=0)  # this process's own holds are not waited for
    assert holds_exclusively(use)
    first.release()
    assert holds_exclusively(use)  # the second hold keeps it
    second.release()
    assert not holds_exclusively(use)
    assert str(use.absolute()) not in lock._SHARED_FDS


def test_without_fcntl_the_build_lock_excludes_other_processes(tmp_path, without_fcntl):
    path = tmp_path / "key.lock"
    with lock.file_lock(path):
        assert holds_exclusively(path)
    assert not holds_exclusively(path)


def test_with_fcntl_shared_holds_of_two_processes_coexist(tmp_path):
    use = tmp_path / "key.use"
    hold = lock.SharedHold(use)
    other = python(f"from uncollapse.cache.lock import SharedHold\n"
                   f"hold = SharedHold({str(use)!r}); print('held')")
    assert other.stdout.strip() == "held", other.stderr
    assert holds_exclusively(use)  # but no one may take it exclusively meanwhile
    hold.release()
    assert not holds_exclusively(use)
