"""The positions' SQL: day partitions, batches taken, COPY, what the tracker is rebuilt from,
the map's trajectory and heatmap queries, and the retention.

`positions` is partitioned by UTC day on `t` (migrations/0009); a day's partition is named
positions_YYYYMMDD and made on demand by the first batch that needs it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, Sequence

import asyncpg
import msgspec

from venue.model import Credential, Person, Position

COLUMNS = ("tag_id", "t", "floor_code", "x", "y", "quality")
PREFIX = "positions_"
# Serialises partition DDL between concurrent batches and instances (CREATE TABLE IF NOT EXISTS
# alone can still fail on the catalogue's unique index when two sessions race); under it, a
# partition is looked for again before it is made.
PARTITION_LOCK = 7_401_060


def partition_name(day: date) -> str:
    return f"{PREFIX}{day:%Y%m%d}"


def day_of(name: str) -> date | None:
    """The day of a partition named positions_YYYYMMDD, or None for any other name."""
    digits = name.removeprefix(PREFIX)
    if name == digits or len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _midnight(day: date) -> str:
    return datetime.combine(day, time(), timezone.utc).isoformat()


# Read from pg_class with the statement's snapshot, not with to_regclass(): that goes through the
# backend's catalogue cache, which an advisory lock does not refresh.
MISSING_PARTITIONS = """
SELECT n FROM unnest($1::text[]) AS n
WHERE NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = n AND relnamespace = current_schema()::regnamespace)
"""


async def ensure_partitions(conn: asyncpg.Connection, days: Sequence[date]) -> list[date]:
    """Make the day partitions that do not exist yet, each in a short transaction of its own
    (the DDL locks the parent table: never hold that across a COPY); returns those made.

    A row without its partition fails with CheckViolationError ("no partition of relation");
    callers store first and make partitions on that error, which comes once a day."""
    if not days:
        return []
    missing = {r["n"] for r in await conn.fetch(MISSING_PARTITIONS, [partition_name(d) for d in days])}
    made = []
    for day in days:
        if partition_name(day) not in missing:
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            if await conn.fetchval(MISSING_PARTITIONS, [partition_name(day)]) is None:
                continue  # another batch or instance made it meanwhile
            # DDL takes no parameters; the name and bounds come from a date, never from input text.
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF positions "
                               f"FOR VALUES FROM ('{_midnight(day)}') TO ('{_midnight(day + timedelta(days=1))}')")
        made.append(day)
    return made


PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'positions'::regclass ORDER BY c.relname
"""


async def partitions(conn: asyncpg.Connection) -> list[str]:
    return [r["relname"] for r in await conn.fetch(PARTITIONS)]


async def drop_partitions_before(conn: asyncpg.Connection, cutoff: datetime) -> list[str]:
    """Drop every day partition whose whole day ends at or before `cutoff`; returns their names."""
    dropped = []
    for name in await partitions(conn):
        day = day_of(name)
        if day is None or datetime.combine(day + timedelta(days=1), time(), timezone.utc) > cutoff:
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            await conn.execute(f"DROP TABLE IF EXISTS {name}")  # a name of our own form (day_of)
        dropped.append(name)
    return dropped


CLAIM_BATCH = """
INSERT INTO position_batches (batch_id, received_at, accepted, rejected, errors) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id
"""


async def claim_batch(conn: asyncpg.Connection, batch_id: str, received_at: datetime, accepted: int, rejected: int,
                      errors: list[dict]) -> bool:
    """Record a batch as taken; False when it was taken before (the caller then stores nothing).

    A concurrent identical batch waits on the primary key until this transaction ends."""
    return await conn.fetchval(CLAIM_BATCH, batch_id, received_at, accepted, rejected, errors) is not None


# A small batch in one statement (one round trip, atomic): the batch row, and its positions only
# if the row was new. unnest() of arrays, as COPY would be a second round trip inside a transaction.
CLAIM_AND_INSERT = """
WITH claim AS (
    INSERT INTO position_batches (batch_id, received_at, accepted, rejected, errors) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id
), stored AS (
    INSERT INTO positions (tag_id, t, floor_code, x, y, quality)
    SELECT * FROM unnest($6::text[], $7::timestamptz[], $8::text[], $9::float8[], $10::float8[], $11::real[])
    WHERE EXISTS (SELECT 1 FROM claim)
)
SELECT EXISTS (SELECT 1 FROM claim)
"""


async def claim_and_insert(conn: asyncpg.Connection, batch_id: str, received_at: datetime, accepted: int,
                           rejected: int, errors: list[dict], positions: Sequence[Position]) -> bool:
    """claim_batch and the positions' insert as one statement; False when the batch was taken before."""
    return await conn.fetchval(CLAIM_AND_INSERT, batch_id, received_at, accepted, rejected, errors,
                               [p.tag for p in positions], [p.t for p in positions], [p.floor for p in positions],
                               [p.x for p in positions], [p.y for p in positions], [p.quality for p in positions])


TAKEN_BATCH = "SELECT accepted, rejected, errors FROM position_batches WHERE batch_id = $1"


async def taken_batch(conn: asyncpg.Connection, batch_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(TAKEN_BATCH, batch_id)


async def copy_positions(conn: asyncpg.Connection, positions: Iterable[Position]) -> None:
    """One COPY for the whole batch; PostgreSQL routes each row to its day's partition. A
    Position's fields are COPY's COLUMNS, in their order."""
    await conn.copy_records_to_table("positions", records=map(msgspec.structs.astuple, positions), columns=COLUMNS)


FORGET_BATCHES = "DELETE FROM position_batches WHERE received_at < $1"


async def forget_batches_before(conn: asyncpg.Connection, cutoff: datetime) -> int:
    status = await conn.execute(FORGET_BATCHES, cutoff)
    return int(status.split()[-1])


# A revoked credential ends when it was revoked (credentials.revoked_at, the access part's).
TAG_CREDENTIALS = """
SELECT person_id, value, valid_from, LEAST(valid_until, revoked_at) AS valid_until FROM credentials
WHERE kind = 'tag' AND (LEAST(valid_until, revoked_at) IS NULL OR LEAST(valid_until, revoked_at) > $1)
"""
PEOPLE = "SELECT id, name, role, user_id, organisation_id, expert_id FROM venue_people"


async def tag_credentials(conn: asyncpg.Connection, ending_after: datetime) -> list[Credential]:
    """Tag bindings still valid at some point after `ending_after`."""
    return [Credential(r["person_id"], "tag", r["value"], r["valid_from"], r["valid_until"])
            for r in await conn.fetch(TAG_CREDENTIALS, ending_after)]


async def people(conn: asyncpg.Connection) -> list[Person]:
    return [Person(r["id"], r["name"], r["role"], r["user_id"], r["organisation_id"], r["expert_id"])
            for r in await conn.fetch(PEOPLE)]


RECENT_POSITIONS = """
SELECT p.tag_id, p.t, p.floor_code, p.x, p.y, p.quality
FROM unnest($1::text[]) AS tag (id)
CROSS JOIN LATERAL (SELECT * FROM positions WHERE tag_id = tag.id AND t >= $2 ORDER BY t DESC LIMIT $3) AS p
"""


async def recent_positions(conn: asyncpg.Connection, tags: Sequence[str], since: datetime, per_tag: int) -> list[Position]:
    """The last `per_tag` positions of each tag since `since` (what the tracker is rebuilt from)."""
    rows = await conn.fetch(RECENT_POSITIONS, list(tags), since, per_tag)
    return [Position(r["tag_id"], r["t"], r["floor_code"], r["x"], r["y"], r["quality"]) for r in rows]


PERSON_EXISTS = "SELECT EXISTS (SELECT 1 FROM venue_people WHERE id = $1)"


async def person_exists(conn: asyncpg.Connection, person: uuid.UUID) -> bool:
    return await conn.fetchval(PERSON_EXISTS, person)


# Every `step`-th point of the person's tags (each while bound to them) in [from, to), so that
# at most `limit` points come back however long the period.
TRAJECTORY = """
WITH points AS (
    SELECT p.t, p.floor_code, p.x, p.y, row_number() OVER (ORDER BY p.t) AS n, count(*) OVER () AS total
    FROM credentials c
    JOIN positions p ON p.tag_id = c.value AND p.t >= c.valid_from
                    AND p.t < COALESCE(LEAST(c.valid_until, c.revoked_at), 'infinity')
    WHERE c.person_id = $1 AND c.kind = 'tag' AND p.t >= $2 AND p.t < $3
)
SELECT t, floor_code, x, y, total FROM points
WHERE (n - 1) % GREATEST(1, ceil(total::numeric / $4)::bigint) = 0
ORDER BY t
"""


async def trajectory(conn: asyncpg.Connection, person: uuid.UUID, start: datetime, end: datetime,
                     limit: int) -> tuple[int, list[asyncpg.Record]]:
    """(how many points the period holds, at most `limit` of them evenly spread, in time order)."""
    rows = await conn.fetch(TRAJECTORY, person, start, end, limit)
    return (rows[0]["total"] if rows else 0), rows


HEATMAP = """
SELECT floor(x / $4)::bigint AS cx, floor(y / $4)::bigint AS cy, count(*) AS n
FROM positions WHERE floor_code = $1 AND t >= $2 AND t < $3
GROUP BY 1, 2 ORDER BY 1, 2 LIMIT $5
"""


async def heatmap(conn: asyncpg.Connection, floor: str, start: datetime, end: datetime, cell: float,
                  limit: int) -> list[asyncpg.Record]:
    """Positions counted per square of `cell` metres (cx, cy: the square's index), at most `limit` squares."""
    return await conn.fetch(HEATMAP, floor, start, end, cell, limit)
