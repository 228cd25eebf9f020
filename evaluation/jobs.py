"""Periodic work of the evaluation domain: silent reply windows expire, queued notices go out,
sessions' fault rules are applied.

Run every `draw_job_seconds` (30 s by default) by every instance. The draw jobs lock rows with
SKIP LOCKED, so instances share the work without doing any of it twice; the fault rules lock
each session's row and look again under the lock, so a second instance finds nothing to do.
"""

from __future__ import annotations

from typing import Any

from evaluation import draw_replies, draw_service, session_faults, session_store


def _deps(state: Any) -> draw_service.Deps:
    return draw_service.Deps(state["pool"], state["settings"], state["platform_key"], state["data_key"])


async def expire_reply_windows(app: Any, state: Any) -> None:
    await draw_replies.expire_overdue(_deps(state))


async def send_draw_notices(app: Any, state: Any) -> None:
    await draw_replies.deliver_pending(_deps(state))


async def apply_fault_rules(app: Any, state: Any) -> None:
    """Sessions whose rooms stay down past the rejoin window are suspended; a due decision is announced."""
    deps = _deps(state)
    async with deps.pool.acquire() as conn:
        sessions = await session_store.active_sessions(conn)
    for row in sessions:
        if await session_faults.apply_fault_rules(deps, row["id"]) == "suspend":
            await state["session_media"].end(row["id"])


JOBS = [expire_reply_windows, send_draw_notices, apply_fault_rules]
