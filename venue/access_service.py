"""Access control's core: the policy's loaders, door decisions and door events (devices), and
their batched record. People, credentials, rules and 代理码 are venue/access_people.py.

Door decisions never wait on the database: `decide` reads the policy in memory (engine part
`policy`, venue/access.py) and queues the record on the desk (engine part `access_desk`). The
venue job `flush` (venue/jobs.py, every FLUSH_SECONDS) writes what is queued in batches of at
most MAX_BATCH decisions and door events: per batch one transaction with one transparency-log
entry (`venue.access_batch`: the counts and the SHA-256 of the batch's canonical records, never
badge values or names, since the log is public), one INSERT per table with that entry's index as
`log_index`, and one bus event `venue.access` listing the batch for the supervisors' map. A
batch is checked against its entry with `batch_matches_log`. At 1,000 decisions a second that is
five small transactions a second, whatever the rate.

What is queued and not yet written is lost if the process dies (at most FLUSH_SECONDS of
decisions; a clean shutdown flushes). Each instance keeps its own memory of passages: with
several instances behind a balancer, pin each door controller to one instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, NamedTuple

import asyncpg

from evaluation.session_rules import STARTED
from tenderhall import bus, log
from tenderhall.canonical import canonical_json
from venue import access
from venue import policy_store as store
from venue.engine import LOADERS, POLICY_CHANGED, TOPIC
from venue.model import AccessRule, Credential, Decision, DoorEvent, Person

log_ = logging.getLogger(__name__)

# The centre's rule for evaluation rooms (issue 6, DOMAIN.md): an expert must enter the
# assigned room within 5 minutes of authorisation (their sign-in) and cannot re-enter after leaving.
SESSION_ENTER_WITHIN_SECONDS = 300
NO_REENTRY_AFTER_LEAVING = True
# Sessions whose experts may be in their rooms: from sign-in until the session ends.
LIVE_STEPS = ("sign_in", *STARTED)
# How far back the passage memory (anti-passback, re-entry) looks; also what a restart replays.
MEMORY_HORIZON = timedelta(days=2)
# An expired badge is answered credential_expired for this long, unknown_credential after.
EXPIRED_KEPT = timedelta(days=30)
FLUSH_SECONDS = 0.2
MAX_BATCH = 500
MAX_PENDING = 200_000  # past this (the database down for minutes) the oldest records are dropped
MAX_CLOCK_SKEW = timedelta(seconds=60)  # a device's event time may be this far ahead of ours

READER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
CREDENTIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
DOOR_EVENT_KINDS = ("opened", "closed", "forced", "held_open")


class AccessRefused(Exception):
    """A request access control does not carry out; `code` is stable, `status` the HTTP one."""

    def __init__(self, message: str, *, code: str, status: int = 422, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status, self.detail = message, code, status, dict(detail or {})


def bad(message: str, code: str = "invalid_body") -> AccessRefused:
    return AccessRefused(message, code=code, status=422)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Deps:
    pool: asyncpg.Pool
    settings: Any
    platform_key: Any
    engine: Any

    @classmethod
    def of(cls, state: Any) -> "Deps":
        """From request.state (attributes) or the lifespan state (a dict, as jobs get it)."""
        get = state.__getitem__ if isinstance(state, Mapping) else lambda name: getattr(state, name)
        return cls(get("pool"), get("settings"), get("platform_key"), get("venue_engine"))


# ---------------------------------------------------------------------------- the desk


class Queued(NamedTuple):
    at: datetime
    reader_id: str
    credential: str
    decision: Decision
    floor: str | None
    door: str | None


class QueuedEvent(NamedTuple):
    at: datetime
    reader_id: str
    kind: str
    floor: str | None
    door: str | None


@dataclass
class AccessDesk:
    """Per app: decisions and door events waiting to be written, and the connected door controllers."""

    decisions: list[Queued] = field(default_factory=list)
    door_events: list[QueuedEvent] = field(default_factory=list)
    controllers: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)
    dropped: int = 0

    def _trim(self, queue: list[Any]) -> None:
        if len(queue) > MAX_PENDING:
            excess = len(queue) - MAX_PENDING
            del queue[:excess]
            self.dropped += excess
            log_.error("access records not written for too long: dropped the %d oldest", excess)

    def policy_changed(self, version: int) -> None:
        for queue in self.controllers:
            queue.put_nowait({"type": "policy_changed", "version": version})


async def load_desk(pool: asyncpg.Pool, engine: Any) -> AccessDesk:
    """The desk is made once per engine and kept across reloads."""
    return engine.parts.get("access_desk") or AccessDesk()


def _person(row: Mapping[str, Any]) -> Person:
    return Person(row["id"], row["name"], row["role"], row["user_id"], row["organisation_id"], row["expert_id"])


def _passage(row: Mapping[str, Any]) -> access.Passage:
    came_from = None if row["outside_zone"] is None else (row["floor"], row["outside_zone"])
    return access.Passage(row["person_id"], row["reader_id"], came_from, (row["floor"], row["inside_zone"]), row["at"])


async def load_policy(pool: asyncpg.Pool, engine: Any) -> access.Policy:
    """The policy from the database, with the passage memory handed on from the policy it
    replaces (or, at start-up, rebuilt by replaying the stored grants of MEMORY_HORIZON)."""
    old: access.Policy | None = engine.parts.get("policy")
    now = utc_now()
    async with pool.acquire() as conn:
        readers = [access.Reader(**dict(r)) for r in await store.readers(conn)]
        zone_kinds = {(z["floor"], z["zone_id"]): z["kind"] for z in await store.zones(conn)}
        people = [_person(p) for p in await store.people_all(conn)]
        credentials = [Credential(c["person_id"], c["kind"], c["value"], c["valid_from"], c["valid_until"])
                       for c in await store.credentials_live(conn, now - EXPIRED_KEPT)]
        rules = [AccessRule(r["id"], r["valid_from"], r["person_id"], r["role"], r["floor"], r["zone_id"], r["zone_kind"],
                            r["valid_until"], r["enter_within_seconds"], r["no_reentry"], r["session_id"])
                 for r in await store.rules_live(conn, now)]
        rules += [session_rule(s) for s in await store.session_seats(conn, LIVE_STEPS)]
        if old is None:
            memory = access.Memory()
            for row in await store.grants_since(conn, now - MEMORY_HORIZON):
                memory.apply(_passage(row))
        else:
            memory = old.memory
    memory.forget_before(now - MEMORY_HORIZON)
    policy = access.Policy.build(readers=readers, zone_kinds=zone_kinds, credentials=credentials, people=people,
                                 rules=rules, memory=memory, version=(old.version + 1) if old else 1)
    desk = engine.parts.get("access_desk")
    if desk is not None and old is not None:
        # After the engine has put the new policy in place (it does so as this returns).
        asyncio.get_running_loop().call_soon(desk.policy_changed, policy.version)
    return policy


def session_rule(seat: Mapping[str, Any]) -> AccessRule:
    """The workflow's rule for an expert seated in a live session: their room's zone, from
    sign-in until the session ends (or they are released), entered within
    SESSION_ENTER_WITHIN_SECONDS, and not re-entered after leaving if NO_REENTRY_AFTER_LEAVING."""
    return AccessRule(0, seat["signed_in_at"], person=seat["person_id"], floor=seat["floor"], zone_id=seat["zone_id"],
                      valid_until=seat["replaced_at"], enter_within_seconds=SESSION_ENTER_WITHIN_SECONDS,
                      no_reentry=NO_REENTRY_AFTER_LEAVING, session_id=seat["session_id"])


LOADERS["access_desk"] = load_desk
LOADERS["policy"] = load_policy


def _parts(engine: Any) -> tuple[access.Policy, AccessDesk]:
    policy, desk = engine.parts.get("policy"), engine.parts.get("access_desk")
    if policy is None or desk is None:
        raise AccessRefused("the access policy is not loaded yet", code="policy_not_loaded", status=503)
    return policy, desk


async def policy_changed(conn: asyncpg.Connection, what: str, **facts: Any) -> None:
    """In the transaction of a change to people, credentials or rules: every instance reloads."""
    await bus.emit(conn, TOPIC, POLICY_CHANGED, {"because": what, **facts})


# ---------------------------------------------------------------------------- fields


def text_field(body: Mapping[str, Any], name: str, limit: int, *, required: bool = True,
               pattern: re.Pattern[str] | None = None) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise bad(f"{name} must be a text of 1 to {limit} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise bad(f"{name} {value[:40]!r} has characters it may not have (letters, digits, _ . : -)")
    return value.strip()


def uuid_field(body: Mapping[str, Any], name: str, *, required: bool = True) -> uuid.UUID | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, str) and len(value) in (32, 36):
        with contextlib.suppress(ValueError):
            return uuid.UUID(value)
    raise bad(f"{name} must be a UUID")


def time_field(body: Mapping[str, Any], name: str, default: datetime | None = None) -> datetime | None:
    """An ISO 8601 time with a UTC offset, in UTC; `default` when absent."""
    value = body.get(name)
    if value is None:
        return default
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise bad(f"{name} must be an ISO 8601 time with a UTC offset, e.g. 2026-11-23T09:00:00+08:00")
    return moment.astimezone(timezone.utc)


def body_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise bad("send a JSON object")
    return body


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


async def reload_here(deps: Deps) -> None:
    """This instance sees its own change at once; the others on the bus event."""
    await deps.engine.load(deps.pool)


# ---------------------------------------------------------------------------- decisions and door events


def _tell_rules(hand_over: Any, *facts: Any) -> None:
    """The alert rules see every grant and door event (tailgating, forced doors, …); a failing
    rule is logged and never keeps a door from its answer."""
    try:
        hand_over(*facts)
    except Exception:  # noqa: BLE001 - the door's answer comes first
        log_.exception("the venue rules failed on a door %s", type(facts[0]).__name__)


def decide(engine: Any, reader_id: str, credential: str, now: datetime) -> dict[str, Any]:
    """A door decision from memory, queued for the record; the grant's passage is remembered."""
    policy, desk = _parts(engine)
    decision, passage = access.decide(policy, reader_id, credential, now)
    if passage is not None:
        policy.memory.apply(passage)
    reader = policy.readers.get(reader_id)
    desk.decisions.append(Queued(now, reader_id, credential, decision, reader and reader.floor,
                                 reader and reader.door_id))
    desk._trim(desk.decisions)
    _tell_rules(engine.on_decision, decision, reader_id, now)
    answer: dict[str, Any] = {"granted": decision.granted, "reason": decision.reason}
    person = policy.people.get(decision.person) if decision.person else None
    if person is not None:
        answer["person"] = {"id": str(person.id), "name": person.name, "role": person.role}
    return answer


def decide_request(engine: Any, data: Any, now: datetime) -> dict[str, Any]:
    body = body_object(data)
    return decide(engine, text_field(body, "reader_id", 64, pattern=READER),
                  text_field(body, "credential", 128, pattern=CREDENTIAL), now)


def record_door_events(engine: Any, items: list[Any], now: datetime) -> dict[str, Any]:
    """Queue door events ({reader_id, kind, at?}); all or none: 422 naming the first bad one."""
    policy, desk = _parts(engine)
    events = []
    for i, item in enumerate(items):
        try:
            body = body_object(item)
            reader_id = text_field(body, "reader_id", 64, pattern=READER)
            kind = body.get("kind")
            if kind not in DOOR_EVENT_KINDS:
                raise bad(f"kind must be one of {', '.join(DOOR_EVENT_KINDS)}")
            at = time_field(body, "at", now)
            if at > now + MAX_CLOCK_SKEW:
                raise bad("at is in the future: check the controller's clock")
        except AccessRefused as exc:
            raise AccessRefused(f"event {i}: {exc.message}", code=exc.code, status=exc.status,
                                detail={"index": i}) from None
        reader = policy.readers.get(reader_id)
        events.append(QueuedEvent(at, reader_id, kind, reader and reader.floor, reader and reader.door_id))
    desk.door_events.extend(events)
    desk._trim(desk.door_events)
    for e in events:
        _tell_rules(engine.on_door_event, DoorEvent(e.reader_id, e.at, e.kind), now)
    return {"stored": len(events), "unknown_readers": sorted({e.reader_id for e in events if e.floor is None})}


def decision_record(at: datetime, reader_id: str, credential: str, person: uuid.UUID | None, granted: bool,
                    reason: str) -> dict[str, Any]:
    """A decision as its batch's digest covers it."""
    return {"at": iso(at), "reader": reader_id, "credential": credential,
            "person": str(person) if person else None, "granted": granted, "reason": reason}


def door_event_record(at: datetime, reader_id: str, kind: str) -> dict[str, Any]:
    return {"at": iso(at), "reader": reader_id, "kind": kind}


def digest(records: list[dict[str, Any]]) -> str:
    return hashlib.sha256(canonical_json(records)).hexdigest()


async def _write_batch(deps: Deps, decisions: list[Queued], events: list[QueuedEvent]) -> None:
    d_records = [decision_record(q.at, q.reader_id, q.credential, q.decision.person, q.decision.granted,
                                 q.decision.reason) for q in decisions]
    e_records = [door_event_record(e.at, e.reader_id, e.kind) for e in events]
    times = [q.at for q in decisions] + [e.at for e in events]
    async with deps.pool.acquire() as conn, conn.transaction():
        entry = await log.append_entry(conn, deps.platform_key, "venue.access_batch", {
            "decisions": len(d_records), "decisions_sha256": digest(d_records),
            "door_events": len(e_records), "door_events_sha256": digest(e_records),
            "from": iso(min(times)), "to": iso(max(times))})
        if decisions:
            await store.insert_decisions(conn, [(q.at, q.reader_id, q.credential, q.decision.person, q.decision.granted,
                                                 q.decision.reason) for q in decisions], entry.index)
        if events:
            await store.insert_door_events(conn, [(e.at, e.reader_id, e.kind) for e in events], entry.index)
        await bus.emit(conn, TOPIC, "venue.access", {
            "log_index": entry.index,
            "decisions": [{"at": iso(q.at), "reader": q.reader_id, "floor": q.floor, "door": q.door,
                           "zone": q.decision.zone, "person": str(q.decision.person) if q.decision.person else None,
                           "granted": q.decision.granted, "reason": q.decision.reason} for q in decisions],
            "door_events": [{"at": iso(e.at), "reader": e.reader_id, "floor": e.floor, "door": e.door,
                             "kind": e.kind} for e in events]})


async def flush(deps: Deps) -> int:
    """Write everything queued, MAX_BATCH at a time; returns how many records were written.
    A failing batch stays queued (the job tries again) and its error is raised."""
    desk: AccessDesk | None = deps.engine.parts.get("access_desk")
    if desk is None:
        return 0
    written = 0
    async with desk.flushing:
        while desk.decisions or desk.door_events:
            decisions, events = desk.decisions[:MAX_BATCH], desk.door_events[:MAX_BATCH]
            await _write_batch(deps, decisions, events)
            # Only appends happen meanwhile (and _trim, which drops from the front only when
            # the database has been failing for long), so the batch is still at the front.
            del desk.decisions[:len(decisions)]
            del desk.door_events[:len(events)]
            written += len(decisions) + len(events)
    return written


async def batch_matches_log(deps: Deps, log_index: int) -> bool:
    """Whether the stored decisions and door events of a batch are the ones its log entry counts and hashes."""
    async with deps.pool.acquire() as conn:
        entry = await log.entry(conn, log_index)
        decisions = await store.decisions_of_batch(conn, log_index)
        events = await store.door_events_of_batch(conn, log_index)
    if entry is None or entry.kind != "venue.access_batch":
        return False
    body = entry.entry["body"]
    d_records = [decision_record(r["at"], r["reader_id"], r["credential"], r["person_id"], r["granted"], r["reason"])
                 for r in decisions]
    e_records = [door_event_record(r["at"], r["reader_id"], r["kind"]) for r in events]
    return (body["decisions"], body["decisions_sha256"], body["door_events"], body["door_events_sha256"]) == (
        len(d_records), digest(d_records), len(e_records), digest(e_records))


async def list_decisions(deps: Deps, person_id: uuid.UUID | None, reader_id: str | None, limit: int,
                         offset: int) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        rows = await store.decisions_page(conn, person_id, reader_id, limit, offset)
    return {"decisions": [{"id": r["id"], "log_index": r["log_index"],
                           **decision_record(r["at"], r["reader_id"], r["credential"], r["person_id"], r["granted"],
                                             r["reason"])} for r in rows],
            "total": rows[0]["total"] if rows else 0}
