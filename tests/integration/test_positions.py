"""Positions end to end on the real database: the device endpoint and websocket (tokens, limits,
per-record errors, idempotent re-sends, day partitions), the retention, the tracker rebuilt after
a restart, and the supervisors' live, trajectory and heatmap reads."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tenderhall import db
from tenderhall.app import create_app
from tenderhall.settings import Settings
from tests.factories import login, make_user, run_async, run_db
from venue import position_service, position_store
from venue.model import Position

TOKEN = "positioning-system-token-0123456789"
DEVICE = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def device_settings(settings: Settings) -> Settings:
    return settings.with_(venue_device_token=TOKEN)


@pytest.fixture
def app_client(device_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(device_settings)) as client:
        yield client


def add_person(dsn: str, name: str, role: str, tag: str) -> uuid.UUID:
    """A venue person carrying `tag` since a day ago."""
    person = uuid.uuid4()

    async def work(conn: Any) -> None:
        await conn.execute("INSERT INTO venue_people (id, name, role) VALUES ($1, $2, $3)", person, name, role)
        await conn.execute("INSERT INTO credentials (person_id, kind, value, valid_from) VALUES ($1, 'tag', $2, $3)",
                           person, tag, datetime.now(timezone.utc) - timedelta(days=1))
    run_db(dsn, work)
    return person


def record(tag: str, seconds_ago: float, x: float, y: float = 2.0, floor: str = "F1") -> dict[str, Any]:
    moment = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return {"tag": tag, "t": moment.isoformat(), "x": x, "y": y, "floor": floor}


def post(client: TestClient, records: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post("/api/venue/positions", content=json.dumps(records), headers={
        "Content-Type": "application/json", **DEVICE, **(headers or {})})


def stored(dsn: str) -> int:
    return run_db(dsn, lambda conn: conn.fetchval("SELECT count(*) FROM positions"))


def reload_tracker(client: TestClient) -> None:
    """What a policy_changed event does: every part reloaded (a new credential is seen)."""
    engine = client.app_state["venue_engine"]
    client.portal.call(engine.load, client.app_state["pool"])


def test_only_devices_and_admins_may_send_positions(app_client: TestClient, device_settings: Settings) -> None:
    body = json.dumps([record("T1", 1, 1.0)])
    json_type = {"Content-Type": "application/json"}
    refused = app_client.post("/api/venue/positions", content=body, headers=json_type)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "login_required")
    wrong = app_client.post("/api/venue/positions", content=body, headers={**json_type, "Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_device_token")
    assert wrong.headers["www-authenticate"].startswith("Bearer")

    login(app_client, make_user(device_settings.database_url, "bidder"))
    forbidden = app_client.post("/api/venue/positions", content=body, headers=json_type)
    assert (forbidden.status_code, forbidden.json()["error"]["code"]) == (403, "role_forbidden")

    login(app_client, make_user(device_settings.database_url, "admin"))
    assert app_client.post("/api/venue/positions", content=body, headers=json_type).json()["accepted"] == 1
    del app_client.headers["X-CSRF-Token"]  # an admin's session without the CSRF token is refused
    assert app_client.post("/api/venue/positions", content=body, headers=json_type).status_code == 403


def test_oversized_and_unreadable_batches_are_refused_whole(app_client: TestClient, device_settings: Settings) -> None:
    huge = app_client.post("/api/venue/positions", content=b"[" + b" " * (4 * 2**20) + b"]",
                           headers={"Content-Type": "application/json", **DEVICE})
    assert (huge.status_code, huge.json()["error"]["code"]) == (413, "too_large")
    many = post(app_client, [record("T1", 1, 1.0)] * 10_001)
    assert (many.status_code, many.json()["error"]["code"]) == (413, "too_many_records")
    text = app_client.post("/api/venue/positions", content=b"[]", headers={"Content-Type": "text/plain", **DEVICE})
    assert text.status_code == 415
    broken = app_client.post("/api/venue/positions", content=b"[{", headers={"Content-Type": "application/json", **DEVICE})
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "malformed_json")
    assert stored(device_settings.database_url) == 0


def test_bad_records_are_reported_and_good_ones_stored(app_client: TestClient, device_settings: Settings) -> None:
    good = record("T1", 2, 1.0)
    response = post(app_client, [good, {"tag": "T1", "x": 1, "y": 1, "floor": "F1"}, record("T1", 1, 2.0),
                                 dict(good, floor="no such floor!")])
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "rejected": 2, "duplicate": False, "errors": [
        {"index": 1, "error": "t is required"},
        {"index": 3, "error": "floor must be a floor code: 1 to 40 letters, digits, '_', '.' or '-'"}]}
    assert stored(device_settings.database_url) == 2

    ndjson = "\n".join([json.dumps(record("T2", 1, 3.0)), "{oops", ""]).encode()
    lines = app_client.post("/api/venue/positions", content=ndjson,
                            headers={"Content-Type": "application/x-ndjson", **DEVICE}).json()
    assert (lines["accepted"], lines["errors"][0]["index"]) == (1, 1)
    assert stored(device_settings.database_url) == 3


def test_a_resent_batch_is_answered_again_and_stored_once(app_client: TestClient, device_settings: Settings) -> None:
    batch = [record("T1", 3, 1.0), record("T1", 2, 1.5), {"tag": "T1"}]
    first = post(app_client, batch).json()
    again = post(app_client, batch).json()
    assert first["duplicate"] is False and again == dict(first, duplicate=True)
    assert stored(device_settings.database_url) == 2

    # With a key, the key names the batch, whatever its bytes (a re-send re-serialised).
    keyed = post(app_client, [record("T1", 1, 2.0)], {"Idempotency-Key": "dev-1/42"}).json()
    rekeyed = post(app_client, [record("T1", 0.5, 2.0)], {"Idempotency-Key": "dev-1/42"}).json()
    assert (keyed["duplicate"], rekeyed["duplicate"], rekeyed["accepted"]) == (False, True, 1)
    assert stored(device_settings.database_url) == 3
    assert post(app_client, [], {"Idempotency-Key": "bad key"}).json()["error"]["code"] == "invalid_idempotency_key"


def test_day_partitions_are_made_on_demand_also_under_concurrency(app_client: TestClient,
                                                                  device_settings: Settings) -> None:
    now = datetime.now(timezone.utc)
    yesterday = (now - timedelta(days=1)).replace(hour=23, minute=59, second=59)
    late = {"tag": "T1", "t": yesterday.isoformat(), "x": 1, "y": 1, "floor": "F1"}
    assert post(app_client, [record("T1", 0, 1.0), late]).json()["accepted"] == 2  # one statement
    before = now - timedelta(days=2)
    large = [record("T2", i / 1000, 1.0) for i in range(700)] + [dict(late, t=before.isoformat())]  # a COPY
    assert post(app_client, large).json() == {"accepted": 701, "rejected": 0, "errors": [], "duplicate": False}
    assert post(app_client, large).json()["duplicate"] is True
    assert stored(device_settings.database_url) == 703
    names = run_db(device_settings.database_url, position_store.partitions)
    assert {position_store.partition_name(d.date()) for d in (now, yesterday, before)} <= set(names)

    days = [date(2031, 1, 1) + timedelta(days=n) for n in range(3)]

    async def race() -> list[list[date]]:
        conns = [await db.connect(device_settings.database_url) for _ in range(4)]
        try:
            return await asyncio.gather(*(position_store.ensure_partitions(c, days) for c in conns))
        finally:
            for c in conns:
                await c.close()

    made = run_async(race())
    assert sorted(d for each in made for d in each) == days  # each made once, none failed
    run_db(device_settings.database_url, lambda c: position_store.drop_partitions_before(
        c, datetime(2031, 1, 5, tzinfo=timezone.utc)))


def test_the_retention_drops_old_partitions_and_forgets_old_batches(device_settings: Settings) -> None:
    now = datetime.now(timezone.utc)
    old_day, kept_day = (now - timedelta(days=40)).date(), (now - timedelta(days=29)).date()

    async def setup(conn: Any) -> None:
        await position_store.ensure_partitions(conn, [old_day, kept_day])
        await position_store.copy_positions(conn, [
            Position("T1", now - timedelta(days=40), "F1", 1.0, 1.0),
            Position("T1", now - timedelta(days=29), "F1", 1.0, 1.0)])
        await position_store.claim_batch(conn, "sha256:old", now - timedelta(days=3), 1, 0, [])
        await position_store.claim_batch(conn, "sha256:new", now - timedelta(hours=1), 1, 0, [])
    run_db(device_settings.database_url, setup)

    from venue.position_jobs import JOBS

    async def run_jobs() -> None:
        pool = await db.create_pool(device_settings.database_url, 1, 2)
        try:
            for job in JOBS:
                await job(None, {"pool": pool, "settings": device_settings})
        finally:
            await pool.close()
    run_async(run_jobs())

    names = run_db(device_settings.database_url, position_store.partitions)
    assert position_store.partition_name(old_day) not in names
    assert position_store.partition_name(kept_day) in names
    assert stored(device_settings.database_url) == 1
    batches = run_db(device_settings.database_url, lambda c: c.fetch("SELECT batch_id FROM position_batches"))
    assert [r["batch_id"] for r in batches] == ["sha256:new"]


def test_the_live_map_shows_tracked_people_to_supervisors(app_client: TestClient, device_settings: Settings) -> None:
    dsn = device_settings.database_url
    alice = add_person(dsn, "Alice", "expert", "TAG-A")
    reload_tracker(app_client)
    post(app_client, [record("TAG-A", 3 - i * 0.5, 1.0 + i) for i in range(5)] + [record("UNBOUND", 1, 9.0)])

    login(app_client, make_user(dsn, "supervisor"))
    live = app_client.get("/api/venue/live").json()
    [entry] = live["people"]
    assert (entry["person"], entry["name"], entry["role"], entry["floor"], entry["x"], entry["tag"]) == (
        str(alice), "Alice", "expert", "F1", 5.0, "TAG-A")
    assert entry["trail"] == [[1.0 + i, 2.0] for i in range(5)]
    assert entry["last_seen"] > entry["since"]

    login(app_client, make_user(dsn, "bidder"))
    for path in ("/api/venue/live", f"/api/venue/people/{alice}/trajectory", "/api/venue/heatmap?floor=F1"):
        refused = app_client.get(path)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "role_forbidden"), path


def test_moved_people_reach_the_venue_topic(app_client: TestClient, device_settings: Settings) -> None:
    dsn = device_settings.database_url
    add_person(dsn, "Bob", "bidder", "TAG-B")
    reload_tracker(app_client)
    login(app_client, make_user(dsn, "supervisor"))
    with app_client.websocket_connect("/ws/events?topic=venue") as events:
        post(app_client, [record("TAG-B", 1, 4.0, 5.0)])
        while (event := events.receive_json())["kind"] != "venue.positions":
            pass
    [moved] = event["payload"]["people"]
    assert (moved["name"], moved["role"], moved["x"], moved["y"], moved["floor"]) == ("Bob", "bidder", 4.0, 5.0, "F1")


def test_the_tracker_is_rebuilt_after_a_restart(device_settings: Settings) -> None:
    dsn = device_settings.database_url
    carol = add_person(dsn, "Carol", "expert", "TAG-C")
    with TestClient(create_app(device_settings)) as client:
        post(client, [record("TAG-C", 30 - i, float(i)) for i in range(25)])
    with TestClient(create_app(device_settings)) as client:
        state = client.app_state["venue_engine"].parts["tracker"].state(carol)
    assert state is not None
    assert (state.x, len(state.trail), state.trail[0].x) == (24.0, 20, 5.0)


def test_a_trajectory_is_thinned_to_twenty_thousand_points(app_client: TestClient, device_settings: Settings) -> None:
    dsn = device_settings.database_url
    dave = add_person(dsn, "Dave", "agent", "TAG-D")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - timedelta(minutes=50)

    async def fill(conn: Any) -> None:
        await position_store.ensure_partitions(conn, sorted({start.date(), now.date()}))
        await position_store.copy_positions(conn, [
            Position("TAG-D", start + timedelta(milliseconds=100 * i), "F1", float(i % 50), 1.0) for i in range(25_000)]
            + [Position("TAG-X", start, "F1", 0.0, 0.0)])
    run_db(dsn, fill)

    login(app_client, make_user(dsn, "supervisor"))
    period = {"from": (start - timedelta(seconds=1)).isoformat(), "to": now.isoformat()}
    whole = app_client.get(f"/api/venue/people/{dave}/trajectory", params=period).json()
    assert (whole["total"], whole["downsampled"]) == (25_000, True)
    assert 12_000 <= len(whole["points"]) <= 20_000
    assert whole["points"][0]["t"] < whole["points"][-1]["t"]

    few = app_client.get(f"/api/venue/people/{dave}/trajectory",
                         params={"from": start.isoformat(), "to": (start + timedelta(seconds=1)).isoformat()}).json()
    assert (few["total"], few["downsampled"], [p["x"] for p in few["points"]]) == (10, False, [float(i) for i in range(10)])

    assert app_client.get(f"/api/venue/people/{uuid.uuid4()}/trajectory").status_code == 404
    assert app_client.get("/api/venue/people/not-a-uuid/trajectory").status_code == 404
    for bad in ({"from": "yesterday"}, {"from": now.isoformat(), "to": start.isoformat()},
                {"from": (now - timedelta(days=8)).isoformat()}):
        assert app_client.get(f"/api/venue/people/{dave}/trajectory", params=bad).status_code == 400, bad


def test_the_heatmap_counts_positions_per_cell(app_client: TestClient, device_settings: Settings) -> None:
    dsn = device_settings.database_url
    post(app_client, [record("T1", 3, 0.5, 0.5), record("T1", 2, 0.7, 0.2), record("T2", 2, 1.5, 0.5),
                      record("T2", 1, 3.9, 2.1), record("T3", 1, 0.5, 0.5, floor="F2")])
    login(app_client, make_user(dsn, "supervisor"))
    cells = app_client.get("/api/venue/heatmap", params={"floor": "F1"}).json()["cells"]
    assert cells == [{"x": 0.0, "y": 0.0, "count": 2}, {"x": 1.0, "y": 0.0, "count": 1}, {"x": 3.0, "y": 2.0, "count": 1}]
    coarse = app_client.get("/api/venue/heatmap", params={"floor": "F1", "cell": "2"}).json()["cells"]
    assert coarse == [{"x": 0.0, "y": 0.0, "count": 3}, {"x": 2.0, "y": 2.0, "count": 1}]
    for bad in ({}, {"floor": "F1", "cell": "0"}, {"floor": "F1", "cell": "nan"}, {"floor": "F1", "to": "x"}):
        assert app_client.get("/api/venue/heatmap", params=bad).status_code == 400, bad


def test_the_websocket_takes_batches_with_the_token(app_client: TestClient, device_settings: Settings) -> None:
    batch = json.dumps([record("T1", 2, 1.0), {"tag": "T1"}])
    with app_client.websocket_connect("/ws/venue/positions", headers=DEVICE) as ws:
        ws.send_text(batch)
        assert ws.receive_json() == {"accepted": 1, "rejected": 1, "duplicate": False,
                                     "errors": [{"index": 1, "error": "t is required"}]}
        ws.send_bytes(batch.encode())
        assert ws.receive_json()["duplicate"] is True
        ws.send_text(json.dumps(record("T1", 1, 2.0)) + "\n" + json.dumps(record("T1", 0.5, 2.5)))
        assert ws.receive_json()["accepted"] == 2
        ws.send_text('[{"not": "a batch"')
        assert ws.receive_json()["error"]["code"] == "malformed_json"
    assert stored(device_settings.database_url) == 3

    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(WebSocketDisconnect) as refused:
            with app_client.websocket_connect("/ws/venue/positions", headers=headers) as ws:
                ws.receive_text()
        assert refused.value.code == 4401
    login(app_client, make_user(device_settings.database_url, "supervisor"))
    with pytest.raises(WebSocketDisconnect) as refused:
        with app_client.websocket_connect("/ws/venue/positions") as ws:
            ws.receive_text()
    assert refused.value.code == 4403


def test_the_service_acts_through_the_engine_when_it_has_rules() -> None:
    """With `on_positions` (the rules' entry) the engine tracks and judges; its alerts come back."""
    seen: list[Any] = []

    class Engine:
        parts: dict[str, Any] = {}

        async def on_positions(self, positions: Any, now: datetime) -> list[str]:
            seen.append((list(positions), now))
            return ["an alert"]

    now = datetime.now(timezone.utc)
    positions = [Position("T1", now, "F1", 1.0, 1.0)]
    assert run_async(position_service.act_on(Engine(), positions, now)) == ["an alert"]
    assert seen == [(positions, now)]


def square(zone_id: str, kind: str, x0: float, y0: float, side: float) -> dict[str, Any]:
    ring = [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]
    return {"type": "Feature", "id": zone_id, "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"feature_type": "unit", "kind": kind, "name": zone_id}}


def test_positions_on_a_planned_floor_are_in_plan_metres_and_zones(app_client: TestClient,
                                                                  device_settings: Settings) -> None:
    dsn = device_settings.database_url
    erin = add_person(dsn, "Erin", "staff", "TAG-E")
    login(app_client, make_user(dsn, "admin"))
    venue = app_client.post("/api/venues", json={"name": "Bench centre", "region_code": "350100", "rooms": []})
    assert venue.status_code in (200, 201), venue.text
    # The positioning system's metres are the plan's shifted by (100, 0).
    floor = app_client.post("/api/venue/floors", json={
        "venue_id": venue.json()["id"], "code": "P1", "level": 1, "name": "Plan floor",
        "transform": {"dx": -100.0},
        "plan": {"type": "FeatureCollection", "features": [square("hall", "opening_hall", 0, 0, 10),
                                                           square("lobby", "waiting_area", 10, 0, 10)]}})
    assert floor.status_code in (200, 201), floor.text
    reload_tracker(app_client)

    fixes = [dict(record("TAG-E", 5 - i, 105.0 if i < 2 else 115.0, 5.0, floor="P1")) for i in range(5)]
    assert post(app_client, fixes).json()["accepted"] == 5
    state = app_client.app_state["venue_engine"].parts["tracker"].state(erin)
    assert (state.zone_floor, state.zone, state.x) == ("P1", "lobby", 15.0)
    xs = run_db(dsn, lambda c: c.fetch("SELECT x FROM positions WHERE tag_id = 'TAG-E' ORDER BY t"))
    assert [r["x"] for r in xs] == [5.0, 5.0, 15.0, 15.0, 15.0]
