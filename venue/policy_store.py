"""SQL of access control: people, credentials, access rules, what the policy is loaded from
(doors, zones, live evaluation sessions, recent grants), the decision and door-event batches, and
the 代理码 (agent codes) with their scans."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Sequence

import asyncpg

# ---------------------------------------------------------------------------- what the policy reads

_READERS = """
SELECT d.reader_id, f.code AS floor, d.door_id, d.inside_zone, d.outside_zone, d.capacity
FROM doors d JOIN floors f ON f.id = d.floor_id"""
_ZONES = "SELECT f.code AS floor, z.zone_id, z.kind FROM zones z JOIN floors f ON f.id = z.floor_id"
_PEOPLE = "SELECT id, name, role, user_id, organisation_id, expert_id FROM venue_people"
# Expired bindings are kept a while so that a late card is refused as expired, not unknown.
_CREDENTIALS = """
SELECT person_id, kind, value, valid_from, valid_until FROM credentials
WHERE revoked_at IS NULL AND (valid_until IS NULL OR valid_until > $1)"""
_RULES = """
SELECT r.id, r.person_id, r.role, f.code AS floor, r.zone_id, r.zone_kind, r.valid_from, r.valid_until,
       r.enter_within_seconds, r.no_reentry, r.session_id
FROM access_rules r LEFT JOIN floors f ON f.id = r.floor_id
WHERE r.revoked_at IS NULL AND (r.valid_until IS NULL OR r.valid_until > $1)"""
# An expert (a venue person linked to the expert) seated in a live session may enter the zones
# of the room they signed in at; a replaced member only until they were released.
_SESSION_SEATS = """
SELECT p.id AS person_id, m.session_id, m.signed_in_at, m.replaced_at, f.code AS floor, z.zone_id
FROM session_members m
JOIN eval_sessions s ON s.id = m.session_id
JOIN venue_people p ON p.expert_id = m.expert_id
JOIN zones z ON z.room_id = m.room_id
JOIN floors f ON f.id = z.floor_id
WHERE s.step = ANY($1::text[])"""
_GRANTS_SINCE = """
SELECT a.at, a.person_id, a.reader_id, f.code AS floor, d.inside_zone, d.outside_zone
FROM access_decisions a JOIN doors d ON d.reader_id = a.reader_id JOIN floors f ON f.id = d.floor_id
WHERE a.granted AND a.at >= $1 AND a.person_id IS NOT NULL
ORDER BY a.at, a.id"""


async def readers(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(_READERS)


async def zones(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(_ZONES)


async def people_all(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(_PEOPLE)


async def credentials_live(conn: asyncpg.Connection, ended_after: datetime) -> list[asyncpg.Record]:
    return await conn.fetch(_CREDENTIALS, ended_after)


async def rules_live(conn: asyncpg.Connection, ended_after: datetime) -> list[asyncpg.Record]:
    return await conn.fetch(_RULES, ended_after)


async def session_seats(conn: asyncpg.Connection, live_steps: Sequence[str]) -> list[asyncpg.Record]:
    return await conn.fetch(_SESSION_SEATS, list(live_steps))


async def grants_since(conn: asyncpg.Connection, since: datetime) -> list[asyncpg.Record]:
    return await conn.fetch(_GRANTS_SINCE, since)


# ---------------------------------------------------------------------------- people and credentials


async def insert_person(conn: asyncpg.Connection, person_id: uuid.UUID, name: str, role: str, user_id: uuid.UUID | None,
                        organisation_id: uuid.UUID | None, expert_id: uuid.UUID | None) -> asyncpg.Record:
    return await conn.fetchrow("""
        INSERT INTO venue_people (id, name, role, user_id, organisation_id, expert_id)
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""", person_id, name, role, user_id, organisation_id, expert_id)


async def person(conn: asyncpg.Connection, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM venue_people WHERE id = $1", person_id)


async def people_page(conn: asyncpg.Connection, role: str | None, limit: int, offset: int) -> list[asyncpg.Record]:
    """People by name (of one role if given), with the total as `total` on each row."""
    return await conn.fetch("""
        SELECT p.*, count(*) OVER () AS total FROM venue_people p
        WHERE $1::text IS NULL OR p.role = $1 ORDER BY p.name, p.id LIMIT $2 OFFSET $3""", role, limit, offset)


async def agency_staff(conn: asyncpg.Connection, organisation_id: uuid.UUID | None, user_id: uuid.UUID,
                       limit: int) -> list[asyncpg.Record]:
    """Venue people of role agent who work for the organisation (or are the user), by name."""
    return await conn.fetch("""
        SELECT p.* FROM venue_people p
        WHERE p.role = 'agent' AND (p.organisation_id = $1 OR p.user_id = $2) ORDER BY p.name, p.id LIMIT $3""",
                            organisation_id, user_id, limit)


async def lock_credential_value(conn: asyncpg.Connection, kind: str, value: str) -> None:
    """Serialise bindings of one value, so that two overlapping ones cannot both pass the check."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('venue.credential'), hashtext($1 || ':' || $2))",
                       kind, value)


async def overlapping_binding(conn: asyncpg.Connection, kind: str, value: str, person_id: uuid.UUID,
                              valid_from: datetime, valid_until: datetime | None) -> asyncpg.Record | None:
    """A live binding of the same value to another person whose period meets [valid_from, valid_until)."""
    return await conn.fetchrow("""
        SELECT * FROM credentials
        WHERE kind = $1 AND value = $2 AND person_id <> $3 AND revoked_at IS NULL
          AND tstzrange(valid_from, valid_until) && tstzrange($4, $5) LIMIT 1""",
        kind, value, person_id, valid_from, valid_until)


async def insert_credential(conn: asyncpg.Connection, person_id: uuid.UUID, kind: str, value: str,
                            valid_from: datetime, valid_until: datetime | None) -> asyncpg.Record:
    return await conn.fetchrow("""
        INSERT INTO credentials (person_id, kind, value, valid_from, valid_until)
        VALUES ($1, $2, $3, $4, $5) RETURNING *""", person_id, kind, value, valid_from, valid_until)


async def credentials_of(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM credentials WHERE person_id = $1 ORDER BY valid_from, id", person_id)


async def revoke_credential(conn: asyncpg.Connection, credential_id: int, now: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow("""
        UPDATE credentials SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING *""", credential_id, now)


async def credential(conn: asyncpg.Connection, credential_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM credentials WHERE id = $1", credential_id)


# ---------------------------------------------------------------------------- rules


async def floor_id(conn: asyncpg.Connection, code: str) -> uuid.UUID | None:
    return await conn.fetchval("SELECT id FROM floors WHERE code = $1", code)


async def zone_exists(conn: asyncpg.Connection, floor: uuid.UUID, zone_id: str) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM zones WHERE floor_id = $1 AND zone_id = $2)", floor, zone_id)


async def insert_rule(conn: asyncpg.Connection, *, person_id: uuid.UUID | None, role: str | None,
                      floor: uuid.UUID | None, zone_id: str | None, zone_kind: str | None, valid_from: datetime,
                      valid_until: datetime | None, enter_within_seconds: int | None, no_reentry: bool,
                      created_by: uuid.UUID) -> int:
    return await conn.fetchval("""
        INSERT INTO access_rules (person_id, role, floor_id, zone_id, zone_kind, valid_from, valid_until,
                                  enter_within_seconds, no_reentry, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
        person_id, role, floor, zone_id, zone_kind, valid_from, valid_until, enter_within_seconds, no_reentry,
        created_by)


_RULE_COLUMNS = """
SELECT r.*, f.code AS floor, count(*) OVER () AS total FROM access_rules r LEFT JOIN floors f ON f.id = r.floor_id"""


async def rule(conn: asyncpg.Connection, rule_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_RULE_COLUMNS + " WHERE r.id = $1", rule_id)


async def rules_page(conn: asyncpg.Connection, person_id: uuid.UUID | None, with_revoked: bool, limit: int,
                     offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(_RULE_COLUMNS + """
        WHERE ($1::uuid IS NULL OR r.person_id = $1) AND ($2 OR r.revoked_at IS NULL)
        ORDER BY r.id LIMIT $3 OFFSET $4""", person_id, with_revoked, limit, offset)


async def revoke_rule(conn: asyncpg.Connection, rule_id: int, now: datetime) -> bool:
    return await conn.fetchval("""
        UPDATE access_rules SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING true""",
        rule_id, now) is not None


# ---------------------------------------------------------------------------- decisions and door events

_INSERT_DECISIONS = """
INSERT INTO access_decisions (at, reader_id, credential, person_id, granted, reason, log_index)
SELECT a, r, c, p, g, why, $7 FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::uuid[], $5::bool[], $6::text[])
    WITH ORDINALITY AS d(a, r, c, p, g, why, n)
ORDER BY n"""
_INSERT_DOOR_EVENTS = """
INSERT INTO door_events (at, reader_id, kind, log_index)
SELECT a, r, k, $4 FROM unnest($1::timestamptz[], $2::text[], $3::text[]) WITH ORDINALITY AS e(a, r, k, n)
ORDER BY n"""


async def insert_decisions(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]], log_index: int) -> None:
    """One INSERT for a batch of (at, reader_id, credential, person_id, granted, reason), in order."""
    columns = list(zip(*rows))
    await conn.execute(_INSERT_DECISIONS, *[list(c) for c in columns], log_index)


async def insert_door_events(conn: asyncpg.Connection, rows: Sequence[tuple[datetime, str, str]], log_index: int) -> None:
    """One INSERT for a batch of (at, reader_id, kind), in order."""
    columns = list(zip(*rows))
    await conn.execute(_INSERT_DOOR_EVENTS, *[list(c) for c in columns], log_index)


async def decisions_of_batch(conn: asyncpg.Connection, log_index: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM access_decisions WHERE log_index = $1 ORDER BY id", log_index)


async def door_events_of_batch(conn: asyncpg.Connection, log_index: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM door_events WHERE log_index = $1 ORDER BY id", log_index)


async def decisions_page(conn: asyncpg.Connection, person_id: uuid.UUID | None, reader_id: str | None, limit: int,
                         offset: int) -> list[asyncpg.Record]:
    """Newest first, with the total as `total` on each row."""
    return await conn.fetch("""
        SELECT *, count(*) OVER () AS total FROM access_decisions
        WHERE ($1::uuid IS NULL OR person_id = $1) AND ($2::text IS NULL OR reader_id = $2)
        ORDER BY id DESC LIMIT $3 OFFSET $4""", person_id, reader_id, limit, offset)


# ---------------------------------------------------------------------------- 代理码


async def tender(conn: asyncpg.Connection, tender_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, code, name, agent_id FROM tenders WHERE id = $1", tender_id)


async def tenders_for_codes(conn: asyncpg.Connection, agent_id: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    """The tenders of one agent (every tender when agent_id is None), latest deadline first."""
    return await conn.fetch("""
        SELECT id, code, name FROM tenders WHERE $1::uuid IS NULL OR agent_id = $1
        ORDER BY deadline DESC, id LIMIT $2""", agent_id, limit)


async def insert_agent_code(conn: asyncpg.Connection, code_id: uuid.UUID, tender_id: uuid.UUID, person_id: uuid.UUID,
                            code_hash: bytes, valid_on: date, created_by: uuid.UUID, now: datetime) -> None:
    await conn.execute("""
        INSERT INTO agent_codes (id, tender_id, person_id, code_hash, valid_on, created_by, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)""", code_id, tender_id, person_id, code_hash, valid_on, created_by, now)


async def agent_code_by_hash(conn: asyncpg.Connection, code_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow("""
        SELECT c.*, t.code AS tender_code, t.name AS tender_name, p.name AS person_name
        FROM agent_codes c JOIN tenders t ON t.id = c.tender_id JOIN venue_people p ON p.id = c.person_id
        WHERE c.code_hash = $1""", code_hash)


async def agent_codes_of_tender(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("""
        SELECT c.id, c.person_id, p.name AS person_name, c.valid_on, c.created_at,
               (SELECT count(*) FROM agent_code_scans s WHERE s.code_id = c.id AND s.accepted) AS accepted_scans
        FROM agent_codes c JOIN venue_people p ON p.id = c.person_id
        WHERE c.tender_id = $1 ORDER BY c.valid_on, p.name""", tender_id)


async def insert_scan(conn: asyncpg.Connection, code_id: uuid.UUID | None, tender_id: uuid.UUID | None,
                      scanned_by: uuid.UUID, at: datetime, accepted: bool, reason: str) -> int:
    return await conn.fetchval("""
        INSERT INTO agent_code_scans (code_id, tender_id, scanned_by, at, accepted, reason)
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""", code_id, tender_id, scanned_by, at, accepted, reason)
