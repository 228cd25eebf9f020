"""The venue's alert rules: pure functions over the tracked people, the doors and the workflow.

No I/O and no clock: every function takes `now`. A rule says whether a condition holds for its
subject; `Memory` turns conditions into alerts, one per ongoing condition: an alert is raised
once its condition has held for the rule's threshold, and not again until the condition has
ended, i.e. been false for `RuleConfig.clear_seconds` (jitter around a boundary — 2 m apart,
a capacity of 20 — does not raise it twice; the tracker's hysteresis does the same for zones).

Rules, their codes and severities (thresholds in RuleConfig):
- wrong_zone (high): a person in a zone the access policy does not allow them in, now;
- expert_left_room (high) / expert_left_closed_area (critical): an expert who was in their
  room (in the closed area) is out of it while their evaluation is in progress;
- expert_near_party (high; critical for a party of the expert's own tender): an expert within
  `near_m` of a bidder or agent for more than `near_seconds`;
- experts_meeting (high): experts of different evaluations within `near_m` for more than
  `near_seconds`, not both in their own rooms;
- tag_silent (medium): no position for more than `silence_seconds`, last seen in the closed area
  (not for tags silent longer than `silence_forget_seconds`: those fell silent before a restart);
- badge_tag_mismatch (high): a person's badge was granted at a door into zone A, but their
  tag has been in zone B (neither A nor the door's outside) for more than `badge_tag_seconds`;
- tailgating (high): a grant admits `capacity` people, but more tags crossed from the door's
  outside zone into its inside zone within `tailgate_seconds` of it (its holder, and people
  without a grant of their own through that zone's doors);
- over_capacity (medium): more people in a zone than its capacity for more than `capacity_seconds`
  (people seen within `present_seconds`);
- after_hours (medium): present outside the venue's opening hours (local time);
- dwell (medium): in a zone of a watched kind (the isolation corridor) longer than its limit
  (and seen there within `present_seconds`);
- door_forced (critical), door_held_open (medium): what the door controllers report.

Proximity uses a grid of `near_m` cells, updated for the people who moved: each check looks
at nine cells, never at every pair. venue/ruleset.py holds the rules together with their memory.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Protocol, Sequence
from zoneinfo import ZoneInfo

from venue.model import Alert, DoorEvent, Person, Position, Severity, Zone

Key = tuple[Any, ...]
Allowed = Callable[[Person, Zone, datetime], bool]

# Supervisors sort alerts into classes (business process, opening process, evaluation process,
# trajectory behaviour); the venue's rules fall into three of them, the opening hall's problems
# being the fourth. The supervisors' map filters by these, the alerts' API too (?class=).
ALERT_CLASSES = ("evaluation", "trajectory", "business")
RULE_CLASSES: Mapping[str, str] = {
    # the evaluation's integrity: who an evaluating expert is with, and where
    "expert_left_room": "evaluation", "expert_left_closed_area": "evaluation",
    "expert_near_party": "evaluation", "experts_meeting": "evaluation",
    # where a person is or goes, against the rules of the floor
    "wrong_zone": "trajectory", "tag_silent": "trajectory", "badge_tag_mismatch": "trajectory",
    "tailgating": "trajectory", "dwell": "trajectory",
    # the centre running its floor: doors, crowding, opening hours
    "over_capacity": "business", "after_hours": "business", "door_forced": "business", "door_held_open": "business",
}

# What each alert says: English here (the stored message and the log), said again in the
# supervisors' language on their map from the same phrase and parameters (supervision/routes.py
# translates these texts; the map fills them in, a role parameter in that language too).
PHRASES: Mapping[str, str] = {
    "wrong_zone": "{name} ({role}) is in {zone}, where they are not allowed",
    "wrong_zone.passed": "{name} ({role}) went through {zone}, where they are not allowed",
    "expert_left_room": "expert {name} left the evaluation room during the evaluation",
    "expert_left_room.in": "expert {name} left the evaluation room during the evaluation and is in {zone}",
    "expert_left_closed_area": "expert {name} left the closed evaluation area during the evaluation",
    "expert_left_closed_area.in": "expert {name} left the closed evaluation area during the evaluation and is in {zone}",
    "badge_tag_mismatch": "the badge of {name} ({role}) was granted into {inside} at reader {reader}, "
                          "but their tag is in {zone}",
    "tag_silent": "the tag of {name} ({role}) has been silent for {seconds} s in {zone}",
    "dwell": "{name} ({role}) has been in {zone} for {minutes} min",
    "after_hours": "{name} ({role}) is present after hours",
    "after_hours.in": "{name} ({role}) is present after hours in {zone}",
    "experts_meeting": "experts of different evaluations {name} and {other} have been within {metres} m "
                       "for over {seconds} s",
    "expert_near_party": "expert {name} has been within {metres} m of {other} ({other_role}) for over {seconds} s",
    "expert_near_party.own": "expert {name} has been within {metres} m of {other} ({other_role}) for over "
                             "{seconds} s — a party of the tender they evaluate",
    "over_capacity": "{zone} holds {count} people; its capacity is {capacity}",
    "door_forced": "the door of reader {reader} was forced open",
    "door_held_open": "the door of reader {reader} is held open",
    "tailgating": "reader {reader} let {capacity} in on the badge of {name} ({role}), but {count} people "
                  "crossed ({names})",
    "tailgating.unnamed": "reader {reader} let {capacity} in on the badge of {name} ({role}), but {count} people "
                          "crossed",
    "tailgating.unknown": "reader {reader} let {capacity} in on the badge of an unknown person, but {count} people "
                          "crossed ({names})",
    "tailgating.unknown.unnamed": "reader {reader} let {capacity} in on the badge of an unknown person, but "
                                  "{count} people crossed",
}
PROXIMITY_ROLES = frozenset({"expert", "bidder", "agent"})
PARTY_ROLES = frozenset({"bidder", "agent"})


@dataclass(frozen=True)
class RuleConfig:
    """Every threshold of the rules, in seconds and metres."""

    near_m: float = 2.0                   # expert and bidder/agent; experts of different evaluations
    near_seconds: float = 10.0            # … closer than near_m for more than this
    fresh_seconds: float = 5.0            # a position older than this is not where someone is now
    left_room_seconds: float = 0.0        # out of the room (after the tracker's hysteresis) for more than this
    silence_seconds: float = 30.0
    silence_forget_seconds: float = 3600.0  # a tag silent longer was silent before a restart: not new
    present_seconds: float = 300.0        # seen within this: counted for capacity and dwell
    badge_tag_seconds: float = 30.0
    badge_tag_window_seconds: float = 300.0  # a grant whose tag never reached the zone is forgotten after this
    tailgate_seconds: float = 8.0         # crossings this long after a grant count against it …
    tailgate_lead_seconds: float = 2.0    # … and this long before (door and tag clocks differ)
    capacity_seconds: float = 5.0
    dwell: tuple[tuple[str, float], ...] = (("isolation_corridor", 300.0),)  # zone kind, seconds
    opens: time = time(7, 30)
    closes: time = time(20, 0)
    timezone: str = "Asia/Shanghai"
    after_hours_exempt: frozenset[str] = frozenset()  # roles never "after hours" (e.g. staff on duty)
    clear_seconds: float = 5.0            # a condition false this long has ended
    forget_seconds: float = 3600.0        # a condition nobody looked at this long is dropped
    evidence_limit: int = 12


def parse_clock(text: str) -> time:
    """"HH:MM" (24 h) as a time; ValueError otherwise."""
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"not a clock time HH:MM: {text!r}")
    return time(int(hours), int(minutes))


# --------------------------------------------------------------------------- inputs


class Presence(NamedTuple):
    """What the rules read of one tracked person: the last position and the zone (with hysteresis).

    A NamedTuple: one is made per moved person per position batch, and a frozen dataclass
    costs three times as much to make (1 µs against 0.3)."""

    person: Person
    floor: str
    x: float
    y: float
    seen: datetime              # the last position's time
    zone: Zone | None           # None: in no zone of the plan
    since: datetime             # in `zone` since
    tag: str = ""
    trail: tuple[Position, ...] = ()  # recent positions, oldest first


@dataclass(frozen=True)
class Crossing:
    """A zone transition the tracker confirmed: `person` left `left` and entered `entered` at `t`
    (zone ids on `floor`; None: no zone); `zone` is the entered zone when known."""

    person: uuid.UUID
    floor: str
    t: datetime
    left: str | None
    entered: str | None
    zone: Zone | None = None


class Door(Protocol):
    """What the rules read of a door: model.Door and the access policy's Reader both have it."""

    reader_id: str
    floor: str
    inside_zone: str
    outside_zone: str | None
    capacity: int


@dataclass(frozen=True)
class Grant:
    """A door granted to a person's badge."""

    door: Door
    t: datetime
    person: uuid.UUID | None
    credential: str = ""


@dataclass(frozen=True)
class Assignment:
    """An expert's seat in an evaluation: the session (or only the tender, evaluated without a
    remote session), the room's zone when known, and when the evaluation is in progress."""

    tender: uuid.UUID
    session: uuid.UUID | None = None
    room: tuple[str, str] | None = None                # (floor code, zone id)
    evaluating: bool = False                           # the session is in an active evaluation stage
    window: tuple[datetime, datetime] | None = None    # or: the tender's scheduled evaluation window

    @property
    def evaluation(self) -> uuid.UUID:
        return self.session or self.tender

    def in_progress(self, now: datetime) -> bool:
        return self.evaluating or (self.window is not None and self.window[0] <= now < self.window[1])


@dataclass(frozen=True)
class Workflow:
    """Who is evaluating what right now, and who takes part in those tenders as bidder or agent."""

    people: Mapping[uuid.UUID, Person] = field(default_factory=dict)
    experts: Mapping[uuid.UUID, Assignment] = field(default_factory=dict)      # person -> seat
    parties: Mapping[uuid.UUID, frozenset[uuid.UUID]] = field(default_factory=dict)  # person -> tenders


# --------------------------------------------------------------------------- memory

# The detail of a condition restored from its stored alert after a restart (ruleset.Rules.restore)
# when the alert does not tell it (an evaluation, a last-seen time): the first time the condition
# is seen again it takes the detail it is seen with, as the same condition.
RESTORED = object()
# Rules whose condition is keyed by its people (and zone) alone, so that a stored alert names it;
# the others are keyed by a grant or a door event, which do not outlive a restart anyway.
_PERSON_KEYED = frozenset({"wrong_zone", "expert_left_room", "expert_left_closed_area", "tag_silent", "after_hours",
                           "dwell"})
PAIR_KEYED = frozenset({"expert_near_party", "experts_meeting"})
_UNTOLD_DETAIL = frozenset({"expert_left_room", "expert_left_closed_area", "tag_silent", "dwell"})


def condition_of(alert: Alert) -> tuple[Key, Any] | None:
    """The memory key and detail of the condition `alert` was raised for (as the rule holds it),
    or None when the alert cannot tell its key."""
    if alert.rule in _PERSON_KEYED and alert.people:
        key: Key = (alert.rule, alert.people[0])
    elif alert.rule in PAIR_KEYED and len(alert.people) == 2:
        key = (alert.rule, *alert.people)
    elif alert.rule == "over_capacity" and alert.floor is not None and alert.zone is not None:
        key = (alert.rule, alert.floor, alert.zone)
    else:
        return None
    if alert.rule == "wrong_zone":  # held per zone: in another forbidden zone it is another condition
        return key, (alert.floor, alert.zone)
    return key, RESTORED if alert.rule in _UNTOLD_DETAIL else None


@dataclass
class Ongoing:
    began: datetime
    last_held: datetime
    detail: Any = None
    alerted: bool = False
    false_since: datetime | None = None


class Memory:
    """Ongoing conditions by key: when each began and whether it has raised its alert."""

    def __init__(self, clear_seconds: float, forget_seconds: float = 3600.0) -> None:
        self.clear = timedelta(seconds=clear_seconds)
        self.forget = timedelta(seconds=forget_seconds)
        self.open: dict[Key, Ongoing] = {}

    def hold(self, key: Key, now: datetime, after: float = 0.0, detail: Any = None) -> bool:
        """The condition holds at `now`. True exactly once per ongoing condition: when it has held
        for more than `after` seconds (at once when `after` is 0). A different `detail` (another
        zone) is another condition."""
        o = self.open.get(key)
        if o is not None and o.detail is RESTORED:
            o.detail = detail
        if o is None or o.detail != detail or (o.false_since is not None and now - o.false_since >= self.clear):
            o = self.open[key] = Ongoing(now, now, detail)
        o.false_since, o.last_held = None, max(o.last_held, now)
        if o.alerted or (after > 0 and (now - o.began).total_seconds() <= after):
            return False
        o.alerted = True
        return True

    def release(self, key: Key, now: datetime) -> None:
        """The condition does not hold at `now`; it ends once false for `clear_seconds`."""
        o = self.open.get(key)
        if o is None:
            return
        if o.false_since is None:
            o.false_since = now
        if now - o.false_since >= self.clear:
            del self.open[key]

    def sweep(self, now: datetime) -> None:
        """Drop ended conditions and those nobody has looked at for `forget_seconds`."""
        for key, o in list(self.open.items()):
            if (o.false_since is not None and now - o.false_since >= self.clear) or now - o.last_held > self.forget:
                del self.open[key]


class Grid:
    """People of the proximity roles by (floor, cell); a cell is `size` metres square."""

    def __init__(self, size: float) -> None:
        self.size = size
        self.cells: dict[tuple[str, int, int], dict[uuid.UUID, Presence]] = {}
        self.cell_of: dict[uuid.UUID, tuple[str, int, int]] = {}

    def put(self, p: Presence) -> None:
        pid = p.person.id
        cell = (p.floor, math.floor(p.x / self.size), math.floor(p.y / self.size))
        old = self.cell_of.get(pid)
        if old is not None and old != cell:
            bucket = self.cells.get(old)
            if bucket is not None:
                bucket.pop(pid, None)
                if not bucket:
                    del self.cells[old]
        self.cells.setdefault(cell, {})[pid] = p
        self.cell_of[pid] = cell

    def near(self, p: Presence, distance: float, fresh_after: datetime) -> list[Presence]:
        """Others within `distance` of p (distance ≤ size), seen at or after `fresh_after`."""
        floor, x, y, cells = p.floor, p.x, p.y, self.cells
        cx, cy = math.floor(x / self.size), math.floor(y / self.size)
        limit = distance * distance
        out = []
        for column in (cx - 1, cx, cx + 1):
            for row in (cy - 1, cy, cy + 1):
                bucket = cells.get((floor, column, row))
                if bucket:
                    out.extend(q for q in bucket.values()
                               if (q.x - x) ** 2 + (q.y - y) ** 2 <= limit and q is not p and q.seen >= fresh_after)
        return out


# --------------------------------------------------------------------------- evidence


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _metres(value: float) -> str:
    return f"{value:.2f}"  # measures travel as decimal strings (canonical JSON has no floats)


def position_evidence(p: Presence, count: int = 3) -> list[dict[str, Any]]:
    """The last `count` positions of a person (the trail, else the last position)."""
    pid = str(p.person.id)
    trail = p.trail[-count:] or (Position(p.tag, p.seen, p.floor, p.x, p.y),)
    return [{"type": "position", "person": pid, "tag": pos.tag or p.tag, "t": _iso(pos.t), "floor": pos.floor,
             "x": _metres(pos.x), "y": _metres(pos.y), "zone": p.zone.id if p.zone else None} for pos in trail]


def grant_evidence(g: Grant) -> dict[str, Any]:
    return {"type": "grant", "reader": g.door.reader_id, "t": _iso(g.t),
            "person": str(g.person) if g.person else None, "zone": g.door.inside_zone}


def crossing_evidence(c: Crossing) -> dict[str, Any]:
    return {"type": "crossing", "person": str(c.person), "t": _iso(c.t), "floor": c.floor,
            "from": c.left, "to": c.entered}


def door_event_evidence(e: DoorEvent) -> dict[str, Any]:
    return {"type": "door_event", "reader": e.reader_id, "t": _iso(e.t), "kind": e.kind}


def _who(person: Person) -> dict[str, str]:
    return {"name": person.name, "role": person.role}


def _other(person: Person) -> dict[str, str]:
    return {"other": person.name, "other_role": person.role}


def phrase_alert(rule: str, severity: Severity, now: datetime, phrase: str, params: Mapping[str, Any],
                 people: Sequence[uuid.UUID], floor: str | None, zone: str | None,
                 evidence: Sequence[Mapping[str, Any]]) -> Alert:
    """An alert saying PHRASES[phrase] with `params` (made strings, as the map gets them)."""
    said = {k: str(v) for k, v in params.items()}
    return Alert(rule, severity, now, PHRASES[phrase].format(**said), tuple(people), floor, zone, tuple(evidence),
                 phrase, said)


def _alert(config: RuleConfig, rule: str, severity: Severity, now: datetime, phrase: str, params: Mapping[str, Any],
           people: Sequence[uuid.UUID], zone: Zone | None, evidence: Sequence[dict[str, Any]],
           floor: str | None = None) -> Alert:
    return phrase_alert(rule, severity, now, phrase, params, people, zone.floor if zone else floor,
                        zone.id if zone else None, evidence[-config.evidence_limit:])


# --------------------------------------------------------------------------- rules, one person


def wrong_zone(memory: Memory, config: RuleConfig, p: Presence, allowed: Allowed | None,
               now: datetime) -> Alert | None:
    """A person in a zone the access policy does not allow them in at `now`."""
    key = ("wrong_zone", p.person.id)
    if allowed is None or p.zone is None or allowed(p.person, p.zone, now):
        memory.release(key, now)
        return None
    if not memory.hold(key, now, detail=(p.zone.floor, p.zone.id)):
        return None
    return _alert(config, "wrong_zone", "high", now, "wrong_zone", {**_who(p.person), "zone": p.zone.name},
                  [p.person.id], p.zone, position_evidence(p))


def passed_through(memory: Memory, config: RuleConfig, moved: Sequence[Presence], crossings: Sequence[Crossing],
                   workflow: Workflow, allowed: Allowed, now: datetime) -> list[Alert]:
    """wrong_zone for zones entered and left again within one batch (the people's new state
    shows only where they ended up): judged at the crossing's time."""
    ended = {p.person.id: (p.zone.floor, p.zone.id) if p.zone else None for p in moved}
    out = []
    for c in crossings:
        zone, person = c.zone, workflow.people.get(c.person)
        if zone is None or person is None or ended.get(c.person) == (zone.floor, zone.id) or allowed(person, zone, c.t):
            continue
        if memory.hold(("wrong_zone", person.id), now, detail=(zone.floor, zone.id)):
            out.append(_alert(config, "wrong_zone", "high", now, "wrong_zone.passed", {**_who(person), "zone": zone.name},
                              [person.id], zone, [crossing_evidence(c)]))
    return out


def expert_left(memory: Memory, config: RuleConfig, p: Presence, seat: Assignment | None,
                marks: set[Key], now: datetime) -> list[Alert]:
    """An expert out of their room, or out of the closed area, while their evaluation is in progress.

    Only after they were seen inside (in the room; in the closed area) with this seat: an expert
    on the way in has not left anything. `marks` remembers that, per evaluation.
    """
    if seat is None:
        return []
    pid, zone = p.person.id, p.zone
    in_room = seat.room is not None and zone is not None and (zone.floor, zone.id) == seat.room
    in_closed = zone is not None and zone.closed_area
    if in_room:
        marks.add(("room", pid, seat.evaluation))
    if in_closed:
        marks.add(("closed", pid, seat.evaluation))
    progress = seat.in_progress(now)
    out: list[Alert] = []
    checks = (("expert_left_room", "room", not in_room, "high"),
              ("expert_left_closed_area", "closed", not in_closed, "critical"))
    for rule, mark, outside, severity in checks:
        key = (rule, pid)
        if progress and outside and (mark, pid, seat.evaluation) in marks:
            if memory.hold(key, now, config.left_room_seconds, detail=seat.evaluation):
                params = {"name": p.person.name, **({"zone": zone.name} if zone else {})}
                out.append(_alert(config, rule, severity, now, rule + (".in" if zone else ""), params,
                                  [pid], zone, position_evidence(p), floor=p.floor))
        else:
            memory.release(key, now)
    return out


def badge_tag_mismatch(memory: Memory, config: RuleConfig, p: Presence, grant: Grant,
                       now: datetime) -> Alert | None:
    """The badge was last granted into zone A, the tag has been in another zone B (not the door's
    outside) for more than `badge_tag_seconds` since."""
    door, zone = grant.door, p.zone
    if zone is None or zone.floor != door.floor or zone.id in (door.inside_zone, door.outside_zone):
        return None
    if (now - max(grant.t, p.since)).total_seconds() <= config.badge_tag_seconds:
        return None
    if not memory.hold(("badge_tag_mismatch", p.person.id, grant.t), now):
        return None
    return _alert(config, "badge_tag_mismatch", "high", now, "badge_tag_mismatch",
                  {**_who(p.person), "inside": door.inside_zone, "reader": door.reader_id, "zone": zone.name},
                  [p.person.id], zone, [grant_evidence(grant), *position_evidence(p)])


def tag_silent(memory: Memory, config: RuleConfig, p: Presence, now: datetime) -> Alert | None:
    """No position for more than `silence_seconds`, last seen inside the closed area."""
    key = ("tag_silent", p.person.id)
    silent = (now - p.seen).total_seconds()
    if p.zone is None or not p.zone.closed_area or not config.silence_seconds < silent <= config.silence_forget_seconds:
        memory.release(key, now)
        return None
    if not memory.hold(key, now, detail=p.seen):
        return None
    return _alert(config, "tag_silent", "medium", now, "tag_silent",
                  {**_who(p.person), "seconds": int(silent), "zone": p.zone.name}, [p.person.id], p.zone,
                  position_evidence(p))


def dwell(memory: Memory, config: RuleConfig, p: Presence, now: datetime) -> Alert | None:
    """In a zone of a watched kind (the isolation corridor) for longer than its limit."""
    limit = dict(config.dwell).get(p.zone.kind) if p.zone else None
    key = ("dwell", p.person.id)
    if limit is None or p.zone is None or (now - p.since).total_seconds() <= limit or \
            (now - p.seen).total_seconds() > config.present_seconds:
        memory.release(key, now)
        return None
    if not memory.hold(key, now, detail=(p.zone.floor, p.zone.id, p.since)):
        return None
    minutes = int((now - p.since).total_seconds() // 60)
    return _alert(config, "dwell", "medium", now, "dwell", {**_who(p.person), "zone": p.zone.name, "minutes": minutes},
                  [p.person.id], p.zone, position_evidence(p))


def is_after_hours(config: RuleConfig, now: datetime) -> bool:
    """Whether `now` is outside [opens, closes) in the venue's time zone (closes < opens: overnight)."""
    local = now.astimezone(ZoneInfo(config.timezone)).time()
    if config.opens <= config.closes:
        return not (config.opens <= local < config.closes)
    return config.closes <= local < config.opens


def after_hours(memory: Memory, config: RuleConfig, p: Presence, closed_now: bool, now: datetime) -> Alert | None:
    """Present (seen within `silence_seconds`) while the venue is closed."""
    key = ("after_hours", p.person.id)
    present = (now - p.seen).total_seconds() <= config.silence_seconds
    if not closed_now or not present or p.person.role in config.after_hours_exempt:
        memory.release(key, now)
        return None
    if not memory.hold(key, now):
        return None
    params = {**_who(p.person), **({"zone": p.zone.name} if p.zone else {})}
    return _alert(config, "after_hours", "medium", now, "after_hours.in" if p.zone else "after_hours", params,
                  [p.person.id], p.zone, position_evidence(p), floor=p.floor)


# --------------------------------------------------------------------------- rules, pairs and zones


def pair_conditions(config: RuleConfig, experts: Grid, parties: Grid, p: Presence, workflow: Workflow,
                    fresh_after: datetime) -> list[tuple[Key, Presence, Presence]]:
    """The proximity conditions that hold for p now: (key, expert, other), among people seen at
    or after `fresh_after` (now less `fresh_seconds`). Experts and parties (bidders, agents) are
    in grids of their own, so a party looks at experts only."""
    role = p.person.role
    if role not in PROXIMITY_ROLES or p.seen < fresh_after:
        return []
    if role != "expert":
        return [(("expert_near_party", q.person.id, p.person.id), q, p)
                for q in experts.near(p, config.near_m, fresh_after)]
    held = [(("expert_near_party", p.person.id, q.person.id), p, q) for q in parties.near(p, config.near_m, fresh_after)]
    if p.person.id in workflow.experts:
        for q in experts.near(p, config.near_m, fresh_after):
            if _meeting(workflow, p, q):
                a, b = sorted((p, q), key=lambda x: x.person.id)
                held.append((("experts_meeting", a.person.id, b.person.id), a, b))
    return held


def _meeting(workflow: Workflow, p: Presence, q: Presence) -> bool:
    sp, sq = workflow.experts.get(p.person.id), workflow.experts.get(q.person.id)
    if sp is None or sq is None or sp.evaluation == sq.evaluation:
        return False

    def at_own_room(x: Presence, seat: Assignment) -> bool:
        return x.zone is not None and (x.zone.floor, x.zone.id) == seat.room

    return not (at_own_room(p, sp) and at_own_room(q, sq))


def pair_alert(config: RuleConfig, key: Key, a: Presence, b: Presence, workflow: Workflow, now: datetime) -> Alert:
    """The alert of a proximity condition that has held long enough."""
    evidence = [*position_evidence(a), *position_evidence(b)]
    params = {**_who(a.person), **_other(b.person), "metres": f"{config.near_m:g}", "seconds": f"{config.near_seconds:g}"}
    people = [a.person.id, b.person.id]
    if key[0] == "experts_meeting":
        return _alert(config, "experts_meeting", "high", now, "experts_meeting", params, people, a.zone, evidence,
                      floor=a.floor)
    seat = workflow.experts.get(a.person.id)
    own = seat is not None and seat.tender in workflow.parties.get(b.person.id, frozenset())
    return _alert(config, "expert_near_party", "critical" if own else "high", now,
                  "expert_near_party.own" if own else "expert_near_party", params, people, a.zone, evidence,
                  floor=a.floor)


def over_capacity(memory: Memory, config: RuleConfig, presences: Iterable[Presence], now: datetime) -> list[Alert]:
    """Zones holding more people than their capacity for more than `capacity_seconds`."""
    counts: dict[tuple[str, str], list[Presence]] = {}
    zones: dict[tuple[str, str], Zone] = {}
    seen_after = now - timedelta(seconds=config.present_seconds)
    for p in presences:
        if p.zone is not None and p.zone.capacity is not None and p.seen >= seen_after:
            zkey = (p.zone.floor, p.zone.id)
            counts.setdefault(zkey, []).append(p)
            zones[zkey] = p.zone
    out = []
    for zkey, inside in counts.items():
        zone = zones[zkey]
        key = ("over_capacity", *zkey)
        if len(inside) <= (zone.capacity or 0):
            memory.release(key, now)
        elif memory.hold(key, now, config.capacity_seconds):
            evidence = [e for p in inside[:config.evidence_limit] for e in position_evidence(p, 1)]
            out.append(_alert(config, "over_capacity", "medium", now, "over_capacity",
                              {"zone": zone.name, "count": len(inside), "capacity": zone.capacity},
                              [p.person.id for p in inside], zone, evidence))
    for key in [k for k in memory.open if k[0] == "over_capacity" and k[1:] not in counts]:
        memory.release(key, now)
    return out


def crossers(config: RuleConfig, grant: Grant, crossings: Iterable[Crossing],
             grants: Iterable[Grant]) -> list[Crossing]:
    """Who crossed `grant`'s door (its outside zone into its inside zone) around the grant's time
    on it: its holder, and others who had no grant of their own into that zone around theirs."""
    door = grant.door
    lead, after = timedelta(seconds=config.tailgate_lead_seconds), timedelta(seconds=config.tailgate_seconds)
    granted = [(g.person, g.t) for g in grants if g is not grant and g.person is not None
               and g.door.floor == door.floor and g.door.inside_zone == door.inside_zone]
    out: dict[uuid.UUID, Crossing] = {}
    for c in crossings:
        if c.floor != door.floor or c.entered != door.inside_zone or c.left != door.outside_zone:
            continue
        if not grant.t - lead <= c.t <= grant.t + after:
            continue
        if c.person != grant.person and any(person == c.person and t - after <= c.t <= t + after
                                            for person, t in granted):
            continue
        out.setdefault(c.person, c)
    return list(out.values())


def door_event_alert(memory: Memory, config: RuleConfig, event: DoorEvent, door: Door | None,
                     recent: Sequence[DoorEvent], now: datetime) -> Alert | None:
    """A door forced open (critical) or held open (medium), once per event."""
    if event.kind not in ("forced", "held_open"):
        return None
    if not memory.hold(("door_" + event.kind, event.reader_id, event.t), now):
        return None
    severity: Severity = "critical" if event.kind == "forced" else "medium"
    return phrase_alert("door_" + event.kind, severity, now, "door_" + event.kind, {"reader": event.reader_id}, (),
                        door.floor if door else None, door.inside_zone if door else None,
                        [door_event_evidence(e) for e in list(recent)[-config.evidence_limit:]])


def tailgating_alert(config: RuleConfig, grant: Grant, crossed: Sequence[Crossing], workflow: Workflow,
                     now: datetime) -> Alert:
    """The alert of a grant through which more people crossed than it admits (see `crossers`)."""
    door = grant.door
    holder = workflow.people.get(grant.person) if grant.person else None
    names = [workflow.people[c.person].name for c in crossed if c.person in workflow.people]
    people = list(dict.fromkeys(([grant.person] if grant.person else []) + [c.person for c in crossed]))
    phrase = "tailgating" + ("" if holder else ".unknown") + ("" if names else ".unnamed")
    params = {"reader": door.reader_id, "capacity": door.capacity, "count": len(crossed), "names": ", ".join(names),
              **(_who(holder) if holder else {})}
    return phrase_alert("tailgating", "high", now, phrase, params, people, door.floor, door.inside_zone,
                        [grant_evidence(grant), *map(crossing_evidence, crossed)][:config.evidence_limit])
