"""Shared fixtures: one real PostgreSQL per run (embedded unless a URL is given), migrated once."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tenderhall import db
from tests.factories import run_async
from tenderhall.embedded_pg import EmbeddedPostgres
from tenderhall.settings import Settings


async def _migrate(dsn: str) -> None:
    conn = await db.connect(dsn)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated database for this run: TENDERHALL_TEST_DATABASE_URL, or a fresh embedded one."""
    given = os.environ.get("TENDERHALL_TEST_DATABASE_URL")
    if given:
        run_async(_migrate(given))
        yield given
        return
    base = Path(tempfile.mkdtemp(prefix="tenderhall-test-", dir="/tmp"))
    server = EmbeddedPostgres(base)
    server.start()
    name = "th_test_" + uuid.uuid4().hex[:10]
    dsn = server.create_database(name)
    run_async(_migrate(dsn))
    try:
        yield dsn
    finally:
        server.drop_database(name)
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        scrypt_n=2**10,
        cookie_secure=False,
        pool_min=1,
        pool_max=8,
    )
