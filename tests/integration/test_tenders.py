"""Tenders: create, validate, publish, change, re-confirmation; who may see and manage what."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from starlette.testclient import TestClient

from tenderhall.canonical import b64url
from tests.factories import login, make_user, run_db
from tests.integration.test_submission import SUMMARY, make_world, register_keys, submit, tender_input
from tenderhall.keyfile import key_id
from trading.tenders import confirmation_message


def _error(response) -> str:  # type: ignore[no-untyped-def]
    return response.json()["error"]["code"]


def test_agent_creates_and_publishes_a_tender(client: TestClient, database_url: str) -> None:
    agent = make_user(database_url, "agent")
    custodians = [make_user(database_url, "custodian") for _ in range(3)]
    keys = [register_keys(client, c) for c in custodians]
    login(client, agent)
    r = client.post("/api/tenders", json=tender_input(custodians, 2))
    assert r.status_code == 201, r.text
    tender = r.json()["tender"]
    assert tender["status"] == "draft" and tender["budget"] == "100000000.00"
    assert [l["code"] for l in tender["lots"]] == ["L1", "L2"]
    assert tender["summary_fields"][0]["name"] == "price"
    # A draft is invisible to others, even in the list.
    other = make_user(database_url, "agent")
    login(client, other)
    assert client.get(f"/api/tenders/{tender['id']}").status_code == 404
    assert client.get("/api/tenders").json()["total"] == 0
    assert client.post(f"/api/tenders/{tender['id']}/publish").status_code == 404
    login(client, agent)
    r = client.post(f"/api/tenders/{tender['id']}/publish")
    assert r.status_code == 200, r.text
    published = r.json()["tender"]
    assert published["status"] == "published"
    assert [c["decrypt_key_id"] for c in published["custodians"]] == [
        key_id(k.decrypt.public_key()) for k in keys]
    entry = run_db(database_url, lambda c: c.fetchrow("SELECT kind, body FROM log_entries WHERE idx = $1",
                                                       published["log_index"]))
    assert entry["kind"] == "tender.published" and tender["code"] in entry["body"]
    events = run_db(database_url, lambda c: c.fetch("SELECT kind FROM events WHERE topic = $1",
                                                     f"tender:{tender['id']}"))
    assert [e["kind"] for e in events] == ["tender.published"]
    # Published: visible to anyone, even without login; publishing twice is refused.
    assert client.post(f"/api/tenders/{tender['id']}/publish").status_code == 409
    client.cookies.clear()
    anon = client.get(f"/api/tenders/{tender['id']}")
    assert anon.status_code == 200 and anon.json()["tender"]["bids_received"] == 0
    listing = client.get("/api/tenders", params={"per_page": 1}).json()
    assert listing["total"] == 1 and listing["tenders"][0]["id"] == tender["id"]


def test_invalid_terms_are_refused_precisely(client: TestClient, database_url: str) -> None:
    agent = make_user(database_url, "agent")
    custodians = [make_user(database_url, "custodian") for _ in range(2)]
    login(client, agent)
    cases = [
        ({"budget": "12.345"}, "budget"),
        ({"budget": 100.5}, "budget"),
        ({"budget": "-1"}, "budget"),
        ({"budget": "abc"}, "budget"),
        ({"control_price": "200000000.00"}, "control_price"),
        ({"threshold": 3}, "threshold"),
        ({"threshold": 0}, "threshold"),
        ({"decryption_minutes": 4}, "decryption_minutes"),
        ({"lots": []}, "lots"),
        ({"evaluation_method": "cheapest"}, "evaluation_method"),
        ({"deadline": "2030-01-01T09:00:00"}, "deadline"),
        ({"decryption_rule": "void"}, "threshold"),
    ]
    for change, field in cases:
        r = client.post("/api/tenders", json={**tender_input(custodians, 2), **change})
        assert r.status_code == 422, (change, r.text)
        assert r.json()["error"]["code"] == "invalid_tender"
        assert field in r.json()["error"]["message"], (change, r.text)
    # Someone who is not a custodian.
    stranger = make_user(database_url, "agent")
    r = client.post("/api/tenders", json=tender_input([custodians[0], stranger], 2))
    assert r.status_code == 422 and _error(r) == "not_a_custodian"
    # Rule void with no custodians is fine.
    r = client.post("/api/tenders", json=tender_input([], 0, decryption_rule="void"))
    assert r.status_code == 201, r.text
    # Duplicate code.
    data = tender_input(custodians, 2)
    assert client.post("/api/tenders", json=data).status_code == 201
    r = client.post("/api/tenders", json=data)
    assert r.status_code == 409 and _error(r) == "duplicate_code"
    # Malformed JSON.
    r = client.post("/api/tenders", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_publication_needs_custodian_keys_and_a_future_deadline(client: TestClient, database_url: str) -> None:
    agent = make_user(database_url, "agent")
    custodians = [make_user(database_url, "custodian") for _ in range(2)]
    register_keys(client, custodians[0])
    login(client, agent)
    tid = client.post("/api/tenders", json=tender_input(custodians, 2)).json()["tender"]["id"]
    r = client.post(f"/api/tenders/{tid}/publish")
    assert r.status_code == 422 and _error(r) == "custodian_without_keys"
    register_keys(client, custodians[1])
    login(client, agent)
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    tid2 = client.post("/api/tenders", json=tender_input(custodians, 2, deadline=past)).json()["tender"]["id"]
    r = client.post(f"/api/tenders/{tid2}/publish")
    assert r.status_code == 422 and _error(r) == "deadline_in_past"
    assert client.post(f"/api/tenders/{tid}/publish").status_code == 200


def test_wrong_role_cannot_create_or_publish(client: TestClient, database_url: str) -> None:
    bidder = make_user(database_url, "bidder")
    login(client, bidder)
    r = client.post("/api/tenders", json=tender_input([], 0, decryption_rule="void"))
    assert r.status_code == 403 and _error(r) == "role_forbidden"
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    r = client.post("/api/tenders", json={})
    assert r.status_code == 401


def test_changes_bump_the_version_and_need_reconfirmation(client: TestClient, database_url: str) -> None:
    world = make_world(client, database_url)
    done = submit(client, world)
    tid = world.tender["id"]
    login(client, world.agent)
    # Changes are refused on drafts and for other agents.
    other = make_user(database_url, "agent")
    r = client.post(f"/api/tenders/{tid}/changes", json={"kind": "clarification", "text": "说明"})
    assert r.status_code == 201, r.text
    assert r.json()["change"]["version"] == 2
    later = (datetime.fromisoformat(world.tender["deadline"].replace("Z", "+00:00")) + timedelta(days=1)).isoformat()
    r = client.post(f"/api/tenders/{tid}/changes", json={"kind": "deadline_extension", "deadline": later})
    assert r.status_code == 201 and r.json()["change"]["version"] == 3
    r = client.post(f"/api/tenders/{tid}/changes", json={"kind": "deadline_extension",
                                                          "deadline": world.tender["deadline"]})
    assert r.status_code == 422
    tender = client.get(f"/api/tenders/{tid}").json()["tender"]
    assert tender["version"] == 3 and [c["kind"] for c in tender["changes"]] == ["clarification", "deadline_extension"]
    kinds = run_db(database_url, lambda c: c.fetch("SELECT kind FROM log_entries WHERE kind = 'tender.changed'"))
    assert len(kinds) == 2
    login(client, other)
    assert client.post(f"/api/tenders/{tid}/changes", json={"kind": "clarification", "text": "x"}).status_code == 404

    login(client, world.bidder)
    bid = client.get("/api/bids").json()["bids"][0]
    assert bid["needs_confirmation"] and bid["current_tender_version"] == 3
    message = confirmation_message(done["bid"], tid, 3, bid["manifest_sha256"])
    r_, s_ = decode_dss_signature(world.bidder_keys.sign.sign(message, ec.ECDSA(hashes.SHA256())))
    wrong = confirmation_message(done["bid"], tid, 2, bid["manifest_sha256"])
    wr, ws = decode_dss_signature(world.bidder_keys.sign.sign(wrong, ec.ECDSA(hashes.SHA256())))
    r = client.post(f"/api/bids/{done['bid']}/confirm", json={"signature": b64url(wr.to_bytes(32, "big") + ws.to_bytes(32, "big"))})
    assert r.status_code == 422 and _error(r) == "bad_signature"
    r = client.post(f"/api/bids/{done['bid']}/confirm", json={"signature": b64url(r_.to_bytes(32, "big") + s_.to_bytes(32, "big"))})
    assert r.status_code == 200, r.text
    assert not client.get("/api/bids").json()["bids"][0]["needs_confirmation"]
    r = client.post(f"/api/bids/{done['bid']}/confirm", json={"signature": b64url(r_.to_bytes(32, "big") + s_.to_bytes(32, "big"))})
    assert r.status_code == 409 and _error(r) == "confirmation_not_needed"
    # A new bid after the change is made under version 3 and needs nothing.
    again = submit(client, world, summary={**SUMMARY, "price": "1.00"})
    assert [b["needs_confirmation"] for b in client.get("/api/bids").json()["bids"] if b["id"] == again["bid"]] == [False]


def test_pages_render(client: TestClient, database_url: str) -> None:
    world = make_world(client, database_url)
    assert "L1" in client.get(f"/tenders/{world.tender['id']}").text
    r = client.get(f"/tenders/{world.tender['id']}/bid")
    assert r.status_code == 200 and "submit.js" in r.text
    assert client.get("/tenders").status_code == 200
    login(client, world.agent)
    r = client.get("/tenders/new")
    assert r.status_code == 200 and "tender_form.js" in r.text
    assert client.get(f"/tenders/{uuid.uuid4()}").status_code == 404
