"""What the venue's rules know of the workflow, loaded from the database (engine part "workflow").

- Experts seated in an evaluation session from sign-in to the report (session_members, not
  replaced), with the zone of the room they signed in at; the session is "evaluating" in the
  steps evaluation/session_rules.py calls STARTED (declarations … report).
- A tender with an evaluation draw but no live session (evaluated in the venue without a remote
  session): its scheduled evaluation window stands in, from the draw's `needed_at` for
  EVALUATION_WINDOW; its experts are the confirmed seats of the draw once the names are
  unsealed (opened with the data key as the session's sign-in does). No room is known then,
  so only the closed area counts for "left".
- The bidders (organisations with an active bid) and agents (the tender's agent user, staff of
  the agent's organisation, holders of the tender's 代理码) of those tenders.

Reloaded with the other parts on `venue.policy_changed` (sessions emit it at every step) and
every REFRESH_SECONDS by venue/alert_jobs.py, since draws unseal and windows open without it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import asyncpg

from evaluation.draw_rules import seat_context
from evaluation.session_rules import STARTED
from tenderhall.data_key import DataKey, load_or_create as load_data_key
from venue import position_store
from venue.engine import LOADERS
from venue.rules import Assignment, Workflow

EVALUATION_WINDOW = timedelta(hours=4)
# Windows starting within this horizon are loaded ahead, so a window opens between reloads.
HORIZON = timedelta(hours=12)
REFRESH_SECONDS = 60.0
SEATED_STEPS = ("sign_in", *STARTED)

_SESSION_SEATS = """
SELECT DISTINCT ON (p.id) p.id AS person_id, s.id AS session_id, s.tender_id, s.step, f.code AS floor, z.zone_id
FROM eval_sessions s
JOIN session_members m ON m.session_id = s.id AND m.replaced_at IS NULL
JOIN venue_people p ON p.expert_id = m.expert_id
LEFT JOIN zones z ON z.room_id = m.room_id
LEFT JOIN floors f ON f.id = z.floor_id
WHERE s.step = ANY($1::text[])
ORDER BY p.id, m.signed_in_at DESC"""

# Unsealed evaluation draws (and their extensions) of tenders without a live session, whose
# window is open or opens within the horizon: the confirmed seats.
_WINDOW_SEATS = """
WITH RECURSIVE roots AS (
    SELECT d.id, d.tender_id, d.needed_at FROM draws d
    WHERE d.purpose = 'evaluation' AND d.parent_id IS NULL AND d.status = 'drawn' AND d.unsealed_at IS NOT NULL
      AND d.needed_at > $1 AND d.needed_at < $2
      AND NOT EXISTS (SELECT 1 FROM eval_sessions s WHERE s.tender_id = d.tender_id
                      AND s.step NOT IN ('failed', 'suspended'))
), chain AS (
    SELECT id AS root, id FROM roots
    UNION ALL SELECT c.root, x.id FROM draws x JOIN chain c ON x.parent_id = c.id
)
SELECT r.tender_id, r.needed_at, s.draw_id, s.position, s.person_sealed
FROM chain c JOIN roots r ON r.id = c.root JOIN draw_seats s ON s.draw_id = c.id
WHERE s.status = 'confirmed'"""

_PARTIES = """
SELECT p.id AS person_id, t.id AS tender_id FROM tenders t JOIN venue_people p ON p.user_id = t.agent_id
WHERE t.id = ANY($1::uuid[])
UNION
SELECT p.id, t.id FROM tenders t JOIN users u ON u.id = t.agent_id
JOIN venue_people p ON p.role = 'agent' AND p.organisation_id = u.organisation_id
WHERE t.id = ANY($1::uuid[])
UNION
SELECT p.id, b.tender_id FROM bids b JOIN venue_people p ON p.role = 'bidder' AND p.organisation_id = b.organisation_id
WHERE b.tender_id = ANY($1::uuid[]) AND b.status = 'active'
UNION
SELECT a.person_id, a.tender_id FROM agent_codes a WHERE a.tender_id = ANY($1::uuid[])"""


async def session_seats(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(_SESSION_SEATS, list(SEATED_STEPS))


async def window_seats(conn: asyncpg.Connection, now: datetime) -> list[asyncpg.Record]:
    return await conn.fetch(_WINDOW_SEATS, now - EVALUATION_WINDOW, now + HORIZON)


async def parties(conn: asyncpg.Connection, tenders: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(_PARTIES, tenders)


async def read(conn: asyncpg.Connection, data_key: Callable[[], DataKey], now: datetime) -> Workflow:
    """The workflow as the rules need it at `now`; `data_key()` gives the key that opens the
    unsealed draws' seats (called only when a tender is evaluated without a session)."""
    people = {p.id: p for p in await position_store.people(conn)}
    by_expert = {p.expert_id: p.id for p in people.values() if p.expert_id is not None}
    experts: dict[uuid.UUID, Assignment] = {}
    for r in await session_seats(conn):
        room = (r["floor"], r["zone_id"]) if r["zone_id"] is not None else None
        experts[r["person_id"]] = Assignment(r["tender_id"], r["session_id"], room, r["step"] in STARTED)
    seats = await window_seats(conn, now)
    if seats:
        key = data_key()
        for s in seats:
            expert = uuid.UUID(bytes=key.open("draw-seat", seat_context(s["draw_id"], s["position"]), s["person_sealed"]))
            person = by_expert.get(expert)
            if person is not None and person not in experts:
                start = s["needed_at"]
                experts[person] = Assignment(s["tender_id"], window=(start, start + EVALUATION_WINDOW))
    tenders = sorted({a.tender for a in experts.values()})
    taking_part: dict[uuid.UUID, set[uuid.UUID]] = {}
    for r in await parties(conn, tenders) if tenders else []:
        taking_part.setdefault(r["person_id"], set()).add(r["tender_id"])
    return Workflow(people, experts, {p: frozenset(t) for p, t in taking_part.items()})


async def load(pool: asyncpg.Pool, engine: Any) -> Workflow:
    """The engine's loader for the part "workflow"."""
    async with pool.acquire() as conn:
        return await read(conn, lambda: load_data_key(engine.settings.data_key_path), datetime.now(timezone.utc))


LOADERS["workflow"] = load
