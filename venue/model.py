"""The venue's shared values: floors, zones and doors, people and their credentials, positions,
door events, access decisions and alerts. Plain frozen data, no I/O: every venue module
(floorplan, access, ingest, tracker, rules, alerts, engine) speaks in these."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, Mapping

import msgspec

ZoneKind = Literal["entrance", "opening_hall", "waiting_area", "evaluation_room", "isolation_corridor",
                   "phone_lockers", "supervision_room", "archive", "corridor", "office"]
ZONE_KINDS: tuple[ZoneKind, ...] = ("entrance", "opening_hall", "waiting_area", "evaluation_room",
                                    "isolation_corridor", "phone_lockers", "supervision_room", "archive",
                                    "corridor", "office")
Role = Literal["expert", "bidder", "agent", "supervisor", "staff", "visitor"]
ROLES: tuple[Role, ...] = ("expert", "bidder", "agent", "supervisor", "staff", "visitor")
DoorEventKind = Literal["opened", "closed", "forced", "held_open"]
Severity = Literal["low", "medium", "high", "critical"]

Point = tuple[float, float]


@dataclass(frozen=True)
class Transform:
    """Positioning-system coordinates to the plan's local metres: rotate by `rotation_deg`
    (counter-clockwise), scale by `scale`, then translate by (dx, dy)."""

    scale: float = 1.0
    rotation_deg: float = 0.0
    dx: float = 0.0
    dy: float = 0.0


@dataclass(frozen=True)
class Zone:
    """A unit of a floor plan: a simple polygon (outer ring, closed, in local metres)."""

    floor: str                  # the floor's code
    id: str
    kind: ZoneKind
    name: str
    polygon: tuple[Point, ...]  # first point repeated last
    capacity: int | None = None
    closed_area: bool = False   # inside the evaluation area's closed perimeter
    room_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Door:
    """A door on a zone boundary, with the reader that asks for decisions."""

    floor: str
    id: str
    reader_id: str
    point: Point
    inside_zone: str
    outside_zone: str | None = None  # None: the outside of the floor
    capacity: int = 1                # people one grant admits


@dataclass(frozen=True)
class Floor:
    code: str
    level: int
    name: str
    zones: tuple[Zone, ...]
    doors: tuple[Door, ...]
    transform: Transform = Transform()

    def zone(self, zone_id: str) -> Zone | None:
        return next((z for z in self.zones if z.id == zone_id), None)


@dataclass(frozen=True)
class Person:
    id: uuid.UUID
    name: str
    role: Role
    user_id: uuid.UUID | None = None
    organisation_id: uuid.UUID | None = None
    expert_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Credential:
    person: uuid.UUID
    kind: Literal["badge", "tag"]
    value: str
    valid_from: datetime
    valid_until: datetime | None = None

    def valid_at(self, moment: datetime) -> bool:
        return self.valid_from <= moment and (self.valid_until is None or moment < self.valid_until)


@dataclass(frozen=True)
class AccessRule:
    """Who (a person or a role) may be where (a zone or a kind of zone) when."""

    id: int
    valid_from: datetime
    person: uuid.UUID | None = None
    role: Role | None = None
    floor: str | None = None        # with zone_id
    zone_id: str | None = None
    zone_kind: ZoneKind | None = None
    valid_until: datetime | None = None
    enter_within_seconds: int | None = None
    no_reentry: bool = False
    session_id: uuid.UUID | None = None


# Local metres: anything further out is a unit or transform error, not a place on a floor.
MAX_COORDINATE = 100_000.0
_Metres = Annotated[float, msgspec.Meta(ge=-MAX_COORDINATE, le=MAX_COORDINATE)]


class Position(msgspec.Struct, frozen=True, gc=False):
    """A tag's fix. A msgspec Struct, not a dataclass: batches of thousands are decoded straight
    into these (venue/ingest.py), and the annotations' constraints are what decoding checks."""

    tag: str
    t: Annotated[datetime, msgspec.Meta(tz=True)]
    floor: str
    x: _Metres
    y: _Metres
    quality: float | None = None


@dataclass(frozen=True)
class DoorEvent:
    reader_id: str
    t: datetime
    kind: DoorEventKind


@dataclass(frozen=True)
class Decision:
    """A door decision; `reason` is a stable code (granted: "allowed")."""

    granted: bool
    reason: str
    person: uuid.UUID | None = None
    zone: str | None = None


@dataclass(frozen=True)
class Alert:
    """`message` is in English (stored, logged); `phrase` and `params` are what it was made of
    (venue/rules.py PHRASES), from which the supervisors' map says it in their language."""

    rule: str
    severity: Severity
    at: datetime
    message: str
    people: tuple[uuid.UUID, ...] = ()
    floor: str | None = None
    zone: str | None = None
    evidence: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    phrase: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
