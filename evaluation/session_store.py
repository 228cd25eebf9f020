"""SQL of the remote evaluation sessions: venues and rooms, sessions, the committee and its acts."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

import asyncpg

# ---------------------------------------------------------------------------- venues


async def insert_venue(conn: asyncpg.Connection, venue_id: uuid.UUID, name: str, region_code: str, address: str) -> None:
    await conn.execute("INSERT INTO venues (id, name, region_code, address) VALUES ($1, $2, $3, $4)",
                       venue_id, name, region_code, address)


async def insert_room(conn: asyncpg.Connection, room_id: uuid.UUID, venue_id: uuid.UUID, name: str, seats: int) -> None:
    await conn.execute("INSERT INTO venue_rooms (id, venue_id, name, seats) VALUES ($1, $2, $3, $4)",
                       room_id, venue_id, name, seats)


async def venues(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM venues ORDER BY region_code, name")


async def rooms_of_venues(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("""
        SELECT r.*, v.name AS venue_name, v.region_code FROM venue_rooms r JOIN venues v ON v.id = r.venue_id
        ORDER BY v.region_code, v.name, r.name""")


async def rooms_by_id(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM venue_rooms WHERE id = ANY($1::uuid[])", list(ids))


# ---------------------------------------------------------------------------- sessions


async def insert_session(conn: asyncpg.Connection, *, session_id: uuid.UUID, tender_id: uuid.UUID, lot_code: str,
                         draw_id: uuid.UUID, main_venue_id: uuid.UUID, scheme: dict[str, Any],
                         scheduled_start: datetime, start_delay_max: Any, rejoin_window: Any,
                         created_by: uuid.UUID, now: datetime) -> None:
    await conn.execute("""
        INSERT INTO eval_sessions (id, tender_id, lot_code, draw_id, main_venue_id, scheme, step_at, scheduled_start,
                                   start_delay_max, rejoin_window, created_by, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $7)""",
        session_id, tender_id, lot_code, draw_id, main_venue_id, scheme, now, scheduled_start,
        start_delay_max, rejoin_window, created_by)


async def insert_session_room(conn: asyncpg.Connection, session_id: uuid.UUID, room_id: uuid.UUID, is_main: bool,
                              staff_id: uuid.UUID) -> None:
    await conn.execute("INSERT INTO session_rooms (session_id, room_id, is_main, staff_id) VALUES ($1, $2, $3, $4)",
                       session_id, room_id, is_main, staff_id)


async def insert_supervisors(conn: asyncpg.Connection, session_id: uuid.UUID, users: Sequence[uuid.UUID]) -> None:
    await conn.executemany("INSERT INTO session_supervisors (session_id, user_id) VALUES ($1, $2)",
                           [(session_id, u) for u in users])


async def session(conn: asyncpg.Connection, session_id: uuid.UUID, *, for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"""
        SELECT s.*, t.name AS tender_title, t.agent_id, t.evaluation_method
        FROM eval_sessions s JOIN tenders t ON t.id = s.tender_id
        WHERE s.id = $1 {'FOR UPDATE OF s' if for_update else ''}""", session_id)


async def live_session_of_lot(conn: asyncpg.Connection, tender_id: uuid.UUID, lot_code: str) -> uuid.UUID | None:
    return await conn.fetchval("""
        SELECT id FROM eval_sessions WHERE tender_id = $1 AND lot_code = $2 AND step NOT IN ('failed', 'suspended')""",
        tender_id, lot_code)


async def sessions_for(conn: asyncpg.Connection, user_id: uuid.UUID, everything: bool, limit: int,
                       offset: int) -> list[asyncpg.Record]:
    """Sessions the user takes part in (all of them for an admin), newest start first, with a total."""
    return await conn.fetch("""
        SELECT s.id, s.tender_id, s.lot_code, s.step, s.scheduled_start, t.name AS tender_title,
               v.name AS main_venue, count(*) OVER () AS total
        FROM eval_sessions s JOIN tenders t ON t.id = s.tender_id JOIN venues v ON v.id = s.main_venue_id
        WHERE $2 OR s.created_by = $1 OR t.agent_id = $1
           OR EXISTS (SELECT 1 FROM session_rooms r WHERE r.session_id = s.id AND r.staff_id = $1)
           OR EXISTS (SELECT 1 FROM session_supervisors p WHERE p.session_id = s.id AND p.user_id = $1)
           OR EXISTS (SELECT 1 FROM session_members m WHERE m.session_id = s.id AND m.user_id = $1)
        ORDER BY s.scheduled_start DESC, s.id LIMIT $3 OFFSET $4""", user_id, everything, limit, offset)


async def sessions_open_for_sign_in(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[asyncpg.Record]:
    """Sessions at sign-in (or declarations) the user has not joined, for the drawn experts' list."""
    return await conn.fetch("""
        SELECT s.id, s.tender_id, s.lot_code, s.step, s.scheduled_start, s.draw_id, t.name AS tender_title,
               v.name AS main_venue
        FROM eval_sessions s JOIN tenders t ON t.id = s.tender_id JOIN venues v ON v.id = s.main_venue_id
        WHERE s.step IN ('sign_in', 'declarations')
          AND NOT EXISTS (SELECT 1 FROM session_members m WHERE m.session_id = s.id AND m.user_id = $1)
        ORDER BY s.scheduled_start LIMIT 50""", user_id)


async def set_step(conn: asyncpg.Connection, session_id: uuid.UUID, step: str, now: datetime) -> None:
    await conn.execute("UPDATE eval_sessions SET step = $2, step_at = $3, "
                       "opened_at = CASE WHEN $2 = 'declarations' AND opened_at IS NULL THEN $3 ELSE opened_at END "
                       "WHERE id = $1", session_id, step, now)


async def set_chair(conn: asyncpg.Connection, session_id: uuid.UUID, chair_id: uuid.UUID) -> None:
    await conn.execute("UPDATE eval_sessions SET chair_id = $2 WHERE id = $1", session_id, chair_id)


async def next_election_round(conn: asyncpg.Connection, session_id: uuid.UUID) -> int:
    return await conn.fetchval("UPDATE eval_sessions SET election_round = election_round + 1 WHERE id = $1 "
                               "RETURNING election_round", session_id)


async def set_report(conn: asyncpg.Connection, session_id: uuid.UUID, report: dict[str, Any], sha256: str) -> None:
    await conn.execute("UPDATE eval_sessions SET report = $2, report_sha256 = $3 WHERE id = $1",
                       session_id, report, sha256)


async def set_decision(conn: asyncpg.Connection, session_id: uuid.UUID, choice: str, rooms: Sequence[uuid.UUID],
                       user_id: uuid.UUID, now: datetime) -> None:
    await conn.execute("""
        UPDATE eval_sessions SET decision = $2, decision_rooms = $3, decided_by = $4, decided_at = $5 WHERE id = $1""",
        session_id, choice, list(rooms), user_id, now)


async def active_sessions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Sessions the fault-rule job looks at: not yet closed, failed or suspended."""
    return await conn.fetch("SELECT id FROM eval_sessions WHERE step NOT IN ('closed', 'failed', 'suspended')")


# ---------------------------------------------------------------------------- rooms and people


async def session_rooms(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("""
        SELECT sr.*, r.name, r.seats, v.name AS venue_name, v.region_code, v.id AS venue_id
        FROM session_rooms sr JOIN venue_rooms r ON r.id = sr.room_id JOIN venues v ON v.id = r.venue_id
        WHERE sr.session_id = $1 ORDER BY sr.is_main DESC, v.name, r.name""", session_id)


async def set_room_ready(conn: asyncpg.Connection, session_id: uuid.UUID, room_id: uuid.UUID, now: datetime) -> bool:
    return await conn.fetchval("""
        UPDATE session_rooms SET ready_at = $3 WHERE session_id = $1 AND room_id = $2 AND ready_at IS NULL
        RETURNING true""", session_id, room_id, now) is not None


async def set_room_down(conn: asyncpg.Connection, session_id: uuid.UUID, room_id: uuid.UUID,
                        since: datetime | None) -> bool:
    """Mark the room down from `since` (or back up with None); False when it already was."""
    return await conn.fetchval("""
        UPDATE session_rooms SET down_since = $3
        WHERE session_id = $1 AND room_id = $2 AND (down_since IS NULL) <> ($3::timestamptz IS NULL) RETURNING true""",
        session_id, room_id, since) is not None


async def leave_rooms_out(conn: asyncpg.Connection, session_id: uuid.UUID, rooms: Sequence[uuid.UUID]) -> None:
    await conn.execute("UPDATE session_rooms SET left_out = true WHERE session_id = $1 AND room_id = ANY($2::uuid[])",
                       session_id, list(rooms))


async def room_event(conn: asyncpg.Connection, session_id: uuid.UUID, room_id: uuid.UUID, kind: str,
                     now: datetime) -> None:
    await conn.execute("INSERT INTO session_room_events (session_id, room_id, kind, at) VALUES ($1, $2, $3, $4)",
                       session_id, room_id, kind, now)



async def supervisors(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("""
        SELECT u.id, u.display_name FROM session_supervisors s JOIN users u ON u.id = s.user_id
        WHERE s.session_id = $1 ORDER BY u.display_name""", session_id)


async def members(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    """Everyone who signed in, replaced ones included (replaced_at set)."""
    return await conn.fetch("""
        SELECT m.*, u.display_name FROM session_members m JOIN users u ON u.id = m.user_id
        WHERE m.session_id = $1 ORDER BY m.signed_in_at, u.display_name""", session_id)


async def expert_of_user(conn: asyncpg.Connection, user_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval("SELECT id FROM experts WHERE user_id = $1", user_id)


async def insert_member(conn: asyncpg.Connection, session_id: uuid.UUID, user_id: uuid.UUID, expert_id: uuid.UUID,
                        room_id: uuid.UUID, public_key: bytes, now: datetime) -> bool:
    return await conn.fetchval("""
        INSERT INTO session_members (session_id, user_id, expert_id, room_id, public_key, signed_in_at)
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true""",
        session_id, user_id, expert_id, room_id, public_key, now) is not None


async def replace_member(conn: asyncpg.Connection, session_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> None:
    await conn.execute("UPDATE session_members SET replaced_at = $3 WHERE session_id = $1 AND user_id = $2",
                       session_id, user_id, now)


# ---------------------------------------------------------------------------- the committee's acts


async def declarations(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM session_declarations WHERE session_id = $1", session_id)


async def insert_declaration(conn: asyncpg.Connection, session_id: uuid.UUID, user_id: uuid.UUID, conflict: bool,
                             statement: str, signature: str, now: datetime) -> None:
    await conn.execute("""
        INSERT INTO session_declarations (session_id, user_id, conflict, statement, signature, signed_at)
        VALUES ($1, $2, $3, $4, $5, $6)""", session_id, user_id, conflict, statement, signature, now)


async def ballots(conn: asyncpg.Connection, session_id: uuid.UUID, round_no: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT voter_id, candidate_id FROM session_ballots WHERE session_id = $1 AND round = $2 "
                            "ORDER BY cast_at", session_id, round_no)


async def insert_ballot(conn: asyncpg.Connection, session_id: uuid.UUID, round_no: int, voter: uuid.UUID,
                        candidate: uuid.UUID, now: datetime) -> None:
    await conn.execute("INSERT INTO session_ballots (session_id, round, voter_id, candidate_id, cast_at) "
                       "VALUES ($1, $2, $3, $4, $5)", session_id, round_no, voter, candidate, now)


async def verdicts(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM session_verdicts WHERE session_id = $1", session_id)


async def upsert_verdicts(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    """(session, user, organisation, criterion, passed, reason, at): an expert may change a verdict until the step ends."""
    await conn.executemany("""
        INSERT INTO session_verdicts (session_id, user_id, organisation_id, criterion, passed, reason, given_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (session_id, user_id, organisation_id, criterion)
        DO UPDATE SET passed = excluded.passed, reason = excluded.reason, given_at = excluded.given_at""", rows)


async def scores(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM session_scores WHERE session_id = $1", session_id)


async def upsert_scores(conn: asyncpg.Connection, rows: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, str, Decimal, datetime]]) -> None:
    await conn.executemany("""
        INSERT INTO session_scores (session_id, user_id, organisation_id, criterion, score, given_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (session_id, user_id, organisation_id, criterion)
        DO UPDATE SET score = excluded.score, given_at = excluded.given_at""", rows)


async def deviation_reasons(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM session_deviation_reasons WHERE session_id = $1", session_id)


async def upsert_deviation_reason(conn: asyncpg.Connection, session_id: uuid.UUID, user_id: uuid.UUID,
                                  organisation_id: uuid.UUID, criterion: str, reason: str, now: datetime) -> None:
    await conn.execute("""
        INSERT INTO session_deviation_reasons (session_id, user_id, organisation_id, criterion, reason, given_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (session_id, user_id, organisation_id, criterion)
        DO UPDATE SET reason = excluded.reason, given_at = excluded.given_at""",
        session_id, user_id, organisation_id, criterion, reason, now)


async def signatures(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM session_signatures WHERE session_id = $1 ORDER BY signed_at", session_id)


async def insert_signature(conn: asyncpg.Connection, session_id: uuid.UUID, user_id: uuid.UUID, sha256: str,
                           signature: str, dissent: str | None, now: datetime) -> None:
    await conn.execute("""
        INSERT INTO session_signatures (session_id, user_id, report_sha256, signature, dissent, signed_at)
        VALUES ($1, $2, $3, $4, $5, $6)""", session_id, user_id, sha256, signature, dissent, now)


# ---------------------------------------------------------------------------- clarifications


async def clarifications(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("""
        SELECT c.*, o.name AS organisation_name FROM session_clarifications c
        JOIN organisations o ON o.id = c.organisation_id WHERE c.session_id = $1 ORDER BY c.id""", session_id)


async def clarification(conn: asyncpg.Connection, clarification_id: int, *, for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM session_clarifications WHERE id = $1 {'FOR UPDATE' if for_update else ''}",
                               clarification_id)


async def clarifications_of_org(conn: asyncpg.Connection, organisation_id: uuid.UUID) -> list[asyncpg.Record]:
    """What a bidder sees: approved or answered questions to its organisation, with the tender."""
    return await conn.fetch("""
        SELECT c.id, c.session_id, c.question, c.status, c.deadline, c.answer, c.answered_at, t.name AS tender_title
        FROM session_clarifications c JOIN eval_sessions s ON s.id = c.session_id JOIN tenders t ON t.id = s.tender_id
        WHERE c.organisation_id = $1 AND c.status IN ('approved', 'answered') ORDER BY c.id DESC LIMIT 200""",
        organisation_id)


async def insert_clarification(conn: asyncpg.Connection, session_id: uuid.UUID, organisation_id: uuid.UUID,
                               asked_by: uuid.UUID, question: str, now: datetime) -> int:
    return await conn.fetchval("""
        INSERT INTO session_clarifications (session_id, organisation_id, asked_by, question, asked_at)
        VALUES ($1, $2, $3, $4, $5) RETURNING id""", session_id, organisation_id, asked_by, question, now)


async def review_clarification(conn: asyncpg.Connection, clarification_id: int, status: str, user_id: uuid.UUID,
                               now: datetime, deadline: datetime | None) -> None:
    await conn.execute("""
        UPDATE session_clarifications SET status = $2, reviewed_by = $3, reviewed_at = $4, deadline = $5
        WHERE id = $1""", clarification_id, status, user_id, now, deadline)


async def answer_clarification(conn: asyncpg.Connection, clarification_id: int, answer: str, user_id: uuid.UUID,
                               now: datetime) -> None:
    await conn.execute("""
        UPDATE session_clarifications SET status = 'answered', answer = $2, answered_by = $3, answered_at = $4
        WHERE id = $1""", clarification_id, answer, user_id, now)


# ---------------------------------------------------------------------------- bids, documents, marks, recordings


async def opened_bids(conn: asyncpg.Connection, tender_id: uuid.UUID, lot_code: str) -> list[asyncpg.Record]:
    """The lot's bids opened in the hall, in read-out order: the bidders the committee evaluates."""
    return await conn.fetch("""
        SELECT ob.bid_id, ob.organisation_id, o.name AS organisation_name, ob.summary, ob.files, ob.read_order
        FROM opening_bids ob JOIN organisations o ON o.id = ob.organisation_id
        WHERE ob.tender_id = $1 AND ob.lot_code = $2 AND ob.status = 'opened'
        ORDER BY ob.read_order NULLS LAST, o.name""", tender_id, lot_code)


async def opened_bid(conn: asyncpg.Connection, tender_id: uuid.UUID, lot_code: str,
                     bid_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("""
        SELECT ob.bid_id, ob.content_key, ob.files, u.manifest, b.upload_id, b.ciphertext_sha256
        FROM opening_bids ob JOIN bids b ON b.id = ob.bid_id JOIN uploads u ON u.id = b.upload_id
        WHERE ob.bid_id = $3 AND ob.tender_id = $1 AND ob.lot_code = $2 AND ob.status = 'opened'""",
        tender_id, lot_code, bid_id)


async def insert_document_view(conn: asyncpg.Connection, session_id: uuid.UUID, user_id: uuid.UUID, bid_id: uuid.UUID,
                               document: str, now: datetime) -> int:
    return await conn.fetchval("""
        INSERT INTO session_document_views (session_id, user_id, bid_id, document, viewed_at)
        VALUES ($1, $2, $3, $4, $5) RETURNING id""", session_id, user_id, bid_id, document, now)



async def insert_mark(conn: asyncpg.Connection, session_id: uuid.UUID, user_id: uuid.UUID, room_id: uuid.UUID | None,
                      label: str, now: datetime) -> int:
    return await conn.fetchval("""
        INSERT INTO session_marks (session_id, user_id, room_id, label, marked_at) VALUES ($1, $2, $3, $4, $5)
        RETURNING id""", session_id, user_id, room_id, label, now)


async def marks(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("""
        SELECT m.*, u.display_name FROM session_marks m JOIN users u ON u.id = m.user_id
        WHERE m.session_id = $1 ORDER BY m.marked_at, m.id""", session_id)


async def insert_segment(conn: asyncpg.Connection, session_id: uuid.UUID, room_id: uuid.UUID, file_name: str,
                         timing_name: str, sha256: str, size: int, tracks: Sequence[str], started_at: datetime,
                         ended_at: datetime, log_index: int) -> int:
    return await conn.fetchval("""
        INSERT INTO session_segments (session_id, room_id, file_name, timing_name, sha256, bytes, tracks, started_at,
                                      ended_at, log_index)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
        session_id, room_id, file_name, timing_name, sha256, size, list(tracks), started_at, ended_at, log_index)


async def segments(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM session_segments WHERE session_id = $1 ORDER BY started_at, id", session_id)


async def segment(conn: asyncpg.Connection, session_id: uuid.UUID, segment_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM session_segments WHERE session_id = $1 AND id = $2",
                               session_id, segment_id)


# ---------------------------------------------------------------------------- the scheduling form


async def schedulable_lots(conn: asyncpg.Connection, agent_id: uuid.UUID | None) -> list[asyncpg.Record]:
    """Lots whose opening closed, with an evaluation draw and no live session (an agent's own; all for None)."""
    return await conn.fetch("""
        SELECT t.id AS tender_id, t.code, t.name, l.code AS lot_code, l.name AS lot_name,
               (SELECT d.needed_at FROM draws d WHERE d.tender_id = t.id AND d.purpose = 'evaluation'
                  AND d.parent_id IS NULL AND d.status <> 'cancelled' ORDER BY d.created_at DESC LIMIT 1) AS needed_at
        FROM tenders t JOIN openings o ON o.tender_id = t.id AND o.step = 'closed' JOIN lots l ON l.tender_id = t.id
        WHERE ($1::uuid IS NULL OR t.agent_id = $1)
          AND EXISTS (SELECT 1 FROM draws d WHERE d.tender_id = t.id AND d.purpose = 'evaluation' AND d.status <> 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM eval_sessions s WHERE s.tender_id = t.id AND s.lot_code = l.code
                            AND s.step NOT IN ('failed', 'suspended'))
        ORDER BY t.created_at DESC, l.position LIMIT 200""", agent_id)


async def users_with_roles(conn: asyncpg.Connection, roles: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, display_name, username FROM users WHERE roles && $1::text[] AND NOT disabled "
                            "ORDER BY display_name LIMIT 500", roles)
