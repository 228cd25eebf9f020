"""Drawn people's side of a draw: notices out through the notifier, answers by link or in the app,
silence past the reply window, and the next backup in draw order.

Acts lock the draw, then the seat (draw_service takes them in the same order), and log every
step; notices wait sealed in the outbox until sent after commit.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from typing import Any

import asyncpg

from evaluation import draw_store as ds
from evaluation.draw_rules import DrawRefused, missing_seats, next_backup, notice_text, seat_context, seat_counts
from evaluation.draw_service import Deps, announce, people_of, queue_notice
from evaluation.notifier import Notice, NotifyError, make_notifier
from tenderhall import formatting, log
from tenderhall.accounts import CurrentUser

MAX_SEND_ATTEMPTS = 5
SEND_BATCH = 50


# ---------------------------------------------------------------------------- notices out


async def deliver_pending(deps: Deps, limit: int = SEND_BATCH) -> int:
    """Send queued notices through the configured notifier; a failure is retried by the next run,
    up to MAX_SEND_ATTEMPTS. Returns how many were sent."""
    notifier = make_notifier(deps.settings)
    sent = 0
    async with deps.pool.acquire() as conn, conn.transaction():
        for row in await ds.pending_notifications(conn, limit):
            context = seat_context(row["draw_id"], row["position"])
            message = json.loads(deps.data_key.open("draw-notice", context, row["message_sealed"]))
            try:
                notice = await _notice(conn, deps, row["draw_id"], row["position"], message)
                await notifier.send(notice)
            except NotifyError as exc:
                await ds.notification_failed(conn, row["id"], str(exc), row["attempts"] + 1 >= MAX_SEND_ATTEMPTS)
                continue
            await ds.notification_sent(conn, row["id"])
            sent += 1
    return sent


async def _notice(conn: asyncpg.Connection, deps: Deps, draw_id: uuid.UUID, position: int,
                  message: dict[str, Any]) -> Notice:
    draw = await ds.draw(conn, draw_id)
    seat = await ds.seat(conn, draw_id, position)
    person = uuid.UUID(message["person"])
    contacts = (ds.intermediary_contacts if draw["purpose"] == "intermediary" else ds.expert_contacts)
    contact = (await contacts(conn, [person])).get(person)
    if contact is None:
        raise NotifyError("the drawn person is no longer in the pool")
    zone = formatting.display_zone(deps.settings.display_timezone)
    link = f"{deps.settings.base_url()}/draws/reply/{message['token']}"
    subject, body = notice_text(purpose=draw["purpose"], name=contact["name"],
                                needed_at_local=formatting.when(draw["needed_at"], zone, seconds=False),
                                reply_by_local=formatting.when(seat["reply_by"], zone, seconds=False),
                                specialty=message["specialty"], link=link)
    return Notice(recipient_name=contact["name"], phone=contact["phone"], email=contact["email"], subject=subject,
                  body=body, link=link, reference=f"{draw_id}/{position}")


# ---------------------------------------------------------------------------- answers and replacements


async def _after_seat_change(conn: asyncpg.Connection, deps: Deps, draw: asyncpg.Record, seat: asyncpg.Record,
                             status: str) -> list[tuple[str, dict]]:
    """Log the seat's new status; on decline or silence notify the group's next backup, or say the draw ran short."""
    entries: list[tuple[str, dict]] = [("draw.seat", {"draw": str(draw["id"]), "position": seat["position"], "status": status})]
    if status in ("declined", "expired"):
        seats = await ds.seats(conn, [draw["id"]])
        backup = next_backup(seats, seat["group_index"])
        if backup is not None:
            token = secrets.token_urlsafe(32)
            await ds.notify_seat(conn, draw["id"], backup["position"], hashlib.sha256(token.encode()).digest(),
                                 draw["reply_minutes"])
            person = (await people_of(conn, deps, [backup]))[(draw["id"], backup["position"])]
            await queue_notice(conn, deps, draw["id"], backup["position"],
                                {"person": str(person), "token": token, "specialty": backup["specialty"]})
            entries.append(("draw.seat", {"draw": str(draw["id"]), "position": backup["position"], "status": "notified"}))
        else:
            chain = await ds.chain(conn, await ds.root_of(conn, draw["id"]))
            seats = await ds.seats(conn, [d["id"] for d in chain])
            missing = missing_seats(chain[0]["spec"], [dict(s) for s in seats])
            if missing:
                entries.append(("draw.short", {"draw": str(draw["id"]), "missing": missing}))
    if status == "confirmed" and draw["purpose"] == "intermediary":
        person = (await people_of(conn, deps, [seat]))[(draw["id"], seat["position"])]
        await ds.insert_intermediary_service(conn, draw["id"], person, draw["subject"]["purchaser_name"], draw["needed_at"])
    return entries


async def _locked(conn: asyncpg.Connection, draw_id: uuid.UUID, position: int) -> tuple[asyncpg.Record, asyncpg.Record]:
    """The draw, then its seat, locked in that order: every act takes them so, and none waits on another in reverse."""
    draw = await ds.draw(conn, draw_id, for_update=True)
    return draw, await ds.seat(conn, draw_id, position, for_update=True)


async def _answer(conn: asyncpg.Connection, deps: Deps, found: asyncpg.Record, answer: Any, reason: Any) -> dict[str, Any]:
    if answer not in ("accept", "decline"):
        raise DrawRefused('answer must be "accept" or "decline"', code="invalid_answer", status=422)
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise DrawRefused("reason must be text of at most 500 characters", code="invalid_answer", status=422)
    draw, seat = await _locked(conn, found["draw_id"], found["position"])
    if draw["unsealed_at"] is not None or (draw["parent_id"] and await _root_unsealed(conn, draw["id"])):
        raise DrawRefused("the sign-in has opened: this committee is closed", code="committee_closed")
    if seat["status"] != "notified":
        raise DrawRefused(f"this invitation was already answered or closed ({seat['status']})", code="already_answered")
    if await conn.fetchval("SELECT now()") >= seat["reply_by"]:
        raise DrawRefused("the reply window has closed; the next backup is asked instead", code="reply_window_closed",
                          status=410)
    status = "confirmed" if answer == "accept" else "declined"
    await ds.answer_seat(conn, seat["draw_id"], seat["position"], status, (reason or None) if status == "declined" else None)
    entries = await _after_seat_change(conn, deps, draw, seat, status)
    await announce(conn, deps, draw, entries, "draw.seat", {"counts": seat_counts(await ds.seats(conn, [draw["id"]]))})
    return {"draw": str(draw["id"]), "position": seat["position"], "status": status}


async def reply_by_token(deps: Deps, token: str, answer: Any, reason: Any) -> dict[str, Any]:
    """The one-time link's answer; 404 for an unknown link."""
    async with deps.pool.acquire() as conn, conn.transaction():
        seat = await ds.seat_by_token(conn, hashlib.sha256(token.encode()).digest()) if 20 <= len(token) <= 100 else None
        if seat is None:
            raise DrawRefused("this confirmation link is not valid", code="link_not_found", status=404)
        return await _answer(conn, deps, seat, answer, reason)


async def invitation_by_token(deps: Deps, token: str) -> dict[str, Any]:
    """What the link's page shows: time, specialty, deadline and state; never the project."""
    async with deps.pool.acquire() as conn:
        row = None
        if 20 <= len(token) <= 100:
            row = await conn.fetchrow("""SELECT s.status, s.reply_by, s.specialty, d.needed_at, d.purpose
                                         FROM draw_seats s JOIN draws d ON d.id = s.draw_id WHERE s.token_hash = $1""",
                                      hashlib.sha256(token.encode()).digest())
        if row is None:
            raise DrawRefused("this confirmation link is not valid", code="link_not_found", status=404)
        return dict(row)


async def invitations(deps: Deps, user: CurrentUser) -> list[dict[str, Any]]:
    """The logged-in expert's invitations waiting for an answer (the in-app prompt)."""
    async with deps.pool.acquire() as conn:
        expert_id = await ds.expert_of_user(conn, user.id)
        if expert_id is None:
            return []
        waiting = [s for s in await ds.notified_seats(conn) if await _is_draw_purpose(conn, s["draw_id"], "intermediary") is False]
        people = await people_of(conn, deps, waiting)
        out = []
        for s in waiting:
            if people[(s["draw_id"], s["position"])] == expert_id:
                draw = await ds.draw(conn, s["draw_id"])
                out.append({"draw": str(s["draw_id"]), "position": s["position"], "specialty": s["specialty"],
                            "purpose": draw["purpose"], "needed_at": log.iso_utc(draw["needed_at"]),
                            "reply_by": log.iso_utc(s["reply_by"])})
        return out


async def _is_draw_purpose(conn: asyncpg.Connection, draw_id: uuid.UUID, purpose: str) -> bool:
    return await conn.fetchval("SELECT purpose = $2 FROM draws WHERE id = $1", draw_id, purpose)


async def reply_in_app(deps: Deps, user: CurrentUser, draw_id: uuid.UUID, position: int, answer: Any,
                       reason: Any) -> dict[str, Any]:
    async with deps.pool.acquire() as conn, conn.transaction():
        seat = await ds.seat(conn, draw_id, position)
        expert_id = await ds.expert_of_user(conn, user.id)
        if seat is None or expert_id is None or (await people_of(conn, deps, [seat]))[(draw_id, position)] != expert_id:
            raise DrawRefused("no invitation of yours has this id", code="invitation_not_found", status=404)
        return await _answer(conn, deps, seat, answer, reason)


async def _root_unsealed(conn: asyncpg.Connection, draw_id: uuid.UUID) -> bool:
    root = await ds.draw(conn, await ds.root_of(conn, draw_id))
    return root["unsealed_at"] is not None


async def expire_overdue(deps: Deps) -> int:
    """Seats whose reply window passed in silence: expired, and their group's next backup asked.

    Each seat is re-read under its draw's lock: another instance, or the expert's own late
    answer, may have settled it since it was listed."""
    done = 0
    async with deps.pool.acquire() as conn, conn.transaction():
        for listed in await ds.overdue_seats(conn):
            draw, seat = await _locked(conn, listed["draw_id"], listed["position"])
            if seat["status"] != "notified" or seat["reply_by"] > await conn.fetchval("SELECT now()"):
                continue
            await ds.answer_seat(conn, seat["draw_id"], seat["position"], "expired", None)
            entries = await _after_seat_change(conn, deps, draw, seat, "expired")
            await announce(conn, deps, draw, entries, "draw.seat",
                            {"counts": seat_counts(await ds.seats(conn, [draw["id"]]))})
            done += 1
    return done
