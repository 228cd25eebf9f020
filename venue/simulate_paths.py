"""The simulator's map: a floor plan read from its GeoJSON, and shortest walking paths over it.

Pure: no I/O. Walkers move along a path graph built from the plan: each door gives two nodes,
one a step inside each of its zones, joined by the crossing; each zone joins its door nodes,
an interior anchor and its reflex corners (pulled inwards) wherever the straight line between
two of them stays inside the zone (a visibility graph, so an L-shaped corridor is walked
around its corner, never through the wall). Shortest paths are Dijkstra's over that graph.
Coordinates are the plan's local metres.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping, Sequence

Point = tuple[float, float]
OUTSIDE = "__outside__"   # the pseudo-zone beyond the floor's exterior doors
DOOR_STEP = 0.7           # metres from a door to where one stands to badge, or steps after it
CORNER_INSET = 0.5        # metres a reflex corner's node is pulled into its zone
SAMPLE_STEP = 0.25        # metres between the points a visibility test checks


class PlanInvalid(ValueError):
    """The plan has no zone or door the simulator can walk (the message says what is missing)."""


@dataclass(frozen=True)
class SimZone:
    id: str
    kind: str
    name: str
    ring: tuple[Point, ...]          # outer ring, first point not repeated
    capacity: int | None = None
    closed_area: bool = False

    @property
    def area(self) -> float:
        return abs(_signed_area(self.ring))


@dataclass(frozen=True)
class Crossing:
    """One way through a door: from `from_zone` (OUTSIDE: off the floor) into `to_zone`, asked at
    `reader_id` (None: free passage that way), between the two standing points."""

    door: str
    from_zone: str
    to_zone: str
    reader_id: str | None
    before: Point
    after: Point
    at: Point


@dataclass
class Plan:
    """A floor as the simulator walks it."""

    floor: str
    zones: dict[str, SimZone]
    crossings: list[Crossing]
    graph: "Graph" = field(init=False)

    def __post_init__(self) -> None:
        self.graph = Graph(self)

    def zone_at(self, p: Point) -> SimZone | None:
        """The zone containing p; with overlapping zones the smallest (a room inside a hall)."""
        found = [z for z in self.zones.values() if point_in_ring(p, z.ring)]
        return min(found, key=lambda z: z.area) if found else None

    def of_kind(self, *kinds: str) -> list[SimZone]:
        return sorted((z for z in self.zones.values() if z.kind in kinds), key=lambda z: z.id)

    def entrances(self) -> list[Crossing]:
        """The ways onto the floor (from OUTSIDE), those into an entrance zone first."""
        ways = [c for c in self.crossings if c.from_zone == OUTSIDE]
        return sorted(ways, key=lambda c: (self.zones[c.to_zone].kind != "entrance", c.door))

    def exits(self) -> list[Crossing]:
        ways = [c for c in self.crossings if c.to_zone == OUTSIDE]
        return sorted(ways, key=lambda c: (self.zones[c.from_zone].kind != "entrance", c.door))

    def readers_into(self, zone_id: str) -> list[Crossing]:
        return [c for c in self.crossings if c.to_zone == zone_id and c.reader_id]

    def spot(self, zone_id: str, rng: random.Random, margin: float = 0.6) -> Point:
        """A random standing point in the zone, at least `margin` from its walls when it can be."""
        return random_point(self.zones[zone_id].ring, rng, margin)

    def path(self, start: Point, start_zone: str, goal: Point, goal_zone: str,
             allowed: Collection[str] | None = None) -> list["Step"] | None:
        """The shortest walk from start (in start_zone) to goal (in goal_zone) as steps, through
        `allowed` zones only when such a walk exists; None when no door leads there at all."""
        if allowed is not None:
            found = self.graph.shortest(start, start_zone, goal, goal_zone, allowed)
            if found is not None:
                return found
        return self.graph.shortest(start, start_zone, goal, goal_zone)


@dataclass(frozen=True)
class Step:
    """A leg of a path: walk to `to`; when `crossing` is set, the leg goes through that door
    (the walker is at crossing.before and steps through to crossing.after)."""

    to: Point
    crossing: Crossing | None = None


# --------------------------------------------------------------------------- reading the plan


def _prop(feature: Mapping[str, Any], *names: str) -> Any:
    props = feature.get("properties") or {}
    for name in names:
        if props.get(name) is not None:
            return props[name]
    return None


def _ring(geometry: Mapping[str, Any]) -> tuple[Point, ...]:
    coords = geometry.get("coordinates") or []
    if geometry.get("type") == "MultiPolygon":
        coords = max(coords, key=lambda poly: abs(_signed_area(tuple(map(tuple, poly[0])))))
    ring = [(float(x), float(y)) for x, y, *_ in coords[0]]
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring.pop()
    return tuple(ring)


def read_plan(floor: str, plan: Mapping[str, Any]) -> Plan:
    """The plan (a GeoJSON FeatureCollection: `unit` polygons and `door` points) as a Plan.

    Zones: feature_type "unit" (or any polygon) with id (feature id, or properties id /
    zone_id), kind, name, capacity, closed_area. Doors: feature_type "door" points with
    reader_id, inside_zone and outside_zone (absent: the outside of the floor); a reader lets
    people from outside_zone into inside_zone, and a door with a reader each way appears twice.
    Raises PlanInvalid when there are no zones or no way onto the floor."""
    zones: dict[str, SimZone] = {}
    doors: list[tuple[str, Point, str | None, str, str | None]] = []
    for i, feature in enumerate(plan.get("features") or []):
        geometry = feature.get("geometry") or {}
        ftype = _prop(feature, "feature_type") or ("unit" if geometry.get("type") in ("Polygon", "MultiPolygon")
                                                  else "door" if geometry.get("type") == "Point" else None)
        ident = feature.get("id") or _prop(feature, "id", "zone_id", "door_id") or f"f{i}"
        if ftype == "unit" and geometry.get("type") in ("Polygon", "MultiPolygon"):
            ring = _ring(geometry)
            if len(ring) >= 3:
                zones[str(ident)] = SimZone(str(ident), str(_prop(feature, "kind") or "corridor"),
                                            str(_prop(feature, "name") or ident), ring,
                                            _prop(feature, "capacity"), bool(_prop(feature, "closed_area")))
        elif ftype == "door" and geometry.get("type") == "Point":
            x, y, *_ = geometry["coordinates"]
            inside = _prop(feature, "inside_zone")
            if inside is not None:
                doors.append((str(_prop(feature, "door_id") or ident), (float(x), float(y)),
                              _prop(feature, "reader_id"), str(inside), _prop(feature, "outside_zone")))
    if not zones:
        raise PlanInvalid(f"floor {floor} has no zones")
    crossings = _crossings(zones, doors)
    if not any(c.from_zone == OUTSIDE for c in crossings):
        raise PlanInvalid(f"floor {floor} has no door from the outside (a door without outside_zone)")
    return Plan(floor, zones, crossings)


def _crossings(zones: Mapping[str, SimZone],
               doors: Iterable[tuple[str, Point, str | None, str, str | None]]) -> list[Crossing]:
    """Both ways through every door. Door features between the same two zones less than a metre
    apart are one door (a two-way door has a reader each way); a way without a reader of its
    own is free passage (exits are often push bars)."""
    ways: dict[tuple[str, str, int], tuple[str | None, str, Point]] = {}
    points: dict[tuple[str, str], list[Point]] = {}
    for door_id, point, reader, inside, outside in doors:
        if inside not in zones or (outside is not None and outside not in zones):
            continue
        frm = outside or OUTSIDE
        pair = (min(frm, inside), max(frm, inside))
        known = points.setdefault(pair, [])
        number = next((i for i, q in enumerate(known) if math.dist(q, point) < 1.0), None)
        if number is None:
            known.append(point)
            number = len(known) - 1
        key = (frm, inside, number)
        if key not in ways or ways[key][0] is None:
            ways[key] = (reader, door_id, known[number])
    for (a, b, number), (_reader, door_id, point) in list(ways.items()):
        ways.setdefault((b, a, number), (None, door_id, point))
    return [Crossing(door_id, a, b, reader, _inside_step(zones, a, point, DOOR_STEP),
                     _inside_step(zones, b, point, DOOR_STEP), point)
            for (a, b, _n), (reader, door_id, point) in sorted(ways.items(), key=lambda kv: (kv[1][1], kv[0][:2]))]


def _inside_step(zones: Mapping[str, SimZone], zone_id: str, door: Point, distance: float) -> Point:
    """A point `distance` from the door into the zone (OUTSIDE: off the floor), as straight
    across the wall as can be: of 16 directions, the one farthest from the walls."""
    best: tuple[float, Point] | None = None
    for k in range(16):
        a = 2 * math.pi * k / 16
        p = (door[0] + distance * math.cos(a), door[1] + distance * math.sin(a))
        if zone_id == OUTSIDE:
            ok = not any(point_in_ring(p, z.ring) for z in zones.values())
            score = min(_edge_distance(p, z.ring) for z in zones.values())
        else:
            zone = zones[zone_id]
            ok = point_in_ring(p, zone.ring) and all(
                z.id == zone_id or z.area > zone.area or not point_in_ring(p, z.ring) for z in zones.values())
            score = _edge_distance(p, zone.ring)
        if ok and (best is None or score > best[0] + 1e-9):
            best = (score, p)
    return best[1] if best is not None else door


# --------------------------------------------------------------------------- geometry


def _signed_area(ring: Sequence[Point]) -> float:
    return 0.5 * sum(ring[i - 1][0] * ring[i][1] - ring[i][0] * ring[i - 1][1] for i in range(len(ring)))


def point_in_ring(p: Point, ring: Sequence[Point]) -> bool:
    """Ray casting (a point on the boundary may fall either way)."""
    x, y = p
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def _segment_distance(p: Point, a: Point, b: Point) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2))
    return math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy)


def _edge_distance(p: Point, ring: Sequence[Point]) -> float:
    return min(_segment_distance(p, ring[i - 1], ring[i]) for i in range(len(ring)))


def interior_point(ring: Sequence[Point]) -> Point:
    """The centroid when it is inside the ring, else the inside point farthest from the walls on a grid."""
    area = _signed_area(ring)
    if area:
        cx = sum((ring[i - 1][0] + ring[i][0]) * (ring[i - 1][0] * ring[i][1] - ring[i][0] * ring[i - 1][1])
                 for i in range(len(ring))) / (6 * area)
        cy = sum((ring[i - 1][1] + ring[i][1]) * (ring[i - 1][0] * ring[i][1] - ring[i][0] * ring[i - 1][1])
                 for i in range(len(ring))) / (6 * area)
        if point_in_ring((cx, cy), ring) and _edge_distance((cx, cy), ring) > 0.3:
            return (cx, cy)
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    best, best_d = (sum(xs) / len(xs), sum(ys) / len(ys)), -1.0
    for i in range(1, 20):
        for j in range(1, 20):
            p = (min(xs) + (max(xs) - min(xs)) * i / 20, min(ys) + (max(ys) - min(ys)) * j / 20)
            if point_in_ring(p, ring) and (d := _edge_distance(p, ring)) > best_d:
                best, best_d = p, d
    return best


def random_point(ring: Sequence[Point], rng: random.Random, margin: float = 0.6) -> Point:
    """Rejection sampling in the bounding box; the margin shrinks when the zone is too narrow."""
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    for m in (margin, margin / 2, 0.0):
        for _ in range(200):
            p = (rng.uniform(min(xs), max(xs)), rng.uniform(min(ys), max(ys)))
            if point_in_ring(p, ring) and (m == 0.0 or _edge_distance(p, ring) >= m):
                return p
    return interior_point(ring)


def reflex_corners(ring: Sequence[Point], inset: float = CORNER_INSET) -> list[Point]:
    """The ring's reflex (inward-pointing) corners, each moved `inset` into the zone along its bisector."""
    ccw = _signed_area(ring) > 0
    out = []
    n = len(ring)
    for i in range(n):
        a, b, c = ring[i - 1], ring[i], ring[(i + 1) % n]
        cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])
        if (cross < 0) if ccw else (cross > 0):
            u = _unit((a[0] - b[0], a[1] - b[1]))
            v = _unit((c[0] - b[0], c[1] - b[1]))
            bis = _unit((u[0] + v[0], u[1] + v[1])) if (u[0] + v[0], u[1] + v[1]) != (0, 0) else (-u[1], u[0])
            for sign in (-1, 1):  # a reflex corner's bisector points out of the zone: go the other way
                p = (b[0] + sign * bis[0] * inset * 1.5, b[1] + sign * bis[1] * inset * 1.5)
                if point_in_ring(p, ring):
                    out.append(p)
                    break
    return out


def _unit(v: Point) -> Point:
    length = math.hypot(*v)
    return (v[0] / length, v[1] / length) if length else (0.0, 0.0)


def visible(a: Point, b: Point, ring: Sequence[Point]) -> bool:
    """Whether the straight walk from a to b stays inside the ring (sampled every SAMPLE_STEP;
    the ends may lie on the boundary)."""
    n = max(2, int(math.dist(a, b) / SAMPLE_STEP))
    return all(point_in_ring((a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n), ring) for k in range(1, n))


# --------------------------------------------------------------------------- the path graph


class Graph:
    """Nodes: each crossing's standing points and every zone's anchor and inset reflex corners."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.points: list[Point] = []
        self.zone_of: list[str] = []
        self.edges: dict[int, list[tuple[int, float, Crossing | None]]] = {}
        self.by_zone: dict[str, list[int]] = {}
        for zone in plan.zones.values():
            for p in [interior_point(zone.ring), *reflex_corners(zone.ring)]:
                self._node(p, zone.id)
        standing: dict[tuple[str, Point], int] = {}
        for c in plan.crossings:
            a = standing.get((c.from_zone, c.before))
            if a is None:
                a = standing[(c.from_zone, c.before)] = self._node(c.before, c.from_zone)
            b = standing.get((c.to_zone, c.after))
            if b is None:
                b = standing[(c.to_zone, c.after)] = self._node(c.after, c.to_zone)
            self.edges.setdefault(a, []).append((b, math.dist(c.before, c.after), c))
        for zone_id, nodes in self.by_zone.items():
            if zone_id == OUTSIDE:
                continue  # one does not walk round the building between exterior doors
            ring = plan.zones[zone_id].ring
            for i, a in enumerate(nodes):
                for b in nodes[i + 1:]:
                    if visible(self.points[a], self.points[b], ring):
                        d = math.dist(self.points[a], self.points[b])
                        self.edges.setdefault(a, []).append((b, d, None))
                        self.edges.setdefault(b, []).append((a, d, None))

    def _node(self, p: Point, zone_id: str) -> int:
        self.points.append(p)
        self.zone_of.append(zone_id)
        self.by_zone.setdefault(zone_id, []).append(len(self.points) - 1)
        return len(self.points) - 1

    def _links(self, p: Point, zone_id: str) -> list[tuple[int, float]]:
        """The zone's nodes that p sees; the nearest one when it sees none (a noisy start)."""
        nodes = self.by_zone.get(zone_id, [])
        if zone_id == OUTSIDE:
            return [(n, math.dist(p, self.points[n])) for n in nodes if math.dist(p, self.points[n]) < 0.01]
        ring = self.plan.zones[zone_id].ring
        seen = [(n, math.dist(p, self.points[n])) for n in nodes if visible(p, self.points[n], ring)]
        if not seen and nodes:
            seen = [min(((n, math.dist(p, self.points[n])) for n in nodes), key=lambda x: x[1])]
        return seen

    def shortest(self, start: Point, start_zone: str, goal: Point, goal_zone: str,
                 allowed: Collection[str] | None = None) -> list[Step] | None:
        if start_zone == goal_zone and (start_zone == OUTSIDE or visible(start, goal, self.plan.zones[start_zone].ring)):
            return [Step(goal)]
        targets = {n: d for n, d in self._links(goal, goal_zone)}
        if not targets:
            return None
        # Dijkstra from the start's visible nodes; the goal is reached through a node that sees it.
        dist: dict[int, float] = {}
        prev: dict[int, tuple[int | None, Crossing | None]] = {}
        order = itertools.count()  # ties never compare nodes' crossings
        queue: list[tuple[float, int, int, int | None, Crossing | None]] = [
            (d, next(order), n, None, None) for n, d in self._links(start, start_zone)]
        heapq.heapify(queue)
        best: tuple[float, int] | None = None
        while queue:
            d, _, n, via, crossing = heapq.heappop(queue)
            if n in dist:
                continue
            dist[n], prev[n] = d, (via, crossing)
            if best is not None and d >= best[0]:
                break
            if n in targets and (best is None or d + targets[n] < best[0]):
                best = (d + targets[n], n)
            for m, w, c in self.edges.get(n, ()):
                zone = self.zone_of[m]
                if allowed is not None and zone not in allowed and zone not in (OUTSIDE, start_zone, goal_zone):
                    continue
                if m not in dist:
                    heapq.heappush(queue, (d + w, next(order), m, n, c))
        if best is None:
            return None
        steps: list[Step] = [Step(goal)]
        node: int | None = best[1]
        while node is not None:
            via, crossing = prev[node]
            steps.append(Step(self.points[node], crossing))
            node = via
        steps.reverse()
        return _merge(steps)


def _merge(steps: list[Step]) -> list[Step]:
    """Drop zero-length legs (a node that is also the goal)."""
    out: list[Step] = []
    for s in steps:
        if out and s.crossing is None and math.dist(out[-1].to, s.to) < 1e-6:
            continue
        out.append(s)
    return out
