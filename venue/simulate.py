"""The venue simulator's movement model: who comes, where they go during the day, how they walk,
what their tags report and which doors they ask (the violations one may inject are in
venue/simulate_violations.py).

Pure: no I/O and no clock. `Simulation.advance(dt)` moves everyone `dt` simulated seconds and
returns what the devices would send: tag fixes (with UWB-like noise), door questions (a badge at
a reader) and door events; the driver (venue/simulate_run.py) sends them to the server through
the device APIs and hands each door's answer back with `answer`. Randomness comes from the
`random.Random` passed in, so a seed replays the same day.

The day (`day` simulated seconds, phases at fractions of it): supervisors and staff arrive
first; everyone signs in at the entrance; experts leave their phones in the lockers and go
through the isolation corridor into their evaluation room, where they stay until the end (in
the break half of them go to the closed area's lounge, the others move about the room); bidders and agents wait in the waiting area until
the opening, attend it in the opening hall, take a break in the waiting area, and half of them
leave after it; supervisors watch from the supervision room with rounds to the opening and
the closed area; staff work at the entrance desk, the opening and the archive; visitors come
and go through the waiting area.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

from venue.simulate_paths import OUTSIDE, Crossing, Plan, Point, Step

Role = Literal["expert", "bidder", "agent", "supervisor", "staff", "visitor"]
ROLE_MIX: tuple[tuple[Role, float], ...] = (("expert", 0.40), ("bidder", 0.25), ("agent", 0.10),
                                            ("supervisor", 0.10), ("staff", 0.10), ("visitor", 0.05))
ROLE_NAMES = {"expert": "专家", "bidder": "投标人", "agent": "代理", "supervisor": "监督", "staff": "场务",
              "visitor": "访客"}
ROLES: tuple[Role, ...] = tuple(role for role, _ in ROLE_MIX)
# Where the public may go, by zone kind, outside the closed area.
PUBLIC_KINDS: dict[str, frozenset[str]] = {
    "bidder": frozenset({"entrance", "corridor", "waiting_area", "opening_hall"}),
    "agent": frozenset({"entrance", "corridor", "waiting_area", "opening_hall"}),
    "visitor": frozenset({"entrance", "corridor", "waiting_area"}),
}
# Experts' kinds: on the public side only the way in, in the closed area all but others' rooms.
EXPERT_PUBLIC = frozenset({"entrance", "corridor"})
EXPERT_CLOSED = frozenset({"entrance", "corridor", "phone_lockers", "isolation_corridor", "office"})
EXPERTS_PER_ROOM = 3
WALK_SPEED = (1.0, 1.5)    # metres a second
DEFAULT_DAY = 900.0        # simulated seconds: a compact day for demos
DEFAULT_NOISE = 0.15       # metres, σ of each coordinate (UWB: 0.1–0.3 m)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚卢"
_GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "军", "涛", "明", "超", "霞", "平", "刚", "桂英",
          "建华", "志强", "海燕", "晓东", "丽华", "建国", "秀兰", "文博", "思远", "嘉怡", "子涵", "宇航")

# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class SimPerson:
    """A simulated person; `key` is stable across runs (role and number), so people are reused."""

    key: str
    role: Role
    name: str
    badge: str
    tag: str
    speed: float                 # walking speed, m/s
    room: str | None = None      # an expert's evaluation room (zone id)


def role_counts(n: int) -> dict[Role, int]:
    """How many of each role among n people (largest remainders; an expert and a bidder from 2 on)."""
    exact = [(role, share * n) for role, share in ROLE_MIX]
    counts = {role: int(x) for role, x in exact}
    for role, x in sorted(exact, key=lambda rx: rx[1] - int(rx[1]), reverse=True)[:n - sum(counts.values())]:
        counts[role] += 1
    for must in ("expert", "bidder"):
        if n >= 2 and counts[must] == 0:
            donor = max(counts, key=lambda r: counts[r])
            counts[donor] -= 1
            counts[must] += 1
    return counts


def cast(n: int, plan: Plan, rng: random.Random, prefix: str = "SIM") -> list[SimPerson]:
    """n people of a realistic mix; experts take the evaluation rooms EXPERTS_PER_ROOM at a time.
    Names, badges and tags depend only on role and number (not on the seed)."""
    rooms = [z.id for z in plan.of_kind("evaluation_room")]
    people = []
    for role, count in role_counts(n).items():
        for i in range(1, count + 1):
            seed = sum(map(ord, role)) * 31 + i * 7
            name = f"{ROLE_NAMES[role]}{i:02d} {_SURNAMES[seed % len(_SURNAMES)]}{_GIVEN[(seed // 3) % len(_GIVEN)]}"
            code = f"{prefix}-{role.upper()[:3]}-{i:03d}"
            room = rooms[((i - 1) // EXPERTS_PER_ROOM) % len(rooms)] if role == "expert" and rooms else None
            people.append(SimPerson(f"{role}-{i:02d}", role, name, f"{code}-B", f"{code}-T",
                                    round(rng.uniform(*WALK_SPEED), 2), room))
    return people


def antechambers(plan: Plan) -> dict[str, str]:
    """Zones that only lead into one evaluation room (a two-door vestibule), with that room."""
    neighbours: dict[str, set[str]] = {}
    for c in plan.crossings:
        neighbours.setdefault(c.from_zone, set()).add(c.to_zone)
        neighbours.setdefault(c.to_zone, set()).add(c.from_zone)
    out = {}
    for zone in plan.zones.values():
        if zone.kind == "evaluation_room":
            continue
        rooms = [z for z in neighbours.get(zone.id, ()) if z in plan.zones and plan.zones[z].kind == "evaluation_room"]
        if len(rooms) == 1 and len(neighbours[zone.id]) <= 2:
            out[zone.id] = rooms[0]
    return out


def allowed_zones(person: SimPerson, plan: Plan) -> set[str]:
    """The zones the simulator asks the server to let this person into: supervisors everywhere;
    staff everywhere but the evaluation rooms (and their vestibules) and the supervision room;
    experts the way in, the closed area and their own room; the public (bidders, agents,
    visitors) the public zones of their kinds."""
    zones = list(plan.zones.values())
    ante = antechambers(plan)
    if person.role == "supervisor":
        return {z.id for z in zones}
    if person.role == "staff":
        return {z.id for z in zones if z.kind not in ("evaluation_room", "supervision_room") and z.id not in ante}
    if person.role == "expert":
        mine = {person.room} | {a for a, room in ante.items() if room == person.room} if person.room else set()
        return mine | {z.id for z in zones if z.id not in ante and (
            z.kind in EXPERT_CLOSED if z.closed_area else z.kind in EXPERT_PUBLIC)}
    return {z.id for z in zones if not z.closed_area and z.kind in PUBLIC_KINDS[person.role]}


# --------------------------------------------------------------------------- the day


@dataclass(frozen=True)
class Stop:
    """From `at` (simulated seconds into the day) be in `zone` (None: off the floor), moving to a
    new spot in it every `linger` seconds or so."""

    at: float
    zone: str | None
    linger: float = 60.0


def _first(plan: Plan, rng: random.Random, allowed: set[str], *kinds: str) -> str | None:
    """A zone of the first of `kinds` the plan has and the person may enter."""
    for kind in kinds:
        zones = [z for z in plan.of_kind(kind) if z.id in allowed]
        if zones:
            return rng.choice(zones).id
    return None


def itinerary(person: SimPerson, plan: Plan, day: float, rng: random.Random) -> list[Stop]:
    """The person's day as stops; zones a plan lacks fall back to the nearest thing it has."""
    f = day / 100.0  # one per cent of the day
    may = allowed_zones(person, plan)
    entrance = _first(plan, rng, may, "entrance", "corridor")
    waiting = _first(plan, rng, may, "waiting_area", "opening_hall", "entrance")
    hall = _first(plan, rng, may, "opening_hall", "waiting_area", "entrance")
    lockers = _first(plan, rng, may, "phone_lockers")
    public_offices = [z.id for z in plan.of_kind("office") if z.id in may and not z.closed_area]
    office = rng.choice(public_offices) if public_offices else _first(plan, rng, may, "office", "supervision_room",
                                                                       "entrance")
    u = rng.uniform
    stops: list[Stop]
    if person.role == "expert":
        # The break: up and about in the room, or in the closed area's lounge when there is one.
        lounges = [z.id for z in plan.of_kind("office") if z.closed_area and z.id in may]
        lounge = rng.choice(lounges) if lounges else None
        arrive = u(2, 10) * f
        stops = [Stop(arrive, entrance, 8), Stop(arrive + u(8, 14), lockers or entrance, 6),
                 Stop(arrive + u(22, 30), person.room or hall, u(60, 150)),
                 Stop(u(50, 52) * f, lounge if lounge and rng.random() < 0.5 else person.room or hall, u(10, 20)),
                 Stop(u(58, 60) * f, person.room or hall, u(60, 150)),
                 Stop(u(90, 94) * f, lockers or entrance, 6), Stop(u(94, 96) * f, None)]
    elif person.role in ("bidder", "agent"):
        arrive = u(1, 12) * f
        stops = [Stop(arrive, entrance, 6), Stop(arrive + u(10, 20), waiting, u(20, 40)),
                 Stop(u(15, 17) * f, hall, u(40, 90)), Stop(u(45, 47) * f, waiting, u(15, 30))]
        if rng.random() < 0.5:
            stops.append(Stop(u(55, 60) * f, None))
        else:
            stops += [Stop(u(60, 62) * f, hall, u(40, 90)), Stop(u(85, 92) * f, None)]
    elif person.role == "supervisor":
        room = _first(plan, rng, may, "supervision_room", "office", "entrance")
        closed = _first(plan, rng, may, "isolation_corridor")
        stops = [Stop(u(0, 2) * f, entrance, 5), Stop(u(0, 2) * f + 8, room, u(30, 90)),
                 Stop(u(20, 22) * f, hall, u(15, 30)), Stop(u(30, 32) * f, room, u(30, 90))]
        if closed:
            stops += [Stop(u(62, 64) * f, closed, 8), Stop(u(62, 64) * f + 25, room, u(30, 90))]
        stops.append(Stop(u(97, 99) * f, None))
    elif person.role == "staff":
        archive = _first(plan, rng, may, "archive", "office", "opening_hall")
        stops = [Stop(u(0, 2) * f, entrance, u(10, 25)), Stop(u(14, 15) * f, hall, u(20, 40)),
                 Stop(u(45, 46) * f, office, u(30, 60)), Stop(u(52, 54) * f, archive, u(10, 20)),
                 Stop(u(52, 54) * f + 35, office, u(30, 60)), Stop(u(97, 99) * f, None)]
    else:  # visitor
        arrive = u(5, 25) * f
        stops = [Stop(arrive, entrance, 6), Stop(arrive + 15, waiting, u(20, 40)), Stop(arrive + u(15, 25) * f, None)]
    return sorted(stops, key=lambda s: s.at)


# --------------------------------------------------------------------------- what devices send


@dataclass(frozen=True)
class Fix:
    """A tag's position report (simulated time; the driver dates it)."""

    tag: str
    t: float
    x: float
    y: float
    quality: float


@dataclass(frozen=True)
class Ask:
    """A badge presented at a reader; `key` is whom to `answer` (a person's key, or an injection's)."""

    key: str
    reader_id: str
    badge: str
    t: float


@dataclass(frozen=True)
class DoorSignal:
    reader_id: str
    kind: Literal["opened", "closed", "forced", "held_open"]
    t: float


@dataclass
class Output:
    fixes: list[Fix] = field(default_factory=list)
    asks: list[Ask] = field(default_factory=list)
    doors: list[DoorSignal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- walkers


@dataclass
class Override:
    """An injected errand that replaces the itinerary: go to `zone` (at `point`), stay `hold`
    seconds once there, forcing refused doors when `defiant`."""

    zone: str
    point: Point | None = None
    hold: float = 0.0
    defiant: bool = False
    until: float | None = None   # set on arrival
    done: bool = False


@dataclass
class Walker:
    person: SimPerson
    stops: list[Stop]
    pos: Point
    zone: str = OUTSIDE
    steps: list[Step] = field(default_factory=list)
    goal: tuple[str, int] | None = None     # (zone, stop index or -1 for an override) being walked to
    asked: str | None = None                # reader waiting for an answer
    through: Crossing | None = None         # crossing granted, being walked
    next_move: float = 0.0
    next_fix: float = 0.0
    refused: set[int] = field(default_factory=set)
    override: Override | None = None
    follow: "Walker | None" = None          # tailgating: replay this walker's track, ask nothing
    lag: float = 1.2
    silent_until: float = -1.0
    track: deque[tuple[float, Point, str]] = field(default_factory=lambda: deque(maxlen=200))

    @property
    def on_floor(self) -> bool:
        return self.zone != OUTSIDE

    def stop_index(self, t: float) -> int:
        index = -1
        for i, stop in enumerate(self.stops):
            if stop.at <= t:
                index = i
        return index


class Injector(Protocol):
    """Injected violations (venue/simulate_violations.py): `step` starts and runs them."""

    @property
    def busy(self) -> bool:
        """Some are still to come or running."""

    def step(self, sim: "Simulation", out: Output) -> None:
        """Start those that are due, move on those running."""

    def taken(self) -> set[int]:
        """The ids of the walkers on an errand now."""


class Simulation:
    """Everyone's day on one floor. `advance` moves time on; `answer` hands back a door's decision."""

    def __init__(self, plan: Plan, people: Sequence[SimPerson], rng: random.Random, *, day: float = DEFAULT_DAY,
                 fix_interval: float = 1.0, noise: float = DEFAULT_NOISE, start_at: float = 0.0,
                 injector: Injector | None = None) -> None:
        self.plan, self.rng, self.day = plan, rng, day
        self.fix_interval, self.noise = fix_interval, noise
        self.t = start_at
        self.started = start_at
        self.entry = plan.entrances()[0]
        self.walkers = {p.key: Walker(p, itinerary(p, plan, day, rng), self.entry.before) for p in people}
        self.allowed = {p.key: allowed_zones(p, plan) for p in people}
        self.injector = injector
        self.answers: dict[str, bool] = {}
        for w in self.walkers.values():
            w.next_fix = start_at + rng.uniform(0, fix_interval)
            self._place(w, start_at)

    # -- the public surface -------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """The day is over, everyone has left and no injection is pending or running."""
        return (self.t >= self.day and not (self.injector is not None and self.injector.busy)
                and all(not w.on_floor and w.stop_index(self.t) == len(w.stops) - 1 for w in self.walkers.values()))

    def answer(self, key: str, granted: bool) -> None:
        """The server's decision for the badge a walker (or an injection) presented."""
        self.answers[key] = granted

    def advance(self, dt: float) -> Output:
        out = Output()
        self.t += dt
        if self.injector is not None:
            self.injector.step(self, out)
        for w in self.walkers.values():
            if w.follow is not None:
                self._shadow(w)
            else:
                self._walk(w, dt, out)
            if w.on_floor:
                w.track.append((self.t, w.pos, w.zone))
            self._fix(w, out)
        return out

    def where(self, key: str) -> tuple[str, Point]:
        w = self.walkers[key]
        return w.zone, w.pos

    # -- moving -------------------------------------------------------------------------------

    def _place(self, w: Walker, t: float) -> None:
        """Start a run in the middle of the day: put the walker where its itinerary has it."""
        i = w.stop_index(t)
        if i < 0 or w.stops[i].zone is None:
            return
        w.zone = w.stops[i].zone  # type: ignore[assignment]
        w.pos = self.plan.spot(w.zone, self.rng)
        w.goal = (w.zone, i)
        w.next_move = t + self.rng.uniform(0, w.stops[i].linger)

    def _target(self, w: Walker) -> tuple[str, int]:
        if w.override is not None and not w.override.done:
            return (w.override.zone, -1)
        i = w.stop_index(self.t)
        if i < 0:
            return (OUTSIDE, -2)
        zone = w.stops[i].zone
        if zone is None:
            return (OUTSIDE, i)
        if i in w.refused:  # refused at a door on the way: stay where one is until the next stop
            return (w.zone, i)
        return (zone, i)

    def _plan_to(self, w: Walker, zone: str, point: Point | None = None) -> None:
        if zone == OUTSIDE:
            if not w.on_floor:
                w.steps = []
                return
            exits = self.plan.exits()
            paths = [p for p in (self.plan.path(w.pos, w.zone, way.after, OUTSIDE, self._ways(w)) for way in exits) if p]
            w.steps = min(paths, key=lambda p: length(w.pos, p)) if paths else []
            return
        goal = point or self.plan.spot(zone, self.rng)
        if not w.on_floor:
            w.pos = self.entry.before
        w.steps = self.plan.path(w.pos, w.zone, goal, zone, self._ways(w)) or []

    def _ways(self, w: Walker) -> set[str] | None:
        """The zones a walker keeps to: those it may enter, unless on a defiant errand."""
        return None if w.override is not None and w.override.defiant else self.allowed[w.person.key]

    def _walk(self, w: Walker, dt: float, out: Output) -> None:
        target = self._target(w)
        if target != w.goal and w.asked is None and w.through is None:
            w.goal = target
            o = w.override
            self._plan_to(w, target[0], o.point if o is not None and target[1] == -1 else None)
            if target[1] >= 0:
                w.next_move = self.t + self.rng.uniform(0.5, 1.0) * w.stops[target[1]].linger
        elif not w.steps and w.asked is None and w.on_floor and self.t >= w.next_move and target[1] != -1:
            # Dwelling: now and then move to another spot of the same zone.
            w.steps = self.plan.path(w.pos, w.zone, self.plan.spot(w.zone, self.rng), w.zone) or []
            linger = w.stops[target[1]].linger if target[1] >= 0 else 30.0
            w.next_move = self.t + self.rng.uniform(0.5, 1.5) * linger
        budget = w.person.speed * dt
        while budget > 1e-9 and w.steps:
            step = w.steps[0]
            if step.crossing is not None and w.through is not step.crossing:
                if not self._may_cross(w, step.crossing, out):
                    return
            d = math.dist(w.pos, step.to)
            if d > budget:
                k = budget / d
                w.pos = (w.pos[0] + (step.to[0] - w.pos[0]) * k, w.pos[1] + (step.to[1] - w.pos[1]) * k)
                return
            budget -= d
            w.pos = step.to
            w.steps.pop(0)
            if step.crossing is not None:
                w.zone, w.through = step.crossing.to_zone, None
                if step.crossing.reader_id:
                    out.doors.append(DoorSignal(step.crossing.reader_id, "closed", self.t))
        if not w.steps and w.override is not None and w.override.until is None and w.goal == (w.override.zone, -1):
            w.override.until = self.t + w.override.hold  # arrived: the hold starts

    def _may_cross(self, w: Walker, crossing: Crossing, out: Output) -> bool:
        """At a door: ask its reader (once), wait for the answer, then go through, or turn back."""
        if crossing.reader_id is None:
            w.through = crossing
            return True
        key = w.person.key
        if w.asked is None:
            w.asked = crossing.reader_id
            out.asks.append(Ask(key, crossing.reader_id, w.person.badge, self.t))
            return False
        if key not in self.answers:
            return False  # waiting at the reader
        granted = self.answers.pop(key)
        w.asked = None
        if granted:
            out.doors.append(DoorSignal(crossing.reader_id, "opened", self.t))
            w.through = crossing
            return True
        if w.override is not None and w.override.defiant and not w.override.done:
            out.doors.append(DoorSignal(crossing.reader_id, "forced", self.t))
            out.notes.append(f"{w.person.name} forced the door of reader {crossing.reader_id}")
            w.through = crossing
            return True
        # Refused: give up this stop and stay in the zone one is in.
        if w.goal is not None and w.goal[1] >= 0:
            w.refused.add(w.goal[1])
        if w.override is not None:
            w.override.done = True
        w.steps, w.goal = [], None
        if not w.on_floor:
            w.refused.add(w.stop_index(self.t))
        return False

    def _shadow(self, w: Walker) -> None:
        """A tailgater: where the leader was `lag` seconds ago, half a metre to the side."""
        leader = w.follow
        assert leader is not None
        behind = [entry for entry in leader.track if entry[0] <= self.t - w.lag]
        if behind:
            _t, (x, y), zone = behind[-1]
            w.pos, w.zone = (x + 0.3, y + 0.3), zone
            if self.plan.zone_at(w.pos) is None or self.plan.zone_at(w.pos).id != zone:  # type: ignore[union-attr]
                w.pos = (x, y)

    def _fix(self, w: Walker, out: Output) -> None:
        while w.next_fix <= self.t:
            if w.on_floor and self.t >= w.silent_until:
                nx, ny = self.rng.gauss(0, self.noise), self.rng.gauss(0, self.noise)
                out.fixes.append(Fix(w.person.tag, w.next_fix, round(w.pos[0] + nx, 3), round(w.pos[1] + ny, 3),
                                     round(max(0.0, min(1.0, 1 - math.hypot(nx, ny) / 2)), 2)))
            w.next_fix += self.fix_interval * self.rng.uniform(0.9, 1.1)

    def resume(self, w: Walker) -> None:
        """Back to the itinerary after an errand."""
        w.override, w.follow, w.goal = None, None, None
        w.refused.clear()
        if w.through is None:
            w.steps = []
            w.asked = None

    def others(self, *roles: str, on_floor: bool = True, busy: Sequence[Walker] = ()) -> list[Walker]:
        taken = (self.injector.taken() if self.injector is not None else set()) | {id(w) for w in busy}
        return [w for w in self.walkers.values() if w.person.role in roles and (w.on_floor or not on_floor)
                and id(w) not in taken and w.asked is None and w.through is None]


def length(start: Point, steps: Sequence[Step]) -> float:
    """Metres walked from `start` along `steps`."""
    total, here = 0.0, start
    for step in steps:
        total += math.dist(here, step.to)
        here = step.to
    return total
