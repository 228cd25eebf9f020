"""Venues (trading centres, with region codes) and their evaluation rooms, as sessions reserve them."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg

from evaluation import session_store as ss
from evaluation.draw_service import Deps
from evaluation.session_rules import SessionRefused
from evaluation.session_service import invalid_input, text_of
from tenderhall import log
from tenderhall.accounts import CurrentUser

REGION = re.compile(r"[0-9]{6}")
MAX_ROOMS = 100


def parse_venue(data: Any) -> tuple[str, str, str, list[tuple[str, int]]]:
    """(name, region code, address, rooms [(name, seats)]) or 422 naming the field."""
    if not isinstance(data, dict):
        raise invalid_input("send a JSON object")
    name = text_of(data, "name", 200)
    region = data.get("region_code")
    if not isinstance(region, str) or not REGION.fullmatch(region):
        raise invalid_input("region_code must be a six-digit administrative division code (GB/T 2260), e.g. 350100")
    address = text_of(data, "address", 500, required=False)
    raw_rooms = data.get("rooms", [])
    if not isinstance(raw_rooms, list) or len(raw_rooms) > MAX_ROOMS:
        raise invalid_input(f"rooms must be a list of at most {MAX_ROOMS} rooms")
    rooms: list[tuple[str, int]] = []
    for i, raw in enumerate(raw_rooms):
        if not isinstance(raw, dict):
            raise invalid_input(f"rooms[{i}] must be an object {{name, seats}}")
        room_name = text_of(raw, "name", 100)
        seats = raw.get("seats")
        if isinstance(seats, bool) or not isinstance(seats, int) or not 1 <= seats <= 50:
            raise invalid_input(f"rooms[{i}].seats must be a whole number from 1 to 50")
        rooms.append((room_name, seats))
    if len({r for r, _ in rooms}) != len(rooms):
        raise invalid_input("two rooms have the same name")
    return name, region, address, rooms


async def create_venue(deps: Deps, user: CurrentUser, data: Any) -> dict[str, Any]:
    """An admin adds a venue with its evaluation rooms (logged)."""
    name, region, address, rooms = parse_venue(data)
    venue_id = uuid.uuid4()
    async with deps.pool.acquire() as conn, conn.transaction():
        try:
            await ss.insert_venue(conn, venue_id, name, region, address)
        except asyncpg.UniqueViolationError:
            raise SessionRefused(f"a venue named {name!r} exists already", code="venue_exists") from None
        room_ids = []
        for room_name, seats in rooms:
            room_id = uuid.uuid4()
            await ss.insert_room(conn, room_id, venue_id, room_name, seats)
            room_ids.append(room_id)
        await log.append_entry(conn, deps.platform_key, "venue.created", {
            "venue": str(venue_id), "name": name, "region_code": region, "by": str(user.id),
            "rooms": [{"id": str(i), "name": n, "seats": s} for i, (n, s) in zip(room_ids, rooms)]})
    return {"id": str(venue_id), "rooms": [str(i) for i in room_ids]}


async def list_venues(deps: Deps) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        venues = await ss.venues(conn)
        rooms = await ss.rooms_of_venues(conn)
    by_venue: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for r in rooms:
        by_venue.setdefault(r["venue_id"], []).append({"id": str(r["id"]), "name": r["name"], "seats": r["seats"]})
    return {"venues": [{"id": str(v["id"]), "name": v["name"], "region_code": v["region_code"],
                        "address": v["address"], "rooms": by_venue.get(v["id"], [])} for v in venues]}
