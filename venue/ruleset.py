"""The venue's rules together with their memory (venue/rules.py has the rules themselves).

`Rules` is fed the people who moved and the zone transitions of each position batch, door
grants and door events, and a tick about once a second; it keeps what the rules need between
calls (ongoing conditions, the proximity grids, grants awaiting their tag, recent grants and
crossings for tailgating) and returns the alerts that became due. Pure: no I/O, no clock.
"""

from __future__ import annotations

import uuid
from collections import deque
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from venue.model import Alert, DoorEvent
from venue.rules import (
    PAIR_KEYED, PARTY_ROLES, PROXIMITY_ROLES, Allowed, Crossing, Door, Grant, Grid, Key, Memory, Ongoing,
    Presence, RuleConfig, Workflow, after_hours, badge_tag_mismatch, condition_of, crossers, door_event_alert, dwell,
    expert_left, is_after_hours, over_capacity, pair_alert, pair_conditions, passed_through, tag_silent,
    tailgating_alert, wrong_zone,
)


class Rules:
    """The rules with their memory: fed the people who moved, door grants and events, and ticks.

    Not thread-safe; the engine calls it from its event loop. Every method returns the alerts
    that became due, each once.
    """

    def __init__(self, config: RuleConfig | None = None) -> None:
        self.config = config or RuleConfig()
        self.memory = Memory(self.config.clear_seconds, self.config.forget_seconds)
        self.experts = Grid(self.config.near_m)
        self.parties = Grid(self.config.near_m)
        self.marks: set[Key] = set()
        self.pairs: dict[uuid.UUID, set[Key]] = {}
        self.pending: dict[uuid.UUID, Grant] = {}   # person -> last grant their tag has not confirmed
        self.grants: deque[Grant] = deque()
        self.crossings: deque[Crossing] = deque()
        self.door_events: dict[str, deque[DoorEvent]] = {}

    def restore(self, alerts: Iterable[Alert], now: datetime) -> int:
        """After a restart: the conditions these stored alerts were raised for (those of the last
        `forget_seconds`) count as alerted, so one still going on does not alert again; one that
        has ended is cleared as soon as its people are seen out of it. How many were restored."""
        restored = 0
        for alert in alerts:
            condition = condition_of(alert)
            if condition is None or now - alert.at > self.memory.forget:
                continue
            key, detail = condition
            self.memory.open[key] = Ongoing(alert.at, now, detail, alerted=True)
            if key[0] in PAIR_KEYED:  # indexed as _proximity indexes a pair, to be released with it
                for pid in key[1:]:
                    self.pairs.setdefault(pid, set()).add(key)
            restored += 1
        return restored

    # -- positions ----------------------------------------------------------------------------

    def on_positions(self, moved: Sequence[Presence], crossings: Sequence[Crossing], workflow: Workflow,
                     allowed: Allowed | None, now: datetime) -> list[Alert]:
        """The people who moved (their new state) and the zone transitions of this batch."""
        memory, config, out = self.memory, self.config, []
        if crossings and allowed is not None:
            out.extend(passed_through(memory, config, moved, crossings, workflow, allowed, now))
        for p in moved:
            alert = wrong_zone(memory, config, p, allowed, now)
            if alert:
                out.append(alert)
            out.extend(expert_left(memory, config, p, workflow.experts.get(p.person.id), self.marks, now))
            out.extend(self._badge(p, now))
            role = p.person.role
            if role == "expert":
                self.experts.put(p)
            elif role in PARTY_ROLES:
                self.parties.put(p)
        out.extend(self._proximity(moved, workflow, now))
        if crossings:
            self.crossings.extend(crossings)
            self._prune(now)
            out.extend(self._tailgating_after(crossings, workflow, now))
        return out

    def _badge(self, p: Presence, now: datetime) -> list[Alert]:
        grant = self.pending.get(p.person.id)
        if grant is None:
            return []
        if p.zone is not None and (p.zone.floor, p.zone.id) == (grant.door.floor, grant.door.inside_zone):
            del self.pending[p.person.id]  # the tag went where the badge did
            return []
        alert = badge_tag_mismatch(self.memory, self.config, p, grant, now)
        return [alert] if alert else []

    def _proximity(self, moved: Sequence[Presence], workflow: Workflow, now: datetime) -> list[Alert]:
        out, memory, pairs = [], self.memory, self.pairs
        fresh_after = now - timedelta(seconds=self.config.fresh_seconds)
        for p in moved:
            if p.person.role not in PROXIMITY_ROLES:
                continue
            held = pair_conditions(self.config, self.experts, self.parties, p, workflow, fresh_after)
            for key, a, b in held:
                if key not in memory.open:  # a new pair: index it under both people
                    pairs.setdefault(a.person.id, set()).add(key)
                    pairs.setdefault(b.person.id, set()).add(key)
                if memory.hold(key, now, self.config.near_seconds):
                    out.append(pair_alert(self.config, key, a, b, workflow, now))
            mine = pairs.get(p.person.id)
            if mine and len(mine) > len(held):
                for key in mine - {key for key, _, _ in held}:
                    memory.release(key, now)
                    if key not in memory.open:
                        for pid in key[1:]:
                            pairs.get(pid, set()).discard(key)
        return out

    # -- doors --------------------------------------------------------------------------------

    def on_grant(self, grant: Grant, workflow: Workflow, now: datetime) -> list[Alert]:
        """A door granted to a badge: remembered for badge/tag and tailgating."""
        if grant.person is not None:
            self.pending[grant.person] = grant
        self.grants.append(grant)
        self._prune(now)
        return self._tailgating(grant, workflow, now)

    def _tailgating_after(self, crossings: Sequence[Crossing], workflow: Workflow, now: datetime) -> list[Alert]:
        entered = {(c.floor, c.left, c.entered) for c in crossings}
        out = []
        for g in list(self.grants):
            if (g.door.floor, g.door.outside_zone, g.door.inside_zone) in entered:
                out.extend(self._tailgating(g, workflow, now))
        return out

    def _tailgating(self, grant: Grant, workflow: Workflow, now: datetime) -> list[Alert]:
        crossed = crossers(self.config, grant, self.crossings, self.grants)
        if len(crossed) <= grant.door.capacity:
            return []
        if not self.memory.hold(("tailgating", grant.door.reader_id, grant.t), now):
            return []
        return [tailgating_alert(self.config, grant, crossed, workflow, now)]

    def on_door_event(self, event: DoorEvent, door: Door | None, now: datetime) -> list[Alert]:
        recent = self.door_events.setdefault(event.reader_id, deque(maxlen=self.config.evidence_limit))
        recent.append(event)
        alert = door_event_alert(self.memory, self.config, event, door, recent, now)
        return [alert] if alert else []

    def _prune(self, now: datetime) -> None:
        keep = timedelta(seconds=2 * (self.config.tailgate_seconds + self.config.tailgate_lead_seconds))
        while self.grants and self.grants[0].t < now - keep:
            self.grants.popleft()
        while self.crossings and self.crossings[0].t < now - keep:
            self.crossings.popleft()

    # -- time ---------------------------------------------------------------------------------

    def tick(self, presences: Iterable[Presence], workflow: Workflow, now: datetime) -> list[Alert]:
        """The time-based rules over everyone tracked: silence, dwell, after hours, capacity,
        and badge grants whose tag stays elsewhere. Call it about once a second."""
        memory, config, out = self.memory, self.config, []
        closed_now = is_after_hours(config, now)
        everyone = list(presences)
        window = timedelta(seconds=config.badge_tag_window_seconds)
        for p in everyone:
            for alert in (tag_silent(memory, config, p, now), dwell(memory, config, p, now),
                          after_hours(memory, config, p, closed_now, now)):
                if alert:
                    out.append(alert)
            if p.person.id in self.pending:
                out.extend(self._badge(p, now))
        out.extend(over_capacity(memory, config, everyone, now))
        for pid, grant in list(self.pending.items()):
            if now - grant.t > window:
                del self.pending[pid]
        self.marks = {m for m in self.marks if m[1] in workflow.experts}
        memory.sweep(now)
        self._prune(now)
        return out
