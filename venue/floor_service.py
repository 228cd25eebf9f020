"""Floor plans' use cases: list and read floors, save a plan (admin), the engine's "floors" part,
and what the floors page draws.

Saving validates the plan (venue/floorplan.py), checks what only the database knows (the venue,
its rooms, reader ids of other floors), rewrites the floor's `zones` and `doors` rows, appends
`venue.floor_saved` with the plan's SHA-256 to the transparency log and emits
`venue.policy_changed`, all in one transaction; every instance then reloads its floors.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

import asyncpg

from tenderhall import bus, log
from tenderhall.accounts import CurrentUser
from venue import floor_store as store
from venue.access_service import Deps
from venue.engine import LOADERS, POLICY_CHANGED, TOPIC
from venue.floorplan import (
    FloorSet, PlanInvalid, area, bounds, centroid, parse_plan, parse_transform, transform_json,
)
from venue.model import Floor, Transform

logger = logging.getLogger(__name__)

PLAN_MAX_BYTES = 2 * 2**20
# As the schema's floors_code_check (migrations/0009).
CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
MIN_LEVEL, MAX_LEVEL = -20, 300
MAX_NAME = 100

# What a constraint violation means to the person saving (by the constraint's name).
CONSTRAINTS = {
    "floors_code_key": (409, "floor_exists", "a floor with this code exists already"),
    "floors_level_key": (409, "level_taken", "the venue has a floor at this level already"),
    "floors_venue_id_fkey": (422, "unknown_venue", "no venue has this id"),
    "doors_pkey": (409, "reader_taken", "a reader id of this plan was just given to another floor's door"),
    "zones_room_id_fkey": (422, "unknown_room", "a room_id of this plan is no venue room"),
}


class FloorRefused(Exception):
    """A floor request not carried out: `code` is stable, `status` the HTTP one, `detail` the facts
    (for an invalid plan: the validation error's code, message and feature)."""

    def __init__(self, message: str, *, code: str, status: int = 422, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status, self.detail = message, code, status, dict(detail or {})


def _invalid(exc: PlanInvalid) -> FloorRefused:
    where = f" ({exc.feature})" if exc.feature else ""
    return FloorRefused(f"the floor plan is not valid{where}: {exc.message}", code="plan_invalid", detail=exc.as_detail())


def plan_digest(plan: Any) -> str:
    """SHA-256 (hex) of the plan as sorted-key compact JSON: the same for the plan as sent and as
    read back from jsonb, whatever the key order or spacing."""
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------------------- the request body


def _field(body: Mapping[str, Any], name: str, kind: type, check: Any, rule: str, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, kind) or not check(value):
        raise FloorRefused(f"{name} must be {rule}", code="invalid_field", detail={"field": name})
    return value


def _level(body: Mapping[str, Any], required: bool) -> int | None:
    return _field(body, "level", int, lambda v: MIN_LEVEL <= v <= MAX_LEVEL,
                  f"a whole number from {MIN_LEVEL} to {MAX_LEVEL}", required=required)


def _name(body: Mapping[str, Any], required: bool) -> str | None:
    name = _field(body, "name", str, lambda v: 0 < len(v.strip()) <= MAX_NAME,
                  f"a text of 1 to {MAX_NAME} characters", required=required)
    return name.strip() if name is not None else None


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise FloorRefused("send a JSON object", code="invalid_body")
    return body


def _parse(plan: Any, code: str, level: int, name: str, transform: Any) -> Floor:
    try:
        return parse_plan(plan, code=code, level=level, name=name, transform=parse_transform(transform))
    except PlanInvalid as exc:
        raise _invalid(exc) from None


async def _parse_off_loop(plan: Any, code: str, level: int, name: str, transform: Any) -> Floor:
    # A 2 MiB plan takes a noticeable while to check: not on the event loop doors are answered from.
    return await asyncio.to_thread(_parse, plan, code, level, name, transform)


# ---------------------------------------------------------------------------- saving


async def _check_references(conn: asyncpg.Connection, floor: Floor, venue_id: uuid.UUID, floor_id: uuid.UUID) -> None:
    """What the plan names outside itself: its venue's rooms, and readers no other floor uses."""
    if not await store.venue_exists(conn, venue_id):
        raise FloorRefused(f"no venue has id {venue_id}", code="unknown_venue", detail={"field": "venue_id"})
    rooms = {z.room_id: z for z in floor.zones if z.room_id is not None}
    if rooms:
        found = {r["id"]: r for r in await store.rooms_by_id(conn, list(rooms))}
        for room_id, zone in rooms.items():
            if room_id not in found:
                raise _invalid(PlanInvalid(f"room_id {room_id} is no venue room", feature=zone.id, code="unknown_room"))
            if found[room_id]["venue_id"] != venue_id:
                raise _invalid(PlanInvalid(f"room {found[room_id]['name']!r} ({room_id}) belongs to another venue",
                                           feature=zone.id, code="room_of_other_venue"))
        for row in await store.rooms_elsewhere(conn, floor_id, list(rooms)):
            raise _invalid(PlanInvalid(f"room {row['room_id']} is already zone {row['zone_id']!r} of floor "
                                       f"{row['code']}", feature=rooms[row["room_id"]].id, code="room_taken"))
    readers = {d.reader_id: d for d in floor.doors}
    for row in await store.readers_elsewhere(conn, floor_id, list(readers)):
        raise _invalid(PlanInvalid(f"reader {row['reader_id']!r} is already door {row['door_id']!r} of floor "
                                   f"{row['code']}", feature=readers[row["reader_id"]].id, code="reader_taken"))


async def save_floor(conn: asyncpg.Connection, signer: Any, floor: Floor, plan: Any, *, venue_id: uuid.UUID,
                     by: uuid.UUID, now: datetime, floor_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Write a validated floor (a new one when `floor_id` is None) with its zones and doors, log it
    and emit the policy change, in the caller's transaction. FloorRefused: 409 floor_exists for a
    new floor's taken code; 422 unknown_venue; 422 plan_invalid (detail: unknown_room,
    room_of_other_venue, room_taken, reader_taken, with the feature) for what the plan names
    outside itself. A constraint violation of a concurrent save is raised as it comes (it aborts
    the caller's transaction; `_constraint` says what it means)."""
    new = floor_id is None
    if new and await store.floor_id_of(conn, floor.code) is not None:
        raise FloorRefused(f"a floor with code {floor.code!r} exists already", code="floor_exists", status=409)
    floor_id = floor_id or uuid.uuid4()
    await _check_references(conn, floor, venue_id, floor_id)
    transform = transform_json(floor.transform)
    if new:
        await store.insert_floor(conn, floor_id, venue_id, floor.code, floor.level, floor.name, plan, transform, by, now)
        version = 1
    else:
        version = await store.update_floor(conn, floor_id, floor.level, floor.name, plan, transform, by, now)
    await store.replace_zones_and_doors(conn, floor_id, floor.zones, floor.doors)
    digest = plan_digest(plan)
    # Canonical JSON holds no floats: the transform goes in by its digest, like the plan.
    await log.append_entry(conn, signer, "venue.floor_saved", {
        "floor": floor.code, "floor_id": str(floor_id), "venue": str(venue_id), "level": floor.level,
        "name": floor.name, "version": version, "plan_sha256": digest, "transform_sha256": plan_digest(transform),
        "zones": len(floor.zones), "doors": len(floor.doors), "by": str(by)})
    await bus.emit(conn, TOPIC, POLICY_CHANGED, {"because": "floor_saved", "floor": floor.code, "version": version})
    return {"id": str(floor_id), "code": floor.code, "level": floor.level, "name": floor.name,
            "venue_id": str(venue_id), "version": version, "plan_sha256": digest,
            "zones": len(floor.zones), "doors": len(floor.doors)}


def _constraint(exc: asyncpg.IntegrityConstraintViolationError) -> FloorRefused:
    status, code, message = CONSTRAINTS.get(exc.constraint_name or "", (409, "conflict", "the change conflicts"))
    return FloorRefused(message, code=code, status=status)


async def _saved(deps: Deps, work: Any) -> dict[str, Any]:
    """Run `work(conn)` in a transaction, constraint violations as refusals, then reload this
    instance's floors at once (the others on the bus event)."""
    try:
        async with deps.pool.acquire() as conn, conn.transaction():
            result = await work(conn)
    except (asyncpg.UniqueViolationError, asyncpg.ForeignKeyViolationError) as exc:
        raise _constraint(exc) from None
    try:
        await deps.engine.load(deps.pool)
    except Exception:  # noqa: BLE001 - the floor is saved; the bus event's reload tries again
        logger.exception("reloading the venue's state after saving a floor failed")
    return result


async def create_floor(deps: Deps, user: CurrentUser, body: Any, now: datetime | None = None) -> dict[str, Any]:
    """Admin: a new floor {venue_id, code, level, name, plan, transform?}; 422 invalid_field /
    plan_invalid / unknown_venue, 409 floor_exists / level_taken / reader_taken / room_taken."""
    body = _object(body)
    raw_venue = _field(body, "venue_id", str, lambda v: True, "a venue's id (a UUID)")
    try:
        venue_id = uuid.UUID(raw_venue)
    except ValueError:
        raise FloorRefused("venue_id must be a venue's id (a UUID)", code="invalid_field", detail={"field": "venue_id"}) from None
    code = _field(body, "code", str, CODE.fullmatch,
                  "1-40 letters, digits and _ . - starting with a letter or digit (e.g. FZ-3F)")
    level, name = _level(body, True), _name(body, True)
    assert level is not None and name is not None
    floor = await _parse_off_loop(body.get("plan"), code, level, name, body.get("transform"))
    moment = now or utc_now()
    return await _saved(deps, lambda conn: save_floor(conn, deps.platform_key, floor, body["plan"], venue_id=venue_id,
                                                      by=user.id, now=moment))


async def update_floor(deps: Deps, user: CurrentUser, code: str, body: Any, now: datetime | None = None) -> dict[str, Any]:
    """Admin: replace a floor's plan {version, plan, transform?, name?, level?} (absent: kept).
    404 floor_not_found, 409 version_conflict (detail: the current version) and as create_floor."""
    body = _object(body)
    expected = _field(body, "version", int, lambda v: v >= 1, "the version you edited (a whole number from 1)")
    async with deps.pool.acquire() as conn:
        current = await store.floor(conn, code)
    if current is None:
        raise FloorRefused(f"no floor has code {code!r}", code="floor_not_found", status=404)
    level = _level(body, False)
    name = _name(body, False)
    transform = body["transform"] if body.get("transform") is not None else current["transform"]
    floor = await _parse_off_loop(body.get("plan"), code, current["level"] if level is None else level,
                                  name or current["name"], transform)
    moment = now or utc_now()

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        row = await store.floor_for_update(conn, code)
        if row is None:
            raise FloorRefused(f"no floor has code {code!r}", code="floor_not_found", status=404)
        if row["version"] != expected:
            raise FloorRefused(f"the floor was changed meanwhile (now version {row['version']}, you edited "
                               f"{expected}); reload it and apply your change again", code="version_conflict",
                               status=409, detail={"version": row["version"]})
        return await save_floor(conn, deps.platform_key, floor, body["plan"], venue_id=row["venue_id"], by=user.id,
                                now=moment, floor_id=row["id"])
    return await _saved(deps, work)


# ---------------------------------------------------------------------------- reading


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"code": row["code"], "level": row["level"], "name": row["name"], "venue_id": str(row["venue_id"]),
            "venue_name": row["venue_name"], "version": row["version"], "updated_at": row["updated_at"].isoformat(),
            "zones": row["zones"], "doors": row["doors"]}


async def list_floors(pool: asyncpg.Pool) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return {"floors": [_summary(r) for r in await store.floors(conn)]}


async def floor_detail(pool: asyncpg.Pool, code: str) -> dict[str, Any]:
    """The floor with its plan (GeoJSON), transform and version; 404 floor_not_found."""
    async with pool.acquire() as conn:
        row = await store.floor(conn, code)
    if row is None:
        raise FloorRefused(f"no floor has code {code!r}", code="floor_not_found", status=404)
    return {"floor": {**_summary(row), "plan": row["plan"], "transform": row["transform"],
                      "plan_sha256": plan_digest(row["plan"])}}


# ---------------------------------------------------------------------------- the engine's part


async def load_floors(pool: asyncpg.Pool, engine: Any) -> FloorSet:
    """LOADERS["floors"]: every floor's parsed plan and zone index. Only plans whose (id, version)
    changed since the last load are read and parsed again; a stored plan that does not parse
    (written around the API) is left out with a warning rather than failing every other part."""
    previous: FloorSet | None = engine.parts.get("floors")
    known = previous.versions if previous is not None else {}
    async with pool.acquire() as conn:
        heads = {r["code"]: (r["id"], r["version"]) for r in await store.versions(conn)}
        stale = [head[0] for code, head in heads.items() if known.get(code) != head]
        rows = await store.plans_by_id(conn, stale) if stale else []
    if previous is not None and not stale and heads.keys() == known.keys():
        return previous
    floors = {code: previous.floors[code] for code in heads
              if previous is not None and code in previous.floors and known.get(code) == heads[code]}
    for row in rows:
        try:
            floors[row["code"]] = parse_plan(row["plan"], code=row["code"], level=row["level"], name=row["name"],
                                             transform=parse_transform(row["transform"]))
        except PlanInvalid as exc:
            logger.warning("floor %s: its stored plan is not valid, left out (%s: %s)", row["code"], exc.feature, exc)
    return FloorSet.of(floors.values(), heads)


LOADERS["floors"] = load_floors


# ---------------------------------------------------------------------------- the page's drawing


# Fill colours by zone kind (the supervisors' map uses the same, so a kind looks alike everywhere).
KIND_COLOURS = {
    "entrance": "#f6d58e", "opening_hall": "#9cc3f0", "waiting_area": "#bfe3f2", "evaluation_room": "#a8d89a",
    "isolation_corridor": "#f3b37e", "phone_lockers": "#cfc9bd", "supervision_room": "#e59a8c",
    "archive": "#c9a4d6", "corridor": "#e6e6e6", "office": "#d5d9e0",
}
LABEL_MIN_AREA = 12.0  # m²: smaller zones (vestibules) are named on hover only


@dataclass(frozen=True)
class Drawing:
    """An SVG of a floor in its local metres, y pointing up (SVG's y is negated)."""

    view_box: str
    zones: tuple[dict[str, Any], ...]
    doors: tuple[dict[str, Any], ...]
    font: float
    door_radius: float


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def drawing(floor: Floor) -> Drawing | None:
    """What the floors page (and the supervisors' map) draws of a floor; None for an empty one."""
    if not floor.zones:
        return None
    x0, y0, x1, y1 = bounds([p for z in floor.zones for p in z.polygon])
    margin = max(x1 - x0, y1 - y0) * 0.02
    zones = []
    for zone in floor.zones:
        cx, cy = centroid(zone.polygon)
        zones.append({"id": zone.id, "name": zone.name, "kind": zone.kind, "closed_area": zone.closed_area,
                      "fill": KIND_COLOURS.get(zone.kind, "#eeeeee"), "capacity": zone.capacity,
                      "points": " ".join(f"{_fmt(x)},{_fmt(-y)}" for x, y in zone.polygon[:-1]),
                      "label": area(zone.polygon) >= LABEL_MIN_AREA, "x": _fmt(cx), "y": _fmt(-cy)})
    doors = [{"id": d.id, "reader_id": d.reader_id, "x": _fmt(d.point[0]), "y": _fmt(-d.point[1]),
              "inside": d.inside_zone, "outside": d.outside_zone} for d in floor.doors]
    side = max(x1 - x0, y1 - y0)
    return Drawing(view_box=" ".join(_fmt(v) for v in (x0 - margin, -y1 - margin, x1 - x0 + 2 * margin,
                                                        y1 - y0 + 2 * margin)),
                   zones=tuple(zones), doors=tuple(doors), font=round(max(0.4, side / 60), 2),
                   door_radius=round(max(0.2, side / 150), 2))


async def page(pool: asyncpg.Pool) -> dict[str, Any]:
    """The floors page: each floor with its drawing (or why its stored plan cannot be drawn), and
    the venues a new floor may belong to."""
    async with pool.acquire() as conn:
        rows = await store.floors(conn)
        venues = await store.venues(conn)
    floors = []
    for row in rows:
        entry: dict[str, Any] = {**_summary(row), "updated_at": row["updated_at"], "drawing": None, "problem": None}
        try:
            floor = parse_plan(row["plan"], code=row["code"], level=row["level"], name=row["name"],
                               transform=parse_transform(row["transform"]))
            entry["drawing"] = drawing(floor)
            entry["transform"] = floor.transform
        except PlanInvalid as exc:
            entry["problem"] = _invalid(exc).message
            entry["transform"] = Transform()
        floors.append(entry)
    return {"floors": floors, "venues": [{"id": str(v["id"]), "name": v["name"]} for v in venues]}
