"""Venue alerts on the real database: stored, logged and pushed together; listed for supervisors;
acknowledged once with a note; the engine's pipeline from positions to stored alerts; the
workflow the rules read (a live session's experts and parties, a tender's window without one)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
from starlette.testclient import TestClient

from tenderhall import db
from tenderhall.platform_key import load_or_create
from tenderhall.settings import Settings
from tests.factories import login, make_user, run_async, run_db
from tests.integration.test_bus import receive
from tests.session_world import make_world, ok, refused, sign_in_all
from venue import access, alerts, workflow
from venue.engine import VenueEngine
from venue.floorplan import FloorSet
from venue.model import AccessRule, Alert, Credential, Door, Floor, Person, Position, Zone
from venue.position_service import zone_lookup
from venue.rules import Assignment, Workflow
from venue.tracker import Directory, Tracker

NOW = datetime(2025, 3, 3, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai


def _alert(rule: str = "wrong_zone", at: datetime = NOW, people: tuple[uuid.UUID, ...] = ()) -> Alert:
    return Alert(rule, "high", at, f"{rule} happened", people, "F1", "room1",
                 ({"type": "position", "t": at.isoformat(), "x": "1.00", "y": "2.50"},))


def _record(settings: Settings, *items: Alert) -> list[dict[str, Any]]:
    key = load_or_create(settings.platform_key_path)

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        async with conn.transaction():
            return await alerts.record(conn, key, items)
    return run_db(settings.database_url, work)


def _person(dsn: str, name: str, role: str, **refs: Any) -> uuid.UUID:
    pid = uuid.uuid4()
    run_db(dsn, lambda c: c.execute(
        "INSERT INTO venue_people (id, name, role, user_id, organisation_id, expert_id) VALUES ($1, $2, $3, $4, $5, $6)",
        pid, name, role, refs.get("user_id"), refs.get("organisation_id"), refs.get("expert_id")))
    return pid


def test_an_alert_is_stored_logged_and_pushed_to_supervisors(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    supervisor = make_user(dsn, "supervisor")
    bidder = _person(dsn, "王五", "bidder")
    login(client, supervisor)
    with client.websocket_connect("/ws/events?topic=venue") as ws:
        [out] = _record(settings, _alert(people=(bidder,)))
        event = receive(ws)
        while event["kind"] != alerts.ALERT:
            event = receive(ws)
    assert event["payload"] == out
    assert out["people"] == [{"id": str(bidder), "name": "王五", "role": "bidder"}]
    row = run_db(dsn, lambda c: c.fetchrow("SELECT * FROM venue_alerts WHERE id = $1", out["id"]))
    assert row["log_index"] == out["log_index"] and row["people"] == [bidder]
    entry = run_db(dsn, lambda c: c.fetchrow("SELECT kind, body FROM log_entries WHERE idx = $1", out["log_index"]))
    body = json.loads(entry["body"])["body"]
    assert entry["kind"] == "venue.alert" and body["alert"] == out["id"] and body["evidence"][0]["x"] == "1.00"


def test_alerts_are_listed_newest_first_for_supervisors_and_admins_only(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    _record(settings, _alert("dwell", NOW), _alert("tag_silent", NOW + timedelta(seconds=5)),
            _alert("after_hours", NOW + timedelta(seconds=9)))
    assert client.get("/api/venue/alerts").status_code == 401
    login(client, make_user(dsn, "bidder"))
    refused(client.get("/api/venue/alerts"), 403, "role_forbidden")
    login(client, make_user(dsn, "admin"))
    listed = ok(client.get("/api/venue/alerts?per_page=2"))
    assert [a["rule"] for a in listed["alerts"]] == ["after_hours", "tag_silent"]
    assert listed["total"] == 3 and listed["pages"] == 2
    assert [a["rule"] for a in ok(client.get("/api/venue/alerts?page=2&per_page=2"))["alerts"]] == ["dwell"]
    refused(client.get("/api/venue/alerts?open=maybe"), 400, "invalid_query")


def test_alerts_carry_their_class_and_are_listed_by_class(client: TestClient, settings: Settings) -> None:
    _record(settings, _alert("expert_left_room", NOW), _alert("wrong_zone", NOW + timedelta(seconds=1)),
            _alert("door_forced", NOW + timedelta(seconds=2)), _alert("experts_meeting", NOW + timedelta(seconds=3)))
    login(client, make_user(settings.database_url, "supervisor"))
    everything = ok(client.get("/api/venue/alerts"))["alerts"]
    assert [(a["rule"], a["class"]) for a in everything] == [
        ("experts_meeting", "evaluation"), ("door_forced", "business"), ("wrong_zone", "trajectory"),
        ("expert_left_room", "evaluation")]
    evaluation = ok(client.get("/api/venue/alerts?class=evaluation&open=1"))
    assert [a["rule"] for a in evaluation["alerts"]] == ["experts_meeting", "expert_left_room"] and evaluation["total"] == 2
    assert [a["rule"] for a in ok(client.get("/api/venue/alerts?class=business"))["alerts"]] == ["door_forced"]
    refused(client.get("/api/venue/alerts?class=opening"), 400, "invalid_query")


def test_the_rules_memory_is_restored_from_the_alerts_of_the_last_hour(settings: Settings) -> None:
    bidder, expert = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(timezone.utc)
    _record(settings, _alert("wrong_zone", now - timedelta(minutes=5), (bidder,)),
            _alert("expert_near_party", now - timedelta(minutes=1), (expert, bidder)),
            _alert("wrong_zone", now - timedelta(hours=2), (expert,)))

    async def raised() -> list[Alert]:
        pool = await db.create_pool(settings.database_url, 1, 1)
        try:
            return await alerts.raised_since(pool, now - timedelta(hours=1))
        finally:
            await pool.close()
    found = run_async(raised())
    assert [(a.rule, a.people, a.zone) for a in found] == [
        ("wrong_zone", (bidder,), "room1"), ("expert_near_party", (expert, bidder), "room1")]
    rules = VenueEngine(settings).rules
    assert rules.restore(found, now) == 2
    assert set(rules.memory.open) == {("wrong_zone", bidder), ("expert_near_party", expert, bidder)}


def test_a_supervisor_acknowledges_an_alert_once_with_a_note(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    [first, second] = _record(settings, _alert("dwell"), _alert("tailgating", NOW + timedelta(seconds=1)))
    supervisor = make_user(dsn, "supervisor")
    login(client, make_user(dsn, "bidder"))
    refused(client.post(f"/api/venue/alerts/{first['id']}/ack", json={"note": "看过了"}), 403, "role_forbidden")
    login(client, supervisor)
    url = f"/api/venue/alerts/{first['id']}/ack"
    refused(client.post(url, json={}), 422, "invalid_note")
    refused(client.post(url, json={"note": "   "}), 422, "invalid_note")
    refused(client.post(url, json={"note": "x" * 1001}), 422, "invalid_note")
    refused(client.post("/api/venue/alerts/999999/ack", json={"note": "无此告警"}), 404, "alert_not_found")
    with client.websocket_connect(f"/ws/events?topic=venue&after={_last_event(dsn)}") as ws:
        acked = ok(client.post(url, json={"note": "已到现场核实，系工作人员引导"}))["alert"]
        event = receive(ws)
    assert event["kind"] == alerts.ACKNOWLEDGED and event["payload"]["id"] == first["id"]
    assert acked["note"] == "已到现场核实，系工作人员引导" and acked["acknowledged_by"] == str(supervisor.id)
    refused(client.post(url, json={"note": "again"}), 409, "already_acknowledged")
    entry = run_db(dsn, lambda c: c.fetchrow("SELECT body FROM log_entries WHERE kind = 'venue.alert_acknowledged'"))
    assert json.loads(entry["body"])["body"]["alert"] == first["id"]
    assert [a["id"] for a in ok(client.get("/api/venue/alerts?open=1"))["alerts"]] == [second["id"]]


def _last_event(dsn: str) -> int:
    return run_db(dsn, lambda c: c.fetchval("SELECT coalesce(max(id), 0) FROM events"))


# --------------------------------------------------------------------------- the engine's pipeline

def _box(x0: float, x1: float) -> tuple[tuple[float, float], ...]:
    return ((x0, 0.0), (x1, 0.0), (x1, 10.0), (x0, 10.0), (x0, 0.0))


# A hand-built floor: the hall (x < 10), the isolation corridor (10–12), the room (12–20).
ROOM = Zone("F1", "room1", "evaluation_room", "评标室1", _box(12, 20), capacity=5, closed_area=True)
CORRIDOR = Zone("F1", "iso", "isolation_corridor", "隔离通道", _box(10, 12), closed_area=True)
HALL = Zone("F1", "hall", "opening_hall", "开标厅", _box(0, 10))
FLOOR = Floor("F1", 1, "一层", (ROOM, CORRIDOR, HALL), (Door("F1", "d1", "R1", (12.0, 5.0), "room1", "iso"),))


def test_positions_through_the_engine_become_stored_and_pushed_alerts(settings: Settings) -> None:
    expert = Person(uuid.uuid4(), "张三", "expert")
    bidder = Person(uuid.uuid4(), "王五", "bidder")
    run_db(settings.database_url, lambda c: c.executemany(
        "INSERT INTO venue_people (id, name, role) VALUES ($1, $2, $3)",
        [(expert.id, expert.name, "expert"), (bidder.id, bidder.name, "bidder")]))
    since = NOW - timedelta(days=1)
    tags = [Credential(expert.id, "tag", "T-E", since), Credential(bidder.id, "tag", "T-B", since)]
    rules = [AccessRule(1, since, person=expert.id, floor="F1", zone_id=z) for z in ("room1", "iso")]
    policy = access.Policy.build(readers=[access.Reader("R1", "F1", "d1", "room1", "iso")],
                                 zone_kinds={("F1", z.id): z.kind for z in (ROOM, CORRIDOR, HALL)},
                                 credentials=tags, people=[expert, bidder], rules=rules)
    flow = Workflow(people={expert.id: expert, bidder.id: bidder},
                    experts={expert.id: Assignment(uuid.uuid4(), uuid.uuid4(), ("F1", "room1"), True)})

    def walk(tag: str, start: float, xs: list[float]) -> list[Position]:
        return [Position(tag, NOW + timedelta(seconds=start + i), "F1", x, 5.0) for i, x in enumerate(xs)]

    async def main() -> tuple[list[str], list[Any], list[str]]:
        pool = await db.create_pool(settings.database_url, 1, 2)
        engine = VenueEngine(settings)
        engine.parts.update(floors=FloorSet.of([FLOOR]), policy=policy, workflow=flow,
                            tracker=Tracker(Directory(tags, [expert, bidder]), zone_lookup(engine)))
        engine.writer = alerts.AlertWriter(settings.database_url, load_or_create(settings.platform_key_path))
        await engine.writer.start()
        try:
            raised = await engine.on_positions(walk("T-E", 0, [15, 15, 15]) + walk("T-B", 0, [5, 5, 5]), NOW)
            # The bidder walks through the corridor into the room; the expert leaves it for the hall.
            raised += await engine.on_positions(walk("T-B", 3, [11, 11, 11, 15, 15, 15]), NOW + timedelta(seconds=8))
            raised += await engine.on_positions(walk("T-E", 9, [11, 11, 11, 5, 5, 5]), NOW + timedelta(seconds=14))
            raised += engine.tick(NOW + timedelta(seconds=60))  # the bidder's tag has been silent in the room
            for _ in range(200):
                if engine.writer.written >= len(raised):
                    break
                await asyncio.sleep(0.02)
            async with pool.acquire() as conn:
                stored = await conn.fetch("SELECT rule, people FROM venue_alerts ORDER BY id")
                pushed = await conn.fetch("SELECT payload FROM events WHERE topic = 'venue' AND kind = 'venue.alert'")
        finally:
            await engine.stop()
            await pool.close()
        return [a.rule for a in raised], list(stored), [e["payload"] for e in pushed]

    raised, stored, payloads = run_async(main())
    pushed = [p["rule"] for p in payloads]
    # What each message was made of travels with it, for the map to say it in its language.
    assert (payloads[2]["phrase"], payloads[2]["params"]) == ("expert_left_room.in", {"name": "张三", "zone": HALL.name})
    assert (payloads[0]["phrase"], payloads[0]["params"]) == (
        "wrong_zone.passed", {"name": "王五", "role": "bidder", "zone": CORRIDOR.name})
    # Through the corridor (judged at its crossing) into the room: two zones the bidder may not be in.
    assert raised == ["wrong_zone", "wrong_zone", "expert_left_room", "expert_left_closed_area", "tag_silent"]
    assert [r["rule"] for r in stored] == raised == pushed
    assert stored[0]["people"] == stored[1]["people"] == [bidder.id] and stored[2]["people"] == [expert.id]


# --------------------------------------------------------------------------- the workflow


def _floor_with_rooms(dsn: str, rooms: list[str], by: uuid.UUID) -> None:
    """A floor whose evaluation-room zones are the sessions' rooms (the zones table only: the
    floors part leaves the empty plan out with a warning; the workflow reads no plan)."""
    async def work(conn: asyncpg.Connection) -> None:
        venue = await conn.fetchval("SELECT venue_id FROM venue_rooms WHERE id = $1", uuid.UUID(rooms[0]))
        floor = uuid.uuid4()
        await conn.execute("""INSERT INTO floors (id, venue_id, code, level, name, plan, transform, updated_by, updated_at)
                              VALUES ($1, $2, 'F3', 3, '三层', '{}', '{}', $3, now())""", floor, venue, by)
        await conn.executemany("""INSERT INTO zones (floor_id, zone_id, kind, name, room_id, closed_area)
                                  VALUES ($1, $2, 'evaluation_room', $2, $3, true)""",
                               [(floor, f"room{i}", uuid.UUID(r)) for i, r in enumerate(rooms)])
    run_db(dsn, work)


def _read(settings: Settings, now: datetime) -> Workflow:
    from tenderhall.data_key import load_or_create as load_data_key
    return run_db(settings.database_url, lambda c: workflow.read(
        c, lambda: load_data_key(settings.data_key_path), now))


def test_the_workflow_knows_a_live_sessions_experts_rooms_and_parties(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=2, rooms=2, bidders=1)
    sign_in_all(world)
    _floor_with_rooms(dsn, world.rooms, world.admin.id)
    experts = [_person(dsn, f"专家{i}", "expert", expert_id=e.expert_id) for i, e in enumerate(world.experts)]
    bidder = _person(dsn, "投标人代表", "bidder", organisation_id=world.hall.bidders[0].user.organisation_id)
    agent = _person(dsn, "代理", "agent", user_id=world.agent.id)
    stranger = _person(dsn, "路人", "bidder", organisation_id=make_user(dsn, "bidder").organisation_id)
    flow = _read(settings, datetime.now(timezone.utc))
    seats = [flow.experts[p] for p in experts]
    assert {s.room for s in seats} == {("F3", "room0"), ("F3", "room1")}
    assert all(s.session == uuid.UUID(world.session_id) and not s.evaluating for s in seats)  # still signing in
    tender = uuid.UUID(world.hall.id)
    assert flow.parties[bidder] == flow.parties[agent] == frozenset({tender}) and stranger not in flow.parties
    assert flow.people[bidder].name == "投标人代表"
    ok(world.act(world.agent, "advance"))  # the session opens: declarations
    assert all(s.evaluating for s in (_read(settings, datetime.now(timezone.utc)).experts[p] for p in experts))


def test_without_a_session_the_draws_window_stands_in(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=2, rooms=1, bidders=1, schedule=False)
    login(client, world.agent)
    ok(client.post(f"/api/draws/{world.draw['id']}/unseal"))
    experts = [_person(dsn, f"专家{i}", "expert", expert_id=e.expert_id) for i, e in enumerate(world.experts)]
    needed = run_db(dsn, lambda c: c.fetchval("SELECT needed_at FROM draws WHERE id = $1", uuid.UUID(world.draw["id"])))
    flow = _read(settings, datetime.now(timezone.utc))
    seat = flow.experts[experts[0]]
    assert seat.session is None and seat.room is None and seat.tender == uuid.UUID(world.hall.id)
    assert seat.window == (needed, needed + workflow.EVALUATION_WINDOW)
    assert not seat.in_progress(needed - timedelta(seconds=1)) and seat.in_progress(needed)
    assert _read(settings, needed + workflow.EVALUATION_WINDOW + timedelta(minutes=1)).experts == {}
