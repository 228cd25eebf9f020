"""Database access: the asyncpg pool and the migration runner.

Migrations are `migrations/NNNN_name.sql`, applied in order, each in its own transaction,
under a session advisory lock so that two instances starting together do not race. Each
applied file's SHA-256 is recorded; an edited applied migration stops the start.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tenderhall.settings import REPO_ROOT

MIGRATIONS_DIR = REPO_ROOT / "migrations"
# Arbitrary but fixed: the advisory lock key every instance takes while migrating.
MIGRATION_LOCK = 7_401_001
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The database and the migration files disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read migration files in version order; refuse a stray name or a duplicate version."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version:04d} is used twice")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    return {r["version"]: r for r in rows}


def _check_history(migrations: list[Migration], applied: dict[int, asyncpg.Record]) -> list[Migration]:
    by_version = {m.version: m for m in migrations}
    for version, row in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"migration {version:04d}_{row['name']} is applied but missing from the code; "
                "is this an older release than the database?"
            )
        if migration.checksum != row["checksum"]:
            raise MigrationError(
                f"migration {version:04d}_{migration.name}.sql was edited after it was applied "
                f"(recorded checksum {row['checksum'][:12]}…, file {migration.checksum[:12]}…); "
                "write a new migration instead"
            )
    return [m for m in migrations if m.version not in applied]


async def pending_migrations(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migrations not yet applied; MigrationError if history and files disagree."""
    return _check_history(load_migrations(directory), await _applied(conn))


async def migrate(
    conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR, *, dry_run: bool = False
) -> list[Migration]:
    """Apply pending migrations (or only list them with dry_run); return those (to be) applied."""
    migrations = load_migrations(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        if not dry_run:
            await conn.execute(_CREATE_TABLE)
        todo = _check_history(migrations, await _applied(conn))
        if dry_run:
            return todo
        for migration in todo:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
        return todo
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.execute("SET TIME ZONE 'UTC'")


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the platform's codecs (CLI commands, the bus listener)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)


# One transaction-level lock orders both the event outbox and the transparency log: ids are
# then committed in the order they were taken (a reader never sees id 5 before id 4), and
# a transaction that writes both can never deadlock against another taking them reversed.
ORDER_LOCK = 7_401_002


async def take_order_lock(conn: asyncpg.Connection) -> None:
    """Serialise with every other writer of events and log entries until this commit."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ORDER_LOCK)
