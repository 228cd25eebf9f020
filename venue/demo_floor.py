"""The demo's evaluation floor: the third floor of 福州市公共资源交易中心 (FZ-3F), 60 × 30 m.

West, the public side: the entrance hall from the street door, the bidders' waiting area, a public
corridor and the opening hall. East, the closed evaluation area behind one reader (ID card and
face): the check-in hall with the phone lockers, the isolation corridor and, along it, six
evaluation rooms to the south and the remote evaluation room, the supervision room, the archive
and the experts' lounge to the north. Each evaluation room is entered through two doors with a
vestibule between them (an interlock: the corridor door, then the room door), so one badge
passes one person. North of it all, a staff corridor serves the offices and the supervision room.

Coordinates are local metres, x east and y north, origin at the south-west corner. Rooms are
6 × 8 m (the remote room 12 × 8 m), corridors 2.5 m wide. The UWB system's own origin sits
near the south-west corner, its axes turned 1.5° from the building's (DEMO_TRANSFORM).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

import asyncpg

from evaluation import session_store
from tenderhall import log
from venue import floor_service
from venue.floorplan import parse_plan, parse_transform, transform_json
from venue.model import Transform

CODE = "FZ-3F"
LEVEL = 3
NAME = "三层开评标区"
VENUE = "福州市公共资源交易中心"
DEMO_TRANSFORM = Transform(scale=1.0, rotation_deg=1.5, dx=0.42, dy=-0.37)
CORRIDOR = (8.0, 10.5)  # the isolation corridor's south and north walls
# The six evaluation rooms south of the isolation corridor: (zone id, venue room, seats). The demo
# venue has rooms 1-4; 5 and 6 are added to it (seeds 5-9, like the demo's others).
SOUTH_ROOMS = (("ev-1", "1号评标室", 9), ("ev-2", "2号评标室", 9), ("ev-3", "3号评标室", 7), ("ev-4", "4号评标室", 7),
               ("ev-5", "5号评标室", 7), ("ev-6", "6号评标室", 7))
REMOTE_ROOM = ("ev-remote", "远程异地评标室", 5)
ROOM_STAFF = 2  # a zone's capacity is its seats plus the room's staff and a supervisor


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _unit(zone_id: str, kind: str, name: str, ring: list[list[float]], *, closed: bool = False,
          capacity: int | None = None, room_id: uuid.UUID | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"feature_type": "unit", "kind": kind, "name": name, "closed_area": closed}
    if capacity is not None:
        props["capacity"] = capacity
    if room_id is not None:
        props["room_id"] = str(room_id)
    return {"type": "Feature", "id": zone_id, "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": props}


def _door(door_id: str, reader: str, x: float, y: float, inside: str, outside: str | None, name: str) -> dict[str, Any]:
    props: dict[str, Any] = {"feature_type": "door", "reader_id": reader, "inside_zone": inside, "name": name}
    if outside is not None:
        props["outside_zone"] = outside
    return {"type": "Feature", "id": door_id, "geometry": {"type": "Point", "coordinates": [x, y]},
            "properties": props}


def _evaluation_room(zone_id: str, name: str, x0: float, width: float, south: bool, seats: int,
                     room_id: uuid.UUID | None) -> list[dict[str, Any]]:
    """A room on the corridor with its vestibule: a 2 × 2 m notch in the room's corridor side,
    the outer door in the corridor wall, the inner door between vestibule and room."""
    wall = CORRIDOR[0] if south else CORRIDOR[1]
    far = wall - 8 if south else wall + 8
    inner = wall - 2 if south else wall + 2
    mid = x0 + width / 2
    a, b = mid - 1, mid + 1
    if south:
        room = [[x0, far], [x0 + width, far], [x0 + width, wall], [b, wall], [b, inner], [a, inner], [a, wall],
                [x0, wall], [x0, far]]
        vestibule = _rect(a, inner, b, wall)
    else:
        room = [[x0, wall], [a, wall], [a, inner], [b, inner], [b, wall], [x0 + width, wall], [x0 + width, far],
                [x0, far], [x0, wall]]
        vestibule = _rect(a, wall, b, inner)
    tag = zone_id.removeprefix("ev-").upper()
    return [
        _unit(zone_id, "evaluation_room", name, room, closed=True, capacity=seats + ROOM_STAFF, room_id=room_id),
        _unit(f"{zone_id}-vestibule", "corridor", f"{name}前室", vestibule, closed=True, capacity=2),
        _door(f"{zone_id}-door-a", f"FZ3F-EV{tag}-A", mid, wall, f"{zone_id}-vestibule", "iso-corridor",
              f"{name} 外门 (隔离走廊→前室)"),
        _door(f"{zone_id}-door-b", f"FZ3F-EV{tag}-B", mid, inner, zone_id, f"{zone_id}-vestibule",
              f"{name} 内门 (前室→评标室)"),
    ]


def demo_floor_plan(rooms: Mapping[str, uuid.UUID] | None = None) -> dict[str, Any]:
    """The demo floor's plan (GeoJSON FeatureCollection); `rooms` maps venue room names to their
    ids, which the evaluation rooms' units carry as room_id (absent names: no room_id)."""
    rooms = rooms or {}
    lo, hi = CORRIDOR
    features = [
        # The public side.
        _unit("entrance", "entrance", "入口门厅", _rect(0, 0, 8, 12), capacity=80),
        _unit("waiting", "waiting_area", "候标区", _rect(8, 0, 18, 12), capacity=60),
        _unit("public-corridor", "corridor", "公共走廊", _rect(0, 12, 18, 14.5)),
        _unit("opening-hall", "opening_hall", "开标大厅", _rect(0, 14.5, 18, 30), capacity=120),
        # The closed area: check-in, lockers, the isolation corridor.
        _unit("check-in", "entrance", "身份核验区", _rect(18, 6, 24, 18.5), closed=True, capacity=20),
        _unit("phone-lockers", "phone_lockers", "手机存放区", _rect(18, 0, 24, 6), closed=True, capacity=10),
        _unit("iso-corridor", "isolation_corridor", "隔离走廊", _rect(24, lo, 60, hi), closed=True, capacity=20),
    ]
    for i, (zone_id, room_name, seats) in enumerate(SOUTH_ROOMS):
        features += _evaluation_room(zone_id, room_name, 24 + 6 * i, 6, True, seats, rooms.get(room_name))
    remote_id, remote_name, remote_seats = REMOTE_ROOM
    features += _evaluation_room(remote_id, remote_name, 24, 12, False, remote_seats, rooms.get(remote_name))
    features += [
        _unit("supervision", "supervision_room", "监督室", _rect(36, hi, 46, hi + 8), closed=True, capacity=8),
        _unit("archive", "archive", "档案室", _rect(46, hi, 54, hi + 8), closed=True, capacity=4),
        _unit("lounge", "office", "专家休息区", _rect(54, hi, 60, hi + 8), closed=True, capacity=12),
        # Staff side, outside the closed area.
        _unit("staff-corridor", "corridor", "工作人员通道", _rect(18, 18.5, 60, 21)),
        _unit("centre-office", "office", "中心办公室", _rect(18, 21, 40, 30), capacity=20),
        _unit("equipment", "office", "监控设备机房", _rect(40, 21, 60, 30), capacity=6),
        # Doors: the street, the public side, then the closed area's readers.
        _door("door-street", "FZ3F-ENT", 0, 6, "entrance", None, "三层入口"),
        _door("door-waiting", "FZ3F-WAIT", 8, 6, "waiting", "entrance", "候标区入口"),
        _door("door-entrance-corridor", "FZ3F-PC-1", 4, 12, "public-corridor", "entrance", "门厅→公共走廊"),
        _door("door-waiting-corridor", "FZ3F-PC-2", 13, 12, "public-corridor", "waiting", "候标区→公共走廊"),
        _door("door-opening-hall", "FZ3F-OPEN", 9, 14.5, "opening-hall", "public-corridor", "开标大厅入口"),
        _door("door-closed-area", "FZ3F-CA-IN", 18, 13.25, "check-in", "public-corridor",
              "闭区入口 (身份证+人脸核验)"),
        _door("door-lockers", "FZ3F-LOCK", 21, 6, "phone-lockers", "check-in", "手机存放区"),
        _door("door-isolation", "FZ3F-ISO", 24, (lo + hi) / 2, "iso-corridor", "check-in", "隔离走廊入口"),
        _door("door-supervision", "FZ3F-SUP", 41, hi, "supervision", "iso-corridor", "监督室 (隔离走廊)"),
        _door("door-supervision-staff", "FZ3F-SUP-STAFF", 41, hi + 8, "supervision", "staff-corridor",
              "监督室 (工作人员通道)"),
        _door("door-archive", "FZ3F-ARC", 50, hi, "archive", "iso-corridor", "档案室"),
        _door("door-lounge", "FZ3F-LNG", 57, hi, "lounge", "iso-corridor", "专家休息区"),
        _door("door-staff", "FZ3F-STAFF", 18, 19.75, "staff-corridor", "opening-hall", "开标大厅→工作人员通道"),
        _door("door-office", "FZ3F-OFF", 29, 21, "centre-office", "staff-corridor", "中心办公室"),
        _door("door-equipment", "FZ3F-EQ", 50, 21, "equipment", "staff-corridor", "监控设备机房"),
    ]
    return {"type": "FeatureCollection", "name": f"{VENUE} {NAME}", "features": features}


async def _venue_rooms(conn: asyncpg.Connection, signer: Any, venue_id: uuid.UUID, by: uuid.UUID) -> dict[str, uuid.UUID]:
    """The venue's rooms by name, adding (and logging) the evaluation rooms the floor has and it lacks."""
    rooms = {r["name"]: r["id"] for r in await session_store.rooms_of_venues(conn) if r["venue_id"] == venue_id}
    added = []
    for _, name, seats in (*SOUTH_ROOMS, REMOTE_ROOM):
        if name not in rooms:
            rooms[name] = uuid.uuid4()
            await session_store.insert_room(conn, rooms[name], venue_id, name, seats)
            added.append({"id": str(rooms[name]), "name": name, "seats": seats})
    if added:
        await log.append_entry(conn, signer, "venue.rooms_added", {"venue": str(venue_id), "rooms": added, "by": str(by)})
    return rooms


async def seed_demo_floor(conn: asyncpg.Connection, signer: Any, admin_id: uuid.UUID,
                          now: datetime | None = None) -> dict[str, Any] | None:
    """Seed FZ-3F on the demo's main venue, as `admin_id` would upload it (validated, logged,
    announced); idempotent: None when the floor exists already. LookupError without the venue
    (seed the demo venues first)."""
    venue_id = await conn.fetchval("SELECT id FROM venues WHERE name = $1", VENUE)
    if venue_id is None:
        raise LookupError(f"the demo has no venue {VENUE}")
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM floors WHERE code = $1", CODE):
            return None
        plan = demo_floor_plan(await _venue_rooms(conn, signer, venue_id, admin_id))
        floor = parse_plan(plan, code=CODE, level=LEVEL, name=NAME,
                           transform=parse_transform(transform_json(DEMO_TRANSFORM)))
        return await floor_service.save_floor(conn, signer, floor, plan, venue_id=venue_id, by=admin_id,
                                              now=now or datetime.now(timezone.utc))


async def describe(conn: asyncpg.Connection, signer: Any, admin_id: uuid.UUID) -> list[str]:
    """Seed the floor and return the lines the demo prints."""
    saved = await seed_demo_floor(conn, signer, admin_id)
    plan = demo_floor_plan()
    rooms = [f["properties"]["name"] for f in plan["features"] if f["properties"].get("kind") == "evaluation_room"]
    t = DEMO_TRANSFORM
    return [f"  {CODE} {VENUE} {NAME}: {'made now' if saved else 'already there'}; 60 × 30 m, "
            f"{len(rooms)} evaluation rooms with two-layer doors ({', '.join(rooms)}); plans on /venue/floors",
            f"  positioning (UWB) transform: rotate {t.rotation_deg}°, scale {t.scale}, shift ({t.dx}, {t.dy}) m "
            f"to the plan's local metres; closed-area entrance reader FZ3F-CA-IN"]
