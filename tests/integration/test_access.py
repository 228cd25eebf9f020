"""Access control end to end on the real database: people, credentials and rules; door decisions
and door events over HTTP and the door controllers' websocket, with every refusal; the batched
record and its log entries; the rules the evaluation sessions give; 代理码 issue and scan."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tenderhall.app import create_app
from tenderhall.formatting import display_zone
from tenderhall.settings import Settings
from tests.factories import TestUser as User, login, make_organisation, make_user, run_db
from tests.integration.test_submission import tender_input
from tests.session_world import make_world, sign_in_all
from venue import access_service as svc
from venue import agent_codes

FLOOR = "F3"
# corridor C (entered from outside the floor), rooms R1 (in and out readers) and R2
DOORS = [("e-in", "d0", None, "C"), ("r1-in", "d1", "C", "R1"), ("r1-out", "d1", "R1", "C"), ("r2-in", "d2", "C", "R2")]


def seed_floor(dsn: str, admin: User, rooms: dict[str, str] | None = None) -> None:
    """Floor F3 with its zones and doors, written straight to the tables (the floor plan's own
    endpoints are another module's); `rooms` maps zone ids to the venue_rooms they are."""
    async def work(conn: Any) -> None:
        venue = await conn.fetchval("SELECT id FROM venues LIMIT 1")
        if venue is None:
            venue = uuid.uuid4()
            await conn.execute("INSERT INTO venues (id, name, region_code) VALUES ($1, '测试交易中心', '350100')", venue)
        floor = uuid.uuid4()
        await conn.execute("""INSERT INTO floors (id, venue_id, code, level, name, plan, transform, updated_by, updated_at)
                              VALUES ($1, $2, $3, 3, '三层评标区', $4, $4, $5, now())""", floor, venue, FLOOR, {}, admin.id)
        for zone, kind in (("C", "corridor"), ("R1", "evaluation_room"), ("R2", "evaluation_room")):
            room = (rooms or {}).get(zone)
            await conn.execute("""INSERT INTO zones (floor_id, zone_id, kind, name, room_id, closed_area)
                                  VALUES ($1, $2, $3, $2, $4, true)""", floor, zone, kind, room and uuid.UUID(room))
        for reader, door, outside, inside in DOORS:
            await conn.execute("""INSERT INTO doors (reader_id, floor_id, door_id, outside_zone, inside_zone)
                                  VALUES ($1, $2, $3, $4, $5)""", reader, floor, door, outside, inside)
    run_db(dsn, work)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    return response.json()["error"]


def device(client: TestClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.app_state['venue_device_token']}"}


def decide(client: TestClient, reader: str, badge: str) -> dict[str, Any]:
    return ok(client.post("/api/venue/access/decide", json={"reader_id": reader, "credential": badge},
                          headers=device(client)))


def person_with_badge(client: TestClient, name: str, badge: str, role: str = "expert", **refs: str) -> str:
    person = ok(client.post("/api/venue/people", json={"name": name, "role": role, **refs}), 201)["person"]
    ok(client.post(f"/api/venue/people/{person['id']}/credentials", json={"kind": "badge", "value": badge}), 201)
    return person["id"]


def flush(client: TestClient) -> int:
    return client.portal.call(svc.flush, svc.Deps.of(client.app_state))


@pytest.fixture
def admin(settings: Settings) -> User:
    return make_user(settings.database_url, "admin")


@pytest.fixture
def floor(settings: Settings, admin: User) -> None:
    seed_floor(settings.database_url, admin)


def test_people_and_credentials_with_their_refusals(client: TestClient, settings: Settings, admin: User) -> None:
    dsn = settings.database_url
    refused(client.post("/api/venue/people", json={"name": "甲", "role": "expert"}), 401, "login_required")
    login(client, make_user(dsn, "supervisor"))
    refused(client.post("/api/venue/people", json={"name": "甲", "role": "expert"}), 403, "role_forbidden")
    login(client, admin)
    refused(client.post("/api/venue/people", json={"name": "甲", "role": "boss"}), 422, "invalid_body")
    refused(client.post("/api/venue/people", json={"name": "甲", "role": "expert", "user_id": str(uuid.uuid4())}),
            422, "unknown_user")
    agent = make_user(dsn, "agent")
    anna = ok(client.post("/api/venue/people", json={"name": "安娜", "role": "agent", "user_id": str(agent.id)}),
              201)["person"]
    refused(client.post("/api/venue/people", json={"name": "又是她", "role": "agent", "user_id": str(agent.id)}),
            409, "user_has_person")
    bo = ok(client.post("/api/venue/people", json={"name": "博", "role": "staff"}), 201)["person"]

    now = datetime.now(timezone.utc)
    first = ok(client.post(f"/api/venue/people/{anna['id']}/credentials", json={
        "kind": "badge", "value": "CARD-1", "valid_from": now.isoformat(),
        "valid_until": (now + timedelta(days=1)).isoformat()}), 201)["credential"]
    error = refused(client.post(f"/api/venue/people/{bo['id']}/credentials", json={
        "kind": "badge", "value": "CARD-1", "valid_from": (now + timedelta(hours=23)).isoformat()}), 409,
        "credential_in_use")
    assert error["detail"]["person_id"] == anna["id"]
    # The same value as a tag, or the badge once Anna's period is over, is another binding.
    ok(client.post(f"/api/venue/people/{bo['id']}/credentials", json={"kind": "tag", "value": "CARD-1"}), 201)
    ok(client.post(f"/api/venue/people/{bo['id']}/credentials", json={
        "kind": "badge", "value": "CARD-1", "valid_from": (now + timedelta(days=1)).isoformat()}), 201)
    for bad in ({"kind": "key", "value": "X"}, {"kind": "badge", "value": "no spaces"},
                {"kind": "badge", "value": "X", "valid_from": "2026-11-23T09:00:00"},
                {"kind": "badge", "value": "X", "valid_from": now.isoformat(), "valid_until": now.isoformat()}):
        refused(client.post(f"/api/venue/people/{bo['id']}/credentials", json=bad), 422, "invalid_body")
    refused(client.post(f"/api/venue/people/{uuid.uuid4()}/credentials", json={"kind": "badge", "value": "Z"}),
            404, "person_not_found")

    listed = ok(client.get("/api/venue/people?role=agent"))
    assert listed["total"] == 1 and listed["people"][0]["user_id"] == str(agent.id)
    assert [c["value"] for c in ok(client.get(f"/api/venue/people/{anna['id']}/credentials"))["credentials"]] == ["CARD-1"]
    revoked = ok(client.post(f"/api/venue/credentials/{first['id']}/revoke"))["credential"]
    assert revoked["revoked_at"] is not None
    refused(client.post(f"/api/venue/credentials/{first['id']}/revoke"), 409, "already_revoked")
    refused(client.post("/api/venue/credentials/999999/revoke"), 404, "credential_not_found")
    kinds = run_db(dsn, lambda c: c.fetch("SELECT kind FROM log_entries WHERE kind LIKE 'venue.%' ORDER BY idx"))
    assert [k["kind"] for k in kinds] == ["venue.person_added", "venue.person_added", "venue.credential_bound",
                                          "venue.credential_bound", "venue.credential_bound",
                                          "venue.credential_revoked"]
    # A revoked binding frees the value.
    ok(client.post(f"/api/venue/people/{bo['id']}/credentials", json={"kind": "badge", "value": "CARD-1"}), 201)


def test_rules_decide_doors_over_http(floor: None, client: TestClient, settings: Settings, admin: User) -> None:
    login(client, admin)
    anna = person_with_badge(client, "安娜", "B-ANNA")
    for bad, code in (({"role": "expert", "person_id": anna, "zone_kind": "corridor"}, "invalid_body"),
                      ({"role": "expert"}, "invalid_body"),
                      ({"role": "expert", "zone_id": "R1"}, "invalid_body"),
                      ({"role": "expert", "zone_kind": "lobby"}, "invalid_body"),
                      ({"role": "expert", "floor": "F9", "zone_id": "R1"}, "unknown_floor"),
                      ({"role": "expert", "floor": FLOOR, "zone_id": "R9"}, "unknown_zone"),
                      ({"person_id": str(uuid.uuid4()), "zone_kind": "corridor"}, "unknown_person"),
                      ({"role": "expert", "zone_kind": "corridor", "enter_within_seconds": 0}, "invalid_body")):
        refused(client.post("/api/venue/access/rules", json=bad), 422, code)
    ok(client.post("/api/venue/access/rules", json={"role": "expert", "zone_kind": "corridor"}), 201)
    room = ok(client.post("/api/venue/access/rules", json={"person_id": anna, "floor": FLOOR, "zone_id": "R1",
                                                           "no_reentry": True}), 201)["rule"]
    assert (room["floor"], room["zone_id"], room["no_reentry"], room["source"]) == (FLOOR, "R1", True, "manual")
    client.cookies.clear()
    del client.headers["X-CSRF-Token"]

    assert decide(client, "r1-in", "B-ANNA") == {"granted": True, "reason": "allowed",
                                                 "person": {"id": anna, "name": "安娜", "role": "expert"}}
    assert decide(client, "r1-in", "B-ANNA")["reason"] == "anti_passback"
    assert decide(client, "r2-in", "B-ANNA")["reason"] == "not_allowed"
    assert decide(client, "r1-out", "B-ANNA")["granted"]
    assert decide(client, "r1-in", "B-ANNA")["reason"] == "no_reentry"
    assert decide(client, "nowhere", "B-ANNA") == {"granted": False, "reason": "unknown_reader"}
    assert decide(client, "r1-in", "B-NOBODY") == {"granted": False, "reason": "unknown_credential"}

    body = {"reader_id": "r1-in", "credential": "B-ANNA"}
    refused(client.post("/api/venue/access/decide", json=body), 401, "login_required")
    refused(client.post("/api/venue/access/decide", json=body, headers={"Authorization": "Bearer " + "x" * 40}),
            401, "invalid_device_token")
    refused(client.post("/api/venue/access/decide", json={"reader_id": "r1 in", "credential": "B"},
                        headers=device(client)), 422, "invalid_body")
    refused(client.post("/api/venue/access/decide", json=[body], headers=device(client)), 422, "invalid_body")
    refused(client.post("/api/venue/access/decide", content=b'{"reader_id": "x", "credential": "' + b"A" * 70_000 + b'"}',
                        headers={**device(client), "Content-Type": "application/json"}), 413, "too_large")
    login(client, make_user(settings.database_url, "supervisor"))
    refused(client.post("/api/venue/access/decide", json=body), 403, "role_forbidden")
    login(client, admin)  # an admin testing a reader from the browser: CSRF as usual
    assert ok(client.post("/api/venue/access/decide", json=body))["reason"] == "no_reentry"
    refused(client.post("/api/venue/access/decide", json=body, headers={"X-CSRF-Token": "wrong"}), 403, "csrf_failed")

    rules = ok(client.get(f"/api/venue/access/rules?person_id={anna}"))
    assert [r["id"] for r in rules["rules"]] == [room["id"]] and rules["derived"] == []
    ok(client.post(f"/api/venue/access/rules/{room['id']}/revoke"))
    refused(client.post(f"/api/venue/access/rules/{room['id']}/revoke"), 409, "already_revoked")
    refused(client.post("/api/venue/access/rules/424242/revoke"), 404, "rule_not_found")
    assert decide(client, "r1-in", "B-ANNA")["reason"] == "not_allowed"
    here = ok(client.get(f"/api/venue/people/{anna}"))["zone"]
    assert (here["floor"], here["zone_id"]) == (FLOOR, "C")


def test_door_events_one_or_a_list(floor: None, client: TestClient) -> None:
    url = "/api/venue/doors/events"
    assert ok(client.post(url, json={"reader_id": "r1-in", "kind": "forced"}, headers=device(client))) == {
        "stored": 1, "unknown_readers": []}
    at = (datetime.now(timezone.utc) - timedelta(seconds=5)).isoformat()
    assert ok(client.post(url, json=[{"reader_id": "r1-in", "kind": "opened", "at": at},
                                     {"reader_id": "x-9", "kind": "held_open"}], headers=device(client))) == {
        "stored": 2, "unknown_readers": ["x-9"]}
    error = refused(client.post(url, json=[{"reader_id": "r1-in", "kind": "opened"}, {"reader_id": "r1-in", "kind": "ajar"}],
                                headers=device(client)), 422, "invalid_body")
    assert error["detail"] == {"index": 1}
    future = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()
    refused(client.post(url, json={"reader_id": "r1-in", "kind": "opened", "at": future}, headers=device(client)),
            422, "invalid_body")
    refused(client.post(url, json=[{"reader_id": "r1-in", "kind": "closed"}] * 501, headers=device(client)),
            413, "too_many_events")
    refused(client.post(url, json={"reader_id": "r1-in", "kind": "opened"}), 401, "login_required")
    assert flush(client) >= 0
    rows = run_db(client.app_state["settings"].database_url,
                  lambda c: c.fetch("SELECT reader_id, kind, log_index FROM door_events ORDER BY id"))
    assert [(r["reader_id"], r["kind"]) for r in rows] == [("r1-in", "forced"), ("r1-in", "opened"), ("x-9", "held_open")]
    assert all(r["log_index"] is not None for r in rows)


def test_decisions_are_stored_logged_and_published_in_batches(floor: None, client: TestClient, settings: Settings,
                                                               admin: User) -> None:
    dsn = settings.database_url
    login(client, admin)
    person_with_badge(client, "安娜", "B-ANNA")
    ok(client.post("/api/venue/access/rules", json={"role": "expert", "zone_kind": "evaluation_room"}), 201)
    engine = client.app_state["venue_engine"]

    async def burst() -> int:
        # 1,200 decisions at once (as a busy minute's controllers would queue them), then written.
        now = datetime.now(timezone.utc)
        for i in range(1200):
            svc.decide(engine, ("r1-in", "r1-out", "r2-in")[i % 3], "B-ANNA" if i % 4 else "B-X", now + timedelta(
                microseconds=i))
        return await svc.flush(svc.Deps.of(client.app_state))

    before = run_db(dsn, lambda c: c.fetchval("SELECT count(*) FROM access_decisions"))
    client.portal.call(burst)
    rows = run_db(dsn, lambda c: c.fetch("SELECT log_index, count(*) AS n FROM access_decisions "
                                         "GROUP BY log_index ORDER BY log_index"))
    assert sum(r["n"] for r in rows) == before + 1200
    assert all(r["log_index"] is not None and r["n"] <= svc.MAX_BATCH for r in rows)
    assert len(rows) <= 4  # at most one batch that the job wrote before the burst, then three of ≤ 500
    deps = svc.Deps.of(client.app_state)
    for r in rows:
        assert client.portal.call(svc.batch_matches_log, deps, r["log_index"])
    # A record altered after the fact no longer matches its entry.
    tampered = rows[-1]["log_index"]
    run_db(dsn, lambda c: c.execute("UPDATE access_decisions SET reason = 'allowed', granted = true "
                                    "WHERE id = (SELECT max(id) FROM access_decisions WHERE log_index = $1 AND NOT granted)",
                                    tampered))
    assert not client.portal.call(svc.batch_matches_log, deps, tampered)

    published = run_db(dsn, lambda c: c.fetch("SELECT payload FROM events WHERE kind = 'venue.access' ORDER BY id"))
    decisions = [d for e in published for d in e["payload"]["decisions"]]
    assert len(decisions) == before + 1200
    assert decisions[-1].keys() == {"at", "reader", "floor", "door", "zone", "person", "granted", "reason"}
    assert "credential" not in decisions[-1]  # badge numbers are not broadcast
    listed = ok(client.get("/api/venue/access/decisions?per_page=5&reader_id=r2-in"))
    assert listed["total"] == 400 and all(d["reader"] == "r2-in" and d["log_index"] is not None
                                          for d in listed["decisions"])


def test_memory_survives_a_restart_through_the_stored_grants(settings: Settings, admin: User, floor: None) -> None:
    with TestClient(create_app(settings)) as client:
        login(client, admin)
        person_with_badge(client, "安娜", "B-ANNA")
        ok(client.post("/api/venue/access/rules", json={"role": "expert", "zone_kind": "evaluation_room",
                                                        "no_reentry": True}), 201)
        ok(client.post("/api/venue/access/rules", json={"role": "expert", "zone_kind": "corridor"}), 201)
        assert decide(client, "r1-in", "B-ANNA")["granted"]
        assert decide(client, "r1-out", "B-ANNA")["granted"]
        assert decide(client, "r2-in", "B-ANNA")["granted"]
    # The shutdown wrote what was queued; the new process replays the grants.
    with TestClient(create_app(settings)) as client:
        assert decide(client, "r2-in", "B-ANNA")["reason"] == "anti_passback"
        assert decide(client, "r1-in", "B-ANNA")["reason"] == "no_reentry"


def test_door_controller_websocket(floor: None, client: TestClient, settings: Settings, admin: User) -> None:
    login(client, admin)
    person_with_badge(client, "安娜", "B-ANNA")
    with client.websocket_connect("/ws/venue/doors", headers=device(client)) as ws:
        pushed: list[dict[str, Any]] = []

        def reply() -> dict[str, Any]:
            """The next answer; policy changes pushed meanwhile are kept aside."""
            while (message := ws.receive_json())["type"] == "policy_changed":
                pushed.append(message)
            return message

        ws.send_json({"id": 1, "type": "decide", "reader_id": "r1-in", "credential": "B-ANNA"})
        assert reply() == {"type": "decision", "id": 1, "granted": False, "reason": "not_allowed",
                           "person": ws_person(client)}
        # A rule added by an admin reaches the controller as a policy change, then decides.
        seen = len(pushed)
        ok(client.post("/api/venue/access/rules", json={"role": "expert", "zone_kind": "evaluation_room"}), 201)
        pushed.append(ws.receive_json())
        assert pushed[seen]["type"] == "policy_changed" and pushed[seen]["version"] > 1
        ws.send_json({"id": 2, "type": "decide", "reader_id": "r1-in", "credential": "B-ANNA"})
        assert (lambda r: (r["id"], r["granted"]))(reply()) == (2, True)
        ws.send_json({"id": 3, "type": "door_event", "reader_id": "r1-in", "kind": "opened"})
        assert reply() == {"type": "door_events", "id": 3, "stored": 1, "unknown_readers": []}
        ws.send_json({"id": 4, "type": "open_sesame"})
        assert reply()["error"]["code"] == "unknown_type"
        ws.send_text("not json")
        assert reply() == {"type": "error", "id": None, "error": {
            "code": "bad_message", "message": "a message is a JSON object"}}
        ws.send_json({"id": 5, "type": "decide", "reader_id": "", "credential": "B"})
        assert reply()["error"]["code"] == "invalid_body"
    def close_code(headers: dict[str, str]) -> int:
        with pytest.raises(WebSocketDisconnect) as closed:
            with client.websocket_connect("/ws/venue/doors", headers=headers) as ws:
                ws.receive_json()
        return closed.value.code

    client.cookies.clear()
    assert [close_code({}), close_code({"Authorization": "Bearer wrong-token-" + "x" * 30})] == [4401, 4401]
    login(client, make_user(settings.database_url, "supervisor"))
    assert close_code({}) == 4403


def ws_person(client: TestClient) -> dict[str, Any]:
    listed = ok(client.get("/api/venue/people"))["people"][0]
    return {"id": listed["id"], "name": listed["name"], "role": listed["role"]}


def test_an_expert_may_enter_their_sessions_room_from_sign_in(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=3, rooms=3)
    seed_floor(dsn, world.admin, rooms={"R1": world.rooms[0], "R2": world.rooms[1]})
    expert, late = world.experts[:2]  # sign in at rooms[0] and rooms[1]
    login(client, world.admin)
    person_with_badge(client, "专家甲", "B-EXPERT", expert_id=str(expert.expert_id))
    person_with_badge(client, "专家乙", "B-LATE", expert_id=str(late.expert_id))
    assert decide(client, "r1-in", "B-EXPERT")["reason"] == "not_allowed"  # not before sign-in

    sign_in_all(world)
    give_up = time.monotonic() + 10
    while (answer := decide(client, "r1-in", "B-EXPERT"))["reason"] == "not_allowed" and time.monotonic() < give_up:
        time.sleep(0.05)  # the policy reloads when the bus brings the sign-in
    assert answer["granted"], answer
    assert decide(client, "r2-in", "B-EXPERT")["reason"] == "not_allowed"  # another session room
    login(client, world.admin)
    derived = ok(client.get("/api/venue/access/rules"))["derived"]
    assert sorted((d["zone_id"], d["session_id"], d["enter_within_seconds"], d["no_reentry"]) for d in derived) == [
        (zone, world.session_id, svc.SESSION_ENTER_WITHIN_SECONDS, svc.NO_REENTRY_AFTER_LEAVING) for zone in ("R1", "R2")]

    engine, pool = client.app_state["venue_engine"], client.app_state["pool"]
    # Signed in more than five minutes ago and not in the room yet: too late.
    run_db(dsn, lambda c: c.execute("UPDATE session_members SET signed_in_at = signed_in_at - $2::interval "
                                    "WHERE expert_id = $1", late.expert_id,
                                    timedelta(seconds=svc.SESSION_ENTER_WITHIN_SECONDS + 1)))
    client.portal.call(engine.load, pool)
    assert decide(client, "r2-in", "B-LATE")["reason"] == "entry_window_passed"
    # Once the session has ended (here: suspended), its rooms are nobody's.
    assert decide(client, "r1-in", "B-EXPERT")["reason"] == "anti_passback"  # she is inside R1
    run_db(dsn, lambda c: c.execute("UPDATE eval_sessions SET step = 'suspended' WHERE id = $1",
                                    uuid.UUID(world.session_id)))
    client.portal.call(engine.load, pool)
    assert decide(client, "r1-in", "B-EXPERT")["reason"] == "not_allowed"


def test_agent_codes_issue_and_scan(client: TestClient, settings: Settings, admin: User) -> None:
    dsn = settings.database_url
    agency = make_organisation(dsn, kind="agency")
    agent = make_user(dsn, "agent", organisation_id=agency)
    login(client, agent)
    tender = ok(client.post("/api/tenders", json=tender_input([], 0, decryption_rule="void")), 201)["tender"]
    other = ok(client.post("/api/tenders", json=tender_input([], 0, decryption_rule="void")), 201)["tender"]
    login(client, admin)
    staff = ok(client.post("/api/venue/people", json={"name": "代理员工", "role": "agent",
                                                       "organisation_id": str(agency)}), 201)["person"]
    elsewhere = ok(client.post("/api/venue/people", json={
        "name": "别家代理员工", "role": "agent", "organisation_id": str(make_organisation(dsn, kind="agency"))}),
        201)["person"]
    visitor = ok(client.post("/api/venue/people", json={"name": "访客", "role": "visitor"}), 201)["person"]
    today = datetime.now(display_zone(settings.display_timezone)).date()

    login(client, agent)
    body = {"tender_id": tender["id"], "person_id": staff["id"], "valid_on": today.isoformat()}
    issued = ok(client.post("/api/venue/agent-codes", json=body), 201)
    code = issued["code"]
    assert len(code) == 26 and issued["qr_payload"] == "THAC1:" + code
    assert issued["qr_svg"] == agent_codes.qr_svg(issued["qr_payload"])
    tomorrow = ok(client.post("/api/venue/agent-codes", json={**body, "valid_on": (today + timedelta(days=1)).isoformat()}),
                  201)["code"]
    refused(client.post("/api/venue/agent-codes", json={**body, "person_id": visitor["id"]}), 422, "not_an_agent")
    refused(client.post("/api/venue/agent-codes", json={**body, "person_id": elsewhere["id"]}), 403, "not_your_staff")
    refused(client.post("/api/venue/agent-codes", json={**body, "valid_on": "2020-01-01"}), 422, "invalid_body")
    refused(client.post("/api/venue/agent-codes", json={**body, "valid_on": "tomorrow"}), 422, "invalid_body")
    refused(client.post("/api/venue/agent-codes", json={**body, "tender_id": str(uuid.uuid4())}), 404, "tender_not_found")
    login(client, make_user(dsn, "agent"))
    refused(client.post("/api/venue/agent-codes", json=body), 403, "not_your_tender")
    login(client, make_user(dsn, "bidder"))
    refused(client.post("/api/venue/agent-codes/scan", json={"code": code}), 403, "role_forbidden")

    login(client, admin)  # the centre's staff at the entrance
    scan = "/api/venue/agent-codes/scan"
    accepted = ok(client.post(scan, json={"code": issued["qr_payload"], "tender_id": tender["id"]}))
    assert (accepted["accepted"], accepted["reason"], accepted["tender"]["id"], accepted["person"]["id"]) == (
        True, "accepted", tender["id"], staff["id"])
    assert ok(client.post(scan, json={"code": code.lower()}))["accepted"]  # typed by hand
    assert ok(client.post(scan, json={"code": code, "tender_id": other["id"]}))["reason"] == "wrong_project"
    assert ok(client.post(scan, json={"code": tomorrow}))["reason"] == "wrong_day"
    unknown = ok(client.post(scan, json={"code": "THAC1:" + "A" * 26}))
    assert (unknown.keys(), unknown["accepted"], unknown["reason"]) == ({"accepted", "reason", "scan_id"}, False,
                                                                        "unknown_code")
    assert ok(client.post(scan, json={"code": "???"}))["reason"] == "unknown_code"
    refused(client.post(scan, json={"code": 7}), 422, "invalid_body")
    refused(client.post(scan, json={"code": code, "tender_id": str(uuid.uuid4())}), 404, "tender_not_found")

    scans = run_db(dsn, lambda c: c.fetch("SELECT accepted, reason, tender_id FROM agent_code_scans ORDER BY id"))
    assert [(s["accepted"], s["reason"]) for s in scans] == [
        (True, "accepted"), (True, "accepted"), (False, "wrong_project"), (False, "wrong_day"), (False, "unknown_code"),
        (False, "unknown_code")]
    assert str(scans[2]["tender_id"]) == other["id"]
    logged = run_db(dsn, lambda c: c.fetchval("SELECT count(*) FROM log_entries WHERE kind = 'venue.agent_code_scanned'"))
    assert logged == 6
    stored = run_db(dsn, lambda c: c.fetchval("SELECT count(*) FROM agent_codes WHERE code_hash = sha256($1::bytea)",
                                              code.encode()))
    assert stored == 1
    listed = ok(client.get(f"/api/venue/agent-codes?tender_id={tender['id']}"))["codes"]
    assert [c["accepted_scans"] for c in listed] == [2, 0] and "code" not in listed[0]


def test_agent_codes_page_offers_the_agents_tenders_and_staff(client: TestClient, settings: Settings,
                                                              admin: User) -> None:
    dsn = settings.database_url
    agency = make_organisation(dsn, kind="agency")
    agent = make_user(dsn, "agent", organisation_id=agency)
    login(client, agent)
    tender = ok(client.post("/api/tenders", json=tender_input([], 0, decryption_rule="void")), 201)["tender"]
    login(client, make_user(dsn, "agent"))
    theirs = ok(client.post("/api/tenders", json=tender_input([], 0, decryption_rule="void")), 201)["tender"]
    login(client, admin)
    staff = ok(client.post("/api/venue/people", json={"name": "代理员工乙", "role": "agent",
                                                       "organisation_id": str(agency)}), 201)["person"]
    ok(client.post("/api/venue/people", json={"name": "别家代理员工乙", "role": "agent"}), 201)
    ok(client.post("/api/venue/people", json={"name": "访客乙", "role": "visitor"}), 201)

    login(client, agent)
    page = client.get("/venue/agent-codes")
    assert page.status_code == 200, page.text
    assert 'id="issue-form"' in page.text and 'id="scan-form"' in page.text
    assert f'value="{tender["id"]}"' in page.text and f'value="{theirs["id"]}"' not in page.text
    assert f'value="{staff["id"]}"' in page.text and "访客乙" not in page.text
    assert "别家代理员工乙" not in page.text  # another agency's staff
    login(client, admin)
    assert "别家代理员工乙" in client.get("/venue/agent-codes").text
    assert '/static/venue/agent_codes.js' in page.text and 'href="/venue/agent-codes"' in page.text

    login(client, make_user(dsn, "bidder"))
    forbidden = client.get("/venue/agent-codes")
    assert forbidden.status_code == 403 and 'data-code="role_forbidden"' in forbidden.text
    assert 'href="/venue/agent-codes"' not in forbidden.text
