"""The frame every opening-hall act runs in: one transaction, the opening row locked, the act logged and announced.

Every act locks the tender's opening row first, so acts on one opening are serialised across
all server instances, and each commits its state change, its transparency-log entry and its
bus event together.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from typing import Any, AsyncIterator, Iterable

import asyncpg

from tenderhall import bus, log
from tenderhall.accounts import CurrentUser
from trading import hall_store as hs
from trading import store
from trading.hall import HallRefused, Viewer, hall_opens_at, require_host, require_step
from trading.service import Deps, server_now, topic
from trading.tenders import NotFound


# ---------------------------------------------------------------------------- common


async def published_tender(conn: asyncpg.Connection, tender_id: uuid.UUID) -> asyncpg.Record:
    row = await store.tender(conn, tender_id)
    if row is None or row["status"] == "draft":
        raise NotFound(f"no published tender has id {tender_id}", code="tender_not_found")
    return row


async def locked_opening(conn: asyncpg.Connection, tender_id: uuid.UUID, now: datetime) -> tuple[asyncpg.Record, asyncpg.Record]:
    """The tender and its opening row, locked for this transaction; the row is made when the hall opens."""
    tender = await published_tender(conn, tender_id)
    if tender["status"] == "cancelled":
        raise HallRefused("this tender was cancelled; there is no opening", code="tender_cancelled")
    if now < hall_opens_at(tender["deadline"], tender["hall_opens_minutes"]):
        raise HallRefused("the hall is not open yet", code="hall_locked")
    await hs.ensure_opening(conn, tender_id, now)
    return tender, await hs.opening(conn, tender_id, for_update=True)


async def viewer_of(conn: asyncpg.Connection, tender: asyncpg.Record, user: CurrentUser | None, frozen: bool) -> Viewer:
    if user is None:  # the public (open data): sees what an observer in the hall sees
        return Viewer(host=False, bidder=False, custodian_position=None, signed_in=False)
    tender_id = tender["id"]
    bidder = False
    signed_in = False
    if user.organisation_id is not None and user.has("bidder"):
        has_bid = (hs.org_has_opening_bid if frozen else hs.org_has_active_bid)
        bidder = await has_bid(conn, tender_id, user.organisation_id)
        row = await hs.bidder(conn, tender_id, user.organisation_id)
        signed_in = row is not None and row["signed_in_at"] is not None
    position = await hs.custodian_position(conn, tender_id, user.id)
    return Viewer(host=user.id == tender["agent_id"], bidder=bidder, custodian_position=position, signed_in=signed_in)


async def log_and_announce(conn: asyncpg.Connection, deps: Deps, tender_id: uuid.UUID, kind: str, body: dict[str, Any],
               event: dict[str, Any] | None = None) -> int:
    """Log the act as "opening.<kind>" and announce it as "hall.<kind>", in the caller's transaction."""
    appended = await log.append_entry(conn, deps.signer, f"opening.{kind}", {"tender": str(tender_id), **body})
    await bus.emit(conn, topic(tender_id), f"hall.{kind}", {"log_index": appended.index, **(event or {})})
    return appended.index


@contextlib.asynccontextmanager
async def opening_act(deps: Deps, tender_id: uuid.UUID) -> AsyncIterator[
        tuple[asyncpg.Connection, asyncpg.Record, asyncpg.Record, datetime]]:
    """One act on an opening: its transaction, the server time, the tender and the opening row locked."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await locked_opening(conn, tender_id, now)
            yield conn, tender, row, now


@contextlib.asynccontextmanager
async def host_act(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, allowed: Iterable[str], doing: str
                    ) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Record, asyncpg.Record, datetime]]:
    """An act only the host may take, and only at one of the `allowed` steps."""
    async with opening_act(deps, tender_id) as (conn, tender, row, now):
        require_host(await viewer_of(conn, tender, user, True))
        require_step(row["step"], allowed, doing)
        yield conn, tender, row, now


def require_bidder_org(viewer: Viewer, user: CurrentUser) -> uuid.UUID:
    if not viewer.bidder or user.organisation_id is None:
        raise HallRefused("only a bidder with a bid in this opening may do this", code="not_a_bidder", status=403)
    return user.organisation_id


async def record_failed_attempt(deps: Deps, tender_id: uuid.UUID, bid_id: uuid.UUID, failure: str) -> None:
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            await hs.opening(conn, tender_id, for_update=True)
            await hs.record_failure(conn, bid_id, failure)
            await log_and_announce(conn, deps, tender_id, "decrypt_failed", {"bid": str(bid_id), "failure": failure}, {})
