"""Violations injected into a simulated day (`--inject KIND@SECONDS[+HOLD]`): each picks people
who are where it needs them, takes them off their schedule for an errand, and gives them back.

Pure, like venue/simulate.py: an errand only moves walkers and emits what the devices would
send. An injection that finds nobody suitable yet (nobody on the floor) is tried again a
second later. Holds are simulated seconds here; `parse_injection` takes real ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

from venue.simulate import ROLES, Ask, DoorSignal, Output, Override, Simulation, Stop, Walker, length
from venue.simulate_paths import OUTSIDE, Crossing, Plan, Point, interior_point, point_in_ring

InjectionKind = Literal["meet", "tailgate", "wrong-zone", "silent-tag", "after-hours", "badge-apart", "crowd", "dwell",
                        "leave-room"]
INJECTIONS: dict[str, tuple[InjectionKind, float, str]] = {
    # name: (kind, default hold in seconds, what it does)
    "meet": ("meet", 15.0, "an expert walks to a bidder or agent and stays within a metre of them"),
    "tailgate": ("tailgate", 10.0, "a bidder follows a badge holder through a door without badging"),
    "wrong-zone": ("wrong-zone", 20.0, "a bidder forces the doors into an evaluation room and stays"),
    "silent-tag": ("silent-tag", 40.0, "an expert's tag stops reporting (in the closed area when possible)"),
    "after-hours": ("after-hours", 120.0, "a staff member stays after everyone left (an alert only when the "
                    "server's clock is outside the venue's hours)"),
    "badge-apart": ("badge-apart", 45.0, "someone's badge opens a door far from where their tag is"),
    "crowd": ("crowd", 15.0, "more people than its capacity crowd into a small zone"),
    "dwell": ("dwell", 320.0, "an expert lingers in the isolation corridor"),
    "leave-room": ("leave-room", 30.0, "an expert leaves the evaluation room for a while"),
}
ALIASES = {"expert-meets-bidder": "meet", "tailgating": "tailgate", "wrong_zone": "wrong-zone",
           "silent": "silent-tag", "tag-silent": "silent-tag", "after_hours": "after-hours",
           "badge-tag": "badge-apart", "over-capacity": "crowd"}


@dataclass(frozen=True)
class Injection:
    kind: InjectionKind
    at: float     # simulated seconds from the start of the run
    hold: float   # simulated seconds


def parse_injection(text: str, speed: float = 1.0) -> Injection:
    """KIND@SECONDS[+HOLD] (seconds of real time from the start; HOLD defaults by kind) as an
    Injection in simulated seconds. ValueError with the known kinds otherwise."""
    name, _, rest = text.strip().partition("@")
    name = ALIASES.get(name, name)
    if name not in INJECTIONS:
        raise ValueError(f"unknown violation {name!r}; one of: {', '.join(INJECTIONS)}")
    at_text, _, hold_text = (rest or "0").partition("+")
    try:
        at = float(at_text)
        hold = float(hold_text) if hold_text else INJECTIONS[name][1]
    except ValueError:
        raise ValueError(f"write a violation as KIND@SECONDS[+HOLD], e.g. meet@30+20, not {text!r}") from None
    if at < 0 or hold <= 0 or not math.isfinite(at + hold):
        raise ValueError(f"{text!r}: the time must be 0 or more and the hold more than 0")
    return Injection(INJECTIONS[name][0], at * speed, hold * speed)


class Injector:
    """The run's injections: those still to come, in time order, and the errands running."""

    def __init__(self, injections: "list[Injection] | tuple[Injection, ...]" = ()) -> None:
        self.pending = sorted(injections, key=lambda i: i.at)
        self.active: list[_Errand] = []
        self.ghosts = 0

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.active)

    def taken(self) -> set[int]:
        return {id(w) for errand in self.active for w in errand.walkers}

    def step(self, sim: Simulation, out: Output) -> None:
        while self.pending and self.pending[0].at + sim.started <= sim.t:
            injection = self.pending.pop(0)
            errand = _start(sim, self, injection, out)
            if errand is None:  # nobody suitable yet: try again in a second
                self.pending.insert(0, Injection(injection.kind, injection.at + 1.0, injection.hold))
                break
            self.active.append(errand)
        for errand in list(self.active):
            if errand.update(sim, out):
                self.active.remove(errand)


# --------------------------------------------------------------------------- the errands


class _Errand(Protocol):
    """A running injection: `update` returns True once it is over (its walkers resumed)."""

    walkers: list[Walker]

    def update(self, sim: Simulation, out: Output) -> bool: ...


class _GoAndStay(_Errand):
    """One or more walkers go somewhere, stay there, come back (meet, wrong zone, crowd, dwell, leave room)."""

    def __init__(self, walkers: list[Walker]) -> None:
        self.walkers = walkers

    def update(self, sim: Simulation, out: Output) -> bool:
        over = all(w.override is None or w.override.done or (w.override.until is not None and sim.t >= w.override.until)
                   for w in self.walkers)
        if over:
            for w in self.walkers:
                sim.resume(w)
        return over


class _Tailgate(_Errand):
    """Leader and follower meet before a door; the leader badges through it into a zone the
    follower may not enter, and the follower slips through behind, asking nothing."""

    def __init__(self, sim: Simulation, leader: Walker, follower: Walker, door: Crossing, hold: float) -> None:
        self.walkers = [leader, follower]
        self.leader, self.follower, self.door, self.hold = leader, follower, door, hold
        self.phase = "gather"
        leader.override = Override(door.from_zone, door.before, hold=1e9)
        follower.override = Override(door.from_zone, _spot_near(sim, door.from_zone, door.before, 1.0), hold=1e9)
        leader.goal = follower.goal = None

    def update(self, sim: Simulation, out: Output) -> bool:
        leader, follower = self.leader, self.follower
        lo, fo = leader.override, follower.override
        if self.phase == "gather":
            if lo is None or fo is None or lo.done or fo.done:  # one of them was refused on the way
                sim.resume(leader)
                sim.resume(follower)
                return True
            if lo.until is not None and fo.until is not None:
                self.phase = "through"
                sim.resume(follower)
                follower.follow = leader
                leader.override = Override(self.door.to_zone, hold=self.hold)
                leader.goal = None
        elif lo is None or lo.done or (lo.until is not None and sim.t >= lo.until):
            sim.resume(leader)
            sim.resume(follower)
            return True
        return False


class _Silence(_Errand):
    def __init__(self, w: Walker, until: float) -> None:
        self.walkers, self.until = [w], until
        w.silent_until = until

    def update(self, sim: Simulation, out: Output) -> bool:
        return sim.t >= self.until


class _Linger(_Errand):
    """After hours: the walker's leaving is put off until `until`."""

    def __init__(self, w: Walker, until: float) -> None:
        self.walkers, self.until = [w], until
        w.stops = [s for s in w.stops if s.zone is not None] + [Stop(until, None)]

    def update(self, sim: Simulation, out: Output) -> bool:
        return sim.t >= self.until


class _Ghost(_Errand):
    """A badge at a door far from its holder's tag; the holder stays put for `hold`."""

    def __init__(self, sim: Simulation, injector: Injector, w: Walker, reader: str, hold: float, out: Output) -> None:
        self.walkers, self.reader = [w], reader
        injector.ghosts += 1
        self.key = f"ghost-{injector.ghosts}"
        out.asks.append(Ask(self.key, reader, w.person.badge, sim.t))
        w.override = Override(w.zone, w.pos, hold=hold)
        w.goal = None
        self.opened = False

    def update(self, sim: Simulation, out: Output) -> bool:
        if not self.opened and self.key in sim.answers:
            granted = sim.answers.pop(self.key)
            self.opened = True
            if granted:
                out.doors += [DoorSignal(self.reader, "opened", sim.t), DoorSignal(self.reader, "closed", sim.t + 2)]
            out.notes.append(f"the badge of {self.walkers[0].person.name} was {'granted' if granted else 'refused'} "
                             f"at reader {self.reader}")
        o = self.walkers[0].override
        if o is not None and o.until is not None and sim.t >= o.until:
            sim.resume(self.walkers[0])
            return True
        return False


def _spot_near(sim: Simulation, zone: str, p: Point, distance: float) -> Point:
    """A point of `zone` about `distance` from p (p itself when none is found)."""
    ring_zone = sim.plan.zones[zone]
    for _ in range(40):
        a = sim.rng.uniform(0, 2 * math.pi)
        q = (p[0] + distance * math.cos(a), p[1] + distance * math.sin(a))
        if point_in_ring(q, ring_zone.ring):
            return q
    return p


def _start(sim: Simulation, injector: Injector, injection: Injection, out: Output) -> _Errand | None:
    """Pick the people for an injection and start it; None when nobody suitable is on the floor yet."""
    kind, hold, rng, plan = injection.kind, injection.hold, sim.rng, sim.plan
    closed = {z.id for z in plan.zones.values() if z.closed_area}
    errand: _Errand | None = None
    if kind == "meet":
        experts = sim.others("expert")
        parties = [w for w in sim.others("bidder", "agent") if w.zone != OUTSIDE]
        if not experts or not parties:
            return None
        e, p = rng.choice(experts), rng.choice(parties)
        spot = plan.spot(p.zone, rng)
        p.override = Override(p.zone, spot, hold=hold)
        e.override = Override(p.zone, _spot_near(sim, p.zone, spot, 0.8), hold=hold, defiant=True)
        e.goal = p.goal = None
        errand = _GoAndStay([e, p])
        out.notes.append(f"injected meet: {e.person.name} walks to {p.person.name} in {plan.zones[p.zone].name}")
    elif kind == "wrong-zone":
        movers = sim.others("bidder", "agent", "visitor") or sim.others("staff")
        if not movers:
            return None
        w = rng.choice(movers)
        forbidden = [z for z in plan.zones.values() if z.id not in sim.allowed[w.person.key]
                     and (plan.readers_into(z.id) or z.closed_area)]
        rooms = [z for z in forbidden if z.kind == "evaluation_room"] or forbidden
        if not rooms:
            return None
        zone = min(rooms, key=lambda z: _path_length(plan, w, z.id))
        w.override, w.goal = Override(zone.id, hold=hold, defiant=True), None
        errand = _GoAndStay([w])
        out.notes.append(f"injected wrong-zone: {w.person.name} heads for {zone.name}")
    elif kind == "tailgate":
        leaders = sim.others("expert", "staff", "supervisor")
        followers = sim.others("bidder", "agent", "visitor")
        options = [(c, lead, f) for c in plan.crossings if c.reader_id and c.from_zone != OUTSIDE
                   for lead in leaders if c.from_zone in sim.allowed[lead.person.key]
                   and c.to_zone in sim.allowed[lead.person.key]
                   for f in followers if c.from_zone in sim.allowed[f.person.key]
                   and c.to_zone not in sim.allowed[f.person.key]]
        if not options:
            return None
        door, leader, follower = min(options, key=lambda o: _path_length(plan, o[1], o[0].from_zone)
                                     + _path_length(plan, o[2], o[0].from_zone))
        errand = _Tailgate(sim, leader, follower, door, hold)
        out.notes.append(f"injected tailgate: {follower.person.name} follows {leader.person.name} "
                         f"through reader {door.reader_id} into {plan.zones[door.to_zone].name}")
    elif kind == "silent-tag":
        experts = sim.others("expert") or sim.others("staff", "supervisor", "bidder", "agent", "visitor")
        if not experts:
            return None
        inside = [w for w in experts if w.zone in closed] or experts
        w = rng.choice(inside)
        errand = _Silence(w, sim.t + hold)
        out.notes.append(f"injected silent-tag: {w.person.name}'s tag goes quiet in {plan.zones[w.zone].name}")
    elif kind == "after-hours":
        staff = sim.others("staff", on_floor=False) or sim.others("supervisor", on_floor=False)
        if not staff:
            return None
        w = staff[0]
        errand = _Linger(w, max(sim.day, sim.t) + hold)
        out.notes.append(f"injected after-hours: {w.person.name} stays on after the day ends")
    elif kind == "badge-apart":
        holders = sim.others(*ROLES)
        for w in rng.sample(holders, k=len(holders)):
            doors = [c for c in plan.crossings if c.reader_id and c.to_zone in sim.allowed[w.person.key]
                     and w.zone not in (c.to_zone, c.from_zone)]
            if doors:
                errand = _Ghost(sim, injector, w, rng.choice(doors).reader_id, hold, out)  # type: ignore[arg-type]
                out.notes.append(f"injected badge-apart: {w.person.name}'s badge used away from their tag")
                break
        if errand is None:
            return None
    elif kind == "crowd":
        zones = sorted((z for z in plan.zones.values() if z.capacity), key=lambda z: z.capacity or 0)
        people = sim.others(*ROLES)
        zone = next((z for z in zones if (z.capacity or 0) + 1 <= len(people)), None)
        if zone is None:
            return None
        chosen = sorted(people, key=lambda w: (zone.id not in sim.allowed[w.person.key], _path_length(plan, w, zone.id)))
        chosen = chosen[:(zone.capacity or 0) + 1]
        for w in chosen:
            w.override, w.goal = Override(zone.id, hold=hold, defiant=True), None
        errand = _Crowd(chosen)
        out.notes.append(f"injected crowd: {len(chosen)} people into {zone.name} (capacity {zone.capacity})")
    elif kind in ("dwell", "leave-room"):
        experts = sim.others("expert") or sim.others("supervisor", "staff")
        kinds = ("isolation_corridor",) if kind == "dwell" else ("isolation_corridor", "phone_lockers", "corridor")
        zone = next((z for k in kinds for z in plan.of_kind(k)), None)
        if not experts or zone is None:
            return None
        w = next((x for x in experts if x.zone == x.person.room), experts[0])
        w.override, w.goal = Override(zone.id, hold=hold, defiant=True), None
        errand = _GoAndStay([w])
        out.notes.append(f"injected {kind}: {w.person.name} goes to {zone.name}")
    return errand


class _Crowd(_GoAndStay):
    """Everyone's hold starts once the last of them has arrived."""

    def update(self, sim: Simulation, out: Output) -> bool:
        arrived = [w for w in self.walkers if w.override and (w.override.until is not None or w.override.done)]
        if len(arrived) == len(self.walkers):
            last = max((w.override.until or sim.t) for w in self.walkers if w.override)
            for w in self.walkers:
                if w.override:
                    w.override.until = last
        return super().update(sim, out)


def _path_length(plan: Plan, w: Walker, zone: str) -> float:
    path = plan.path(w.pos, w.zone, interior_point(plan.zones[zone].ring), zone) if w.on_floor else None
    return length(w.pos, path) if path else math.inf
