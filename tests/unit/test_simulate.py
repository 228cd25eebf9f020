"""The venue simulator's movement model (venue/simulate.py, simulate_paths.py, simulate_violations.py):
paths that keep inside the zones and cross at doors, walking speed, tag noise and rate, the day's
schedule, door questions, and each injected violation. No server: doors are answered here."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from typing import Any, Callable

import pytest

from venue.demo_floor import demo_floor_plan
from venue.simulate import WALK_SPEED, Ask, Output, Simulation, allowed_zones, antechambers, cast, role_counts
from venue.simulate_paths import OUTSIDE, PlanInvalid, Plan, point_in_ring, read_plan
from venue.simulate_violations import Injector, parse_injection


def _box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _unit(zid: str, kind: str, ring: list[list[float]], capacity: int | None = None, closed: bool = False) -> dict:
    return {"type": "Feature", "id": zid, "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"feature_type": "unit", "kind": kind, "name": zid, "capacity": capacity,
                           "closed_area": closed}}


def _door(did: str, x: float, y: float, reader: str | None, inside: str, outside: str | None) -> dict:
    props = {"feature_type": "door", "reader_id": reader, "inside_zone": inside}
    if outside:
        props["outside_zone"] = outside
    return {"type": "Feature", "id": did, "geometry": {"type": "Point", "coordinates": [x, y]}, "properties": props}


# A small floor: an L-shaped public corridor, a T-shaped isolation corridor, four rooms.
PLAN = {"type": "FeatureCollection", "features": [
    _unit("ENT", "entrance", _box(0, 0, 6, 8)),
    _unit("COR", "corridor", [[6, 0], [25, 0], [25, 3], [9, 3], [9, 20], [6, 20], [6, 0]]),
    _unit("WAIT", "waiting_area", _box(0, 8, 6, 20), capacity=30),
    _unit("HALL", "opening_hall", _box(9, 3, 22, 12), capacity=60),
    _unit("SUP", "supervision_room", _box(9, 12, 16, 20)),
    _unit("LOCK", "phone_lockers", _box(16, 12, 22, 20), capacity=3, closed=True),
    _unit("ISO", "isolation_corridor", [[22, 3], [25, 3], [25, 11], [40, 11], [40, 12], [25, 12], [25, 20],
                                        [22, 20], [22, 3]], closed=True),
    _unit("R1", "evaluation_room", _box(25, 3, 32, 11), capacity=8, closed=True),
    _unit("R3", "evaluation_room", _box(32, 3, 40, 11), capacity=8, closed=True),
    _unit("R2", "evaluation_room", _box(25, 12, 32, 20), capacity=8, closed=True),
    _unit("R4", "evaluation_room", _box(32, 12, 40, 20), capacity=8, closed=True),
    _door("D-ENT", 0, 4, "RD-ENT", "ENT", None),
    _door("D-ENT-C", 6, 1.5, None, "COR", "ENT"),
    _door("D-WAIT", 6, 14, None, "WAIT", "COR"),
    _door("D-HALL", 15, 3, None, "HALL", "COR"),
    _door("D-SUP", 9, 16, "RD-SUP", "SUP", "COR"),
    _door("D-ISO", 23.5, 3, "RD-ISO-IN", "ISO", "COR"),
    _door("D-ISO-OUT", 23.5, 3, "RD-ISO-OUT", "COR", "ISO"),
    _door("D-LOCK", 22, 16, "RD-LOCK", "LOCK", "ISO"),
    _door("D-R1", 28.5, 11, "RD-R1", "R1", "ISO"),
    _door("D-R3", 36, 11, "RD-R3", "R3", "ISO"),
    _door("D-R2", 28.5, 12, "RD-R2", "R2", "ISO"),
    _door("D-R4", 36, 12, "RD-R4", "R4", "ISO"),
]}
DAY = 600.0


@pytest.fixture(scope="module")
def plan() -> Plan:
    return read_plan("T-1F", PLAN)


def _make(plan: Plan, n: int = 12, seed: int = 3, injections: tuple = (), **kw: Any) -> Simulation:
    rng = random.Random(seed)
    return Simulation(plan, cast(n, plan, rng), rng, day=kw.pop("day", DAY), fix_interval=kw.pop("fix_interval", 0.5),
                      injector=Injector(injections), **kw)


def _by_badge(sim: Simulation) -> dict[str, str]:
    return {w.person.badge: w.person.key for w in sim.walkers.values()}


def _by_policy(sim: Simulation, ask: Ask) -> bool:
    """A door answered as a server with the simulator's rules would."""
    key = _by_badge(sim)[ask.badge]
    way = next(c for c in sim.plan.crossings if c.reader_id == ask.reader_id)
    return way.to_zone in sim.allowed[key]


def drive(sim: Simulation, until: float, answer: Callable[[Simulation, Ask], bool] = _by_policy, dt: float = 0.1,
          watch: Callable[[Simulation, Output], None] | None = None) -> list[Output]:
    """Advance to `until`, answering each door at once; every step's output."""
    outs = []
    while sim.t < until and not sim.finished:
        out = sim.advance(dt)
        for ask in out.asks:
            sim.answer(ask.key, answer(sim, ask))
        if watch:
            watch(sim, out)
        outs.append(out)
    return outs


# --------------------------------------------------------------------------- the plan and paths


def test_doors_are_crossed_both_ways_with_free_passage_back(plan: Plan) -> None:
    ways = {(c.from_zone, c.to_zone): c.reader_id for c in plan.crossings}
    assert ways[(OUTSIDE, "ENT")] == "RD-ENT" and ways[("ENT", OUTSIDE)] is None
    assert ways[("COR", "ISO")] == "RD-ISO-IN" and ways[("ISO", "COR")] == "RD-ISO-OUT"  # a reader each way
    assert ways[("ISO", "R1")] == "RD-R1" and ways[("R1", "ISO")] is None
    for c in plan.crossings:  # the standing points are a step into their zones
        for zone, p in ((c.from_zone, c.before), (c.to_zone, c.after)):
            if zone == OUTSIDE:
                assert plan.zone_at(p) is None
            else:
                assert plan.zone_at(p).id == zone  # type: ignore[union-attr]
            assert 0.6 < math.dist(p, c.at) < 0.8


def test_a_plan_without_a_way_in_is_refused() -> None:
    closed = {**PLAN, "features": [f for f in PLAN["features"] if f["id"] != "D-ENT"]}
    with pytest.raises(PlanInvalid, match="no door from the outside"):
        read_plan("X", closed)
    with pytest.raises(PlanInvalid, match="no zones"):
        read_plan("X", {"type": "FeatureCollection", "features": []})


def _walk_inside(plan: Plan, start: tuple[float, float], zone: str, steps: list) -> None:
    """Every point of the walk lies in the zone one is in; the zone changes only at a door."""
    here = start
    for step in steps:
        if step.crossing is not None:
            assert math.dist(here, step.crossing.before) < 1e-9
            assert step.crossing.from_zone == zone
            zone = step.crossing.to_zone
        else:
            for k in range(1, 40):
                p = (here[0] + (step.to[0] - here[0]) * k / 40, here[1] + (step.to[1] - here[1]) * k / 40)
                assert zone == OUTSIDE or point_in_ring(p, plan.zones[zone].ring), (p, zone)
        here = step.to


def test_paths_stay_inside_the_zones_and_cross_only_at_doors(plan: Plan) -> None:
    rng = random.Random(5)
    zones = list(plan.zones)
    for _ in range(60):
        a, b = rng.choice(zones), rng.choice(zones)
        start, goal = plan.spot(a, rng), plan.spot(b, rng)
        steps = plan.path(start, a, goal, b)
        assert steps is not None and math.dist(steps[-1].to, goal) < 1e-9
        _walk_inside(plan, start, a, steps)


def test_a_path_goes_round_the_corner_of_an_l_shaped_corridor(plan: Plan) -> None:
    steps = plan.path((7.5, 18.0), "COR", (20.0, 1.5), "COR")
    assert steps is not None and len(steps) == 2  # via the inset corner at (9, 3)
    assert math.dist(steps[0].to, (9.0, 3.0)) < 1.0


def test_paths_keep_to_allowed_zones_when_they_can(plan: Plan) -> None:
    through_hall = plan.path((7.5, 10.0), "COR", (20.0, 1.5), "COR", allowed={"COR"})
    assert through_hall is not None and all(s.crossing is None for s in through_hall)
    # No allowed way into the isolation corridor: the shortest one, through its reader.
    steps = plan.path((7.5, 10.0), "COR", (23.5, 15.0), "ISO", allowed={"COR"})
    assert steps is not None and any(s.crossing and s.crossing.reader_id == "RD-ISO-IN" for s in steps)


def test_the_demo_floor_is_walkable_from_the_street_to_every_zone() -> None:
    plan = read_plan("FZ-3F", demo_floor_plan())
    entry = plan.entrances()[0]
    assert entry.to_zone == "entrance"
    rng = random.Random(1)
    for zone in plan.zones:
        steps = plan.path(entry.before, OUTSIDE, plan.spot(zone, rng), zone)
        assert steps is not None, zone
        _walk_inside(plan, entry.before, OUTSIDE, steps)


# --------------------------------------------------------------------------- people


def test_the_cast_is_a_realistic_mix() -> None:
    assert role_counts(10) == {"expert": 4, "bidder": 3, "agent": 1, "supervisor": 1, "staff": 1, "visitor": 0}
    for n in (2, 3, 7, 50, 333):
        counts = role_counts(n)
        assert sum(counts.values()) == n and counts["expert"] >= 1 and counts["bidder"] >= 1


def test_names_badges_and_tags_do_not_depend_on_the_seed(plan: Plan) -> None:
    a, b = cast(12, plan, random.Random(1)), cast(12, plan, random.Random(2))
    assert [(p.key, p.name, p.badge, p.tag) for p in a] == [(p.key, p.name, p.badge, p.tag) for p in b]
    assert len({p.tag for p in a}) == 12 and all(p.tag.startswith("SIM-") for p in a)
    experts = [p for p in a if p.role == "expert"]
    assert [p.room for p in experts] == ["R1", "R1", "R1", "R2", "R2"]  # committees of three, rooms by id
    assert all(WALK_SPEED[0] <= p.speed <= WALK_SPEED[1] for p in a)


def test_who_may_go_where_on_the_demo_floor() -> None:
    plan = read_plan("FZ-3F", demo_floor_plan())
    assert antechambers(plan)["ev-1-vestibule"] == "ev-1"
    people = {p.role: p for p in reversed(cast(10, plan, random.Random(1)))}  # the first of each role
    bidder = allowed_zones(people["bidder"], plan)
    assert {"entrance", "waiting", "opening-hall", "public-corridor"} <= bidder
    assert not bidder & {z.id for z in plan.zones.values() if z.closed_area}
    expert = allowed_zones(people["expert"], plan)
    assert {"check-in", "phone-lockers", "iso-corridor", "ev-1", "ev-1-vestibule", "lounge"} <= expert
    assert not expert & {"ev-2", "ev-2-vestibule", "waiting", "opening-hall", "supervision", "archive"}
    assert allowed_zones(people["supervisor"], plan) == set(plan.zones)


# --------------------------------------------------------------------------- walking and tags


def test_people_walk_at_walking_speed(plan: Plan) -> None:
    sim = _make(plan, noise=0.0)
    last: dict[str, tuple[float, tuple[float, float]]] = {}
    speeds: dict[str, list[float]] = {}

    def watch(sim: Simulation, out: Output) -> None:
        for w in sim.walkers.values():
            if w.on_floor and w.person.key in last and w.asked is None:
                t0, p0 = last[w.person.key]
                speeds.setdefault(w.person.key, []).append(math.dist(p0, w.pos) / (sim.t - t0))
            last[w.person.key] = (sim.t, w.pos)

    drive(sim, 200, watch=watch)
    for key, seen in speeds.items():
        person = sim.walkers[key].person
        assert max(seen) <= person.speed + 1e-6
        moving = [s for s in seen if s > 0.5]
        assert moving and statistics.median(moving) == pytest.approx(person.speed, abs=0.01)


def test_tags_report_at_the_rate_with_uwb_noise(plan: Plan) -> None:
    sim = _make(plan, fix_interval=0.5, noise=0.2, start_at=250)  # mid-day: everyone on the floor
    residuals: list[float] = []
    fixes: Counter[str] = Counter()

    def watch(sim: Simulation, out: Output) -> None:
        where = {w.person.tag: w.pos for w in sim.walkers.values()}
        for f in out.fixes:
            fixes[f.tag] += 1
            residuals.extend((f.x - where[f.tag][0], f.y - where[f.tag][1]))
            assert 0.0 <= f.quality <= 1.0

    drive(sim, 310, watch=watch)
    stayed = [w.person.tag for w in sim.walkers.values() if w.person.role != "visitor"]  # visitors come and go
    assert all(110 <= fixes[tag] <= 130 for tag in stayed), fixes  # 60 s at 2 Hz
    assert statistics.pstdev(residuals) == pytest.approx(0.2, rel=0.1)
    assert abs(statistics.fmean(residuals)) < 0.02


def test_the_day_follows_the_schedule(plan: Plan) -> None:
    sim = _make(plan, n=20)
    seen: dict[float, dict[str, str]] = {}

    def watch(sim: Simulation, out: Output) -> None:
        for mark in (0.30, 0.40):
            if mark not in seen and sim.t >= mark * DAY:
                seen[mark] = {w.person.key: w.zone for w in sim.walkers.values()}

    drive(sim, 2 * DAY, watch=watch)
    experts = [w.person for w in sim.walkers.values() if w.person.role == "expert"]
    assert all(seen[0.40][p.key] == p.room for p in experts)  # all in their rooms
    parties = [w.person for w in sim.walkers.values() if w.person.role in ("bidder", "agent")]
    assert sum(seen[0.30][p.key] == "HALL" for p in parties) >= len(parties) - 1  # at the opening
    supervisors = [w.person for w in sim.walkers.values() if w.person.role == "supervisor"]
    assert all(seen[0.40][p.key] == "SUP" for p in supervisors)
    assert sim.finished and all(not w.on_floor for w in sim.walkers.values())


def test_badges_are_asked_at_readers_and_a_refusal_keeps_one_out(plan: Plan) -> None:
    sim = _make(plan)
    refused = next(w for w in sim.walkers.values() if w.person.role == "expert")
    asks: list[tuple[str, str]] = []

    def answer(sim: Simulation, ask: Ask) -> bool:
        key = _by_badge(sim)[ask.badge]
        asks.append((key, ask.reader_id))
        return key != refused.person.key and _by_policy(sim, ask)

    signals: Counter[str] = Counter()
    zones: set[str] = set()

    def watch(sim: Simulation, out: Output) -> None:
        signals.update(d.kind for d in out.doors)
        zones.add(refused.zone)

    drive(sim, 0.45 * DAY, answer=answer, watch=watch)
    assert (refused.person.key, "RD-ENT") in asks
    assert zones == {OUTSIDE}  # refused at the street door: never on the floor
    experts = [w for w in sim.walkers.values() if w.person.role == "expert" and w is not refused]
    for w in experts:
        assert (w.person.key, "RD-ISO-IN") in asks and w.zone == w.person.room
    assert signals["opened"] == signals["closed"] == sum(1 for k, _ in asks if k != refused.person.key)
    assert signals["forced"] == 0


# --------------------------------------------------------------------------- injected violations


def test_injections_are_written_kind_at_seconds_plus_hold() -> None:
    assert parse_injection("meet@30+20", speed=2) == parse_injection("expert-meets-bidder@30+20", speed=2)
    meet = parse_injection("meet@30+20", speed=2)
    assert (meet.kind, meet.at, meet.hold) == ("meet", 60.0, 40.0)  # simulated seconds
    assert parse_injection("silent-tag@5").hold == 40.0  # its default hold
    for bad in ("teleport@3", "meet@x", "meet@-1", "meet@3+0"):
        with pytest.raises(ValueError):
            parse_injection(bad)


def _run_injected(plan: Plan, text: str, until: float, watch: Callable[[Simulation, Output], None] | None = None,
                  n: int = 12) -> tuple[Simulation, list[Output]]:
    sim = _make(plan, n=n, start_at=250, injections=[parse_injection(text)])
    return sim, drive(sim, 250 + until, watch=watch)


def test_wrong_zone_forces_the_doors_into_an_evaluation_room(plan: Plan) -> None:
    rooms: set[str] = set()
    sim, outs = _run_injected(plan, "wrong-zone@1+20", 60, lambda s, o: rooms.update(
        w.zone for w in s.walkers.values() if w.person.role in ("bidder", "agent", "visitor")))
    assert rooms & {"R1", "R2", "R3", "R4"}
    forced = [d.reader_id for o in outs for d in o.doors if d.kind == "forced"]
    assert forced[0] == "RD-ISO-IN" and forced[1].startswith("RD-R")


def test_meet_keeps_an_expert_within_a_metre_or_two_of_a_party_for_the_hold(plan: Plan) -> None:
    close: list[float] = []

    def watch(sim: Simulation, out: Output) -> None:
        experts = [w for w in sim.walkers.values() if w.person.role == "expert" and w.on_floor]
        parties = [w for w in sim.walkers.values() if w.person.role in ("bidder", "agent") and w.on_floor]
        if any(math.dist(e.pos, p.pos) < 2.0 for e in experts for p in parties):
            close.append(sim.t)

    _run_injected(plan, "meet@1+15", 120, watch)
    assert close and close[-1] - close[0] >= 15 and len(close) >= 150


def test_tailgating_follower_crosses_right_behind_without_a_badge(plan: Plan) -> None:
    sim = _make(plan, start_at=250, injections=[parse_injection("tailgate@1+10")])
    asked: list[tuple[str, str, float]] = []
    entered: dict[tuple[str, str], float] = {}

    def answer(sim: Simulation, ask: Ask) -> bool:
        asked.append((_by_badge(sim)[ask.badge], ask.reader_id, sim.t))
        return _by_policy(sim, ask)

    def watch(sim: Simulation, out: Output) -> None:
        for w in sim.walkers.values():
            entered.setdefault((w.person.key, w.zone), sim.t)

    outs = drive(sim, 330, answer=answer, watch=watch)
    note = next(n for o in outs for n in o.notes if "tailgate" in n)
    reader = note.split("reader ")[1].split()[0]
    way = next(c for c in plan.crossings if c.reader_id == reader)
    leader_key, _r, granted_at = next(a for a in asked if a[1] == reader)
    follower = next(w for w in sim.walkers.values() if w.person.name in note and w.person.key != leader_key)
    assert way.to_zone not in sim.allowed[follower.person.key]
    assert 0 < entered[(follower.person.key, way.to_zone)] - granted_at < 5  # right behind the leader's grant
    assert not any(k == follower.person.key and r == reader for k, r, _t in asked)  # no badge of their own


def test_a_silent_tag_stops_reporting_for_the_hold(plan: Plan) -> None:
    sim, outs = _run_injected(plan, "silent-tag@2+30", 60)
    note = next(n for o in outs for n in o.notes if "silent-tag" in n)
    tag = next(w.person.tag for w in sim.walkers.values() if w.person.name in note)
    times = [f.t for o in outs for f in o.fixes if f.tag == tag]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) >= 29.5 and sum(g > 1 for g in gaps) == 1


def test_a_badge_used_far_from_its_tag(plan: Plan) -> None:
    sim, outs = _run_injected(plan, "badge-apart@1+40", 10)
    ghost = next(a for o in outs for a in o.asks if a.key.startswith("ghost-"))
    holder = next(w for w in sim.walkers.values() if w.person.badge == ghost.badge)
    way = next(c for c in plan.crossings if c.reader_id == ghost.reader_id)
    assert holder.zone not in (way.from_zone, way.to_zone)


def test_a_crowd_overfills_a_small_zone(plan: Plan) -> None:
    peak: list[int] = [0]

    def watch(sim: Simulation, out: Output) -> None:
        peak[0] = max(peak[0], sum(w.zone == "LOCK" for w in sim.walkers.values()))

    _run_injected(plan, "crowd@1+15", 90, watch)
    assert peak[0] >= 4  # the lockers hold 3


def test_after_hours_keeps_someone_on_the_floor_after_the_day(plan: Plan) -> None:
    sim = _make(plan, injections=[parse_injection("after-hours@10+60")])
    drive(sim, DAY + 30)
    stayed = [w for w in sim.walkers.values() if w.on_floor]
    assert len(stayed) == 1 and stayed[0].person.role == "staff"
    drive(sim, DAY + 200)
    assert sim.finished
