"""SQL of the opening hall: openings, bidders present, frozen bids, shares, objections, chat, confirmations."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

ENSURE_OPENING = """INSERT INTO openings (tender_id, step, step_at) VALUES ($1, 'waiting', $2)
ON CONFLICT (tender_id) DO NOTHING"""
SELECT_OPENING = "SELECT * FROM openings WHERE tender_id = $1"
SELECT_OPENING_FOR_UPDATE = "SELECT * FROM openings WHERE tender_id = $1 FOR UPDATE"
SET_STEP = "UPDATE openings SET step = $2, step_at = $3 WHERE tender_id = $1"
SET_WINDOW = "UPDATE openings SET window_ends_at = $2 WHERE tender_id = $1"
SET_OUTCOMES = "UPDATE openings SET lot_outcomes = $2, failure_reason = $3 WHERE tender_id = $1"
SET_RECORD = """UPDATE openings SET record = $2, record_sha256 = $3, record_at = $4, confirm_deadline = $5
WHERE tender_id = $1"""
SET_CLOSED = "UPDATE openings SET resumption_at = $2 WHERE tender_id = $1"

SIGN_IN = """INSERT INTO opening_bidders (tender_id, organisation_id, signed_in_by, signed_in_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (tender_id, organisation_id) DO UPDATE SET signed_in_by = $3, signed_in_at = $4
WHERE opening_bidders.signed_in_at IS NULL"""
ADD_BIDDER = """INSERT INTO opening_bidders (tender_id, organisation_id) VALUES ($1, $2)
ON CONFLICT (tender_id, organisation_id) DO NOTHING"""
SELECT_BIDDERS = """
SELECT b.*, o.name, o.credit_code FROM opening_bidders b JOIN organisations o ON o.id = b.organisation_id
WHERE b.tender_id = $1 ORDER BY b.signed_in_at NULLS LAST, o.name"""
SELECT_BIDDER = "SELECT * FROM opening_bidders WHERE tender_id = $1 AND organisation_id = $2"
SET_DEPOSIT = """UPDATE opening_bidders SET deposit = $3, deposit_note = $4, deposit_checked_at = $5
WHERE tender_id = $1 AND organisation_id = $2"""

FREEZE_BIDS = """
INSERT INTO opening_bids (bid_id, tender_id, lot_code, organisation_id)
SELECT id, tender_id, lot_code, organisation_id FROM bids WHERE tender_id = $1 AND status = 'active'
ON CONFLICT (bid_id) DO NOTHING
RETURNING organisation_id"""
SELECT_BIDS = """
SELECT ob.*, b.ciphertext_sha256, b.size, b.received_at, b.upload_id, b.log_index, b.manifest_sha256,
       o.name AS bidder, o.credit_code,
       (SELECT count(*) FROM opening_shares s WHERE s.bid_id = ob.bid_id) AS shares_released
FROM opening_bids ob JOIN bids b ON b.id = ob.bid_id JOIN organisations o ON o.id = ob.organisation_id
JOIN lots l ON l.tender_id = ob.tender_id AND l.code = ob.lot_code
WHERE ob.tender_id = $1 ORDER BY l.position, b.received_at, ob.bid_id"""
SELECT_MANIFESTS = """SELECT ob.bid_id, u.manifest FROM opening_bids ob JOIN bids b ON b.id = ob.bid_id
JOIN uploads u ON u.id = b.upload_id WHERE ob.bid_id = ANY($1::uuid[])"""
SELECT_BID = """
SELECT ob.*, b.ciphertext_sha256, b.size, b.received_at, b.upload_id, b.receipt, u.manifest, u.key_set_id
FROM opening_bids ob JOIN bids b ON b.id = ob.bid_id JOIN uploads u ON u.id = b.upload_id
WHERE ob.bid_id = $1"""
EXCLUDE_BIDS = """UPDATE opening_bids ob SET status = 'excluded', reason = $3
WHERE ob.tender_id = $1 AND ob.organisation_id = ANY($2::uuid[]) AND ob.status = 'listed'"""
EXCLUDE_LOT = """UPDATE opening_bids SET status = 'excluded', reason = $3
WHERE tender_id = $1 AND lot_code = $2 AND status = 'listed'"""
RECORD_FAILURE = """UPDATE opening_bids SET attempts = attempts + 1, last_failure = $2
WHERE bid_id = $1 AND status IN ('listed', 'awaiting_custodians')"""
MARK_OPENED = """
UPDATE opening_bids ob SET status = 'opened', opened_by = o.opened_by, opened_at = $1, summary = o.summary,
       content_key = o.content_key, files = o.files::jsonb, last_failure = NULL
FROM unnest($2::uuid[], $3::text[], $4::jsonb[], $5::bytea[], $6::text[], $7::text[])
     AS o(bid_id, opened_by, summary, content_key, files, from_status)
WHERE ob.bid_id = o.bid_id AND ob.status = o.from_status
RETURNING ob.bid_id"""
AWAIT_CUSTODIANS = """UPDATE opening_bids SET status = 'awaiting_custodians'
WHERE tender_id = $1 AND status = 'listed' RETURNING bid_id"""
VOID_REST = """UPDATE opening_bids SET status = 'void', reason = $3
WHERE tender_id = $1 AND status = ANY($2::text[]) RETURNING bid_id"""
COUNT_STATUS = "SELECT count(*) FROM opening_bids WHERE tender_id = $1 AND status = $2"
NEXT_TO_READ = """
SELECT ob.bid_id FROM opening_bids ob JOIN bids b ON b.id = ob.bid_id JOIN lots l ON l.tender_id = ob.tender_id AND l.code = ob.lot_code
WHERE ob.tender_id = $1 AND ob.status = 'opened' AND ob.read_order IS NULL
ORDER BY l.position, b.received_at, ob.bid_id LIMIT 1"""
# Read out the next `$2` opened bids in one statement, numbered on from `$3` in read-out order.
READ_NEXT = """
WITH ordered AS (
    SELECT ob.bid_id, row_number() OVER (ORDER BY l.position, b.received_at, ob.bid_id) AS n
    FROM opening_bids ob JOIN bids b ON b.id = ob.bid_id JOIN lots l ON l.tender_id = ob.tender_id AND l.code = ob.lot_code
    WHERE ob.tender_id = $1 AND ob.status = 'opened' AND ob.read_order IS NULL
    ORDER BY n LIMIT $2)
UPDATE opening_bids ob SET read_order = $3 + o.n - 1, read_at = $4 FROM ordered o WHERE ob.bid_id = o.bid_id
RETURNING ob.bid_id, ob.read_order"""
ADVANCE_READ_ORDER = "UPDATE openings SET next_read_order = next_read_order + $2 WHERE tender_id = $1 RETURNING next_read_order"

INSERT_SHARES = """INSERT INTO opening_shares (bid_id, position, custodian_id, share, released_at)
SELECT b, $2, $3, s, $4 FROM unnest($1::uuid[], $5::bytea[]) AS x(b, s)"""
SELECT_BID_STATUSES = "SELECT bid_id, tender_id, status FROM opening_bids WHERE bid_id = ANY($1::uuid[])"
# Everything opening a waiting bid needs, with the shares released for it (in release order).
SELECT_BIDS_WITH_SHARES = """
SELECT ob.bid_id, ob.lot_code, b.ciphertext_sha256, b.upload_id, b.receipt, u.manifest,
       array_agg(s.share ORDER BY s.released_at, s.position) AS shares
FROM opening_bids ob JOIN bids b ON b.id = ob.bid_id JOIN uploads u ON u.id = b.upload_id
JOIN opening_shares s ON s.bid_id = ob.bid_id
WHERE ob.bid_id = ANY($1::uuid[]) GROUP BY ob.bid_id, b.id, u.id"""
SELECT_RELEASED_BY = "SELECT bid_id FROM opening_shares WHERE position = $2 AND bid_id = ANY($1::uuid[])"
READY_FOR_CUSTODIANS = """
SELECT ob.bid_id FROM opening_bids ob
WHERE ob.tender_id = $1 AND ob.status = 'awaiting_custodians'
  AND (SELECT count(*) FROM opening_shares s WHERE s.bid_id = ob.bid_id) >= $2"""
OPENINGS_AT_CUSTODIANS = "SELECT tender_id FROM openings WHERE step = 'custodians'"

INSERT_OBJECTION = """INSERT INTO opening_objections (tender_id, organisation_id, raised_by, text, raised_at)
VALUES ($1, $2, $3, $4, $5) RETURNING id"""
SELECT_OBJECTIONS = """
SELECT x.*, o.name AS organisation FROM opening_objections x JOIN organisations o ON o.id = x.organisation_id
WHERE x.tender_id = $1 ORDER BY x.id"""
SELECT_OBJECTION_FOR_UPDATE = "SELECT * FROM opening_objections WHERE id = $1 AND tender_id = $2 FOR UPDATE"
ANSWER_OBJECTION = "UPDATE opening_objections SET answer = $2, answered_by = $3, answered_at = $4 WHERE id = $1"
COUNT_UNANSWERED = "SELECT count(*) FROM opening_objections WHERE tender_id = $1 AND answer IS NULL"

INSERT_CHAT = """INSERT INTO opening_chat (tender_id, author_id, organisation_id, from_host, text, sent_at)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"""
LAST_CHAT_AT = "SELECT max(sent_at) FROM opening_chat WHERE tender_id = $1 AND author_id = $2"
SELECT_CHAT = """
SELECT c.*, o.name AS organisation FROM opening_chat c LEFT JOIN organisations o ON o.id = c.organisation_id
WHERE c.tender_id = $1 ORDER BY c.id DESC LIMIT $2"""
HIDE_CHAT = """UPDATE opening_chat SET hidden_at = $3, hidden_by = $4
WHERE id = $1 AND tender_id = $2 AND hidden_at IS NULL RETURNING id"""

INSERT_CONFIRMATION = """INSERT INTO opening_confirmations
(tender_id, organisation_id, record_sha256, signature, confirmed_by, confirmed_at) VALUES ($1, $2, $3, $4, $5, $6)"""
SELECT_CONFIRMATIONS = """
SELECT c.*, o.name FROM opening_confirmations c JOIN organisations o ON o.id = c.organisation_id
WHERE c.tender_id = $1 ORDER BY c.confirmed_at"""
SELECT_ORG_SIGNING_KEY = """
SELECT k.sign_spki FROM opening_bids ob JOIN bids b ON b.id = ob.bid_id JOIN uploads u ON u.id = b.upload_id
JOIN key_sets k ON k.id = u.key_set_id
WHERE ob.tender_id = $1 AND ob.organisation_id = $2 ORDER BY b.received_at DESC LIMIT 1"""

ORG_HAS_ACTIVE_BID = "SELECT EXISTS (SELECT 1 FROM bids WHERE tender_id = $1 AND organisation_id = $2 AND status = 'active')"
ORG_HAS_OPENING_BID = "SELECT EXISTS (SELECT 1 FROM opening_bids WHERE tender_id = $1 AND organisation_id = $2)"
CUSTODIAN_POSITION = "SELECT position FROM tender_custodians WHERE tender_id = $1 AND custodian_id = $2"
SELECT_TIMELINE = """SELECT id, kind, payload, created_at FROM events
WHERE topic = $1 AND kind LIKE 'hall.%' AND kind <> 'hall.chat' ORDER BY id DESC LIMIT $2"""
LAST_EVENT_ID = "SELECT coalesce(max(id), 0) FROM events WHERE topic = $1"


async def ensure_opening(conn: asyncpg.Connection, tender_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(ENSURE_OPENING, tender_id, at)


async def opening(conn: asyncpg.Connection, tender_id: uuid.UUID, *, for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_OPENING_FOR_UPDATE if for_update else SELECT_OPENING, tender_id)


async def set_step(conn: asyncpg.Connection, tender_id: uuid.UUID, step: str, at: datetime) -> None:
    await conn.execute(SET_STEP, tender_id, step, at)


async def set_window(conn: asyncpg.Connection, tender_id: uuid.UUID, ends_at: datetime) -> None:
    await conn.execute(SET_WINDOW, tender_id, ends_at)


async def set_outcomes(conn: asyncpg.Connection, tender_id: uuid.UUID, outcomes: dict[str, Any], failure: str | None) -> None:
    await conn.execute(SET_OUTCOMES, tender_id, outcomes, failure)


async def set_record(conn: asyncpg.Connection, tender_id: uuid.UUID, record: dict[str, Any], sha256: str,
                     at: datetime, confirm_deadline: datetime) -> None:
    await conn.execute(SET_RECORD, tender_id, record, sha256, at, confirm_deadline)


async def set_resumption(conn: asyncpg.Connection, tender_id: uuid.UUID, resumption_at: datetime | None) -> None:
    await conn.execute(SET_CLOSED, tender_id, resumption_at)


async def sign_in(conn: asyncpg.Connection, tender_id: uuid.UUID, org: uuid.UUID, user: uuid.UUID, at: datetime) -> bool:
    """True when this call signed the organisation in (False: it already was)."""
    return (await conn.execute(SIGN_IN, tender_id, org, user, at)) != "INSERT 0 0"


async def add_bidder(conn: asyncpg.Connection, tender_id: uuid.UUID, org: uuid.UUID) -> None:
    await conn.execute(ADD_BIDDER, tender_id, org)


async def bidders(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_BIDDERS, tender_id)


async def bidder(conn: asyncpg.Connection, tender_id: uuid.UUID, org: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_BIDDER, tender_id, org)


async def set_deposit(conn: asyncpg.Connection, tender_id: uuid.UUID, org: uuid.UUID, deposit: str, note: str,
                      at: datetime) -> bool:
    return (await conn.execute(SET_DEPOSIT, tender_id, org, deposit, note, at)) == "UPDATE 1"


async def freeze_bids(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["organisation_id"] for r in await conn.fetch(FREEZE_BIDS, tender_id)]


async def bids(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_BIDS, tender_id)


async def manifests(conn: asyncpg.Connection, bid_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    return {r["bid_id"]: r["manifest"] for r in await conn.fetch(SELECT_MANIFESTS, bid_ids)} if bid_ids else {}


async def bid(conn: asyncpg.Connection, bid_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_BID, bid_id)


async def exclude_bids(conn: asyncpg.Connection, tender_id: uuid.UUID, orgs: list[uuid.UUID], reason: str) -> None:
    await conn.execute(EXCLUDE_BIDS, tender_id, orgs, reason)


async def exclude_lot(conn: asyncpg.Connection, tender_id: uuid.UUID, lot: str, reason: str) -> None:
    await conn.execute(EXCLUDE_LOT, tender_id, lot, reason)


async def record_failure(conn: asyncpg.Connection, bid_id: uuid.UUID, failure: str) -> None:
    await conn.execute(RECORD_FAILURE, bid_id, failure)


async def mark_opened(conn: asyncpg.Connection, at: datetime, opened: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Mark each {bid_id, by, summary, key, files, from_status} opened if still in from_status; the ids marked."""
    rows = await conn.fetch(MARK_OPENED, at, [o["bid_id"] for o in opened], [o["by"] for o in opened],
                            [o["summary"] for o in opened], [o["key"] for o in opened],
                            # As JSON text: a list inside a jsonb[] argument would be taken for an array dimension.
                            [json.dumps(o["files"]) for o in opened], [o["from_status"] for o in opened])
    return {r["bid_id"] for r in rows}


async def await_custodians(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["bid_id"] for r in await conn.fetch(AWAIT_CUSTODIANS, tender_id)]


async def void_rest(conn: asyncpg.Connection, tender_id: uuid.UUID, statuses: list[str], reason: str) -> list[uuid.UUID]:
    return [r["bid_id"] for r in await conn.fetch(VOID_REST, tender_id, statuses, reason)]


async def count_status(conn: asyncpg.Connection, tender_id: uuid.UUID, status: str) -> int:
    return await conn.fetchval(COUNT_STATUS, tender_id, status)


async def next_to_read(conn: asyncpg.Connection, tender_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval(NEXT_TO_READ, tender_id)


async def read_next(conn: asyncpg.Connection, tender_id: uuid.UUID, limit: int, first_order: int,
                    at: datetime) -> dict[uuid.UUID, int]:
    """Give the next `limit` unread opened bids their read order; {bid_id: order}."""
    rows = await conn.fetch(READ_NEXT, tender_id, limit, first_order, at)
    if rows:
        await conn.execute(ADVANCE_READ_ORDER, tender_id, len(rows))
    return {r["bid_id"]: r["read_order"] for r in rows}


async def insert_shares(conn: asyncpg.Connection, shares: dict[uuid.UUID, bytes], position: int,
                        custodian: uuid.UUID, at: datetime) -> None:
    await conn.execute(INSERT_SHARES, list(shares), position, custodian, at, list(shares.values()))


async def bid_statuses(conn: asyncpg.Connection, bid_ids: list[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    return {r["bid_id"]: r for r in await conn.fetch(SELECT_BID_STATUSES, bid_ids)}


async def bids_with_shares(conn: asyncpg.Connection, bid_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_BIDS_WITH_SHARES, bid_ids)


async def released_by(conn: asyncpg.Connection, bid_ids: list[uuid.UUID], position: int) -> list[uuid.UUID]:
    return [r["bid_id"] for r in await conn.fetch(SELECT_RELEASED_BY, bid_ids, position)]


async def ready_for_custodians(conn: asyncpg.Connection, tender_id: uuid.UUID, k: int) -> list[uuid.UUID]:
    return [r["bid_id"] for r in await conn.fetch(READY_FOR_CUSTODIANS, tender_id, k)]


async def openings_at_custodians(conn: asyncpg.Connection) -> list[uuid.UUID]:
    return [r["tender_id"] for r in await conn.fetch(OPENINGS_AT_CUSTODIANS)]


async def insert_objection(conn: asyncpg.Connection, tender_id: uuid.UUID, org: uuid.UUID, user: uuid.UUID,
                           text: str, at: datetime) -> int:
    return await conn.fetchval(INSERT_OBJECTION, tender_id, org, user, text, at)


async def objections(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_OBJECTIONS, tender_id)


async def objection_for_update(conn: asyncpg.Connection, objection_id: int, tender_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_OBJECTION_FOR_UPDATE, objection_id, tender_id)


async def answer_objection(conn: asyncpg.Connection, objection_id: int, answer: str, user: uuid.UUID, at: datetime) -> None:
    await conn.execute(ANSWER_OBJECTION, objection_id, answer, user, at)


async def count_unanswered(conn: asyncpg.Connection, tender_id: uuid.UUID) -> int:
    return await conn.fetchval(COUNT_UNANSWERED, tender_id)


async def insert_chat(conn: asyncpg.Connection, tender_id: uuid.UUID, author: uuid.UUID, org: uuid.UUID | None,
                      from_host: bool, text: str, at: datetime) -> int:
    return await conn.fetchval(INSERT_CHAT, tender_id, author, org, from_host, text, at)


async def last_chat_at(conn: asyncpg.Connection, tender_id: uuid.UUID, author: uuid.UUID) -> datetime | None:
    return await conn.fetchval(LAST_CHAT_AT, tender_id, author)


async def chat(conn: asyncpg.Connection, tender_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return list(reversed(await conn.fetch(SELECT_CHAT, tender_id, limit)))


async def hide_chat(conn: asyncpg.Connection, message_id: int, tender_id: uuid.UUID, at: datetime, user: uuid.UUID) -> bool:
    return await conn.fetchval(HIDE_CHAT, message_id, tender_id, at, user) is not None


async def insert_confirmation(conn: asyncpg.Connection, tender_id: uuid.UUID, org: uuid.UUID, sha256: str,
                              signature: str, user: uuid.UUID, at: datetime) -> None:
    await conn.execute(INSERT_CONFIRMATION, tender_id, org, sha256, signature, user, at)


async def confirmations(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_CONFIRMATIONS, tender_id)


async def org_signing_key(conn: asyncpg.Connection, tender_id: uuid.UUID, org: uuid.UUID) -> bytes | None:
    value = await conn.fetchval(SELECT_ORG_SIGNING_KEY, tender_id, org)
    return bytes(value) if value is not None else None


async def org_has_active_bid(conn: asyncpg.Connection, tender_id: uuid.UUID, org: uuid.UUID) -> bool:
    return await conn.fetchval(ORG_HAS_ACTIVE_BID, tender_id, org)


async def org_has_opening_bid(conn: asyncpg.Connection, tender_id: uuid.UUID, org: uuid.UUID) -> bool:
    return await conn.fetchval(ORG_HAS_OPENING_BID, tender_id, org)


async def custodian_position(conn: asyncpg.Connection, tender_id: uuid.UUID, user: uuid.UUID) -> int | None:
    return await conn.fetchval(CUSTODIAN_POSITION, tender_id, user)


async def timeline(conn: asyncpg.Connection, topic: str, limit: int) -> list[asyncpg.Record]:
    return list(reversed(await conn.fetch(SELECT_TIMELINE, topic, limit)))


async def last_event_id(conn: asyncpg.Connection, topic: str) -> int:
    return await conn.fetchval(LAST_EVENT_ID, topic)
