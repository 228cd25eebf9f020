"""The draw's SQL: candidate queries with every avoidance rule, draws, seats, notifications, pairings.

Avoidance is applied here, in one query per draw, never by hand: the pure draw only sees the
candidates these queries return. `funnel` recounts the same rules one at a time when a draw is
impossible, so the refusal can say how many candidates each constraint left.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Sequence

import asyncpg



@dataclass(frozen=True)
class Avoidance:
    """What one draw must avoid; every field is matched in SQL.

    `prefixes` are the specialty codes asked for; `employer_codes`/`employer_names` are the
    organisations whose employees may not serve (tenderer, agent, bidders); `user_ids` the
    people expert-declared relations are matched against; `pair_keys` the counterparts of the
    repeat-pairing cap ('tenderer:…', 'agent:…'); `excluded` people already asked (extensions)
    or, for inspections, who evaluated the inspected projects.
    """

    prefixes: tuple[str, ...]
    day: date
    threshold: int
    employer_codes: tuple[str, ...] = ()
    employer_names: tuple[str, ...] = ()
    user_ids: tuple[uuid.UUID, ...] = ()
    pair_keys: tuple[str, ...] = ()
    pair_cap: int = 3
    pair_since: datetime | None = None
    excluded: tuple[uuid.UUID, ...] = ()
    served_on_draws: tuple[uuid.UUID, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        """The rules as published with the draw: counts and parameters, never names."""
        return {"specialties": list(self.prefixes), "day": self.day.isoformat(), "credit_threshold": self.threshold,
                "avoided_organisations": len(set(self.employer_codes)), "avoided_names": len(set(self.employer_names)),
                "avoided_people": len(set(self.user_ids)), "pairing_cap": self.pair_cap,
                "pairing_since": self.pair_since.isoformat() if self.pair_since else None,
                "pairing_counterparts": len(self.pair_keys), "excluded": len(set(self.excluded)),
                "evaluated_projects": len(self.served_on_draws)}


# Each rule is one named predicate; CANDIDATE_EXPERTS applies them all, FUNNEL_EXPERTS counts
# them one after the other.
_EXPERT_RULES = {
    "active": "e.status = 'active'",
    "credit": "e.credit_score >= $3",
    # NOT IN over a subquery is planned as one hashed set, built once per query, not per expert.
    "leave": "e.id NOT IN (SELECT l.expert_id FROM expert_leave l WHERE l.day = $2)",
    "employer": "NOT (e.employer_code = ANY ($4::text[]) OR e.employer_name = ANY ($5::text[]))",
    "declared": """e.id NOT IN (SELECT a.expert_id FROM expert_avoidances a
                   WHERE a.organisation_code = ANY ($4::text[]) OR a.user_id = ANY ($6::uuid[]))""",
    "pairing": """e.id NOT IN (SELECT p.expert_id FROM pairings p WHERE p.counterpart = ANY ($7::text[])
                  AND p.met_at > $8 GROUP BY p.expert_id, p.counterpart HAVING count(*) > $9)""",
    "excluded": "NOT (e.id = ANY ($10::uuid[]))",
    "evaluated": "e.id NOT IN (SELECT p.expert_id FROM pairings p WHERE p.draw_id = ANY ($11::uuid[]))",
}

# Specialty codes are [A-Z0-9] in the C collation (0007), so "under prefix P" is the range
# [P, P || '~'): an index range scan per asked prefix.
_UNDER = "s.specialty >= q.prefix AND s.specialty < q.prefix || '~'"

# The specialty range scan runs first and alone (MATERIALIZED); the experts it found are then
# fetched by primary key (= ANY of that id array), so the query reads a few thousand rows of a
# 100,000-expert pool instead of scanning it.
CANDIDATE_EXPERTS = f"""
WITH m AS MATERIALIZED (
    SELECT s.expert_id, array_agg(DISTINCT s.specialty ORDER BY s.specialty) AS specialties
    FROM unnest($1::text[]) AS q(prefix) JOIN expert_specialties s ON {_UNDER}
    GROUP BY s.expert_id)
SELECT e.id, e.region, m.specialties
FROM experts e JOIN m ON m.expert_id = e.id
WHERE e.id = ANY (ARRAY(SELECT m.expert_id FROM m))
  AND {' AND '.join(_EXPERT_RULES.values())}
"""

FUNNEL_EXPERTS = """
SELECT {counts}
FROM experts e
WHERE EXISTS (SELECT 1 FROM expert_specialties s, unnest($1::text[]) AS q(prefix)
              WHERE s.expert_id = e.id AND """ + _UNDER + """)
"""

_INTERMEDIARY_RULES = {
    "active": "i.status = 'active'",
    "credit": "i.credit_score >= $3",
    "employer": "NOT (i.credit_code = ANY ($4::text[]) OR i.name = ANY ($5::text[]))",
    "pairing": """i.id NOT IN (SELECT v.intermediary_id FROM intermediary_services v WHERE v.purchaser = ANY ($7::text[])
                  AND v.served_at > $8 GROUP BY v.intermediary_id, v.purchaser HAVING count(*) > $9)""",
    "excluded": "NOT (i.id = ANY ($10::uuid[]))",
}

_UNDER_CATEGORY = "c.category >= q.prefix AND c.category < q.prefix || '~'"

# $2, $6 and $11 (leave day, declared people, evaluated projects) do not apply to agencies;
# they are still bound so one argument list serves both pools.
CANDIDATE_INTERMEDIARIES = f"""
WITH m AS MATERIALIZED (
    SELECT c.intermediary_id, array_agg(DISTINCT c.category ORDER BY c.category) AS specialties
    FROM unnest($1::text[]) AS q(prefix) JOIN intermediary_categories c ON {_UNDER_CATEGORY}
    GROUP BY c.intermediary_id)
SELECT i.id, i.region, m.specialties
FROM intermediaries i JOIN m ON m.intermediary_id = i.id
WHERE $2::date IS NOT NULL AND $6::uuid[] IS NOT NULL AND $11::uuid[] IS NOT NULL
  AND {' AND '.join(_INTERMEDIARY_RULES.values())}
"""

FUNNEL_INTERMEDIARIES = """
SELECT {counts}
FROM intermediaries i
WHERE EXISTS (SELECT 1 FROM intermediary_categories c, unnest($1::text[]) AS q(prefix)
              WHERE c.intermediary_id = i.id AND """ + _UNDER_CATEGORY + """)
  AND $2::date IS NOT NULL AND $6::uuid[] IS NOT NULL AND $11::uuid[] IS NOT NULL
"""

RULE_NAMES = {
    "active": "status active", "credit": "credit score at or above the threshold", "leave": "not on leave that day",
    "employer": "not employed by the tenderer, the agent or a bidder", "declared": "no declared relation",
    "pairing": "under the repeat-pairing cap", "excluded": "not already asked in this draw",
    "evaluated": "did not evaluate the inspected projects",
}


def _args(a: Avoidance, prefixes: Sequence[str]) -> list[Any]:
    return [list(prefixes), a.day, a.threshold, list(a.employer_codes), list(a.employer_names), list(a.user_ids),
            list(a.pair_keys), a.pair_since or datetime.min, a.pair_cap, list(a.excluded), list(a.served_on_draws)]


async def candidates(conn: asyncpg.Connection, pool: str, a: Avoidance) -> list[asyncpg.Record]:
    """Every eligible candidate of `pool` ("experts" or "intermediaries"): (id, region, the asked specialties it has)."""
    sql = CANDIDATE_EXPERTS if pool == "experts" else CANDIDATE_INTERMEDIARIES
    # The right plan depends on the values (how many experts a prefix covers, how many
    # organisations are avoided): a cached generic plan of this prepared statement was measured
    # at twice the time, so this transaction plans it for its own arguments.
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    return await conn.fetch(sql, *_args(a, a.prefixes))


async def funnel(conn: asyncpg.Connection, pool: str, a: Avoidance, prefix: str) -> list[dict[str, Any]]:
    """For one specialty: how many candidates are left after each rule in turn, first to last."""
    rules = _EXPERT_RULES if pool == "experts" else _INTERMEDIARY_RULES
    template = FUNNEL_EXPERTS if pool == "experts" else FUNNEL_INTERMEDIARIES
    counts, applied = ["count(*) AS with_specialty"], []
    for name, predicate in rules.items():
        applied.append(predicate)
        counts.append(f"count(*) FILTER (WHERE {' AND '.join(applied)}) AS {name}")
    row = await conn.fetchrow(template.format(counts=", ".join(counts)), *_args(a, [prefix]))
    steps = [{"rule": "specialty " + prefix, "left": row["with_specialty"]}]
    steps += [{"rule": RULE_NAMES[name], "left": row[name]} for name in rules]
    return steps


# ---------------------------------------------------------------------------- what the tender avoids

TENDER_PARTIES = """
SELECT t.id, t.tenderer, t.agent_id, t.status, t.name, t.code, u.organisation_id AS agent_org,
       (SELECT o.step FROM openings o WHERE o.tender_id = t.id) AS opening_step,
       ao.credit_code AS agent_code,
       (SELECT array_agg(DISTINCT o.credit_code) FROM organisations o WHERE o.name = t.tenderer) AS tenderer_codes,
       (SELECT array_agg(DISTINCT o.credit_code) FROM bids b JOIN organisations o ON o.id = b.organisation_id
         WHERE b.tender_id = t.id AND b.status = 'active') AS bidder_codes,
       (SELECT array_agg(DISTINCT b.organisation_id) FROM bids b WHERE b.tender_id = t.id AND b.status = 'active') AS bidder_orgs,
       (SELECT array_agg(DISTINCT x.id) FROM users x JOIN bids b ON b.organisation_id = x.organisation_id
         WHERE b.tender_id = t.id AND b.status = 'active') AS bidder_users
FROM tenders t JOIN users u ON u.id = t.agent_id LEFT JOIN organisations ao ON ao.id = u.organisation_id
WHERE t.id = ANY ($1::uuid[])
"""


async def tender_parties(conn: asyncpg.Connection, tender_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(TENDER_PARTIES, list(tender_ids))


async def tender_choices(conn: asyncpg.Connection, agent_id: uuid.UUID | None) -> list[asyncpg.Record]:
    """Published tenders a requester may draw for (an agent: their own), newest deadline first,
    with whether their opening has closed (inspections need that)."""
    return await conn.fetch("""
        SELECT t.id, t.code, t.name, (SELECT o.step FROM openings o WHERE o.tender_id = t.id) = 'closed' AS closed
        FROM tenders t WHERE t.status = 'published' AND ($1::uuid IS NULL OR t.agent_id = $1)
        ORDER BY t.deadline DESC LIMIT 200""", agent_id)


async def specialty_names(conn: asyncpg.Connection, codes: Sequence[str] | None = None) -> dict[str, str]:
    """Code → name of the asked codes (every code when None), in code order."""
    rows = await conn.fetch("""SELECT code, name FROM specialties WHERE $1::text[] IS NULL OR code = ANY ($1::text[])
                               ORDER BY code""", None if codes is None else list(codes))
    return {r["code"]: r["name"] for r in rows}


async def tender_label(conn: asyncpg.Connection, tender_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT code, name FROM tenders WHERE id = $1", tender_id)


async def evaluation_draws_of(conn: asyncpg.Connection, tender_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    rows = await conn.fetch("SELECT id FROM draws WHERE purpose = 'evaluation' AND tender_id = ANY ($1::uuid[])",
                            list(tender_ids))
    return [r["id"] for r in rows]


# ---------------------------------------------------------------------------- draws

INSERT_DRAW = """
INSERT INTO draws (id, purpose, tender_id, subject, title, spec, needed_at, draw_after, commitment, requested_by,
                   parent_id, reply_minutes, scheduled_log_index)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
"""

DRAW_COLUMNS = """d.id, d.purpose, d.tender_id, d.subject, d.title, d.spec, d.needed_at, d.draw_after, d.commitment,
    d.requested_by, d.parent_id, d.status, d.reply_minutes, d.avoidance, d.scheduled_log_index, d.drawn_log_index,
    d.drawn_at, d.unsealed_at, d.unsealed_by, d.created_at"""


async def insert_draw(conn: asyncpg.Connection, *args: Any) -> None:
    await conn.execute(INSERT_DRAW, *args)


async def draw(conn: asyncpg.Connection, draw_id: uuid.UUID, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {DRAW_COLUMNS} FROM draws d WHERE d.id = $1{lock}", draw_id)


async def draw_record(conn: asyncpg.Connection, draw_id: uuid.UUID) -> dict[str, Any] | None:
    """The published record with the log indexes it refers to; None before the draw has run."""
    row = await conn.fetchrow("SELECT record, scheduled_log_index, drawn_log_index FROM draws WHERE id = $1", draw_id)
    if row is None or row["record"] is None:
        return None
    return {**json.loads(row["record"]), "scheduled_log_index": row["scheduled_log_index"],
            "drawn_log_index": row["drawn_log_index"]}


async def chain(conn: asyncpg.Connection, root_id: uuid.UUID) -> list[asyncpg.Record]:
    """A draw and its extensions, oldest first."""
    return await conn.fetch(f"""
        WITH RECURSIVE c AS (SELECT id, 0 AS depth FROM draws WHERE id = $1
                             UNION ALL SELECT x.id, c.depth + 1 FROM draws x JOIN c ON x.parent_id = c.id)
        SELECT {DRAW_COLUMNS} FROM c JOIN draws d ON d.id = c.id ORDER BY c.depth""", root_id)


async def root_of(conn: asyncpg.Connection, draw_id: uuid.UUID) -> uuid.UUID:
    return await conn.fetchval("""
        WITH RECURSIVE up AS (SELECT id, parent_id FROM draws WHERE id = $1
                              UNION ALL SELECT d.id, d.parent_id FROM draws d JOIN up ON d.id = up.parent_id)
        SELECT id FROM up WHERE parent_id IS NULL""", draw_id)


async def list_draws(conn: asyncpg.Connection, requested_by: uuid.UUID | None, limit: int, offset: int) -> list[asyncpg.Record]:
    """Root draws, newest first; only the requester's own unless `requested_by` is None (supervisors)."""
    return await conn.fetch(f"""
        SELECT {DRAW_COLUMNS}, count(*) OVER () AS total FROM draws d
        WHERE d.parent_id IS NULL AND ($1::uuid IS NULL OR d.requested_by = $1)
        ORDER BY d.created_at DESC LIMIT $2 OFFSET $3""", requested_by, limit, offset)


async def mark_drawn(conn: asyncpg.Connection, draw_id: uuid.UUID, record: dict[str, Any], avoidance: dict[str, Any],
                     log_index: int) -> None:
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    await conn.execute("""UPDATE draws SET status = 'drawn', record = $2, avoidance = $3, drawn_log_index = $4,
                          drawn_at = now() WHERE id = $1""", draw_id, text, avoidance, log_index)


async def set_status(conn: asyncpg.Connection, draw_id: uuid.UUID, status: str) -> None:
    await conn.execute("UPDATE draws SET status = $2 WHERE id = $1", draw_id, status)


async def mark_unsealed(conn: asyncpg.Connection, draw_ids: Sequence[uuid.UUID], user_id: uuid.UUID) -> None:
    await conn.execute("UPDATE draws SET unsealed_at = now(), unsealed_by = $2 WHERE id = ANY ($1::uuid[])",
                       list(draw_ids), user_id)


# ---------------------------------------------------------------------------- seats

async def insert_seats(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    """rows: (draw_id, position, group_index, specialty, backup_rank, pseudonym, person_sealed, status, notified_at, reply_by, token_hash)."""
    await conn.copy_records_to_table("draw_seats", records=rows, columns=[
        "draw_id", "position", "group_index", "specialty", "backup_rank", "pseudonym", "person_sealed", "status",
        "notified_at", "reply_by", "token_hash"])


SEAT_COLUMNS = """s.draw_id, s.position, s.group_index, s.specialty, s.backup_rank, s.pseudonym, s.person_sealed,
    s.status, s.notified_at, s.reply_by, s.replied_at, s.decline_reason"""


async def seats(conn: asyncpg.Connection, draw_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {SEAT_COLUMNS} FROM draw_seats s WHERE s.draw_id = ANY ($1::uuid[]) "
                            "ORDER BY s.draw_id, s.position", list(draw_ids))


async def seat_by_token(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {SEAT_COLUMNS} FROM draw_seats s WHERE s.token_hash = $1", token_hash)


async def seat(conn: asyncpg.Connection, draw_id: uuid.UUID, position: int, *,
               for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {SEAT_COLUMNS} FROM draw_seats s WHERE s.draw_id = $1 AND s.position = $2{lock}",
                               draw_id, position)


async def notified_seats(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Seats waiting for an answer now: few at any time (one reply window's worth)."""
    return await conn.fetch(f"SELECT {SEAT_COLUMNS} FROM draw_seats s WHERE s.status = 'notified' ORDER BY s.reply_by")


async def overdue_seats(conn: asyncpg.Connection, limit: int = 200) -> list[asyncpg.Record]:
    return await conn.fetch(f"""SELECT {SEAT_COLUMNS} FROM draw_seats s WHERE s.status = 'notified' AND s.reply_by <= now()
                                ORDER BY s.reply_by LIMIT $1""", limit)


async def answer_seat(conn: asyncpg.Connection, draw_id: uuid.UUID, position: int, status: str,
                      reason: str | None) -> None:
    await conn.execute("""UPDATE draw_seats SET status = $3, replied_at = now(), decline_reason = $4
                          WHERE draw_id = $1 AND position = $2""", draw_id, position, status, reason)


async def notify_seat(conn: asyncpg.Connection, draw_id: uuid.UUID, position: int, token_hash: bytes,
                      reply_minutes: int) -> asyncpg.Record:
    return await conn.fetchrow("""UPDATE draw_seats SET status = 'notified', notified_at = now(), token_hash = $3,
                                  reply_by = now() + make_interval(mins => $4)
                                  WHERE draw_id = $1 AND position = $2 RETURNING reply_by""",
                               draw_id, position, token_hash, reply_minutes)


async def close_seats(conn: asyncpg.Connection, draw_ids: Sequence[uuid.UUID]) -> None:
    """At sign-in: backups never called are unused, invitations still unanswered have expired."""
    await conn.execute("""UPDATE draw_seats SET status = CASE status WHEN 'standby' THEN 'unused' ELSE 'expired' END
                          WHERE draw_id = ANY ($1::uuid[]) AND status IN ('standby', 'notified')""", list(draw_ids))


# ---------------------------------------------------------------------------- notifications

async def insert_notification(conn: asyncpg.Connection, draw_id: uuid.UUID, position: int, sealed: bytes,
                              channel: str) -> None:
    await conn.execute("""INSERT INTO draw_notifications (draw_id, position, message_sealed, channel)
                          VALUES ($1, $2, $3, $4)""", draw_id, position, sealed, channel)


async def pending_notifications(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch("""SELECT id, draw_id, position, message_sealed, attempts FROM draw_notifications
                               WHERE status = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""", limit)


async def notification_sent(conn: asyncpg.Connection, notification_id: int) -> None:
    await conn.execute("""UPDATE draw_notifications SET status = 'sent', sent_at = now(), message_sealed = NULL,
                          attempts = attempts + 1, last_error = NULL WHERE id = $1""", notification_id)


async def notification_failed(conn: asyncpg.Connection, notification_id: int, error: str, give_up: bool) -> None:
    await conn.execute("""UPDATE draw_notifications SET attempts = attempts + 1, last_error = $2,
                          status = CASE WHEN $3 THEN 'failed' ELSE status END,
                          message_sealed = CASE WHEN $3 THEN NULL ELSE message_sealed END WHERE id = $1""",
                       notification_id, error[:500], give_up)


async def notification_states(conn: asyncpg.Connection, draw_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch("""SELECT draw_id, position, status, attempts, last_error, sent_at FROM draw_notifications
                               WHERE draw_id = ANY ($1::uuid[]) ORDER BY id""", list(draw_ids))


# ---------------------------------------------------------------------------- people, access, pairings

async def expert_contacts(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch("""SELECT id, name, phone, email, user_id, region, title, employer_name FROM experts
                               WHERE id = ANY ($1::uuid[])""", list(ids))
    return {r["id"]: r for r in rows}


async def intermediary_contacts(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch("""SELECT id, name, contact_name, phone, email, NULL::uuid AS user_id, region,
                                      credit_code FROM intermediaries WHERE id = ANY ($1::uuid[])""", list(ids))
    return {r["id"]: r for r in rows}


async def expert_of_user(conn: asyncpg.Connection, user_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval("SELECT id FROM experts WHERE user_id = $1", user_id)


async def record_name_access(conn: asyncpg.Connection, draw_id: uuid.UUID, user_id: uuid.UUID, ip: str) -> None:
    await conn.execute("INSERT INTO draw_name_access (draw_id, user_id, ip) VALUES ($1, $2, $3)", draw_id, user_id, ip)


async def name_accesses(conn: asyncpg.Connection, draw_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch("""SELECT a.at, u.username, u.display_name FROM draw_name_access a
                               JOIN users u ON u.id = a.user_id WHERE a.draw_id = $1 ORDER BY a.at DESC LIMIT 100""",
                            draw_id)


async def insert_pairings(conn: asyncpg.Connection, rows: list[tuple[uuid.UUID, uuid.UUID, str, datetime]]) -> None:
    await conn.executemany("""INSERT INTO pairings (draw_id, expert_id, counterpart, met_at) VALUES ($1, $2, $3, $4)
                              ON CONFLICT ON CONSTRAINT pairings_unique_key DO NOTHING""", rows)


async def insert_intermediary_service(conn: asyncpg.Connection, draw_id: uuid.UUID, intermediary_id: uuid.UUID,
                                      purchaser: str, at: datetime) -> None:
    await conn.execute("""INSERT INTO intermediary_services (draw_id, intermediary_id, purchaser, served_at)
                          VALUES ($1, $2, $3, $4) ON CONFLICT ON CONSTRAINT intermediary_services_unique_key DO NOTHING""",
                       draw_id, intermediary_id, purchaser, at)

