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
