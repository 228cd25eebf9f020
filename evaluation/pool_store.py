"""The expert and intermediary pools' SQL: parameterised constants, one small function per query."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Iterable, Sequence

import asyncpg

# ---------------------------------------------------------------------------- specialty tree

_INSERT_SPECIALTIES = """
INSERT INTO specialties (code, name, parent)
SELECT c, n, p FROM unnest($1::text[], $2::text[], $3::text[]) AS t (c, n, p)
ON CONFLICT (code) DO NOTHING"""
_SPECIALTIES = "SELECT code, name, parent FROM specialties ORDER BY code"
_UNKNOWN_SPECIALTIES = """
SELECT DISTINCT c FROM unnest($1::text[]) AS c
WHERE NOT EXISTS (SELECT 1 FROM specialties s WHERE s.code = c) ORDER BY c"""
_SPECIALTY_NAMES = "SELECT code, name FROM specialties WHERE code = ANY($1::text[])"


async def insert_specialties(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, str | None]]) -> None:
    """Insert (code, name, parent) rows, keeping any code that exists (one statement: parents resolve)."""
    await conn.execute(_INSERT_SPECIALTIES, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


async def specialties(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(_SPECIALTIES)


async def unknown_specialties(conn: asyncpg.Connection, codes: Iterable[str]) -> list[str]:
    """The codes among `codes` that the tree does not hold, sorted (empty: all exist)."""
    return [r[0] for r in await conn.fetch(_UNKNOWN_SPECIALTIES, list(codes))]


async def specialty_names(conn: asyncpg.Connection, codes: Iterable[str]) -> dict[str, str]:
    return {r["code"]: r["name"] for r in await conn.fetch(_SPECIALTY_NAMES, list(codes))}


# ---------------------------------------------------------------------------- experts

EXPERT_COLUMNS = ("id", "name", "id_number_sealed", "id_number_index", "id_number_masked", "phone", "email",
                  "employer_name", "employer_code", "region", "title", "status", "user_id")
_EXPERT_SELECT = """
SELECT e.id, e.name, e.id_number_masked, e.phone, e.email, e.employer_name, e.employer_code, e.region, e.title,
       e.status, e.credit_score, e.user_id, u.username, e.version, e.created_at, e.updated_at,
       ARRAY(SELECT s.specialty FROM expert_specialties s WHERE s.expert_id = e.id ORDER BY 1) AS specialties
FROM experts e LEFT JOIN users u ON u.id = e.user_id"""
_EXPERT = _EXPERT_SELECT + " WHERE e.id = $1"
_EXPERT_OF_USER = _EXPERT_SELECT + " WHERE e.user_id = $1"
_LOCK_EXPERT = "SELECT id, version, status, credit_score FROM experts WHERE id = $1 FOR UPDATE"
_INSERT_EXPERT = """
INSERT INTO experts (id, name, id_number_sealed, id_number_index, id_number_masked, phone, email, employer_name,
                     employer_code, region, title, status, user_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"""
_UPDATE_EXPERT = """
UPDATE experts SET name = $3, phone = $4, email = $5, employer_name = $6, employer_code = $7, region = $8,
                   title = $9, status = $10, user_id = $11, version = version + 1, updated_at = now()
WHERE id = $1 AND version = $2 RETURNING version"""
_UPDATE_ID_NUMBER = """
UPDATE experts SET id_number_sealed = $2, id_number_index = $3, id_number_masked = $4 WHERE id = $1"""
_SET_STATUS = """
UPDATE experts SET status = $2, version = version + 1, updated_at = now() WHERE id = $1 RETURNING version"""
_INSERT_SPECIALTIES_OF = "INSERT INTO expert_specialties (expert_id, specialty) SELECT $1, unnest($2::text[])"
_DELETE_SPECIALTIES_OF = "DELETE FROM expert_specialties WHERE expert_id = $1"
_EXISTING_INDEXES = "SELECT id_number_index FROM experts WHERE id_number_index = ANY($1::bytea[])"
_EXPERT_BY_INDEX = "SELECT id FROM experts WHERE id_number_index = $1"
_USER_ROLES = "SELECT id, roles FROM users WHERE id = $1"
_USER_BY_NAME = "SELECT id FROM users WHERE username = $1"
_EXPERT_FILTER = """
WHERE ($1::text IS NULL OR e.name LIKE '%' || $1 || '%' OR e.employer_name LIKE '%' || $1 || '%')
  AND ($2::text IS NULL OR e.region LIKE $2 || '%')
  AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM expert_specialties s
                                   WHERE s.expert_id = e.id AND s.specialty LIKE $3 || '%'))
  AND ($4::text IS NULL OR e.status = $4)"""
_LIST_EXPERTS = _EXPERT_SELECT + _EXPERT_FILTER + " ORDER BY e.name, e.id LIMIT $5 OFFSET $6"
_COUNT_EXPERTS = "SELECT count(*) FROM experts e" + _EXPERT_FILTER
_CONTACTS = "SELECT id, name, phone, email, user_id FROM experts WHERE id = ANY($1::uuid[])"
_COUNT_ALL = "SELECT count(*) FROM experts"


async def expert(conn: asyncpg.Connection, expert_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_EXPERT, expert_id)


async def expert_of_user(conn: asyncpg.Connection, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_EXPERT_OF_USER, user_id)


async def lock_expert(conn: asyncpg.Connection, expert_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_LOCK_EXPERT, expert_id)


async def insert_expert(conn: asyncpg.Connection, values: Sequence[Any], specialty_codes: Sequence[str]) -> None:
    """`values` in EXPERT_COLUMNS order."""
    await conn.execute(_INSERT_EXPERT, *values)
    await conn.execute(_INSERT_SPECIALTIES_OF, values[0], list(specialty_codes))


async def update_expert(conn: asyncpg.Connection, expert_id: uuid.UUID, version: int, row: dict[str, Any]) -> int | None:
    """Write every editable field if the row is still at `version`; the new version, or None if stale."""
    return await conn.fetchval(_UPDATE_EXPERT, expert_id, version, row["name"], row["phone"], row["email"],
                               row["employer_name"], row["employer_code"], row["region"], row["title"],
                               row["status"], row["user_id"])


async def update_id_number(conn: asyncpg.Connection, expert_id: uuid.UUID, sealed: bytes, index: bytes,
                           masked: str) -> None:
    await conn.execute(_UPDATE_ID_NUMBER, expert_id, sealed, index, masked)


async def replace_specialties(conn: asyncpg.Connection, expert_id: uuid.UUID, codes: Sequence[str]) -> None:
    await conn.execute(_DELETE_SPECIALTIES_OF, expert_id)
    await conn.execute(_INSERT_SPECIALTIES_OF, expert_id, list(codes))


async def set_status(conn: asyncpg.Connection, expert_id: uuid.UUID, status: str) -> int:
    return await conn.fetchval(_SET_STATUS, expert_id, status)


async def existing_indexes(conn: asyncpg.Connection, indexes: Sequence[bytes]) -> set[bytes]:
    """Which of these ID-number blind indexes the pool already holds."""
    return {bytes(r[0]) for r in await conn.fetch(_EXISTING_INDEXES, list(indexes))}


async def expert_id_by_index(conn: asyncpg.Connection, index: bytes) -> uuid.UUID | None:
    return await conn.fetchval(_EXPERT_BY_INDEX, index)


async def user_roles(conn: asyncpg.Connection, user_id: uuid.UUID) -> frozenset[str] | None:
    row = await conn.fetchrow(_USER_ROLES, user_id)
    return frozenset(row["roles"]) if row else None


async def user_id_by_name(conn: asyncpg.Connection, username: str) -> uuid.UUID | None:
    return await conn.fetchval(_USER_BY_NAME, username)


async def list_experts(conn: asyncpg.Connection, filters: Sequence[str | None], limit: int,
                       offset: int) -> list[asyncpg.Record]:
    """`filters`: (name or employer substring, region prefix, specialty prefix, status), LIKE-escaped."""
    return await conn.fetch(_LIST_EXPERTS, *filters, limit, offset)


async def count_experts(conn: asyncpg.Connection, filters: Sequence[str | None]) -> int:
    return await conn.fetchval(_COUNT_EXPERTS, *filters)


async def count_all_experts(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(_COUNT_ALL)


async def contacts(conn: asyncpg.Connection, expert_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(_CONTACTS, list(expert_ids))


async def copy_experts(conn: asyncpg.Connection, records: list[tuple], specialty_records: list[tuple]) -> None:
    """Bulk insert (COPY): `records` in EXPERT_COLUMNS order, `specialty_records` as (expert_id, code)."""
    await conn.copy_records_to_table("experts", records=records, columns=list(EXPERT_COLUMNS))
    await conn.copy_records_to_table("expert_specialties", records=specialty_records,
                                     columns=["expert_id", "specialty"])


# ---------------------------------------------------------------------------- leave and avoidances

_LEAVE = "SELECT day FROM expert_leave WHERE expert_id = $1 ORDER BY day"
_CLEAR_LEAVE = "DELETE FROM expert_leave WHERE expert_id = $1"
_ADD_LEAVE = """
INSERT INTO expert_leave (expert_id, day) SELECT $1, unnest($2::date[]) ON CONFLICT DO NOTHING"""
_REMOVE_LEAVE = "DELETE FROM expert_leave WHERE expert_id = $1 AND day = ANY($2::date[])"
_AVOIDANCES = """
SELECT a.id, a.organisation_code, o.name AS organisation_name, a.user_id, u.username, u.display_name, a.note,
       a.declared_at
FROM expert_avoidances a
LEFT JOIN organisations o ON o.credit_code = a.organisation_code
LEFT JOIN users u ON u.id = a.user_id
WHERE a.expert_id = $1 ORDER BY a.declared_at, a.id"""
_COUNT_AVOIDANCES = "SELECT count(*) FROM expert_avoidances WHERE expert_id = $1"
_INSERT_AVOIDANCE = """
INSERT INTO expert_avoidances (id, expert_id, organisation_code, user_id, note) VALUES ($1, $2, $3, $4, $5)"""
_DELETE_AVOIDANCE = "DELETE FROM expert_avoidances WHERE id = $1 AND expert_id = $2 RETURNING id"


async def leave(conn: asyncpg.Connection, expert_id: uuid.UUID) -> list[date]:
    return [r["day"] for r in await conn.fetch(_LEAVE, expert_id)]


async def clear_leave(conn: asyncpg.Connection, expert_id: uuid.UUID) -> None:
    await conn.execute(_CLEAR_LEAVE, expert_id)


async def add_leave(conn: asyncpg.Connection, expert_id: uuid.UUID, days: Sequence[date]) -> None:
    await conn.execute(_ADD_LEAVE, expert_id, list(days))


async def remove_leave(conn: asyncpg.Connection, expert_id: uuid.UUID, days: Sequence[date]) -> None:
    await conn.execute(_REMOVE_LEAVE, expert_id, list(days))


async def avoidances(conn: asyncpg.Connection, expert_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(_AVOIDANCES, expert_id)


async def count_avoidances(conn: asyncpg.Connection, expert_id: uuid.UUID) -> int:
    return await conn.fetchval(_COUNT_AVOIDANCES, expert_id)


async def insert_avoidance(conn: asyncpg.Connection, avoidance_id: uuid.UUID, expert_id: uuid.UUID,
                           organisation_code: str | None, user_id: uuid.UUID | None, note: str) -> None:
    await conn.execute(_INSERT_AVOIDANCE, avoidance_id, expert_id, organisation_code, user_id, note)


async def delete_avoidance(conn: asyncpg.Connection, avoidance_id: uuid.UUID, expert_id: uuid.UUID) -> bool:
    return await conn.fetchval(_DELETE_AVOIDANCE, avoidance_id, expert_id) is not None


# ---------------------------------------------------------------------------- credit

_SET_EXPERT_SCORE = "UPDATE experts SET credit_score = $2, updated_at = now() WHERE id = $1"
_SET_INTERMEDIARY_SCORE = "UPDATE intermediaries SET credit_score = $2, updated_at = now() WHERE id = $1"
_INSERT_CREDIT = """
INSERT INTO credit_events (expert_id, intermediary_id, delta, score_after, reason, evidence, recorded_by, log_index)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, recorded_at"""
_CREDIT_SELECT = """
SELECT c.id, c.delta, c.score_after, c.reason, c.evidence, c.recorded_by, u.display_name AS recorded_by_name,
       c.recorded_at, c.log_index
FROM credit_events c JOIN users u ON u.id = c.recorded_by"""
_EXPERT_CREDIT = _CREDIT_SELECT + " WHERE c.expert_id = $1 ORDER BY c.recorded_at DESC, c.id DESC LIMIT $2 OFFSET $3"
_INTERMEDIARY_CREDIT = (_CREDIT_SELECT
                        + " WHERE c.intermediary_id = $1 ORDER BY c.recorded_at DESC, c.id DESC LIMIT $2 OFFSET $3")
_COUNT_EXPERT_CREDIT = "SELECT count(*) FROM credit_events WHERE expert_id = $1"
_COUNT_INTERMEDIARY_CREDIT = "SELECT count(*) FROM credit_events WHERE intermediary_id = $1"


async def set_score(conn: asyncpg.Connection, subject: str, subject_id: uuid.UUID, score: int) -> None:
    """`subject`: "expert" or "intermediary"."""
    await conn.execute(_SET_EXPERT_SCORE if subject == "expert" else _SET_INTERMEDIARY_SCORE, subject_id, score)


async def insert_credit(conn: asyncpg.Connection, subject: str, subject_id: uuid.UUID, delta: int, score_after: int,
                        reason: str, evidence: str, recorded_by: uuid.UUID, log_index: int | None) -> asyncpg.Record:
    expert_id, intermediary_id = (subject_id, None) if subject == "expert" else (None, subject_id)
    return await conn.fetchrow(_INSERT_CREDIT, expert_id, intermediary_id, delta, score_after, reason, evidence,
                               recorded_by, log_index)


async def credit_events(conn: asyncpg.Connection, subject: str, subject_id: uuid.UUID, limit: int,
                        offset: int) -> list[asyncpg.Record]:
    query = _EXPERT_CREDIT if subject == "expert" else _INTERMEDIARY_CREDIT
    return await conn.fetch(query, subject_id, limit, offset)


async def count_credit_events(conn: asyncpg.Connection, subject: str, subject_id: uuid.UUID) -> int:
    query = _COUNT_EXPERT_CREDIT if subject == "expert" else _COUNT_INTERMEDIARY_CREDIT
    return await conn.fetchval(query, subject_id)


# ---------------------------------------------------------------------------- intermediaries

INTERMEDIARY_COLUMNS = ("id", "name", "credit_code", "region", "contact_name", "phone", "email", "status")
_INTERMEDIARY_SELECT = """
SELECT i.id, i.name, i.credit_code, i.region, i.contact_name, i.phone, i.email, i.status, i.credit_score, i.version,
       i.created_at, i.updated_at,
       ARRAY(SELECT c.category FROM intermediary_categories c WHERE c.intermediary_id = i.id ORDER BY 1) AS categories
FROM intermediaries i"""
_INTERMEDIARY = _INTERMEDIARY_SELECT + " WHERE i.id = $1"
_LOCK_INTERMEDIARY = "SELECT id, version, status, credit_score FROM intermediaries WHERE id = $1 FOR UPDATE"
_INSERT_INTERMEDIARY = """
INSERT INTO intermediaries (id, name, credit_code, region, contact_name, phone, email, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"""
_UPDATE_INTERMEDIARY = """
UPDATE intermediaries SET name = $3, credit_code = $4, region = $5, contact_name = $6, phone = $7, email = $8,
                          status = $9, version = version + 1, updated_at = now()
WHERE id = $1 AND version = $2 RETURNING version"""
_INSERT_CATEGORIES = "INSERT INTO intermediary_categories (intermediary_id, category) SELECT $1, unnest($2::text[])"
_DELETE_CATEGORIES = "DELETE FROM intermediary_categories WHERE intermediary_id = $1"
_INTERMEDIARY_FILTER = """
WHERE ($1::text IS NULL OR i.name LIKE '%' || $1 || '%' OR i.credit_code = upper($1))
  AND ($2::text IS NULL OR i.region LIKE $2 || '%')
  AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM intermediary_categories c
                                   WHERE c.intermediary_id = i.id AND c.category LIKE $3 || '%'))
  AND ($4::text IS NULL OR i.status = $4)"""
_LIST_INTERMEDIARIES = _INTERMEDIARY_SELECT + _INTERMEDIARY_FILTER + " ORDER BY i.name, i.id LIMIT $5 OFFSET $6"
_COUNT_INTERMEDIARIES = "SELECT count(*) FROM intermediaries i" + _INTERMEDIARY_FILTER
_COUNT_ALL_INTERMEDIARIES = "SELECT count(*) FROM intermediaries"
_INTERMEDIARY_CONTACTS = "SELECT id, name, contact_name, phone, email FROM intermediaries WHERE id = ANY($1::uuid[])"


async def intermediary(conn: asyncpg.Connection, intermediary_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_INTERMEDIARY, intermediary_id)


async def lock_intermediary(conn: asyncpg.Connection, intermediary_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_LOCK_INTERMEDIARY, intermediary_id)


async def insert_intermediary(conn: asyncpg.Connection, values: Sequence[Any], categories: Sequence[str]) -> None:
    """`values` in INTERMEDIARY_COLUMNS order."""
    await conn.execute(_INSERT_INTERMEDIARY, *values)
    await conn.execute(_INSERT_CATEGORIES, values[0], list(categories))


async def update_intermediary(conn: asyncpg.Connection, intermediary_id: uuid.UUID, version: int,
                              row: dict[str, Any]) -> int | None:
    return await conn.fetchval(_UPDATE_INTERMEDIARY, intermediary_id, version, row["name"], row["credit_code"],
                               row["region"], row["contact_name"], row["phone"], row["email"], row["status"])


async def replace_categories(conn: asyncpg.Connection, intermediary_id: uuid.UUID, codes: Sequence[str]) -> None:
    await conn.execute(_DELETE_CATEGORIES, intermediary_id)
    await conn.execute(_INSERT_CATEGORIES, intermediary_id, list(codes))


async def list_intermediaries(conn: asyncpg.Connection, filters: Sequence[str | None], limit: int,
                              offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(_LIST_INTERMEDIARIES, *filters, limit, offset)


async def count_intermediaries(conn: asyncpg.Connection, filters: Sequence[str | None]) -> int:
    return await conn.fetchval(_COUNT_INTERMEDIARIES, *filters)


async def count_all_intermediaries(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(_COUNT_ALL_INTERMEDIARIES)


async def intermediary_contacts(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(_INTERMEDIARY_CONTACTS, list(ids))


async def copy_intermediaries(conn: asyncpg.Connection, records: list[tuple], category_records: list[tuple]) -> None:
    await conn.copy_records_to_table("intermediaries", records=records, columns=list(INTERMEDIARY_COLUMNS))
    await conn.copy_records_to_table("intermediary_categories", records=category_records,
                                     columns=["intermediary_id", "category"])
