"""The fault rules applied to a session (发改办法规〔2025〕807号, as session_rules.py reads them):
rooms not ready before the start, the tenderer's decision after the delay, rooms down during
the evaluation and the suspension once one stays down past its window."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Mapping

import asyncpg

from evaluation import session_rules as rules
from evaluation import session_store as ss
from evaluation.draw_service import Deps
from evaluation.session_service import announce, server_now, session_act, topic
from tenderhall.accounts import CurrentUser


def fault_rules(session: Mapping[str, Any]) -> rules.FaultRules:
    return rules.FaultRules(session["start_delay_max"], session["rejoin_window"])


async def fault_outcome(conn: asyncpg.Connection, session: Mapping[str, Any], now: datetime) -> rules.FaultOutcome | None:
    if session["step"] in rules.FINAL or session["step"] == "suspended":
        return None
    rooms = [r for r in await ss.session_rooms(conn, session["id"]) if not r["left_out"]]
    started = session["step"] in rules.STARTED
    facts = [rules.RoomFacts(str(r["room_id"]), (r["down_since"] is None) if started else r["ready_at"] is not None,
                             r["down_since"]) for r in rooms]
    return rules.session_fault_outcome(facts, session["scheduled_start"], now, fault_rules(session), step=session["step"])


async def record_decision(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """The tenderer's decision once rooms are still not ready two hours after the start (recorded)."""
    choice = data.get("choice") if isinstance(data, dict) else None
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.check_action(session["step"], caller.participant, "record_decision")
        outcome = await fault_outcome(conn, session, now)
        assert outcome is not None
        decision = rules.record_decision(outcome, str(choice), now)
        rooms = [uuid.UUID(r) for r in decision.rooms]
        await ss.set_decision(conn, session_id, decision.choice, rooms, user.id, now)
        if decision.choice == "postpone":
            await ss.set_step(conn, session_id, rules.suspend(session["step"]), now)
        else:
            await ss.leave_rooms_out(conn, session_id, rooms)
            for room in rooms:
                await ss.room_event(conn, session_id, room, "left_out", now)
        await announce(conn, deps, session_id, "decision", {"choice": decision.choice, "rooms": decision.rooms,
                                                            "by": str(user.id)})
    return {"choice": decision.choice, "rooms": list(decision.rooms)}


async def apply_fault_rules(deps: Deps, session_id: uuid.UUID) -> str | None:
    """The job's look at one session: suspend it once a room is lost; announce a decision that is due."""
    async with deps.pool.acquire() as conn, conn.transaction():
        session = await ss.session(conn, session_id, for_update=True)
        if session is None:
            return None
        now = await server_now(conn)
        outcome = await fault_outcome(conn, session, now)
        if outcome is None:
            return None
        if outcome.outcome == "suspend":
            await ss.set_step(conn, session_id, rules.suspend(session["step"]), now)
            await announce(conn, deps, session_id, "suspended", {"rooms": list(outcome.rooms),
                                                                  "reason": "rooms down past the rejoin window"})
        elif outcome.outcome == "tenderer_decides" and session["decision"] is None:
            already = await conn.fetchval("SELECT true FROM events WHERE topic = $1 AND kind = 'session.decision_due' "
                                          "LIMIT 1", topic(session_id))
            if not already:
                await announce(conn, deps, session_id, "decision_due", {"rooms": list(outcome.rooms)})
        return outcome.outcome
