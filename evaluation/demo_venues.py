"""Demo venues for remote evaluation (远程异地评标): Fujian's trading centres and their evaluation rooms.

The venues are made the way an admin makes them (venue_service.create_venue, one `venue.created`
log entry each), and only those missing by name, so seeding twice adds nothing. The demo then
tries to schedule an evaluation session for its tender through session_service.create; a session
needs a closed opening, which the demo cannot reach on its own (the tender's deadline is still
ahead when the demo ends), so the lines printed say what a visitor does next, with the exact
body to send.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Sequence

from evaluation import draw_store as ds
from evaluation import session_service, venue_service
from evaluation.draw_service import Deps
from evaluation.session_rules import SessionRefused
from tenderhall.accounts import CurrentUser

# (name, six-digit region code, address, rooms [(name, seats)]). Fuzhou's centre is the demo's
# own (its tenders are entered there: the main venue); the others are the cities the demo pool's
# experts live in (demo_pool.REGIONS) and Longyan, each lending one to three rooms of 5-9 seats.
VENUES: tuple[tuple[str, str, str, tuple[tuple[str, int], ...]], ...] = (
    ("福州市公共资源交易中心", "350100", "福建省福州市",
     (("1号评标室", 9), ("2号评标室", 9), ("3号评标室", 7), ("4号评标室", 7), ("远程异地评标室", 5))),
    ("厦门市公共资源交易中心", "350200", "福建省厦门市", (("1号评标室", 7), ("2号评标室", 5), ("远程异地评标室", 9))),
    ("泉州市公共资源交易中心", "350500", "福建省泉州市", (("1号评标室", 7), ("远程异地评标室", 5))),
    ("漳州市公共资源交易中心", "350600", "福建省漳州市", (("1号评标室", 7), ("远程异地评标室", 5))),
    ("莆田市公共资源交易中心", "350300", "福建省莆田市", (("远程异地评标室", 5),)),
    ("三明市公共资源交易中心", "350400", "福建省三明市", (("远程异地评标室", 7),)),
    ("南平市公共资源交易中心", "350700", "福建省南平市", (("远程异地评标室", 5),)),
    ("龙岩市公共资源交易中心", "350800", "福建省龙岩市", (("1号评标室", 7), ("远程异地评标室", 5))),
)
MAIN_VENUE = VENUES[0][0]
# The demo session's rooms (venue, room): the main venue's first, then one in each sub-venue,
# whose staff the caller passes in this order.
SESSION_ROOMS = (("福州市公共资源交易中心", "1号评标室"), ("厦门市公共资源交易中心", "远程异地评标室"),
                 ("泉州市公共资源交易中心", "远程异地评标室"))


async def seed_demo_venues(deps: Deps, admin: CurrentUser) -> dict[str, int]:
    """Create each demo venue not already there (matched by name) with its rooms, as `admin`.

    Returns {"created": venues made now, "existing": venues left alone}. A venue made meanwhile
    by someone else (venue_exists) counts as existing; any other refusal is raised.
    """
    present = {v["name"] for v in (await venue_service.list_venues(deps))["venues"]}
    counts = {"created": 0, "existing": 0}
    for name, region, address, rooms in VENUES:
        if name in present:
            counts["existing"] += 1
            continue
        try:
            await venue_service.create_venue(deps, admin, {
                "name": name, "region_code": region, "address": address,
                "rooms": [{"name": room, "seats": seats} for room, seats in rooms]})
        except SessionRefused as exc:
            if exc.code != "venue_exists":
                raise
            counts["existing"] += 1
            continue
        counts["created"] += 1
    return counts


def _room(venues: Sequence[dict[str, Any]], venue_name: str, room_name: str) -> dict[str, Any]:
    venue = next(v for v in venues if v["name"] == venue_name)
    return next(r for r in venue["rooms"] if r["name"] == room_name)


async def _committee(deps: Deps, tender_code: str) -> tuple[uuid.UUID, datetime | None]:
    """The tender's id and when its drawn committee is needed (None before any draw has run)."""
    async with deps.pool.acquire() as conn:
        tender_id = await conn.fetchval("SELECT id FROM tenders WHERE code = $1", tender_code)
        if tender_id is None:
            raise LookupError(f"the demo has no tender {tender_code}")
        draws = [await ds.draw(conn, d) for d in await ds.evaluation_draws_of(conn, [tender_id])]
    needed = [d["needed_at"] for d in draws if d is not None and d["parent_id"] is None and d["status"] == "drawn"]
    return tender_id, min(needed, default=None)


async def seed_and_describe(deps: Deps, *, admin: CurrentUser, agent: CurrentUser, staff: Sequence[CurrentUser],
                            supervisor: CurrentUser, tender_code: str) -> list[str]:
    """Seed the venues, try to schedule the demo session, and return the lines the demo prints.

    `staff` are the users who staff the sub-venues' rooms (SESSION_ROOMS after the first, in
    order); the agent staffs the main venue's room. The session starts when the drawn
    committee is needed.
    """
    counts = await seed_demo_venues(deps, admin)
    venues = (await venue_service.list_venues(deps))["venues"]
    ours = {name for name, *_ in VENUES}
    lines = [f"  {len([v for v in venues if v['name'] in ours])} venues across Fujian "
             f"({counts['created']} made now), listed on /venues:"]
    for v in sorted((v for v in venues if v["name"] in ours), key=lambda v: v["region_code"]):
        rooms = ", ".join(f"{r['name']} {r['seats']}座" for r in v["rooms"])
        main = " — main venue (主场) of the demo's tenders" if v["name"] == MAIN_VENUE else ""
        lines.append(f"    {v['region_code']} {v['name']}: {rooms}{main}")

    tender_id, start = await _committee(deps, tender_code)
    rooms = [(_room(venues, venue, room), person) for (venue, room), person in zip(SESSION_ROOMS, [agent, *staff])]
    if start is None:
        lines.append(f"  No evaluation session: {tender_code} has no drawn committee yet. Sessions: /sessions")
        return lines
    body = {"tender_id": str(tender_id), "lot_code": "L1", "scheduled_start": start.isoformat(),
            "rooms": [{"room_id": room["id"], "staff_id": str(person.id)} for room, person in rooms],
            "supervisors": [str(supervisor.id)]}
    try:
        created = await session_service.create(deps, agent, body)
    except SessionRefused as exc:
        if exc.code not in ("opening_not_closed", "no_bids"):
            raise
        staffed = ", ".join(f"{person.username} ({venue} {room})"
                            for (venue, room), person in zip(SESSION_ROOMS[1:], staff))
        lines += [
            f"  Evaluation sessions: /sessions (none yet: {exc.message}).",
            f"  Next, as agent: host {tender_code}'s hall at /tenders/{tender_id}/hall through to its close, then "
            f"schedule the session on /sessions/new — or POST /api/sessions with this body: the main venue's room "
            f"staffed by agent, sub-venue rooms by {staffed}, supervisor {supervisor.username}:",
            "    " + json.dumps(body, ensure_ascii=False, separators=(", ", ": ")),
            "  From an hour before the start the agent opens sign-in on /sessions/<id> (the drawn names unseal); "
            "each room's staff confirm it ready; drawn experts sign in at a room with the login linked to their "
            "pool entry (the demo links only `expert`'s).",
        ]
        return lines
    lines.append(f"  Evaluation session scheduled for {tender_code} at {start.isoformat()}: "
                 f"/sessions/{created['id']} (all sessions: /sessions)")
    return lines
