"""The trading package's SQL: parameterised constants and one small async function per query."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from trading.tenders import TenderDraft

# ---------------------------------------------------------------------------- tenders

INSERT_TENDER = """
INSERT INTO tenders (id, code, name, tenderer, agent_id, budget, control_price, evaluation_method, deadline,
                     decryption_minutes, decryption_rule, threshold, summary_fields,
                     min_bidders, show_bid_count, hall_opens_minutes, confirm_minutes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
"""
INSERT_LOT = "INSERT INTO lots (tender_id, code, name, budget, position) VALUES ($1, $2, $3, $4, $5)"
INSERT_CUSTODIAN = "INSERT INTO tender_custodians (tender_id, position, custodian_id) VALUES ($1, $2, $3)"

SELECT_TENDER = "SELECT * FROM tenders WHERE id = $1"
SELECT_TENDER_FOR_UPDATE = "SELECT * FROM tenders WHERE id = $1 FOR UPDATE"
# FOR SHARE: a bid's completion and a deadline extension serialise on the tender row.
SELECT_TENDER_FOR_SHARE = "SELECT * FROM tenders WHERE id = $1 FOR SHARE"
SELECT_LOTS = "SELECT code, name, budget FROM lots WHERE tender_id = $1 ORDER BY position"

SELECT_CUSTODIANS = """
SELECT tc.position, tc.custodian_id, tc.key_set_id, u.display_name, u.roles,
       k.decrypt_spki, k.decrypt_key_id
FROM tender_custodians tc
JOIN users u ON u.id = tc.custodian_id
LEFT JOIN key_sets k ON k.id = tc.key_set_id
WHERE tc.tender_id = $1 ORDER BY tc.position
"""
# The custodians' current active key sets, to pin at publication.
SELECT_CUSTODIAN_ACTIVE_KEYS = """
SELECT tc.position, tc.custodian_id, u.roles, u.disabled, k.id AS key_set_id
FROM tender_custodians tc
JOIN users u ON u.id = tc.custodian_id
LEFT JOIN key_sets k ON k.custodian_id = tc.custodian_id AND k.revoked_at IS NULL
WHERE tc.tender_id = $1 ORDER BY tc.position
"""
PIN_CUSTODIAN_KEY = "UPDATE tender_custodians SET key_set_id = $3 WHERE tender_id = $1 AND position = $2"
PUBLISH_TENDER = "UPDATE tenders SET status = 'published', published_at = $2 WHERE id = $1"
SELECT_AGENT_ORGANISATION = """SELECT o.name, o.credit_code FROM tenders t JOIN users u ON u.id = t.agent_id
JOIN organisations o ON o.id = u.organisation_id WHERE t.id = $1"""
SELECT_USERS_ROLES = "SELECT id, roles FROM users WHERE id = ANY($1::uuid[])"

LIST_TENDERS = """
SELECT t.id, t.code, t.name, t.tenderer, t.status, t.deadline, t.budget, t.evaluation_method, t.version,
       count(*) OVER () AS total
FROM tenders t
WHERE t.status = 'published' OR t.agent_id = $1
ORDER BY t.deadline DESC, t.id
LIMIT $2 OFFSET $3
"""

COUNT_TENDERS = "SELECT count(*) FROM tenders WHERE status = 'published' OR agent_id = $1"
SELECT_CUSTODIAN_CHOICES = """
SELECT u.id, u.display_name, u.username,
       EXISTS (SELECT 1 FROM key_sets k WHERE k.custodian_id = u.id AND k.revoked_at IS NULL) AS has_keys
FROM users u WHERE 'custodian' = ANY (u.roles) AND NOT u.disabled
ORDER BY u.display_name
"""

INSERT_CHANGE = """
INSERT INTO tender_changes (tender_id, version, kind, detail, changed_by) VALUES ($1, $2, $3, $4, $5)
RETURNING id, changed_at
"""
SELECT_CHANGES = "SELECT version, kind, detail, changed_at FROM tender_changes WHERE tender_id = $1 ORDER BY version"
BUMP_VERSION = "UPDATE tenders SET version = version + 1, deadline = coalesce($2, deadline) WHERE id = $1 RETURNING version"

COUNT_ACTIVE_BIDS = "SELECT count(*) FROM bids WHERE tender_id = $1 AND status = 'active'"
SELECT_ACTIVE_BID_ORGS = "SELECT DISTINCT organisation_id FROM bids WHERE tender_id = $1 AND status = 'active'"

# ---------------------------------------------------------------------------- keys and organisations

SELECT_ORG_ACTIVE_KEYS = """
SELECT k.id, k.sign_spki, k.sign_key_id, k.decrypt_spki, k.decrypt_key_id, o.credit_code
FROM organisations o
LEFT JOIN key_sets k ON k.organisation_id = o.id AND k.revoked_at IS NULL
WHERE o.id = $1
"""
SELECT_KEY_SET = "SELECT * FROM key_sets WHERE id = $1"

# ---------------------------------------------------------------------------- uploads

SELECT_UPLOAD_BY_DIGEST = "SELECT id FROM uploads WHERE manifest_sha256 = $1"
SELECT_UPLOAD_EXISTS = "SELECT 1 FROM uploads WHERE id = $1"
INSERT_UPLOAD = """
INSERT INTO uploads (id, tender_id, lot_code, organisation_id, user_id, manifest, manifest_sha256, signature,
                     key_set_id, length)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""
SELECT_UPLOAD = "SELECT * FROM uploads WHERE id = $1"
# At most one (the unique index uploads_one_receiving_key, migration 0005).
SELECT_RECEIVING_UPLOAD = """SELECT id FROM uploads
                             WHERE tender_id = $1 AND lot_code = $2 AND organisation_id = $3 AND status = 'receiving'"""
SELECT_UPLOAD_FOR_UPDATE = "SELECT * FROM uploads WHERE id = $1 FOR UPDATE"
# A new upload replaces the organisation's earlier one for the lot unless a PATCH holds it now.
REPLACE_IDLE_RECEIVING = """UPDATE uploads SET status = 'failed', failure = 'replaced', updated_at = now()
                            WHERE tender_id = $1 AND lot_code = $2 AND organisation_id = $3 AND status = 'receiving'
                              AND (claimed_until IS NULL OR claimed_until < clock_timestamp())
                            RETURNING id"""
SET_OFFSET = """UPDATE uploads SET "offset" = $2, updated_at = now(), claimed_until = clock_timestamp() + $4::interval
                WHERE id = $1 AND status = 'receiving' AND claim_token = $3"""
CLAIM_UPLOAD = """UPDATE uploads SET claim_token = $2, claimed_until = clock_timestamp() + $3::interval
                  WHERE id = $1 AND (claimed_until IS NULL OR claimed_until < clock_timestamp()) RETURNING id"""
RENEW_CLAIM = """UPDATE uploads SET claimed_until = clock_timestamp() + $3::interval WHERE id = $1 AND claim_token = $2"""
# Uploads still receiving when their tender's deadline passed can never complete.
EXPIRE_UPLOADS = """UPDATE uploads u SET status = 'failed', failure = 'deadline_passed', updated_at = now()
                    FROM tenders t
                    WHERE u.tender_id = t.id AND u.status = 'receiving' AND t.deadline <= clock_timestamp()
                      AND (u.claimed_until IS NULL OR u.claimed_until < clock_timestamp())
                    RETURNING u.id"""
RELEASE_CLAIM = "UPDATE uploads SET claim_token = NULL, claimed_until = NULL WHERE id = $1 AND claim_token = $2"
FAIL_UPLOAD = "UPDATE uploads SET status = 'failed', failure = $2, updated_at = now() WHERE id = $1"
COMPLETE_UPLOAD = """UPDATE uploads SET status = 'complete', "offset" = length, updated_at = now() WHERE id = $1"""

# ---------------------------------------------------------------------------- bids

SUPERSEDE_ACTIVE = """
UPDATE bids SET status = 'superseded'
WHERE tender_id = $1 AND lot_code = $2 AND organisation_id = $3 AND status = 'active'
RETURNING id
"""
INSERT_BID = """
INSERT INTO bids (id, upload_id, tender_id, lot_code, organisation_id, submitted_by, ciphertext_sha256, size,
                  manifest_sha256, tender_version, received_at, log_index, receipt)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
"""
SELECT_BID = "SELECT * FROM bids WHERE id = $1"
SELECT_BID_FOR_UPDATE = "SELECT * FROM bids WHERE id = $1 FOR UPDATE"
SELECT_BID_BY_UPLOAD = "SELECT * FROM bids WHERE upload_id = $1"
WITHDRAW_BID = "UPDATE bids SET status = 'withdrawn', withdrawn_at = $2 WHERE id = $1"
LIST_ORG_BIDS = """
SELECT b.*, t.version AS current_tender_version,
       coalesce(array_agg(c.tender_version) FILTER (WHERE c.tender_version IS NOT NULL), '{}') AS confirmed_versions
FROM bids b JOIN tenders t ON t.id = b.tender_id
LEFT JOIN bid_confirmations c ON c.bid_id = b.id
WHERE b.organisation_id = $1 AND ($2::uuid IS NULL OR b.tender_id = $2)
GROUP BY b.id, t.version
ORDER BY b.received_at DESC
"""
SELECT_CONFIRMED_VERSIONS = "SELECT tender_version FROM bid_confirmations WHERE bid_id = $1"
INSERT_CONFIRMATION = """
INSERT INTO bid_confirmations (bid_id, tender_version, signature, confirmed_by) VALUES ($1, $2, $3, $4)
ON CONFLICT (bid_id, tender_version) DO NOTHING
RETURNING confirmed_at
"""


async def insert_tender(conn: asyncpg.Connection, tender_id: uuid.UUID, agent_id: uuid.UUID, d: TenderDraft) -> None:
    await conn.execute(INSERT_TENDER, tender_id, d.code, d.name, d.tenderer, agent_id, d.budget, d.control_price,
                       d.evaluation_method, d.deadline, d.decryption_minutes, d.decryption_rule, d.threshold,
                       list(d.summary_fields), d.min_bidders, d.show_bid_count, d.hall_opens_minutes,
                       d.confirm_minutes)
    await conn.executemany(INSERT_LOT, [(tender_id, l.code, l.name, l.budget, i) for i, l in enumerate(d.lots)])
    await conn.executemany(INSERT_CUSTODIAN, [(tender_id, i + 1, c) for i, c in enumerate(d.custodians)])


async def tender(conn: asyncpg.Connection, tender_id: uuid.UUID, lock: str | None = None) -> asyncpg.Record | None:
    sql = {None: SELECT_TENDER, "update": SELECT_TENDER_FOR_UPDATE, "share": SELECT_TENDER_FOR_SHARE}[lock]
    return await conn.fetchrow(sql, tender_id)


async def lots(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_LOTS, tender_id)


async def custodians(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_CUSTODIANS, tender_id)


async def custodian_active_keys(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_CUSTODIAN_ACTIVE_KEYS, tender_id)


async def pin_custodian_key(conn: asyncpg.Connection, tender_id: uuid.UUID, position: int, key_set_id: uuid.UUID) -> None:
    await conn.execute(PIN_CUSTODIAN_KEY, tender_id, position, key_set_id)


async def publish(conn: asyncpg.Connection, tender_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(PUBLISH_TENDER, tender_id, at)


async def agent_organisation(conn: asyncpg.Connection, tender_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_AGENT_ORGANISATION, tender_id)


async def users_roles(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    return {r["id"]: list(r["roles"]) for r in await conn.fetch(SELECT_USERS_ROLES, ids)}


async def list_tenders(conn: asyncpg.Connection, viewer: uuid.UUID | None, limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_TENDERS, viewer, limit, offset)


async def count_tenders(conn: asyncpg.Connection, viewer: uuid.UUID | None) -> int:
    return await conn.fetchval(COUNT_TENDERS, viewer)


async def custodian_choices(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_CUSTODIAN_CHOICES)


async def add_change(conn: asyncpg.Connection, tender_id: uuid.UUID, version: int, kind: str,
                     detail: dict[str, Any], by: uuid.UUID) -> asyncpg.Record:
    return await conn.fetchrow(INSERT_CHANGE, tender_id, version, kind, detail, by)


async def changes(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_CHANGES, tender_id)


async def bump_version(conn: asyncpg.Connection, tender_id: uuid.UUID, deadline: datetime | None) -> int:
    return await conn.fetchval(BUMP_VERSION, tender_id, deadline)


async def count_active_bids(conn: asyncpg.Connection, tender_id: uuid.UUID) -> int:
    return await conn.fetchval(COUNT_ACTIVE_BIDS, tender_id)


async def active_bid_orgs(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["organisation_id"] for r in await conn.fetch(SELECT_ACTIVE_BID_ORGS, tender_id)]


async def org_active_keys(conn: asyncpg.Connection, organisation_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_ORG_ACTIVE_KEYS, organisation_id)


async def key_set(conn: asyncpg.Connection, key_set_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_KEY_SET, key_set_id)


async def upload_by_digest(conn: asyncpg.Connection, manifest_sha256: str) -> uuid.UUID | None:
    return await conn.fetchval(SELECT_UPLOAD_BY_DIGEST, manifest_sha256)


async def upload_exists(conn: asyncpg.Connection, upload_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(SELECT_UPLOAD_EXISTS, upload_id))


async def insert_upload(conn: asyncpg.Connection, *, upload_id: uuid.UUID, tender_id: uuid.UUID, lot: str,
                        organisation_id: uuid.UUID, user_id: uuid.UUID, manifest: dict[str, Any],
                        manifest_sha256: str, signature: str, key_set_id: uuid.UUID, length: int) -> None:
    await conn.execute(INSERT_UPLOAD, upload_id, tender_id, lot, organisation_id, user_id, manifest,
                       manifest_sha256, signature, key_set_id, length)


async def replace_idle_receiving(conn: asyncpg.Connection, tender_id: uuid.UUID, lot: str,
                                 organisation_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["id"] for r in await conn.fetch(REPLACE_IDLE_RECEIVING, tender_id, lot, organisation_id)]


async def receiving_upload(conn: asyncpg.Connection, tender_id: uuid.UUID, lot: str,
                           organisation_id: uuid.UUID) -> uuid.UUID | None:
    """The organisation's upload still receiving for this lot, if any."""
    return await conn.fetchval(SELECT_RECEIVING_UPLOAD, tender_id, lot, organisation_id)


async def upload(conn: asyncpg.Connection, upload_id: uuid.UUID, *, for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_UPLOAD_FOR_UPDATE if for_update else SELECT_UPLOAD, upload_id)


async def set_offset(conn: asyncpg.Connection, upload_id: uuid.UUID, offset: int, claim: uuid.UUID,
                     lease: timedelta) -> bool:
    """Record the offset (renewing the claim); False if this PATCH no longer holds the upload."""
    return await conn.execute(SET_OFFSET, upload_id, offset, claim, lease) == "UPDATE 1"


async def claim_upload(conn: asyncpg.Connection, upload_id: uuid.UUID, claim: uuid.UUID, lease: timedelta) -> bool:
    return await conn.fetchval(CLAIM_UPLOAD, upload_id, claim, lease) is not None


async def renew_claim(conn: asyncpg.Connection, upload_id: uuid.UUID, claim: uuid.UUID, lease: timedelta) -> bool:
    return await conn.execute(RENEW_CLAIM, upload_id, claim, lease) == "UPDATE 1"


async def expire_uploads(conn: asyncpg.Connection) -> list[uuid.UUID]:
    return [r["id"] for r in await conn.fetch(EXPIRE_UPLOADS)]


async def release_claim(conn: asyncpg.Connection, upload_id: uuid.UUID, claim: uuid.UUID) -> None:
    await conn.execute(RELEASE_CLAIM, upload_id, claim)


async def fail_upload(conn: asyncpg.Connection, upload_id: uuid.UUID, failure: str) -> None:
    await conn.execute(FAIL_UPLOAD, upload_id, failure)


async def complete_upload(conn: asyncpg.Connection, upload_id: uuid.UUID) -> None:
    await conn.execute(COMPLETE_UPLOAD, upload_id)


async def supersede_active(conn: asyncpg.Connection, tender_id: uuid.UUID, lot: str, org: uuid.UUID) -> list[uuid.UUID]:
    return [r["id"] for r in await conn.fetch(SUPERSEDE_ACTIVE, tender_id, lot, org)]


async def insert_bid(conn: asyncpg.Connection, *, bid_id: uuid.UUID, upload_id: uuid.UUID, tender_id: uuid.UUID,
                     lot: str, organisation_id: uuid.UUID, user_id: uuid.UUID, ciphertext_sha256: str, size: int,
                     manifest_sha256: str, tender_version: int, received_at: datetime, log_index: int,
                     receipt: dict[str, Any]) -> None:
    await conn.execute(INSERT_BID, bid_id, upload_id, tender_id, lot, organisation_id, user_id, ciphertext_sha256,
                       size, manifest_sha256, tender_version, received_at, log_index, receipt)


async def bid(conn: asyncpg.Connection, bid_id: uuid.UUID, *, for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_BID_FOR_UPDATE if for_update else SELECT_BID, bid_id)


async def bid_by_upload(conn: asyncpg.Connection, upload_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_BID_BY_UPLOAD, upload_id)


async def withdraw_bid(conn: asyncpg.Connection, bid_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(WITHDRAW_BID, bid_id, at)


async def org_bids(conn: asyncpg.Connection, organisation_id: uuid.UUID, tender_id: uuid.UUID | None) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_ORG_BIDS, organisation_id, tender_id)


async def confirmed_versions(conn: asyncpg.Connection, bid_id: uuid.UUID) -> list[int]:
    return [r["tender_version"] for r in await conn.fetch(SELECT_CONFIRMED_VERSIONS, bid_id)]


async def insert_confirmation(conn: asyncpg.Connection, bid_id: uuid.UUID, version: int, signature: str,
                              by: uuid.UUID) -> datetime | None:
    return await conn.fetchval(INSERT_CONFIRMATION, bid_id, version, signature, by)


def money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"
