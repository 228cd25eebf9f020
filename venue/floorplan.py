"""Floor plans: parse and validate the GeoJSON an admin uploads, and find the zone a point is in.

A plan is a GeoJSON FeatureCollection (RFC 7946) in the floor's local metres, IMDF-like: each
feature has `properties.feature_type`, either

- "unit", a zone: a Polygon (outer ring only), the feature's `id`, `properties.kind` (one of
  model.ZONE_KINDS), `name`, optional `capacity`, `closed_area` (bool) and, for evaluation rooms,
  `room_id` (the venue_rooms id the sessions book); or
- "door": a Point on the boundary of its `inside_zone` (and of its `outside_zone` if given),
  with `reader_id` (the controller that asks for decisions) and an optional `capacity`.

Other properties are kept in the plan and ignored here. Validation stops at the first problem
and says which feature and what is wrong (`PlanInvalid`). Pure: no I/O.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from venue.model import ZONE_KINDS, Door, Floor, Point, Transform, Zone

MAX_FEATURES = 2000
MAX_RING_POINTS = 2000
MAX_COORDINATE = 100_000.0       # metres: further out is a unit error, not a place on a floor
DOOR_TOLERANCE = 0.25            # metres between a door and the wall it is in (UWB-scale, drawing slack)
MIN_AREA = 0.01                  # square metres: less is a degenerate ring
MAX_ID = 64
MAX_NAME = 100
MAX_CAPACITY = 10_000
MAX_DOOR_CAPACITY = 50
# As the schema's doors_reader_check (migrations/0009), so a bad id is named here, not by the database.
READER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
TRANSFORM_KEYS = ("scale", "rotation_deg", "dx", "dy")


class PlanInvalid(ValueError):
    """A plan (or transform) that cannot be used: `code` is stable, `feature` names the feature
    (its id, else "features[i]"), `message` says what is wrong for people."""

    def __init__(self, message: str, *, feature: str | None = None, code: str = "invalid_plan") -> None:
        super().__init__(message)
        self.message, self.feature, self.code = message, feature, code

    def as_detail(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **({"feature": self.feature} if self.feature else {})}


# ---------------------------------------------------------------------------- geometry


def distance(a: Point, b: Point) -> float:
    """Euclidean distance between two points, in metres."""
    return math.hypot(a[0] - b[0], a[1] - b[1])


def segment_distance(p: Point, a: Point, b: Point) -> float:
    """Distance from p to the segment a–b."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    if length2 == 0:
        return distance(p, a)
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2))
    return math.hypot(p[0] - (a[0] + t * dx), p[1] - (a[1] + t * dy))


def boundary_distance(ring: Sequence[Point], p: Point) -> float:
    """Distance from p to a closed ring's boundary (0 on it, whichever side p is)."""
    return min(segment_distance(p, ring[i], ring[i + 1]) for i in range(len(ring) - 1))


def area(ring: Sequence[Point]) -> float:
    """The ring's unsigned area (shoelace formula)."""
    twice = sum(ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1] for i in range(len(ring) - 1))
    return abs(twice) / 2


def centroid(ring: Sequence[Point]) -> Point:
    """The ring's centre of area (where a label goes); the mean vertex for a degenerate ring."""
    a = cx = cy = 0.0
    for (x1, y1), (x2, y2) in zip(ring, ring[1:]):
        cross = x1 * y2 - x2 * y1
        a, cx, cy = a + cross, cx + (x1 + x2) * cross, cy + (y1 + y2) * cross
    if a == 0:
        xs, ys = zip(*ring[:-1])
        return sum(xs) / len(xs), sum(ys) / len(ys)
    return cx / (3 * a), cy / (3 * a)


def contains(ring: Sequence[Point], x: float, y: float) -> bool:
    """Whether (x, y) is inside the closed ring (ray casting, even-odd rule); a point exactly on
    an edge may fall either way, which is why zone membership has hysteresis (venue/tracker.py)."""
    inside = False
    x1, y1 = ring[0]
    for x2, y2 in ring[1:]:
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
        x1, y1 = x2, y2
    return inside


def bounds(points: Iterable[Point]) -> tuple[float, float, float, float]:
    """(min x, min y, max x, max y)."""
    xs, ys = zip(*points)
    return min(xs), min(ys), max(xs), max(ys)


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    """p, known collinear with a–b, lies within its bounding box."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Whether segments a–b and c–d share any point (touching and collinear overlap included)."""
    d1, d2, d3, d4 = _cross(c, d, a), _cross(c, d, b), _cross(a, b, c), _cross(a, b, d)
    if ((d1 > 0 and d2 < 0) or (d1 < 0 and d2 > 0)) and ((d3 > 0 and d4 < 0) or (d3 < 0 and d4 > 0)):
        return True
    return ((d1 == 0 and _on_segment(a, c, d)) or (d2 == 0 and _on_segment(b, c, d))
            or (d3 == 0 and _on_segment(c, a, b)) or (d4 == 0 and _on_segment(d, a, b)))


def self_intersection(ring: Sequence[Point]) -> tuple[int, int] | None:
    """The first pair of edges (indices i < j, edge i joins ring[i] and ring[i+1]) of a closed ring
    that cross or touch other than where neighbours meet, or None for a simple ring.

    Neighbouring edges may share only their common vertex: one folding back over the other (a
    spike) counts as an intersection. A sweep over x keeps this near-linear for real plans (few
    edges overlap in x); a pathological ring stays quadratic, bounded by MAX_RING_POINTS.
    """
    m = len(ring) - 1
    for i in range(m):  # neighbours: collinear and turning back
        a, b, c = ring[i], ring[i + 1], ring[(i + 2) % m] if i + 2 > m else ring[i + 2]
        if _cross(a, b, c) == 0 and (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1]) < 0:
            return (i, (i + 1) % m) if i + 1 < m else (0, i)
    lo = [min(ring[i][0], ring[i + 1][0]) for i in range(m)]
    hi = [max(ring[i][0], ring[i + 1][0]) for i in range(m)]
    active: list[int] = []
    for i in sorted(range(m), key=lo.__getitem__):
        active = [j for j in active if hi[j] >= lo[i]]
        for j in active:
            if abs(i - j) == 1 or abs(i - j) == m - 1:
                continue
            if segments_intersect(ring[i], ring[i + 1], ring[j], ring[j + 1]):
                return (min(i, j), max(i, j))
        active.append(i)
    return None


# ---------------------------------------------------------------------------- transform


def parse_transform(data: Any) -> Transform:
    """A positioning system's transform from JSON ({scale, rotation_deg, dx, dy}, each optional);
    PlanInvalid (code bad_transform) for anything else."""
    if data is None:
        return Transform()
    if not isinstance(data, dict):
        raise PlanInvalid("the transform must be an object {scale, rotation_deg, dx, dy}", code="bad_transform")
    unknown = sorted(set(data) - set(TRANSFORM_KEYS))
    if unknown:
        raise PlanInvalid(f"the transform has unknown keys {unknown}; it takes {list(TRANSFORM_KEYS)}",
                          code="bad_transform")
    values = {}
    for key in TRANSFORM_KEYS:
        if key in data:
            values[key] = _number(data[key], f"transform.{key}", None, "bad_transform")
    scale = values.get("scale", 1.0)
    if not 0.001 <= scale <= 1000:
        raise PlanInvalid(f"transform.scale must be between 0.001 and 1000, got {scale}", code="bad_transform")
    if not -360 <= values.get("rotation_deg", 0.0) <= 360:
        raise PlanInvalid("transform.rotation_deg must be between -360 and 360", code="bad_transform")
    return Transform(**values)


def transform_json(transform: Transform) -> dict[str, float]:
    return {key: getattr(transform, key) for key in TRANSFORM_KEYS}


def to_local(transform: Transform, x: float, y: float) -> Point:
    """Positioning-system coordinates to the plan's local metres (see model.Transform)."""
    theta = math.radians(transform.rotation_deg)
    cos, sin, s = math.cos(theta), math.sin(theta), transform.scale
    return s * (x * cos - y * sin) + transform.dx, s * (x * sin + y * cos) + transform.dy


def from_local(transform: Transform, x: float, y: float) -> Point:
    """The inverse of to_local: local metres to the positioning system's coordinates."""
    theta = math.radians(transform.rotation_deg)
    cos, sin, s = math.cos(theta), math.sin(theta), transform.scale
    u, v = (x - transform.dx) / s, (y - transform.dy) / s
    return u * cos + v * sin, -u * sin + v * cos


# ---------------------------------------------------------------------------- parsing


def _number(value: Any, what: str, feature: str | None, code: str = "bad_coordinates") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanInvalid(f"{what} must be a number, got {type(value).__name__}", feature=feature, code=code)
    if not math.isfinite(value):
        raise PlanInvalid(f"{what} must be a finite number, got {value}", feature=feature, code="not_finite")
    if abs(value) > MAX_COORDINATE:
        raise PlanInvalid(f"{what} is {value}: beyond {MAX_COORDINATE:.0f} m, check the units (local metres)",
                          feature=feature, code="out_of_range")
    return float(value)


def _position(value: Any, what: str, feature: str) -> Point:
    # RFC 7946 §3.1.1: [x, y] with an optional altitude, which a floor does not need.
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise PlanInvalid(f"{what} must be a position [x, y]", feature=feature, code="bad_coordinates")
    return _number(value[0], f"{what} x", feature), _number(value[1], f"{what} y", feature)


def _text(props: Mapping[str, Any], key: str, feature: str, limit: int, *, required: bool = True) -> str | None:
    value = props.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise PlanInvalid(f"properties.{key} must be a text of 1 to {limit} characters", feature=feature,
                          code="bad_property")
    return value.strip()


def _count(props: Mapping[str, Any], key: str, feature: str, low: int, high: int, default: int | None) -> int | None:
    value = props.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PlanInvalid(f"properties.{key} must be a whole number from {low} to {high}", feature=feature,
                          code="bad_property")
    return value


def _ring(geometry: Any, feature: str) -> tuple[Point, ...]:
    if not isinstance(geometry, dict) or geometry.get("type") != "Polygon":
        raise PlanInvalid("a unit's geometry must be a Polygon", feature=feature, code="bad_geometry")
    rings = geometry.get("coordinates")
    if not isinstance(rings, list) or not rings:
        raise PlanInvalid("the Polygon needs coordinates [[ring]]", feature=feature, code="bad_geometry")
    if len(rings) > 1:
        raise PlanInvalid("holes are not supported: draw the inner area as a unit of its own (zones may nest)",
                          feature=feature, code="bad_geometry")
    raw = rings[0]
    if not isinstance(raw, list):
        raise PlanInvalid("the ring must be a list of positions", feature=feature, code="bad_geometry")
    if len(raw) > MAX_RING_POINTS:
        raise PlanInvalid(f"the ring has {len(raw)} points; at most {MAX_RING_POINTS}", feature=feature,
                          code="too_many_points")
    ring = tuple(_position(p, f"point {i}", feature) for i, p in enumerate(raw))
    if len(ring) < 4:
        raise PlanInvalid(f"the ring has {len(ring)} points; a closed ring needs at least 4 (a triangle and "
                          f"its first point again)", feature=feature, code="too_few_points")
    if ring[0] != ring[-1]:
        raise PlanInvalid(f"the ring is not closed: its last point {list(ring[-1])} must repeat its first "
                          f"{list(ring[0])}", feature=feature, code="ring_not_closed")
    for i in range(len(ring) - 1):
        if ring[i] == ring[i + 1]:
            raise PlanInvalid(f"point {i + 1} repeats point {i} {list(ring[i])}", feature=feature,
                              code="repeated_point")
    crossing = self_intersection(ring)
    if crossing is not None:
        i, j = crossing
        raise PlanInvalid(f"the ring intersects itself: edge {i} ({list(ring[i])}→{list(ring[i + 1])}) meets "
                          f"edge {j} ({list(ring[j])}→{list(ring[j + 1])})", feature=feature,
                          code="self_intersection")
    if area(ring) < MIN_AREA:
        raise PlanInvalid("the ring encloses no area", feature=feature, code="degenerate_ring")
    return ring


def _room_id(props: Mapping[str, Any], kind: str, feature: str) -> uuid.UUID | None:
    value = props.get("room_id")
    if value is None:
        return None
    if kind != "evaluation_room":
        raise PlanInvalid(f"properties.room_id is for evaluation rooms, not a {kind}", feature=feature,
                          code="bad_property")
    try:
        if isinstance(value, str):
            return uuid.UUID(value)
    except ValueError:
        pass
    raise PlanInvalid("properties.room_id must be a venue room's id (a UUID)", feature=feature, code="bad_property")


def _unit(floor: str, zone_id: str, props: Mapping[str, Any], geometry: Any) -> Zone:
    kind = props.get("kind")
    if kind not in ZONE_KINDS:
        raise PlanInvalid(f"properties.kind {kind!r} is not a zone kind; use one of {', '.join(ZONE_KINDS)}",
                          feature=zone_id, code="unknown_kind")
    closed = props.get("closed_area", False)
    if not isinstance(closed, bool):
        raise PlanInvalid("properties.closed_area must be true or false", feature=zone_id, code="bad_property")
    name = _text(props, "name", zone_id, MAX_NAME)
    assert name is not None
    return Zone(floor=floor, id=zone_id, kind=kind, name=name, polygon=_ring(geometry, zone_id),
                capacity=_count(props, "capacity", zone_id, 1, MAX_CAPACITY, None), closed_area=closed,
                room_id=_room_id(props, kind, zone_id))


def _door(floor: str, door_id: str, props: Mapping[str, Any], geometry: Any) -> Door:
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        raise PlanInvalid("a door's geometry must be a Point", feature=door_id, code="bad_geometry")
    point = _position(geometry.get("coordinates"), "the door's position", door_id)
    reader = props.get("reader_id")
    if not isinstance(reader, str) or not READER_ID.fullmatch(reader):
        raise PlanInvalid("properties.reader_id must be 1-64 letters, digits and _ . : - (starting with a letter "
                          "or digit)", feature=door_id, code="bad_property")
    inside = _text(props, "inside_zone", door_id, MAX_ID)
    outside = _text(props, "outside_zone", door_id, MAX_ID, required=False)
    assert inside is not None
    capacity = _count(props, "capacity", door_id, 1, MAX_DOOR_CAPACITY, 1)
    assert capacity is not None
    return Door(floor=floor, id=door_id, reader_id=reader, point=point, inside_zone=inside, outside_zone=outside,
                capacity=capacity)


def _check_door(door: Door, zones: Mapping[str, Zone]) -> None:
    if door.outside_zone == door.inside_zone:
        raise PlanInvalid("inside_zone and outside_zone are the same zone", feature=door.id, code="bad_property")
    for role, zone_id in (("inside_zone", door.inside_zone), ("outside_zone", door.outside_zone)):
        if zone_id is None:
            continue
        zone = zones.get(zone_id)
        if zone is None:
            raise PlanInvalid(f"{role} {zone_id!r} is not a unit of this plan", feature=door.id, code="unknown_zone")
        gap = boundary_distance(zone.polygon, door.point)
        if gap > DOOR_TOLERANCE:
            raise PlanInvalid(f"the door at {list(door.point)} is {gap:.2f} m from the boundary of its {role} "
                              f"{zone_id!r}; a door must lie on it (within {DOOR_TOLERANCE} m)",
                              feature=door.id, code="door_off_boundary")


def parse_plan(data: Any, *, code: str, level: int, name: str, transform: Transform = Transform()) -> Floor:
    """The floor a validated plan describes; PlanInvalid at the first problem found.

    Codes: not_feature_collection, too_many_features, bad_feature, missing_id, duplicate_id,
    unknown_feature_type, bad_geometry, bad_coordinates, not_finite, out_of_range, too_many_points,
    too_few_points, ring_not_closed, repeated_point, self_intersection, degenerate_ring,
    unknown_kind, bad_property, duplicate_reader, duplicate_room, unknown_zone, door_off_boundary.
    """
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not isinstance(data.get("features"), list):
        raise PlanInvalid('the plan must be a GeoJSON FeatureCollection: {"type": "FeatureCollection", "features": [...]}',
                          code="not_feature_collection")
    features = data["features"]
    if len(features) > MAX_FEATURES:
        raise PlanInvalid(f"the plan has {len(features)} features; at most {MAX_FEATURES}", code="too_many_features")
    zones: dict[str, Zone] = {}
    doors: dict[str, Door] = {}
    readers: dict[str, str] = {}
    rooms: dict[uuid.UUID, str] = {}
    for index, feature in enumerate(features):
        where = f"features[{index}]"
        if not isinstance(feature, dict) or feature.get("type") != "Feature" or not isinstance(feature.get("properties"), dict):
            raise PlanInvalid("a feature must be an object with type \"Feature\" and properties", feature=where,
                              code="bad_feature")
        feature_id = feature.get("id")
        if not isinstance(feature_id, str) or not feature_id.strip() or len(feature_id) > MAX_ID:
            raise PlanInvalid(f"the feature needs an id: a text of 1 to {MAX_ID} characters", feature=where,
                              code="missing_id")
        if feature_id in zones or feature_id in doors:
            raise PlanInvalid(f"two features have the id {feature_id!r}", feature=feature_id, code="duplicate_id")
        props, geometry = feature["properties"], feature.get("geometry")
        kind = props.get("feature_type")
        if kind == "unit":
            zone = _unit(code, feature_id, props, geometry)
            if zone.room_id is not None:
                if zone.room_id in rooms:
                    raise PlanInvalid(f"room_id {zone.room_id} is also unit {rooms[zone.room_id]!r}",
                                      feature=feature_id, code="duplicate_room")
                rooms[zone.room_id] = feature_id
            zones[feature_id] = zone
        elif kind == "door":
            door = _door(code, feature_id, props, geometry)
            if door.reader_id in readers:
                raise PlanInvalid(f"reader_id {door.reader_id!r} is also door {readers[door.reader_id]!r}",
                                  feature=feature_id, code="duplicate_reader")
            readers[door.reader_id] = feature_id
            doors[feature_id] = door
        else:
            raise PlanInvalid(f'properties.feature_type must be "unit" or "door", got {kind!r}', feature=feature_id,
                              code="unknown_feature_type")
    for door in doors.values():
        _check_door(door, zones)
    return Floor(code=code, level=level, name=name, zones=tuple(zones.values()), doors=tuple(doors.values()),
                 transform=transform)


# ---------------------------------------------------------------------------- where is a point


@dataclass
class _Grid:
    """One floor's zones bucketed by a uniform grid of their bounding boxes, smallest zone first."""

    x0: float
    y0: float
    cell: float
    columns: int
    rows: int
    cells: list[list[tuple[Zone, tuple[float, float, float, float]]]]
    # Per cell, once first asked: the zone that holds all of it (None: no zone touches it), or
    # _MIXED when a zone boundary crosses it and each point must be tried.
    answers: list[Any] = field(default_factory=list)


MAX_GRID_SIDE = 256
_UNKNOWN, _MIXED = object(), object()


def _rectangle_relation(ring: Sequence[Point], x0: float, y0: float, x1: float, y1: float) -> str:
    """"inside" (the closed rectangle lies strictly inside the ring), "outside" (they share no
    point) or "crossing"."""
    corners = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    sides = list(zip(corners, corners[1:] + corners[:1]))
    if any(segments_intersect(a, b, c, d) for a, b in zip(ring, ring[1:]) for c, d in sides):
        return "crossing"
    inside = [contains(ring, x, y) for x, y in corners]
    if all(inside):
        return "inside"
    if any(inside) or any(x0 <= x <= x1 and y0 <= y <= y1 for x, y in ring):
        return "crossing"
    return "outside"


class ZoneIndex:
    """Which zone a point of a floor lies in, fast: a grid cell's candidates, each tried by its
    bounding box, then by ray casting. Zones may nest (a booth inside a hall): the smallest
    containing zone wins."""

    def __init__(self, floors: Iterable[Floor], cell: float = 2.0) -> None:
        self._grids: dict[str, _Grid] = {}
        self._zones: dict[tuple[str, str], Zone] = {}
        for floor in floors:
            for zone in floor.zones:
                self._zones[(floor.code, zone.id)] = zone
            if floor.zones:
                self._grids[floor.code] = self._grid(floor.zones, cell)

    @staticmethod
    def _grid(zones: Sequence[Zone], cell: float) -> _Grid:
        boxes = [(zone, bounds(zone.polygon)) for zone in sorted(zones, key=lambda z: (area(z.polygon), z.id))]
        x0, y0 = min(b[0] for _, b in boxes), min(b[1] for _, b in boxes)
        x1, y1 = max(b[2] for _, b in boxes), max(b[3] for _, b in boxes)
        cell = max(cell, (x1 - x0) / MAX_GRID_SIDE, (y1 - y0) / MAX_GRID_SIDE)
        columns, rows = int((x1 - x0) // cell) + 1, int((y1 - y0) // cell) + 1
        cells: list[list[tuple[Zone, tuple[float, float, float, float]]]] = [[] for _ in range(columns * rows)]
        for zone, box in boxes:
            for row in range(int((box[1] - y0) // cell), int((box[3] - y0) // cell) + 1):
                for column in range(int((box[0] - x0) // cell), int((box[2] - x0) // cell) + 1):
                    cells[row * columns + column].append((zone, box))
        return _Grid(x0, y0, cell, columns, rows, cells, [_UNKNOWN] * len(cells))

    @staticmethod
    def _answer(grid: _Grid, index: int) -> Any:
        """The zone holding all of cell `index`, None if no zone touches it, else _MIXED."""
        row, column = divmod(index, grid.columns)
        x0, y0 = grid.x0 + column * grid.cell, grid.y0 + row * grid.cell
        for zone, _ in grid.cells[index]:  # smallest first: the first zone touching the cell decides
            relation = _rectangle_relation(zone.polygon, x0, y0, x0 + grid.cell, y0 + grid.cell)
            if relation == "inside":
                return zone
            if relation == "crossing":
                return _MIXED
        return None

    def zone_at(self, floor_code: str, x: float, y: float) -> Zone | None:
        """The smallest zone of the floor containing (x, y) in local metres, or None."""
        grid = self._grids.get(floor_code)
        if grid is None:
            return None
        column, row = int((x - grid.x0) // grid.cell), int((y - grid.y0) // grid.cell)
        if not (0 <= column < grid.columns and 0 <= row < grid.rows):
            return None
        index = row * grid.columns + column
        # A cell wholly inside one zone (most of a floor) is answered without ray casting.
        answer = grid.answers[index]
        if answer is _UNKNOWN:
            answer = grid.answers[index] = self._answer(grid, index)
        if answer is not _MIXED:
            return answer
        for zone, (bx0, by0, bx1, by1) in grid.cells[index]:
            if bx0 <= x <= bx1 and by0 <= y <= by1 and contains(zone.polygon, x, y):
                return zone
        return None

    def zone_id_at(self, floor_code: str, x: float, y: float) -> str | None:
        """zone_at's id: the tracker's ZoneLookup, called for every position. A cell already
        answered whole is read here without the call to zone_at."""
        grid = self._grids.get(floor_code)
        if grid is not None:
            column, row = int((x - grid.x0) // grid.cell), int((y - grid.y0) // grid.cell)
            if 0 <= column < grid.columns and 0 <= row < grid.rows:
                answer = grid.answers[row * grid.columns + column]
                if answer is None or (answer is not _UNKNOWN and answer is not _MIXED):
                    return None if answer is None else answer.id
        zone = self.zone_at(floor_code, x, y)
        return None if zone is None else zone.id

    def zone(self, floor_code: str, zone_id: str) -> Zone | None:
        return self._zones.get((floor_code, zone_id))

    def distance(self, floor_code: str, zone_id: str, x: float, y: float) -> float | None:
        """How far (x, y) is from the zone: 0 inside it, else to its boundary; None for no such zone."""
        zone = self._zones.get((floor_code, zone_id))
        if zone is None:
            return None
        return 0.0 if contains(zone.polygon, x, y) else boundary_distance(zone.polygon, (x, y))


@dataclass(frozen=True)
class FloorSet:
    """The engine's part "floors": every floor by code, its zone index, the doors by reader and
    the evaluation-room zones by venue room. `versions` (code → (floor id, version)) lets a reload
    re-parse only the plans that changed."""

    floors: Mapping[str, Floor]
    index: ZoneIndex
    doors: Mapping[str, Door]
    rooms: Mapping[uuid.UUID, Zone]
    versions: Mapping[str, tuple[uuid.UUID, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, floors: Iterable[Floor], versions: Mapping[str, tuple[uuid.UUID, int]] | None = None) -> "FloorSet":
        by_code = {f.code: f for f in floors}
        return cls(floors=by_code, index=ZoneIndex(by_code.values()),
                   doors={d.reader_id: d for f in by_code.values() for d in f.doors},
                   rooms={z.room_id: z for f in by_code.values() for z in f.zones if z.room_id is not None},
                   versions=dict(versions or {}))

    def zone_at(self, floor_code: str, x: float, y: float) -> Zone | None:
        """The zone at a point in local metres (ZoneIndex.zone_at)."""
        return self.index.zone_at(floor_code, x, y)

    def to_local(self, floor_code: str, x: float, y: float) -> Point | None:
        """A positioning system's point on a floor in local metres; None for an unknown floor."""
        floor = self.floors.get(floor_code)
        return None if floor is None else to_local(floor.transform, x, y)
