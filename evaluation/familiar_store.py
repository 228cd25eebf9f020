"""The familiar-faces metric's SQL over `pairings`, and `familiar_summary` for pages that show it.

Pairings are written when a committee's names are unsealed at its sign-in, one row per
expert and counterpart ('tenderer:<name>', 'agent:<id>', 'expert:<id>', both directions for
two experts), all at the evaluation time. An evaluation is a draw for purpose 'evaluation';
an extension draw (`parent_id`) fills seats of the same evaluation, so it counts with its parent.

A pairing is a repeat when the same expert met the same counterpart in any earlier pairing
(strictly earlier `met_at`, so the evaluation itself and its extensions never count) at most
`window_days` days before. Periods are calendar weeks (ISO, from Monday) or months of the
centre's display time zone, as PostgreSQL's date_trunc cuts them.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import asyncpg

from evaluation.familiar import DEFAULT_TOP, FamiliarQuery, PeriodCounts, check_query, summarise

# $1 first local day, $2 the day after the last, $3 'week' | 'month', $4 time zone, $5 window days.
# GROUPING SETS gives the periods and, in the row whose period is NULL, the whole range (distinct
# experts over the range are not the sum of the periods').
PERIOD_COUNTS = """
WITH met AS (
    SELECT p.expert_id, p.counterpart, p.met_at,
           split_part(p.counterpart, ':', 1) AS kind,
           substr(p.counterpart, strpos(p.counterpart, ':') + 1) AS other,
           coalesce(d.parent_id, d.id) AS evaluation_id,
           date_trunc($3, p.met_at AT TIME ZONE $4)::date AS period,
           EXISTS (
               SELECT 1 FROM pairings q
               WHERE q.expert_id = p.expert_id AND q.counterpart = p.counterpart
                 AND q.met_at < p.met_at AND q.met_at >= p.met_at - make_interval(days => $5)
           ) AS repeat
    FROM pairings p
    JOIN draws d ON d.id = p.draw_id
    WHERE d.purpose = 'evaluation'
      AND p.met_at >= ($1::date::timestamp AT TIME ZONE $4)
      AND p.met_at < ($2::date::timestamp AT TIME ZONE $4)
)
SELECT period, grouping(period) = 1 AS is_total,
       count(DISTINCT evaluation_id) AS evaluations,
       count(DISTINCT evaluation_id) FILTER (WHERE kind = 'tenderer' AND repeat) AS tenderer_repeat_evaluations,
       count(DISTINCT evaluation_id) FILTER (WHERE kind = 'agent' AND repeat) AS agent_repeat_evaluations,
       -- each pair of experts once per evaluation, whichever direction(s) were written
       count(DISTINCT (evaluation_id, least(expert_id::text, other), greatest(expert_id::text, other)))
           FILTER (WHERE kind = 'expert') AS expert_pairs,
       count(DISTINCT (evaluation_id, least(expert_id::text, other), greatest(expert_id::text, other)))
           FILTER (WHERE kind = 'expert' AND repeat) AS expert_repeat_pairs,
       count(DISTINCT expert_id) AS experts
FROM met
GROUP BY GROUPING SETS ((period), ())
ORDER BY is_total, period
"""

# The expert–tenderer and expert–agent pairs that met in more than one evaluation of the range,
# most meetings first, at most $5 of each kind. Agents are named by their organisation or user.
REPEATED_PAIRINGS = """
WITH met AS (
    SELECT p.expert_id, split_part(p.counterpart, ':', 1) AS kind,
           substr(p.counterpart, strpos(p.counterpart, ':') + 1) AS other,
           count(DISTINCT coalesce(d.parent_id, d.id)) AS meetings,
           min(p.met_at) AS first_met_at, max(p.met_at) AS last_met_at
    FROM pairings p
    JOIN draws d ON d.id = p.draw_id
    WHERE d.purpose = 'evaluation'
      AND split_part(p.counterpart, ':', 1) IN ('tenderer', 'agent')
      AND p.met_at >= ($1::date::timestamp AT TIME ZONE $3)
      AND p.met_at < ($2::date::timestamp AT TIME ZONE $3)
    GROUP BY 1, 2, 3
    HAVING count(DISTINCT coalesce(d.parent_id, d.id)) > 1
), ranked AS (
    SELECT met.*, x.name AS expert_name,
           row_number() OVER (PARTITION BY kind ORDER BY meetings DESC, last_met_at DESC, x.name, other) AS rank
    FROM met JOIN experts x ON x.id = met.expert_id
)
SELECT r.expert_id, r.expert_name, r.kind, r.other, r.meetings, r.first_met_at, r.last_met_at,
       CASE WHEN r.kind = 'tenderer' THEN r.other ELSE coalesce(o.name, u.display_name, r.other) END AS counterpart_name
FROM ranked r
LEFT JOIN organisations o ON r.kind = 'agent' AND o.id::text = r.other
LEFT JOIN users u ON r.kind = 'agent' AND u.id::text = r.other
WHERE r.rank <= $4
ORDER BY r.kind DESC, r.rank
"""


def _counts(row: asyncpg.Record) -> PeriodCounts:
    return PeriodCounts(
        evaluations=row["evaluations"], tenderer_repeat_evaluations=row["tenderer_repeat_evaluations"],
        agent_repeat_evaluations=row["agent_repeat_evaluations"], expert_pairs=row["expert_pairs"],
        expert_repeat_pairs=row["expert_repeat_pairs"], experts=row["experts"])


async def period_counts(conn: asyncpg.Connection, start: date, end: date, period: str, zone: str,
                        window_days: int) -> tuple[dict[date, PeriodCounts], PeriodCounts]:
    """Counts per period start (periods without evaluations are absent) and over the whole range."""
    rows = await conn.fetch(PERIOD_COUNTS, start, end + timedelta(days=1), period, zone, window_days)
    by_period = {row["period"]: _counts(row) for row in rows if not row["is_total"]}
    totals = next((_counts(row) for row in rows if row["is_total"]), PeriodCounts())
    return by_period, totals


async def repeated_pairings(conn: asyncpg.Connection, start: date, end: date, zone: str,
                            top: int) -> dict[str, list[dict[str, Any]]]:
    """The most repeated expert–tenderer and expert–agent pairs of the range, `top` of each kind."""
    rows = await conn.fetch(REPEATED_PAIRINGS, start, end + timedelta(days=1), zone, top)
    out: dict[str, list[dict[str, Any]]] = {"tenderer": [], "agent": []}
    for row in rows:
        out[row["kind"]].append({
            "expert_id": str(row["expert_id"]), "expert_name": row["expert_name"],
            "counterpart": f"{row['kind']}:{row['other']}", "counterpart_name": row["counterpart_name"],
            "meetings": row["meetings"], "first_met_at": row["first_met_at"].isoformat(),
            "last_met_at": row["last_met_at"].isoformat()})
    return out


async def familiar_summary(conn: asyncpg.Connection, *, start: date, end: date, period: str = "month",
                           window_days: int = 180, zone: str, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """The familiar-faces summary of local dates start..end (inclusive) in time zone `zone`.

    The same JSON-ready dict as GET /api/familiar-faces answers. Raises FamiliarQueryError for
    a request `check_query` refuses (bad period, start after end, more than 5 years, window_days
    outside 1..730, top outside 1..100).
    """
    query = check_query(start, end, period, window_days, top)
    if conn.is_in_transaction():  # the caller's transaction decides what the two queries see
        return await _summary(conn, query, zone)
    async with conn.transaction(isolation="repeatable_read", readonly=True):  # both queries see one snapshot
        return await _summary(conn, query, zone)


async def _summary(conn: asyncpg.Connection, query: FamiliarQuery, zone: str) -> dict[str, Any]:
    by_period, totals = await period_counts(conn, query.start, query.end, query.period, zone, query.window_days)
    repeated = await repeated_pairings(conn, query.start, query.end, zone, query.top)
    return summarise(query, zone, by_period, totals, repeated)
