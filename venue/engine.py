"""The venue's live state in memory: what door decisions and position rules are made from.

One engine per app (app state `venue_engine`). It is loaded from the database at start-up and
reloaded when the bus says the policy changed (topic `venue`, kind `venue.policy_changed`:
people, credentials, rules, floors, or a session's sign-in and steps), so no request waits on
a slow query. Each part is owned by its module; the engine only holds and wires them:

- floors and their zone index (venue/floorplan.py: `ZoneIndex`)
- the access policy and the anti-passback / re-entry memory (venue/access.py: `Policy`, `decide`)
- the per-person position state with hysteresis (venue/tracker.py: `Tracker`)
- the rules over that state and the workflow (venue/rules.py and venue/ruleset.py; the part
  "workflow" from venue/workflow.py), raising model.Alert values that venue/alerts.py stores,
  logs and pushes.

The live pipeline: `on_positions` (the tracker, then the rules over the people who moved and
the zone transitions), `on_decision` and `on_door_event` (door grants and events), `tick` (the
time-based rules, every second from venue/alert_jobs.py). Each runs in memory without awaiting
anything, returns the alerts that became due, and hands them to the alert writer (its own
thread and connection: venue/alerts.py), which stores, logs and pushes them off the ingest path. The adapters below are the only code that
knows the other parts' shapes (tracker.Tracker, access.Policy, floorplan.FloorSet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone
from typing import Any, Sequence

from venue import access
from venue.model import Alert, Decision, DoorEvent, Person, Position, Zone
from venue.rules import Allowed, Crossing, Grant, Presence, RuleConfig, Workflow, parse_clock
from venue.ruleset import Rules

log = logging.getLogger(__name__)

TOPIC = "venue"
POLICY_CHANGED = "venue.policy_changed"


class VenueEngine:
    """Holds the venue's parts; `start` loads them and follows the bus, `stop` ends that."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.lock = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None
        self.parts: dict[str, Any] = {}
        self.rules = Rules(rule_config(settings))
        self.writer: Any = None  # venue.alerts.AlertWriter, from `start` on
        self.workflow_loaded_at = 0.0  # time.monotonic() of the last periodic workflow reload

    async def load(self, pool: Any) -> None:
        """(Re)load every part from the database; each module registers its loader in LOADERS."""
        async with self.lock:
            for name, loader in LOADERS.items():
                self.parts[name] = await loader(pool, self)

    async def start(self, pool: Any, bus: Any, signer: Any) -> None:
        """Load every part, start the alert writer (signing the log with the app's `signer`), follow the bus."""
        # Imported here: both import this module (for its topic and LOADERS).
        from venue import alerts, workflow

        LOADERS.setdefault("workflow", workflow.load)
        await self.load(pool)
        # Conditions alerted before a restart: still going on, they are not alerted again.
        now = datetime.now(timezone.utc)
        restored = self.rules.restore(await alerts.raised_since(pool, now - self.rules.memory.forget), now)
        if restored:
            log.info("the venue rules' memory holds %d conditions alerted before the start", restored)
        self.writer = alerts.AlertWriter(bus.dsn, signer)
        await self.writer.start()
        self._follower = asyncio.create_task(self._follow(pool, bus))

    async def _follow(self, pool: Any, bus: Any) -> None:
        async with bus.subscribe(TOPIC) as subscription:
            while True:
                event = await subscription.queue.get()
                if event is not None and event.kind == POLICY_CHANGED:
                    try:
                        await self.load(pool)
                    except Exception:  # noqa: BLE001 - a failed reload keeps the last good state
                        log.exception("reloading the venue's state failed")

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        if self.writer is not None:
            await self.writer.stop()

    # -- the live pipeline ----------------------------------------------------------------------

    async def on_positions(self, positions: Sequence[Position], now: datetime) -> list[Alert]:
        """A stored batch: the tracker's update, then the rules over who moved and the zone
        transitions. Awaits nothing (async for the ingest's call); the new alerts, also queued
        for the writer."""
        tracker = self.parts.get("tracker")
        if tracker is None:
            return []
        flow = self.workflow()
        floors = self.parts.get("floors")
        moved, transitions = track(tracker, positions, floors)
        presences = presences_of(moved, flow, tracker, floors)
        alerts = self.rules.on_positions(presences, [crossing(t, floors) for t in transitions], flow,
                                         allowed_by(self.parts.get("policy")), now)
        return self._raise(alerts)

    def on_decision(self, decision: Decision, reader: str, now: datetime) -> list[Alert]:
        """A door decision made at `reader`: a grant is remembered for badge/tag and tailgating."""
        door = reader_of(self.parts.get("policy"), reader)
        if not decision.granted or door is None:
            return []
        return self._raise(self.rules.on_grant(Grant(door, now, decision.person), self.workflow(), now))

    def on_door_event(self, event: DoorEvent, now: datetime) -> list[Alert]:
        """A door event (forced, held open, …) from a controller."""
        return self._raise(self.rules.on_door_event(event, reader_of(self.parts.get("policy"), event.reader_id), now))

    def tick(self, now: datetime) -> list[Alert]:
        """The time-based rules over everyone tracked; call it about once a second."""
        tracker, floors = self.parts.get("tracker"), self.parts.get("floors")
        flow = self.workflow()
        states = tracker.states() if tracker is not None else []
        presences = presences_of(states, flow, tracker, floors)
        return self._raise(self.rules.tick(presences, flow, now))

    def workflow(self) -> Workflow:
        return self.parts.get("workflow") or Workflow()

    def _raise(self, alerts: list[Alert]) -> list[Alert]:
        if alerts and self.writer is not None:
            self.writer.submit(alerts)
        return alerts


# name -> async loader(pool, engine) -> the part; filled by the parts' modules at import.
LOADERS: dict[str, Any] = {}


# --------------------------------------------------------------------------- adapters to the parts


def rule_config(settings: Any) -> RuleConfig:
    """The rules' thresholds: the defaults, with the venue's opening hours and time zone."""
    return RuleConfig(opens=parse_clock(settings.venue_opens), closes=parse_clock(settings.venue_closes),
                      timezone=settings.display_timezone)


def track(tracker: Any, positions: Sequence[Position], floors: Any) -> tuple[list[Any], list[Any]]:
    """venue/tracker.py: `update` returns the confirmed transitions (zones looked up in this
    batch's floors, venue/floorplan.py ZoneIndex.zone_id_at); `moved()` their PersonStates."""
    transitions = tracker.update(positions, floors.index.zone_id_at if floors is not None else None)
    return tracker.moved(), transitions


def zone_of(floors: Any, floor: str | None, zone_id: str | None) -> Zone | None:
    """A zone by id from the floors part (venue/floorplan.py FloorSet: `index.zone(floor, id)`)."""
    if floors is None or floor is None or zone_id is None:
        return None
    return floors.index.zone(floor, zone_id)


def presences_of(states: Sequence[Any], flow: Workflow, tracker: Any, floors: Any) -> list[Presence]:
    """tracker.PersonStates as the rules read them, leaving out people nobody knows any more.

    One loop with its lookups bound once: it runs for every moved person of every batch."""
    from_flow, from_directory = flow.people.get, tracker.directory.person
    zone = floors.index.zone if floors is not None else (lambda floor, zone_id: None)
    out = []
    for s in states:
        person: Person | None = from_flow(s.person) or from_directory(s.person)
        if person is not None:
            out.append(Presence(person, s.floor, s.x, s.y, s.last_seen,
                                zone(s.zone_floor, s.zone) if s.zone is not None else None, s.since, s.tag, s.trail))
    return out


def crossing(transition: Any, floors: Any) -> Crossing:
    """A tracker.Transition; a zone on another floor is the outside of this one."""
    floor = transition.to_floor or transition.from_floor
    left = transition.from_zone if transition.from_floor == floor else None
    entered = transition.to_zone if transition.to_floor == floor else None
    return Crossing(transition.person, floor, transition.at, left, entered, zone_of(floors, floor, entered))


def allowed_by(policy: Any) -> Allowed | None:
    """"Person in a zone they are not allowed in", from the access policy (venue/access.py):
    zones behind a reader and zones of the closed area are checked with `allowed_in` (a rule's
    window); open zones no door guards (entrance, halls, corridors) are everyone's."""
    if policy is None:
        return None
    guarded = {reader.inside for reader in policy.readers.values()}

    def allowed(person: Person, zone: Zone, now: datetime) -> bool:
        key = (zone.floor, zone.id)
        if key not in guarded and not zone.closed_area:
            return True
        return access.allowed_in(policy, person.id, key, now)
    return allowed


def reader_of(policy: Any, reader_id: str) -> Any:
    """The access policy's Reader (floor, inside and outside zones, capacity), or None."""
    return policy.readers.get(reader_id) if policy is not None else None
