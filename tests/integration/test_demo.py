"""`tenderhall demo` seeds a usable world: every role can log in, tenders in several states, sealed bids."""

from __future__ import annotations

import asyncio
import re
import uuid

from starlette.testclient import TestClient

from tenderhall import audit, demo, keyfile
from evaluation.notifier import read_outbox
from tenderhall.settings import Settings
from tests.factories import run_db
from trading import key_wrap, sealing
from trading.manifest import validate_manifest


def test_demo_seeds_every_role_tenders_and_verifiable_bids(settings: Settings, capsys) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(demo.seed(settings))
    printed = capsys.readouterr().out
    assert "custodian-centre" in printed and demo.PASSWORD in printed

    from tenderhall.app import create_app

    with TestClient(create_app(settings)) as client:
        for username, _, roles, _ in demo.USERS:
            response = client.post("/api/session", json={"username": username, "password": demo.PASSWORD})
            assert response.status_code == 200, username
            assert sorted(response.json()["user"]["roles"]) == sorted(roles)
        tenders = client.get("/api/tenders").json()["tenders"]
        assert {t["code"] for t in tenders} >= {"FZ-2026-GC-001", "FZ-2026-GC-003", "FZ-2026-FW-002"}

        client.post("/api/session", json={"username": "bidder-minjiang", "password": demo.PASSWORD})
        client.headers["X-CSRF-Token"] = client.get("/api/session").json()["csrf_token"]
        bids = client.get("/api/bids").json()["bids"]
        assert len(bids) == 2
        for bid in bids:
            receipt = client.get(f"/api/bids/{bid['id']}/receipt").json()
            assert receipt["bid"] == bid["id"]

        # The pool and the two draws: the drawn one verifies; the printed secret runs the other.
        client.post("/api/session", json={"username": "agent", "password": demo.PASSWORD})
        client.headers["X-CSRF-Token"] = client.get("/api/session").json()["csrf_token"]
        draws = {d["title"]: d for d in client.get("/api/draws").json()["draws"]}
        assert {d["status"] for d in draws.values()} == {"drawn", "scheduled"}
        drawn = next(d for d in draws.values() if d["status"] == "drawn")
        assert client.get(f"/api/draws/{drawn['id']}/verification").json()["ok"] is True
        scheduled = next(d for d in draws.values() if d["status"] == "scheduled")
        secret = re.search(rf"/draws/{scheduled['id']} .*: (\S+)", printed).group(1)
        assert client.post(f"/api/draws/{scheduled['id']}/run", json={"secret": secret}).status_code == 200
        assert len(read_outbox(settings.notification_outbox_path)) == 5 + 2
        assert run_db(settings.database_url, lambda c: c.fetchval("SELECT count(*) FROM experts")) == 3000

    # The printed key file really opens the bidder's stored bid: nothing in the demo is fake.
    key_file = settings.data_dir / "demo-keys" / "bidder-minjiang.keys.json"
    held = keyfile.decrypt_keyfile(key_file.read_bytes(), demo.KEY_PASSPHRASE)
    row = run_db(settings.database_url, lambda c: c.fetchrow(
        "SELECT u.manifest, b.tender_id, b.upload_id FROM bids b JOIN uploads u ON u.id = b.upload_id "
        "WHERE b.id = $1", uuid.UUID(bids[0]["id"])))
    manifest = validate_manifest(row["manifest"])
    content_key = key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, held.decrypt)
    stored = settings.storage_dir / "bids" / str(row["tender_id"]) / f"{row['upload_id']}.bin"
    with stored.open("rb") as fh:
        opened = sealing.open_bid(fh, content_key, manifest)
    assert opened.summary["quality"] == "合格"

    assert asyncio.run(audit.run_verify(settings.database_url, settings)) == 0
    asyncio.run(demo.seed(settings))
    assert "already there" in capsys.readouterr().out


def test_demo_seeds_fujian_venues_once_and_prints_how_to_schedule_the_session(settings: Settings, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from evaluation import demo_venues
    from evaluation.draw_service import Deps
    from tenderhall import accounts, db
    from tenderhall.app import create_app
    from tenderhall.data_key import load_or_create as load_data_key
    from tenderhall.platform_key import load_or_create as load_platform_key

    asyncio.run(demo.seed(settings))
    printed = capsys.readouterr().out
    assert "/sessions" in printed and "/venues" in printed and "福州市公共资源交易中心" in printed

    with TestClient(create_app(settings)) as client:
        client.post("/api/session", json={"username": "staff-xiamen", "password": demo.PASSWORD})
        venues = {v["region_code"]: v for v in client.get("/api/venues").json()["venues"]}
        assert set(venues) == {region for _, region, _, _ in demo_venues.VENUES}
        assert {"350100", "350200", "350500", "350600", "350300", "350400", "350800"} <= set(venues)
        assert len(venues["350100"]["rooms"]) >= 4
        for region, venue in venues.items():
            assert venue["name"] in printed
            if region != "350100":
                assert 1 <= len(venue["rooms"]) <= 3, venue
            assert all(5 <= room["seats"] <= 9 for room in venue["rooms"]), venue
        # Each venue went through the admin's use case: one log entry apiece.
        assert run_db(settings.database_url, lambda c: c.fetchval(
            "SELECT count(*) FROM log_entries WHERE kind = 'venue.created'")) == len(demo_venues.VENUES)

        # No session: the demo's opening has not closed. The printed body is the one to send once
        # it has; sent now, it is refused for exactly that reason.
        assert run_db(settings.database_url, lambda c: c.fetchval("SELECT count(*) FROM eval_sessions")) == 0
        line = next(line for line in printed.splitlines() if line.strip().startswith('{"tender_id"'))
        body = json.loads(line)
        staff = {r["staff_id"] for r in body["rooms"]}
        assert len(body["rooms"]) == 3 and len(staff) == 3
        client.post("/api/session", json={"username": "agent", "password": demo.PASSWORD})
        client.headers["X-CSRF-Token"] = client.get("/api/session").json()["csrf_token"]
        assert client.get("/api/sessions").json()["sessions"] == []
        refused = client.post("/api/sessions", json=body)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "opening_not_closed", refused.text

    async def seed_again() -> dict[str, int]:
        pool = await db.create_pool(settings.database_url, 1, 2)
        try:
            async with pool.acquire() as conn:
                admin = await accounts.get_user(conn, await conn.fetchval("SELECT id FROM users WHERE username = 'admin'"))
            deps = Deps(pool, settings, load_platform_key(settings.platform_key_path),
                        load_data_key(settings.data_key_path))
            return await demo_venues.seed_demo_venues(deps, admin)
        finally:
            await pool.close()

    assert asyncio.run(seed_again()) == {"created": 0, "existing": len(demo_venues.VENUES)}
    assert asyncio.run(audit.run_verify(settings.database_url, settings)) == 0
