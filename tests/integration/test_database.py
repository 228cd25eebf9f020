"""The migration runner against the real PostgreSQL: order, checksums, dry runs, racing starts."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tenderhall import db


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def _schema_conn(dsn: str, schema: str):  # type: ignore[no-untyped-def]
    conn = await db.connect(dsn)
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await conn.execute(f'SET search_path TO "{schema}"')
    return conn


def test_migrations_apply_in_order_and_record_checksums(database_url: str, tmp_path: Path) -> None:
    migrations = _write(tmp_path / "m", {
        "0002_second.sql": "-- why\nALTER TABLE things ADD COLUMN label text;",
        "0001_first.sql": "-- why\nCREATE TABLE things (id int PRIMARY KEY);",
    })
    schema = "mig_" + uuid.uuid4().hex[:8]

    async def go() -> None:
        conn = await _schema_conn(database_url, schema)
        try:
            assert [m.version for m in await db.migrate(conn, migrations, dry_run=True)] == [1, 2]
            assert await conn.fetchval("SELECT to_regclass('things')") is None, "dry run changed nothing"
            assert [m.name for m in await db.migrate(conn, migrations)] == ["first", "second"]
            rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
            assert [r["version"] for r in rows] == [1, 2]
            assert rows[0]["checksum"] == db.load_migrations(migrations)[0].checksum
            assert await db.migrate(conn, migrations) == []
            assert await db.pending_migrations(conn, migrations) == []
        finally:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()

    asyncio.run(go())


def test_edited_applied_migration_is_an_error(database_url: str, tmp_path: Path) -> None:
    migrations = _write(tmp_path / "m", {"0001_first.sql": "-- why\nCREATE TABLE things (id int);"})
    schema = "mig_" + uuid.uuid4().hex[:8]

    async def go() -> None:
        conn = await _schema_conn(database_url, schema)
        try:
            await db.migrate(conn, migrations)
            (migrations / "0001_first.sql").write_text("-- why\nCREATE TABLE things (id bigint);")
            with pytest.raises(db.MigrationError, match="0001_first.sql was edited after it was applied"):
                await db.migrate(conn, migrations)
            with pytest.raises(db.MigrationError, match="edited"):
                await db.pending_migrations(conn, migrations)
        finally:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()

    asyncio.run(go())


def test_failed_migration_rolls_back_whole_file(database_url: str, tmp_path: Path) -> None:
    migrations = _write(tmp_path / "m", {
        "0001_ok.sql": "-- why\nCREATE TABLE ok (id int);",
        "0002_broken.sql": "-- why\nCREATE TABLE half (id int);\nSELECT no_such_function();",
    })
    schema = "mig_" + uuid.uuid4().hex[:8]

    async def go() -> None:
        conn = await _schema_conn(database_url, schema)
        try:
            with pytest.raises(Exception, match="no_such_function"):
                await db.migrate(conn, migrations)
            assert await conn.fetchval("SELECT to_regclass('half')") is None
            assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 1
        finally:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()

    asyncio.run(go())


def test_two_instances_migrating_together_do_not_race(database_url: str, tmp_path: Path) -> None:
    # Without the advisory lock both would run CREATE TABLE and one would fail.
    migrations = _write(tmp_path / "m", {
        "0001_slow.sql": "-- why\nCREATE TABLE slow (id int);\nSELECT pg_sleep(0.3);",
        "0002_more.sql": "-- why\nCREATE TABLE more (id int);",
    })
    schema = "mig_" + uuid.uuid4().hex[:8]

    async def go() -> None:
        a = await _schema_conn(database_url, schema)
        b = await _schema_conn(database_url, schema)
        try:
            done_a, done_b = await asyncio.gather(db.migrate(a, migrations), db.migrate(b, migrations))
            assert sorted([len(done_a), len(done_b)]) == [0, 2]
            assert await a.fetchval("SELECT count(*) FROM schema_migrations") == 2
        finally:
            await a.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await a.close()
            await b.close()

    asyncio.run(go())


def test_badly_named_migration_file_is_refused(tmp_path: Path) -> None:
    migrations = _write(tmp_path / "m", {"1_first.sql": "SELECT 1;"})
    with pytest.raises(db.MigrationError, match="NNNN_name.sql"):
        db.load_migrations(migrations)


def test_real_migrations_each_begin_with_a_reason() -> None:
    for migration in db.load_migrations():
        assert migration.sql.lstrip().startswith("--"), f"{migration.name} needs a comment saying why it exists"
