"""Floor plans' SQL: floors, and the zones and doors extracted from each plan when it is saved."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Sequence

import asyncpg

from venue.model import Door, Zone

_LIST = """
SELECT f.id, f.venue_id, v.name AS venue_name, f.code, f.level, f.name, f.version, f.updated_at, f.plan, f.transform,
       (SELECT count(*) FROM zones z WHERE z.floor_id = f.id) AS zones,
       (SELECT count(*) FROM doors d WHERE d.floor_id = f.id) AS doors
FROM floors f JOIN venues v ON v.id = f.venue_id"""


async def floors(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every floor with its plan, venue name and zone and door counts, by venue and level."""
    return await conn.fetch(_LIST + " ORDER BY v.region_code, v.name, f.level")


async def floor(conn: asyncpg.Connection, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_LIST + " WHERE f.code = $1", code)


async def floor_id_of(conn: asyncpg.Connection, code: str) -> uuid.UUID | None:
    return await conn.fetchval("SELECT id FROM floors WHERE code = $1", code)


async def floor_for_update(conn: asyncpg.Connection, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM floors WHERE code = $1 FOR UPDATE", code)


async def versions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, code, version FROM floors")


async def plans_by_id(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, code, level, name, version, plan, transform FROM floors WHERE id = ANY($1::uuid[])",
                            list(ids))


async def insert_floor(conn: asyncpg.Connection, floor_id: uuid.UUID, venue_id: uuid.UUID, code: str, level: int,
                       name: str, plan: Any, transform: Any, by: uuid.UUID, at: datetime) -> None:
    await conn.execute("""
        INSERT INTO floors (id, venue_id, code, level, name, plan, transform, updated_by, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""", floor_id, venue_id, code, level, name, plan, transform, by, at)


async def update_floor(conn: asyncpg.Connection, floor_id: uuid.UUID, level: int, name: str, plan: Any, transform: Any,
                       by: uuid.UUID, at: datetime) -> int:
    """The new version."""
    return await conn.fetchval("""
        UPDATE floors SET level = $2, name = $3, plan = $4, transform = $5, updated_by = $6, updated_at = $7,
               version = version + 1
        WHERE id = $1 RETURNING version""", floor_id, level, name, plan, transform, by, at)


async def replace_zones_and_doors(conn: asyncpg.Connection, floor_id: uuid.UUID, zones: Sequence[Zone],
                                  doors: Sequence[Door]) -> None:
    """The floor's zone and door rows become exactly the plan's."""
    await conn.execute("DELETE FROM doors WHERE floor_id = $1", floor_id)
    await conn.execute("DELETE FROM zones WHERE floor_id = $1", floor_id)
    await conn.executemany("""
        INSERT INTO zones (floor_id, zone_id, kind, name, capacity, room_id, closed_area)
        VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        [(floor_id, z.id, z.kind, z.name, z.capacity, z.room_id, z.closed_area) for z in zones])
    await conn.executemany("""
        INSERT INTO doors (reader_id, floor_id, door_id, outside_zone, inside_zone, capacity)
        VALUES ($1, $2, $3, $4, $5, $6)""",
        [(d.reader_id, floor_id, d.id, d.outside_zone, d.inside_zone, d.capacity) for d in doors])


async def readers_elsewhere(conn: asyncpg.Connection, floor_id: uuid.UUID, readers: Sequence[str]) -> list[asyncpg.Record]:
    """Those of `readers` that doors of other floors already have (reader ids are unique venue-wide)."""
    return await conn.fetch("""
        SELECT d.reader_id, d.door_id, f.code FROM doors d JOIN floors f ON f.id = d.floor_id
        WHERE d.reader_id = ANY($1::text[]) AND d.floor_id <> $2 ORDER BY d.reader_id""", list(readers), floor_id)


async def rooms_by_id(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, venue_id, name FROM venue_rooms WHERE id = ANY($1::uuid[])", list(ids))


async def rooms_elsewhere(conn: asyncpg.Connection, floor_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """Those of the rooms `ids` another floor's zone already is."""
    return await conn.fetch("""
        SELECT z.room_id, z.zone_id, f.code FROM zones z JOIN floors f ON f.id = z.floor_id
        WHERE z.room_id = ANY($1::uuid[]) AND z.floor_id <> $2 ORDER BY z.zone_id""", list(ids), floor_id)


async def venue_exists(conn: asyncpg.Connection, venue_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM venues WHERE id = $1", venue_id))


async def venues(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Venues, for the new-floor form."""
    return await conn.fetch("SELECT id, name, region_code FROM venues ORDER BY region_code, name")
