"""Door access decisions made from memory: the policy (readers, badges, people, rules) and the
memory of who passed which door when. Pure: no I/O; the time is passed in.

`decide(policy, reader_id, credential, now)` answers with a model.Decision whose `reason` is one
of REASONS, checked in this order (the first that applies is the answer):

- unknown_reader       no door has this reader id
- unknown_credential   no badge has this value (tags are for positioning, not doors)
- credential_expired   the badge is bound to someone, but not at `now` (expired, revoked at load
                       time, or not yet valid); the binding is [valid_from, valid_until)
- not_allowed          no rule of the person (or of their role) names the door's inside zone,
                       by id on its floor or by kind
- outside_window       a rule names the zone, but `now` is outside [valid_from, valid_until)
- entry_window_passed  the rule says "enter within N s of valid_from", the person has not entered
                       the zone since valid_from, and now > valid_from + N s (at exactly N s they
                       are still in time: 以内 includes the number, as in evaluation/session_rules.py)
- no_reentry           the rule forbids re-entry and the person left the zone at or after valid_from
- anti_passback        the memory has the person inside the door's inside zone already: they never
                       badged out, so the card may have been passed back to someone else
- allowed              a grant (the answer when any one rule lets the person in)

When several rules name the zone and none lets the person in, the reason is that of the rule
that came closest: no_reentry, then entry_window_passed, then outside_window.

Anti-passback is strict on the way in only. A grant moves the person into the door's inside
zone and out of the zone the memory had them in (and out of the door's outside zone): leaving
a zone other than the recorded one is allowed and corrects the record, because exits are
often not badged (free-egress push bars) and refusing there would lock people in.

A door is one-way: it lets people from `outside_zone` into `inside_zone`. A two-way door has two
readers, one each way, in the doors table (the exit reader's inside zone is the corridor).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Mapping

from venue.model import AccessRule, Credential, Decision, Person

REASONS = ("allowed", "unknown_reader", "unknown_credential", "credential_expired", "not_allowed",
           "outside_window", "entry_window_passed", "no_reentry", "anti_passback")
# Among rules that all refuse, the one that came closest to letting the person in speaks.
_CLOSENESS = {"outside_window": 1, "entry_window_passed": 2, "no_reentry": 3}

ZoneKey = tuple[str, str]  # (floor code, zone id)


@dataclass(frozen=True)
class Reader:
    """What the policy knows of a door: its reader, and the zones it leads from and into."""

    reader_id: str
    floor: str
    door_id: str
    inside_zone: str
    outside_zone: str | None = None  # None: the outside of the floor
    capacity: int = 1

    @property
    def inside(self) -> ZoneKey:
        return (self.floor, self.inside_zone)

    @property
    def outside(self) -> ZoneKey | None:
        return None if self.outside_zone is None else (self.floor, self.outside_zone)


@dataclass(frozen=True)
class Passage:
    """A granted pass through a door: what a grant changes in the memory."""

    person: uuid.UUID
    reader_id: str
    came_from: ZoneKey | None
    went_to: ZoneKey
    at: datetime


class Memory:
    """Who is inside which zone since when, and when each person last entered and left each zone.

    The one mutable part of the policy: it outlives reloads (the loader hands it on) and is
    rebuilt from the stored grants after a restart (replaying them through `apply`).
    """

    def __init__(self) -> None:
        self.inside: dict[uuid.UUID, tuple[ZoneKey, datetime]] = {}
        self.entered: dict[tuple[uuid.UUID, ZoneKey], datetime] = {}
        self.left: dict[tuple[uuid.UUID, ZoneKey], datetime] = {}

    def apply(self, passage: Passage) -> None:
        """Record a granted passage (call it only for grants, in the order they were made)."""
        person, at = passage.person, passage.at
        current = self.inside.get(person)
        if current is not None and current[0] != passage.went_to:
            self.left[(person, current[0])] = at
        if passage.came_from is not None and passage.came_from != passage.went_to:
            self.left[(person, passage.came_from)] = at
        self.inside[person] = (passage.went_to, at)
        self.entered[(person, passage.went_to)] = at

    def zone_of(self, person: uuid.UUID) -> ZoneKey | None:
        here = self.inside.get(person)
        return here[0] if here else None

    def forget_before(self, moment: datetime) -> None:
        """Drop what happened before `moment`: re-entry and anti-passback look back no further."""
        self.inside = {k: v for k, v in self.inside.items() if v[1] >= moment}
        self.entered = {k: v for k, v in self.entered.items() if v >= moment}
        self.left = {k: v for k, v in self.left.items() if v >= moment}


@dataclass(frozen=True)
class Policy:
    """Everything a door decision reads, indexed for it; build it with `Policy.build`."""

    readers: Mapping[str, Reader]
    zone_kinds: Mapping[ZoneKey, str]
    badges: Mapping[str, tuple[Credential, ...]]
    tags: Mapping[str, tuple[Credential, ...]]
    people: Mapping[uuid.UUID, Person]
    rules_by_person: Mapping[uuid.UUID, tuple[AccessRule, ...]]
    rules_by_role: Mapping[str, tuple[AccessRule, ...]]
    memory: Memory = field(default_factory=Memory)
    version: int = 0

    @classmethod
    def build(cls, *, readers: Iterable[Reader], zone_kinds: Mapping[ZoneKey, str], credentials: Iterable[Credential],
              people: Iterable[Person], rules: Iterable[AccessRule], memory: Memory | None = None,
              version: int = 0) -> "Policy":
        badges: dict[str, list[Credential]] = {}
        tags: dict[str, list[Credential]] = {}
        for c in credentials:
            (badges if c.kind == "badge" else tags).setdefault(c.value, []).append(c)
        by_person: dict[uuid.UUID, list[AccessRule]] = {}
        by_role: dict[str, list[AccessRule]] = {}
        for r in rules:
            if r.person is not None:
                by_person.setdefault(r.person, []).append(r)
            elif r.role is not None:
                by_role.setdefault(r.role, []).append(r)
        return cls(readers={r.reader_id: r for r in readers}, zone_kinds=dict(zone_kinds),
                   badges={v: _newest_first(cs) for v, cs in badges.items()},
                   tags={v: _newest_first(cs) for v, cs in tags.items()},
                   people={p.id: p for p in people},
                   rules_by_person={k: tuple(v) for k, v in by_person.items()},
                   rules_by_role={k: tuple(v) for k, v in by_role.items()},
                   memory=memory if memory is not None else Memory(), version=version)

    def rules_of(self, person: Person) -> tuple[AccessRule, ...]:
        return self.rules_by_person.get(person.id, ()) + self.rules_by_role.get(person.role, ())

    def bound_to(self, credentials: Mapping[str, tuple[Credential, ...]], value: str,
                 now: datetime) -> Credential | None:
        """The binding of `value` valid at `now`, if any."""
        return next((c for c in credentials.get(value, ()) if c.valid_at(now)), None)


def _newest_first(credentials: list[Credential]) -> tuple[Credential, ...]:
    return tuple(sorted(credentials, key=lambda c: c.valid_from, reverse=True))


def covers(rule: AccessRule, zone: ZoneKey, kind: str | None) -> bool:
    """Whether the rule names this zone: by id on its floor, or by kind (on its floor if it names one)."""
    if rule.zone_id is not None:
        return rule.floor == zone[0] and rule.zone_id == zone[1]
    return rule.zone_kind is not None and rule.zone_kind == kind and rule.floor in (None, zone[0])


def in_window(rule: AccessRule, now: datetime) -> bool:
    """valid_from inclusive, valid_until exclusive (as Credential.valid_at)."""
    return rule.valid_from <= now and (rule.valid_until is None or now < rule.valid_until)


def rule_reason(rule: AccessRule, person: uuid.UUID, zone: ZoneKey, now: datetime, memory: Memory) -> str:
    """What one rule (which covers the zone) says: allowed, outside_window, entry_window_passed or no_reentry."""
    if not in_window(rule, now):
        return "outside_window"
    entered = memory.entered.get((person, zone))
    entered_since = entered is not None and entered >= rule.valid_from
    if (rule.enter_within_seconds is not None and not entered_since
            and now > rule.valid_from + timedelta(seconds=rule.enter_within_seconds)):
        return "entry_window_passed"
    if rule.no_reentry:
        left = memory.left.get((person, zone))
        if left is not None and left >= rule.valid_from:
            return "no_reentry"
    return "allowed"


def rules_verdict(policy: Policy, person: Person, zone: ZoneKey, now: datetime) -> str:
    """allowed when any rule lets the person into the zone now; else the closest refusal, or not_allowed."""
    kind = policy.zone_kinds.get(zone)
    best = "not_allowed"
    for rule in policy.rules_of(person):
        if not covers(rule, zone, kind):
            continue
        reason = rule_reason(rule, person.id, zone, now, policy.memory)
        if reason == "allowed":
            return reason
        if _CLOSENESS[reason] > _CLOSENESS.get(best, 0):
            best = reason
    return best


def allowed_in(policy: Policy, person: uuid.UUID, zone: ZoneKey, now: datetime) -> bool:
    """Whether some rule lets the person be in the zone now (window only; the entry window and
    re-entry are door matters). For position rules: "person in a zone they are not allowed in"."""
    who = policy.people.get(person)
    if who is None:
        return False
    kind = policy.zone_kinds.get(zone)
    return any(covers(r, zone, kind) and in_window(r, now) for r in policy.rules_of(who))


def decide(policy: Policy, reader_id: str, credential: str, now: datetime) -> tuple[Decision, Passage | None]:
    """Grant or refuse `credential` at `reader_id` at `now` (see the module's docstring for the
    reasons and their order). A grant comes with the Passage the caller applies to
    `policy.memory` once it has acted on the grant; a refusal changes nothing."""
    reader = policy.readers.get(reader_id)
    if reader is None:
        return Decision(False, "unknown_reader"), None
    bindings = policy.badges.get(credential, ())
    binding = next((c for c in bindings if c.valid_at(now)), None)
    if binding is None:
        if not bindings:
            return Decision(False, "unknown_credential", zone=reader.inside_zone), None
        # The latest binding that had started by now names the holder (else the earliest one).
        holder = next((c for c in bindings if c.valid_from <= now), bindings[-1]).person
        return Decision(False, "credential_expired", person=holder, zone=reader.inside_zone), None
    person = policy.people.get(binding.person)
    if person is None:
        return Decision(False, "unknown_credential", zone=reader.inside_zone), None
    zone = reader.inside
    reason = rules_verdict(policy, person, zone, now)
    if reason == "allowed" and policy.memory.zone_of(person.id) == zone:
        reason = "anti_passback"
    if reason != "allowed":
        return Decision(False, reason, person=person.id, zone=reader.inside_zone), None
    return (Decision(True, "allowed", person=person.id, zone=reader.inside_zone),
            Passage(person.id, reader_id, reader.outside, zone, now))
