"""Floor plans through the API and the page: save and replace with versions, precise refusals,
the zones and doors rows, the log entry and the bus event, the engine's floors part, the demo floor."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from typing import Any

from starlette.testclient import TestClient

from tenderhall import audit, db
from tenderhall.platform_key import load_or_create as load_platform_key
from tenderhall.settings import Settings
from tests.factories import login, make_user, run_db
from venue import demo_floor, floor_service
from venue.engine import VenueEngine

FUZHOU = demo_floor.VENUE


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, response.text
    return error


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def small_plan(room_id: str | None = None, reader: str = "T-ROOM") -> dict[str, Any]:
    """A corridor (entered from the street) and an evaluation room north of it."""
    room_props = {"feature_type": "unit", "kind": "evaluation_room", "name": "评标室", "closed_area": True,
                  **({"room_id": room_id} if room_id else {})}
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "corridor", "geometry": {"type": "Polygon", "coordinates": [rect(0, 0, 12, 2.5)]},
         "properties": {"feature_type": "unit", "kind": "corridor", "name": "走廊"}},
        {"type": "Feature", "id": "room", "geometry": {"type": "Polygon", "coordinates": [rect(0, 2.5, 6, 10.5)]},
         "properties": room_props},
        {"type": "Feature", "id": "door-room", "geometry": {"type": "Point", "coordinates": [3, 2.5]},
         "properties": {"feature_type": "door", "reader_id": reader, "inside_zone": "room", "outside_zone": "corridor"}},
        {"type": "Feature", "id": "door-street", "geometry": {"type": "Point", "coordinates": [0, 1.25]},
         "properties": {"feature_type": "door", "reader_id": f"{reader}-ST", "inside_zone": "corridor"}},
    ]}


def admin_client(client: TestClient, settings: Settings) -> None:
    login(client, make_user(settings.database_url, "admin"))


def make_venue(client: TestClient, name: str = FUZHOU, rooms: tuple[str, ...] = ("1号评标室",)) -> dict[str, Any]:
    """As the logged-in admin: a venue with rooms; {id, rooms: {name: id}}."""
    made = ok(client.post("/api/venues", json={"name": name, "region_code": "350100",
                                               "rooms": [{"name": r, "seats": 7} for r in rooms]}), 201)
    return {"id": made["id"], "rooms": dict(zip(rooms, made["rooms"]))}


def new_floor(venue_id: str, code: str = "T-1F", level: int = 1, **overrides: Any) -> dict[str, Any]:
    return {"venue_id": venue_id, "code": code, "level": level, "name": "一层", "plan": small_plan(),
            "transform": {"scale": 1, "rotation_deg": 2.5, "dx": 1.5, "dy": -0.5}, **overrides}


def scalar(settings: Settings, sql: str, *args: Any) -> Any:
    return run_db(settings.database_url, lambda c: c.fetchval(sql, *args))


def log_bodies(settings: Settings, kind: str) -> list[dict[str, Any]]:
    rows = run_db(settings.database_url, lambda c: c.fetch("SELECT body FROM log_entries WHERE kind = $1 ORDER BY idx", kind))
    return [json.loads(r["body"])["body"] for r in rows]


# ---------------------------------------------------------------------------- saving and reading


def test_an_admin_saves_a_floor_and_every_reader_sees_it(client: TestClient, settings: Settings) -> None:
    admin_client(client, settings)
    venue = make_venue(client)
    body = new_floor(venue["id"], plan=small_plan(room_id=venue["rooms"]["1号评标室"]))
    response = client.post("/api/venue/floors", json=body)
    saved = ok(response, 201)["floor"]
    assert response.headers["location"] == "/api/venue/floors/T-1F"
    assert (saved["version"], saved["zones"], saved["doors"]) == (1, 2, 2)
    assert saved["plan_sha256"] == floor_service.plan_digest(body["plan"])

    # The zones and doors rows are the plan's.
    zones = run_db(settings.database_url, lambda c: c.fetch(
        "SELECT zone_id, kind, closed_area, room_id::text FROM zones ORDER BY zone_id"))
    assert [tuple(z) for z in zones] == [("corridor", "corridor", False, None),
                                         ("room", "evaluation_room", True, venue["rooms"]["1号评标室"])]
    doors = run_db(settings.database_url, lambda c: c.fetch(
        "SELECT reader_id, door_id, outside_zone, inside_zone FROM doors ORDER BY reader_id"))
    assert [tuple(d) for d in doors] == [("T-ROOM", "door-room", "corridor", "room"),
                                         ("T-ROOM-ST", "door-street", None, "corridor")]
    # Logged with the plan's digest; announced on the venue topic.
    [entry] = log_bodies(settings, "venue.floor_saved")
    assert entry["plan_sha256"] == saved["plan_sha256"] and entry["floor"] == "T-1F" and entry["version"] == 1
    assert scalar(settings, "SELECT count(*) FROM events WHERE topic = 'venue' AND kind = 'venue.policy_changed' "
                            "AND payload->>'floor' = 'T-1F'") == 1
    # This instance's engine has the floor at once (transform included).
    part = client.app_state["venue_engine"].parts["floors"]
    assert part.zone_at("T-1F", 3, 5).id == "room" and part.doors["T-ROOM"].inside_zone == "room"
    assert part.floors["T-1F"].transform.rotation_deg == 2.5
    assert part.rooms[uuid.UUID(venue["rooms"]["1号评标室"])].id == "room"

    for role in ("agent", "supervisor"):
        login(client, make_user(settings.database_url, role))
        [listed] = ok(client.get("/api/venue/floors"))["floors"]
        assert (listed["code"], listed["venue_name"], listed["zones"], listed["doors"]) == ("T-1F", FUZHOU, 2, 2)
        detail = ok(client.get("/api/venue/floors/T-1F"))["floor"]
        assert detail["plan"] == body["plan"] and detail["transform"]["dx"] == 1.5 and detail["version"] == 1
        assert detail["plan_sha256"] == saved["plan_sha256"]
    refused(client.post("/api/venue/floors", json=new_floor(venue["id"], code="T-2F", level=2)), 403, "role_forbidden")
    login(client, make_user(settings.database_url, "bidder"))
    refused(client.get("/api/venue/floors"), 403, "role_forbidden")


def test_replacing_a_plan_needs_the_current_version_and_rewrites_zones_and_doors(client: TestClient,
                                                                                 settings: Settings) -> None:
    admin_client(client, settings)
    venue = make_venue(client)
    ok(client.post("/api/venue/floors", json=new_floor(venue["id"])), 201)
    smaller = small_plan()
    smaller["features"] = [f for f in smaller["features"] if f["id"] in ("corridor", "door-street")]
    replaced = ok(client.put("/api/venue/floors/T-1F", json={"version": 1, "plan": smaller, "name": "一层(改)"}))["floor"]
    assert (replaced["version"], replaced["zones"], replaced["doors"], replaced["name"]) == (2, 1, 1, "一层(改)")
    assert scalar(settings, "SELECT array_agg(zone_id) FROM zones") == ["corridor"]
    assert scalar(settings, "SELECT array_agg(reader_id) FROM doors") == ["T-ROOM-ST"]
    # The transform was not sent: kept.
    assert ok(client.get("/api/venue/floors/T-1F"))["floor"]["transform"]["rotation_deg"] == 2.5
    assert client.app_state["venue_engine"].parts["floors"].zone_at("T-1F", 3, 5) is None

    error = refused(client.put("/api/venue/floors/T-1F", json={"version": 1, "plan": small_plan()}), 409,
                    "version_conflict")
    assert error["detail"] == {"version": 2}
    refused(client.put("/api/venue/floors/NOPE", json={"version": 1, "plan": small_plan()}), 404, "floor_not_found")
    refused(client.get("/api/venue/floors/NOPE"), 404, "floor_not_found")
    refused(client.put("/api/venue/floors/T-1F", json={"plan": small_plan()}), 422, "invalid_field")
    assert [e["version"] for e in log_bodies(settings, "venue.floor_saved")] == [1, 2]


def test_an_invalid_plan_is_refused_with_the_feature_and_nothing_is_written(client: TestClient, settings: Settings) -> None:
    admin_client(client, settings)
    venue = make_venue(client)
    bad = small_plan()
    bad["features"][2]["geometry"]["coordinates"] = [3, 6]  # in the middle of the room
    error = refused(client.post("/api/venue/floors", json=new_floor(venue["id"], plan=bad)), 422, "plan_invalid")
    assert error["detail"]["code"] == "door_off_boundary" and error["detail"]["feature"] == "door-room"
    assert "door-room" in error["message"] and "3.00 m" in error["detail"]["message"]

    unclosed = small_plan()
    unclosed["features"][1]["geometry"]["coordinates"][0].pop()
    error = refused(client.post("/api/venue/floors", json=new_floor(venue["id"], plan=unclosed)), 422, "plan_invalid")
    assert error["detail"]["code"] == "ring_not_closed" and error["detail"]["feature"] == "room"

    error = refused(client.post("/api/venue/floors", json=new_floor(venue["id"], transform={"scale": 0})), 422,
                    "plan_invalid")
    assert error["detail"]["code"] == "bad_transform"
    for field, value in (("code", "bad code!"), ("level", "3"), ("name", ""), ("venue_id", "x")):
        error = refused(client.post("/api/venue/floors", json={**new_floor(venue["id"]), field: value}), 422,
                        "invalid_field")
        assert error["detail"] == {"field": field}
    refused(client.post("/api/venue/floors", json=new_floor(str(uuid.uuid4()))), 422, "unknown_venue")
    assert scalar(settings, "SELECT count(*) FROM floors") == 0
    assert scalar(settings, "SELECT count(*) FROM log_entries WHERE kind = 'venue.floor_saved'") == 0


def test_a_plan_over_two_mebibytes_is_refused(client: TestClient, settings: Settings) -> None:
    admin_client(client, settings)
    venue = make_venue(client)
    body = new_floor(venue["id"])
    body["plan"]["padding"] = "x" * (floor_service.PLAN_MAX_BYTES + 1)
    refused(client.post("/api/venue/floors", json=body), 413, "too_large")


def test_codes_levels_rooms_and_readers_are_checked_against_what_exists(client: TestClient, settings: Settings) -> None:
    admin_client(client, settings)
    venue = make_venue(client)
    other = make_venue(client, "厦门市公共资源交易中心", ("远程异地评标室",))
    ok(client.post("/api/venue/floors", json=new_floor(venue["id"], plan=small_plan(venue["rooms"]["1号评标室"]))), 201)
    refused(client.post("/api/venue/floors", json=new_floor(venue["id"], level=2)), 409, "floor_exists")
    refused(client.post("/api/venue/floors", json=new_floor(venue["id"], code="T-1F-B", plan=small_plan(reader="B"))),
            409, "level_taken")

    def second(plan: dict[str, Any]) -> dict[str, Any]:
        return refused(client.post("/api/venue/floors", json=new_floor(venue["id"], code="T-2F", level=2, plan=plan)),
                       422, "plan_invalid")["detail"]

    detail = second(small_plan())  # the same reader ids as floor T-1F
    assert (detail["code"], detail["feature"]) == ("reader_taken", "door-room") and "T-1F" in detail["message"]
    detail = second(small_plan(room_id=venue["rooms"]["1号评标室"], reader="R2"))
    assert (detail["code"], detail["feature"]) == ("room_taken", "room")
    detail = second(small_plan(room_id=other["rooms"]["远程异地评标室"], reader="R2"))
    assert detail["code"] == "room_of_other_venue"
    detail = second(small_plan(room_id=str(uuid.uuid4()), reader="R2"))
    assert detail["code"] == "unknown_room"
    ok(client.post("/api/venue/floors", json=new_floor(venue["id"], code="T-2F", level=2, plan=small_plan(reader="R2"))),
       201)
    assert set(client.app_state["venue_engine"].parts["floors"].floors) == {"T-1F", "T-2F"}


# ---------------------------------------------------------------------------- the engine's part


def test_the_loader_parses_only_changed_plans_and_leaves_out_a_broken_one(client: TestClient, settings: Settings) -> None:
    admin_client(client, settings)
    venue = make_venue(client)
    ok(client.post("/api/venue/floors", json=new_floor(venue["id"])), 201)
    ok(client.post("/api/venue/floors", json=new_floor(venue["id"], code="T-2F", level=2, plan=small_plan(reader="R2"))),
       201)
    # A floor written around the API (as other tests and tools do), with no valid plan.
    run_db(settings.database_url, lambda c: c.execute(
        """INSERT INTO floors (id, venue_id, code, level, name, plan, transform, updated_by, updated_at)
           SELECT $1, venue_id, 'RAW', 9, 'raw', '{}', '{}', updated_by, now() FROM floors LIMIT 1""", uuid.uuid4()))

    async def reload_twice() -> tuple[Any, Any, Any]:
        pool = await db.create_pool(settings.database_url, 1, 2)
        try:
            engine = VenueEngine(settings)
            first = await floor_service.load_floors(pool, engine)
            engine.parts["floors"] = first
            same = await floor_service.load_floors(pool, engine)
            async with pool.acquire() as conn:
                await conn.execute("UPDATE floors SET version = version + 1, name = '二层(改)' WHERE code = 'T-2F'")
            changed = await floor_service.load_floors(pool, engine)
            return first, same, changed
        finally:
            await pool.close()

    first, same, changed = asyncio.run(reload_twice())
    assert set(first.floors) == {"T-1F", "T-2F"} and "RAW" in first.versions
    assert same is first
    assert changed.floors["T-1F"] is first.floors["T-1F"] and changed.floors["T-2F"].name == "二层(改)"


# ---------------------------------------------------------------------------- the page


def test_the_floors_page_draws_each_plan_and_offers_admins_the_editor(client: TestClient, settings: Settings) -> None:
    admin_client(client, settings)
    venue = make_venue(client)
    ok(client.post("/api/venue/floors", json=new_floor(venue["id"])), 201)
    page = client.get("/venue/floors")
    assert page.status_code == 200
    assert page.text.count("<polygon") == 2 and page.text.count("<circle") >= 2
    assert 'data-feature="door-room"' in page.text and 'data-url="/api/venue/floors/T-1F"' in page.text
    assert "/static/venue/floors.js" in page.text and 'data-url="/api/venue/floors"' in page.text
    assert client.get("/static/venue/floors.js").status_code == 200

    login(client, make_user(settings.database_url, "supervisor"))
    page = client.get("/venue/floors")
    assert page.status_code == 200 and "<polygon" in page.text and "floors.js" not in page.text
    login(client, make_user(settings.database_url, "agent"))
    assert client.get("/venue/floors").status_code == 403


# ---------------------------------------------------------------------------- the demo floor


def test_the_demo_floor_is_seeded_once_on_the_fuzhou_venue_with_every_room_linked(client: TestClient,
                                                                                   settings: Settings) -> None:
    admin = make_user(settings.database_url, "admin")
    login(client, admin)
    venue = make_venue(client, rooms=("1号评标室", "2号评标室", "3号评标室", "4号评标室", "远程异地评标室"))
    signer = load_platform_key(settings.platform_key_path)

    saved = run_db(settings.database_url, lambda c: demo_floor.seed_demo_floor(c, signer, admin.id))
    assert saved is not None and saved["code"] == "FZ-3F" and saved["venue_id"] == venue["id"]
    assert run_db(settings.database_url, lambda c: demo_floor.seed_demo_floor(c, signer, admin.id)) is None

    rooms = {r["name"]: str(r["id"]) for r in run_db(settings.database_url, lambda c: c.fetch(
        "SELECT id, name FROM venue_rooms WHERE venue_id = $1", uuid.UUID(venue["id"])))}
    assert set(rooms) == {"1号评标室", "2号评标室", "3号评标室", "4号评标室", "5号评标室", "6号评标室", "远程异地评标室"}
    assert {k: v for k, v in rooms.items() if k in venue["rooms"]} == venue["rooms"]  # the existing ones kept
    linked = run_db(settings.database_url, lambda c: c.fetch(
        "SELECT room_id::text FROM zones WHERE kind = 'evaluation_room'"))
    assert sorted(r["room_id"] for r in linked) == sorted(rooms.values())
    assert len(log_bodies(settings, "venue.rooms_added")) == 1
    detail = ok(client.get("/api/venue/floors/FZ-3F"))["floor"]
    assert detail["level"] == 3 and detail["transform"]["rotation_deg"] == demo_floor.DEMO_TRANSFORM.rotation_deg

    # The stored plan is the one demo_floor_plan() makes (with the room ids), and it saves again as is.
    assert detail["plan"] == demo_floor.demo_floor_plan({k: uuid.UUID(v) for k, v in rooms.items()})
    again = ok(client.put("/api/venue/floors/FZ-3F", json={"version": 1, "plan": copy.deepcopy(detail["plan"])}))
    assert again["floor"]["plan_sha256"] == saved["plan_sha256"]
    assert asyncio.run(audit.run_verify(settings.database_url, settings)) == 0
