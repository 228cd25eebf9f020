"""Key registration: bidders and custodians register P-256 public keys; rotation; the log."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from starlette.testclient import TestClient

from tenderhall.settings import Settings
from tests.factories import login, make_user, run_db


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def spki(key) -> bytes:  # type: ignore[no-untyped-def]
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def p256() -> bytes:
    return spki(ec.generate_private_key(ec.SECP256R1()))


def key_set_body() -> dict[str, str]:
    return {"sign_spki": b64url(p256()), "decrypt_spki": b64url(p256())}


def test_bidder_registers_keys_for_its_organisation(client: TestClient, settings: Settings) -> None:
    bidder = make_user(settings.database_url, "bidder")
    login(client, bidder)
    body = key_set_body()
    response = client.post("/api/keys", json=body)
    assert response.status_code == 201, response.text
    key_set = response.json()["key_set"]
    assert key_set["organisation_id"] == str(bidder.organisation_id) and key_set["custodian_id"] is None
    sign_der = base64.urlsafe_b64decode(body["sign_spki"] + "==")
    assert key_set["sign_key_id"] == hashlib.sha256(sign_der).hexdigest()
    assert key_set["sign_spki"] == body["sign_spki"] and key_set["active"] is True
    listed = client.get("/api/keys").json()
    assert [s["id"] for s in listed["key_sets"]] == [key_set["id"]]
    assert listed["owner"] == f"organisation:{bidder.organisation_id}"


def test_colleague_in_the_same_organisation_sees_the_same_keys(client: TestClient, settings: Settings) -> None:
    first = make_user(settings.database_url, "bidder")
    second = make_user(settings.database_url, "bidder", organisation_id=first.organisation_id)
    login(client, first)
    key_set_id = client.post("/api/keys", json=key_set_body()).json()["key_set"]["id"]
    login(client, second)
    assert [s["id"] for s in client.get("/api/keys").json()["key_sets"]] == [key_set_id]


def test_custodian_registers_keys_for_itself(client: TestClient, settings: Settings) -> None:
    custodian = make_user(settings.database_url, "custodian")
    login(client, custodian)
    response = client.post("/api/keys", json=key_set_body())
    assert response.status_code == 201
    assert response.json()["key_set"]["custodian_id"] == str(custodian.id)
    assert response.json()["key_set"]["organisation_id"] is None


def test_rotation_revokes_the_old_set(client: TestClient, settings: Settings) -> None:
    bidder = make_user(settings.database_url, "bidder")
    login(client, bidder)
    old = client.post("/api/keys", json=key_set_body()).json()["key_set"]
    new = client.post("/api/keys", json=key_set_body())
    assert new.status_code == 201
    assert new.json()["revoked"] == [old["id"]]
    sets = client.get("/api/keys").json()["key_sets"]
    assert [(s["id"], s["active"]) for s in sets] == [(new.json()["key_set"]["id"], True), (old["id"], False)]
    assert sets[1]["revoked_at"] is not None
    # The revoked set stays readable, for checking signatures made while it was active.
    again = client.get(f"/api/keys/{old['id']}")
    assert again.status_code == 200 and again.json()["key_set"]["active"] is False


def test_registration_is_in_the_transparency_log_and_audit(client: TestClient, settings: Settings) -> None:
    bidder = make_user(settings.database_url, "bidder")
    login(client, bidder)
    first = client.post("/api/keys", json=key_set_body()).json()
    second = client.post("/api/keys", json=key_set_body()).json()
    rows = run_db(settings.database_url, lambda c: c.fetch("SELECT idx, kind, body FROM log_entries ORDER BY idx"))
    assert [r["kind"] for r in rows] == ["keys.registered", "keys.registered"]
    assert [r["idx"] for r in rows] == [first["log_index"], second["log_index"]]
    logged = json.loads(rows[1]["body"])["body"]
    assert logged["key_set_id"] == second["key_set"]["id"]
    assert logged["owner"] == f"organisation:{bidder.organisation_id}"
    assert logged["sign_key_id"] == second["key_set"]["sign_key_id"]
    assert logged["decrypt_key_id"] == second["key_set"]["decrypt_key_id"]
    assert logged["revokes"] == [first["key_set"]["id"]]
    audits = run_db(settings.database_url, lambda c: c.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'keys.registered' AND actor_id = $1", bidder.id))
    assert audits == 2


def test_any_user_may_read_a_key_set(client: TestClient, settings: Settings) -> None:
    bidder, expert = make_user(settings.database_url, "bidder"), make_user(settings.database_url, "expert")
    login(client, bidder)
    key_set = client.post("/api/keys", json=key_set_body()).json()["key_set"]
    login(client, expert)
    response = client.get(f"/api/keys/{key_set['id']}")
    assert response.status_code == 200 and response.json()["key_set"] == key_set
    assert client.get(f"/api/keys/{uuid.uuid4()}").status_code == 404
    bad = client.get("/api/keys/not-a-uuid")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_path"


def _secp384() -> bytes:
    return spki(ec.generate_private_key(ec.SECP384R1()))


def _compressed() -> bytes:
    """A P-256 SPKI holding a compressed point: the same key in a second encoding (so a second id)."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    full = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    algorithm = full[2:4 + full[3]]  # the AlgorithmIdentifier SEQUENCE, header included
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    body = algorithm + bytes([0x03, len(point) + 1, 0x00]) + point
    return bytes([0x30, len(body)]) + body


BAD_KEYS = [
    ("garbage", lambda: b64url(b"this is not a key at all"), "not_spki", "sign_spki is not a DER SubjectPublicKeyInfo public key"),
    ("wrong curve", lambda: b64url(_secp384()), "wrong_curve", "sign_spki is on curve secp384r1; P-256 (secp256r1) is required"),
    ("rsa", lambda: b64url(spki(rsa.generate_private_key(65537, 2048))), "wrong_key_type",
     "sign_spki is an RSA key; an EC P-256 key is required"),
    ("ed25519", lambda: b64url(spki(ed25519.Ed25519PrivateKey.generate())), "wrong_key_type",
     "sign_spki is not an elliptic-curve key; an EC P-256 key is required"),
    ("not base64url", lambda: "abc+/def", "not_base64url", "sign_spki is not base64url text (A-Z a-z 0-9 - _)"),
    ("number", lambda: 42, "not_base64url", "sign_spki must be a base64url string"),
    ("missing", lambda: None, "missing_key", "sign_spki is missing; send the public key as base64url SubjectPublicKeyInfo DER"),
    ("compressed point", lambda: b64url(_compressed()), "not_canonical",
     "sign_spki is not in canonical DER form (uncompressed point, no extra bytes)"),
    ("trailing bytes", lambda: b64url(p256() + b"\x00"), "not_spki",
     "sign_spki is not a DER SubjectPublicKeyInfo public key"),
]


@pytest.mark.parametrize("name, make, code, message", BAD_KEYS, ids=[b[0] for b in BAD_KEYS])
def test_bad_signing_key_is_400_with_precise_message(client: TestClient, settings: Settings,
                                                     name: str, make, code: str, message: str) -> None:  # type: ignore[no-untyped-def]
    login(client, make_user(settings.database_url, "bidder"))
    body = {"sign_spki": make(), "decrypt_spki": b64url(p256())}
    if body["sign_spki"] is None:
        del body["sign_spki"]
    response = client.post("/api/keys", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {"code": code, "message": message}
    assert run_db(settings.database_url, lambda c: c.fetchval("SELECT count(*) FROM key_sets")) == 0
    assert run_db(settings.database_url, lambda c: c.fetchval("SELECT count(*) FROM log_entries")) == 0


def test_bad_decryption_key_names_its_field(client: TestClient, settings: Settings) -> None:
    login(client, make_user(settings.database_url, "custodian"))
    response = client.post("/api/keys", json={"sign_spki": b64url(p256()), "decrypt_spki": b64url(_secp384())})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "decrypt_spki is on curve secp384r1; P-256 (secp256r1) is required"


def test_same_key_twice_is_refused(client: TestClient, settings: Settings) -> None:
    login(client, make_user(settings.database_url, "bidder"))
    key = b64url(p256())
    response = client.post("/api/keys", json={"sign_spki": key, "decrypt_spki": key})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "same_key", "message": "sign_spki and decrypt_spki are the same key; generate two separate key pairs"}


def test_reusing_a_registered_key_is_409_and_keeps_the_active_set(client: TestClient, settings: Settings) -> None:
    login(client, make_user(settings.database_url, "bidder"))
    body = key_set_body()
    first = client.post("/api/keys", json=body).json()["key_set"]
    response = client.post("/api/keys", json={"sign_spki": body["sign_spki"], "decrypt_spki": b64url(p256())})
    assert response.status_code == 409
    assert response.json()["error"] == {"code": "key_exists",
                                        "message": "the signing key is already registered; generate new keys"}
    sets = client.get("/api/keys").json()["key_sets"]
    assert [(s["id"], s["active"]) for s in sets] == [(first["id"], True)]


def test_unknown_fields_and_non_objects_are_refused(client: TestClient, settings: Settings) -> None:
    login(client, make_user(settings.database_url, "bidder"))
    response = client.post("/api/keys", json={**key_set_body(), "private_key": "oops"})
    assert response.status_code == 400 and response.json()["error"]["message"] == "unknown field(s): private_key"
    assert client.post("/api/keys", json=["x"]).status_code == 400


@pytest.mark.parametrize("role", ["agent", "expert", "supervisor", "admin"])
def test_other_roles_may_not_register_keys(client: TestClient, settings: Settings, role: str) -> None:
    login(client, make_user(settings.database_url, role))
    response = client.post("/api/keys", json=key_set_body())
    assert response.status_code == 403 and response.json()["error"]["code"] == "role_forbidden"
    assert client.get("/api/keys").status_code == 403
    assert run_db(settings.database_url, lambda c: c.fetchval("SELECT count(*) FROM key_sets")) == 0


def test_keys_page_shows_the_active_key_ids(client: TestClient, settings: Settings) -> None:
    login(client, make_user(settings.database_url, "bidder"))
    page = client.get("/keys")
    assert page.status_code == 200 and "尚未登记密钥" in page.text
    key_set = client.post("/api/keys", json=key_set_body()).json()["key_set"]
    page = client.get("/keys")
    assert key_set["sign_key_id"] in page.text and key_set["decrypt_key_id"] in page.text
    assert '<meta name="csrf-token" content="' + client.headers["X-CSRF-Token"] + '">' in page.text
    assert "/static/tenderhall/keys_page.js" in page.text
