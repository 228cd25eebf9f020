"""Sealed bid submission end to end: tus upload, receipts, every refusal, replacement, withdrawal."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from tenderhall.app import create_app
from tenderhall.keyfile import generate_keys, load_public_key_spki_b64url, public_key_spki_b64url
from tenderhall.platform_key import load_public_pem
from tenderhall.settings import Settings
from tests.factories import TestUser as User, login, make_user, run_async, run_db
from trading import key_wrap, receipts, sealing
from trading.manifest import SealedBid, validate_manifest

SUMMARY = {"price": "98765432.10", "duration_days": 180, "quality": "MARKER-QUALITY-合格-7f3a"}
FILE_TEXT = b"MARKER-FILE-PLAINTEXT-technical-proposal-" + b"x" * 1000


# ---------------------------------------------------------------------------- shared helpers


@dataclass
class Keys:
    sign: ec.EllipticCurvePrivateKey
    decrypt: ec.EllipticCurvePrivateKey


@dataclass
class World:
    dsn: str
    agent: User
    bidder: User
    bidder_keys: Keys
    custodian_keys: list[Keys]
    tender: dict[str, Any]
    credit_code: str


def register_keys(client: TestClient, user: User) -> Keys:
    login(client, user)
    sign, decrypt = generate_keys()
    r = client.post("/api/keys", json={"sign_spki": public_key_spki_b64url(sign),
                                       "decrypt_spki": public_key_spki_b64url(decrypt)})
    assert r.status_code == 201, r.text
    return Keys(sign, decrypt)


def tender_input(custodians: list[User], threshold: int, **overrides: Any) -> dict[str, Any]:
    deadline = datetime.now(timezone.utc) + timedelta(hours=2)
    data = {
        "code": f"T-{uuid.uuid4().hex[:10]}", "name": "城区道路改造工程", "tenderer": "某某市住房和城乡建设局",
        "lots": [{"code": "L1", "name": "一标段", "budget": "60000000.00"},
                 {"code": "L2", "name": "二标段", "budget": "40000000.00"}],
        "budget": "100000000.00", "control_price": "99000000.00", "evaluation_method": "comprehensive_scoring",
        "deadline": deadline.isoformat(), "decryption_minutes": 30, "decryption_rule": "custodians",
        "custodians": [str(c.id) for c in custodians], "threshold": threshold,
    }
    data.update(overrides)
    return data


def publish_tender(client: TestClient, agent: User, data: dict[str, Any]) -> dict[str, Any]:
    login(client, agent)
    r = client.post("/api/tenders", json=data)
    assert r.status_code == 201, r.text
    tid = r.json()["tender"]["id"]
    r = client.post(f"/api/tenders/{tid}/publish")
    assert r.status_code == 200, r.text
    return r.json()["tender"]


def credit_code_of(dsn: str, org_id: uuid.UUID) -> str:
    return run_db(dsn, lambda c: c.fetchval("SELECT credit_code FROM organisations WHERE id = $1", org_id))


def make_world(client: TestClient, dsn: str, *, custodians: int = 3, threshold: int = 2) -> World:
    agent = make_user(dsn, "agent")
    people = [make_user(dsn, "custodian") for _ in range(custodians)]
    custodian_keys = [register_keys(client, c) for c in people]
    bidder = make_user(dsn, "bidder")
    bidder_keys = register_keys(client, bidder)
    rule = {"decryption_rule": "custodians"} if custodians else {"decryption_rule": "void"}
    tender = publish_tender(client, agent, tender_input(people, threshold, **rule))
    world = World(dsn, agent, bidder, bidder_keys, custodian_keys, tender, credit_code_of(dsn, bidder.organisation_id))
    login(client, bidder)
    return world


def client_time(delta: timedelta = timedelta()) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def seal(world: World, *, lot: str = "L1", summary: dict[str, Any] | None = None,
         files: list[tuple[str, bytes]] | None = None, **overrides: Any) -> tuple[SealedBid, bytes]:
    tender = world.tender
    out = io.BytesIO()
    args: dict[str, Any] = dict(
        summary=summary or SUMMARY, files=files or [("技术标.pdf", FILE_TEXT)], tender=tender["id"], lot=lot,
        organisation=world.credit_code, upload_id=str(uuid.uuid4()), client_time=client_time(),
        signing_key=world.bidder_keys.sign, bidder_public_key=world.bidder_keys.decrypt.public_key(),
        custodian_keys=[load_public_key_spki_b64url(c["decrypt_spki"]) for c in tender["custodians"]],
        threshold=tender["threshold"], out=out)
    args.update(overrides)
    sealed = sealing.seal_bid(**args)
    return sealed, out.getvalue()


def create_upload(client: TestClient, world: World, sealed: SealedBid, *, lot: str = "L1",
                  tender_id: str | None = None) -> httpx.Response:
    tid = tender_id or world.tender["id"]
    return client.post(f"/api/tenders/{tid}/lots/{lot}/uploads", json=sealed.submission(),
                       headers={"Tus-Resumable": "1.0.0"})


def patch(client: TestClient, upload_id: str, offset: int, data: bytes, checksum: bool = True,
          checksum_of: bytes | None = None) -> httpx.Response:
    headers = {"Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
               "Content-Type": "application/offset+octet-stream"}
    if checksum:
        digest = hashlib.sha256(checksum_of if checksum_of is not None else data).digest()
        headers["Upload-Checksum"] = "sha256 " + base64.b64encode(digest).decode()
    return client.patch(f"/api/uploads/{upload_id}", content=data, headers=headers)


def submit(client: TestClient, world: World, pieces: int = 3, **seal_args: Any) -> dict[str, Any]:
    """Seal, create and PATCH in `pieces` pieces; return the completing response's JSON."""
    sealed, blob = seal(world, **seal_args)
    r = create_upload(client, world, sealed, lot=seal_args.get("lot", "L1"))
    assert r.status_code == 201, r.text
    upload_id = r.json()["upload_id"]
    step = -(-len(blob) // pieces)
    offset = 0
    response = None
    while offset < len(blob):
        response = patch(client, upload_id, offset, blob[offset:offset + step])
        offset = min(offset + step, len(blob))
        assert response.status_code in (200, 204), response.text
        assert response.headers["Upload-Offset"] == str(offset)
    assert response is not None and response.status_code == 200
    return {**response.json(), "upload_id": upload_id, "sealed": sealed, "blob": blob}


def platform_key(client: TestClient) -> Any:
    return load_public_pem(client.get("/.well-known/tenderhall-log-key").json()["public_key_pem"])


def counts(dsn: str) -> dict[str, int]:
    async def work(conn: Any) -> dict[str, int]:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in ("uploads", "bids", "log_entries")}
    return run_db(dsn, work)


def set_deadline(dsn: str, tender_id: str, moment: datetime) -> None:
    run_db(dsn, lambda c: c.execute("UPDATE tenders SET deadline = $2 WHERE id = $1", uuid.UUID(tender_id), moment))


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """The real server (uvicorn) on a free port in a thread; polls /healthz until it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200 and server.started:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ---------------------------------------------------------------------------- tests


@pytest.fixture
def world(client: TestClient, database_url: str) -> World:
    return make_world(client, database_url)


def test_sealed_bid_is_received_with_a_verifiable_receipt(client: TestClient, world: World) -> None:
    done = submit(client, world, pieces=4, files=[("a.bin", bytes(range(256)) * 9000)])
    assert done["complete"] and done["bid"]
    receipt = client.get(f"/api/bids/{done['bid']}/receipt").json()
    assert receipt == done["receipt"]
    receipts.verify_receipt(receipt, platform_key(client))
    assert receipt["ciphertext_sha256"] == hashlib.sha256(done["blob"]).hexdigest()
    assert receipt["organisation"] == world.credit_code
    entry = client.get(f"/api/log/entries/{receipt['log_index']}").json()
    body = entry.get("entry", entry)
    body = body.get("entry", body) if "body" not in body else body
    assert body["kind"] == "bid.received"
    assert set(body["body"]) == set(receipts.LOG_BODY_FIELDS)  # no bidder identity in the public log
    # A tampered receipt fails.
    with pytest.raises(receipts.ReceiptInvalid):
        receipts.verify_receipt({**receipt, "size": receipt["size"] + 1}, platform_key(client))
    status = client.get(f"/api/uploads/{done['upload_id']}").json()
    assert status["status"] == "complete" and status["bid"] == done["bid"]
    bids = client.get("/api/bids", params={"tender": world.tender["id"]}).json()["bids"]
    assert [b["id"] for b in bids] == [done["bid"]]
    # The stored ciphertext opens with the bidder's key only.
    upload = done["sealed"].manifest
    key = key_wrap.unwrap_bidder_key(upload["bidder_wrap"]["enc"], world.bidder_keys.decrypt)
    opened = sealing.open_bid(io.BytesIO(done["blob"]), key, validate_manifest(upload))
    assert opened.summary == SUMMARY
    # ... or with 2 of the 3 custodians.
    shares = [key_wrap.unwrap_share(w["enc"], k.decrypt) for w, k in
              list(zip(upload["custodian_wraps"], world.custodian_keys))[1:]]
    assert key_wrap.combine_shares(shares) == key
    assert client.get(f"/api/tenders/{world.tender['id']}").json()["tender"]["bids_received"] == 1


def test_upload_resumes_after_a_dropped_connection(client: TestClient, world: World, settings: Settings) -> None:
    sealed, blob = seal(world, files=[("big.bin", b"\x01" * (3 << 20))])
    upload_id = create_upload(client, world, sealed).json()["upload_id"]
    token = client.cookies.get("th_session")
    with serve(settings) as base:
        host, port = base.removeprefix("http://").split(":")
        sent = (2 << 20) + 12345
        head = (f"PATCH /api/uploads/{upload_id} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: th_session={token}\r\n"
                f"X-CSRF-Token: {client.headers['X-CSRF-Token']}\r\nTus-Resumable: 1.0.0\r\n"
                f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                f"Content-Length: {len(blob)}\r\n\r\n").encode()
        with socket.create_connection((host, int(port))) as s:
            s.sendall(head + blob[:sent])
        # Poll until the server has noticed the drop and recorded what it kept.
        give_up = time.monotonic() + 20
        while True:
            offset = int(client.head(f"/api/uploads/{upload_id}").headers["Upload-Offset"])
            if offset == sent or time.monotonic() > give_up:
                break
        assert offset == sent
    r = client.head(f"/api/uploads/{upload_id}")
    assert r.headers["Upload-Length"] == str(len(blob)) and r.headers["Cache-Control"] == "no-store"
    # This app instance has no running hash for the upload: it re-hashes the prefix on disk.
    r = patch(client, upload_id, offset, blob[offset:])
    assert r.status_code == 200, r.text
    receipts.verify_receipt(r.json()["receipt"], platform_key(client))


def _refused(client: TestClient, dsn: str, response: httpx.Response, status: int, code: str,
             before: dict[str, int]) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert counts(dsn) == before


def test_each_refused_creation_writes_nothing(client: TestClient, world: World, database_url: str,
                                             settings: Settings) -> None:
    dsn = database_url
    before = counts(dsn)
    # Wrong tender: a manifest for another tender posted here.
    sealed, _ = seal(world, tender=str(uuid.uuid4()))
    _refused(client, dsn, create_upload(client, world, sealed), 422, "wrong_tender", before)
    # A tender that does not exist.
    sealed, _ = seal(world)
    _refused(client, dsn, create_upload(client, world, sealed, tender_id=str(uuid.uuid4())), 404,
             "tender_not_found", before)
    # Wrong lot: sealed for L2, posted to L1; and a lot that does not exist.
    sealed, _ = seal(world, lot="L2")
    _refused(client, dsn, create_upload(client, world, sealed, lot="L1"), 422, "wrong_lot", before)
    _refused(client, dsn, create_upload(client, world, sealed, lot="L9"), 404, "lot_not_found", before)
    # Bad signature: a field changed after signing.
    sealed, _ = seal(world)
    forged = SealedBid({**sealed.manifest, "client_time": client_time(timedelta(seconds=1))}, sealed.signature)
    _refused(client, dsn, create_upload(client, world, forged), 422, "bad_signature", before)
    # Signed with another key than the organisation's.
    other_sign, _ = generate_keys()
    sealed, _ = seal(world, signing_key=other_sign)
    _refused(client, dsn, create_upload(client, world, sealed), 422, "wrong_signing_key", before)
    # Client clock far off.
    sealed, _ = seal(world, client_time=client_time(timedelta(hours=3)))
    _refused(client, dsn, create_upload(client, world, sealed), 422, "client_clock_skew", before)
    # Custodians missing from the wraps.
    sealed, _ = seal(world, custodian_keys=[], threshold=0)
    _refused(client, dsn, create_upload(client, world, sealed), 422, "wrong_custodians", before)


def test_oversized_bid_is_refused_with_413(world: World, database_url: str, settings: Settings) -> None:
    small = settings.with_(max_bid_bytes=1000)
    with TestClient(create_app(small)) as other:
        login(other, world.bidder)
        before = counts(database_url)
        sealed, _ = seal(world, files=[("big.bin", b"z" * 5000)])
        _refused(other, database_url, create_upload(other, world, sealed), 413, "bid_too_large", before)


def test_bidder_organisation_without_keys_is_refused(client: TestClient, world: World, database_url: str) -> None:
    keyless = make_user(database_url, "bidder")
    login(client, keyless)
    world2 = World(**{**world.__dict__, "credit_code": credit_code_of(database_url, keyless.organisation_id)})
    sealed, _ = seal(world2)
    before = counts(database_url)
    _refused(client, database_url, create_upload(client, world2, sealed), 422, "no_keys", before)


def test_wrong_role_is_forbidden(client: TestClient, world: World, database_url: str) -> None:
    sealed, _ = seal(world)
    login(client, world.agent)
    before = counts(database_url)
    _refused(client, database_url, create_upload(client, world, sealed), 403, "role_forbidden", before)


def test_duplicate_upload_id_and_replayed_manifest_conflict(client: TestClient, world: World, database_url: str) -> None:
    sealed, _ = seal(world)
    assert create_upload(client, world, sealed).status_code == 201
    before = counts(database_url)
    _refused(client, database_url, create_upload(client, world, sealed), 409, "replayed_manifest", before)
    again, _ = seal(world, upload_id=sealed.manifest["upload_id"])
    _refused(client, database_url, create_upload(client, world, again), 409, "duplicate_upload", before)


def test_patch_refusals(client: TestClient, world: World, database_url: str, settings: Settings) -> None:
    sealed, blob = seal(world, files=[("f.bin", b"q" * 300_000)])
    upload_id = create_upload(client, world, sealed).json()["upload_id"]
    # Wrong offset.
    r = patch(client, upload_id, 5, blob[5:100])
    assert r.status_code == 409 and r.json()["error"]["code"] == "offset_mismatch"
    # Checksum mismatch: 460, bytes discarded.
    r = patch(client, upload_id, 0, blob[:1000], checksum_of=b"something else")
    assert r.status_code == 460 and r.json()["error"]["code"] == "checksum_mismatch"
    assert client.head(f"/api/uploads/{upload_id}").headers["Upload-Offset"] == "0"
    # Past Upload-Length.
    r = patch(client, upload_id, 0, blob + b"extra")
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_long"
    # Wrong content type.
    r = client.patch(f"/api/uploads/{upload_id}", content=blob[:10],
                     headers={"Upload-Offset": "0", "Content-Type": "application/octet-stream"})
    assert r.status_code == 415
    # Another organisation's upload is not found.
    stranger = make_user(database_url, "bidder")
    login(client, stranger)
    assert patch(client, upload_id, 0, blob[:10]).status_code == 404
    assert client.head(f"/api/uploads/{upload_id}").status_code == 404
    login(client, world.bidder)
    assert patch(client, upload_id, 0, blob).status_code == 200
    assert counts(database_url)["bids"] == 1


def test_tampered_chunk_fails_with_digest_mismatch(client: TestClient, world: World, database_url: str,
                                                   settings: Settings) -> None:
    sealed, blob = seal(world)
    upload_id = create_upload(client, world, sealed).json()["upload_id"]
    tampered = bytearray(blob)
    tampered[100] ^= 1
    before = counts(database_url)
    r = patch(client, upload_id, 0, bytes(tampered))
    assert r.status_code == 422 and r.json()["error"]["code"] == "digest_mismatch"
    assert counts(database_url) == before
    status = client.get(f"/api/uploads/{upload_id}").json()
    assert status["status"] == "failed" and status["failure"] == "digest_mismatch"
    assert not list((settings.storage_dir).rglob(f"{upload_id}*"))


def test_bids_after_the_deadline_are_refused(client: TestClient, world: World, database_url: str) -> None:
    sealed, blob = seal(world)
    upload_id = create_upload(client, world, sealed).json()["upload_id"]
    assert patch(client, upload_id, 0, blob[:50]).status_code == 204
    set_deadline(database_url, world.tender["id"], datetime.now(timezone.utc) - timedelta(seconds=1))
    before = counts(database_url)
    r = patch(client, upload_id, 50, blob[50:])
    assert r.status_code == 409 and r.json()["error"]["code"] == "deadline_passed"
    sealed2, _ = seal(world)
    _refused(client, database_url, create_upload(client, world, sealed2), 409, "deadline_passed", before)


def test_deadline_is_checked_again_at_completion(client: TestClient, world: World, database_url: str) -> None:
    # A deadline seconds away: the upload starts before it and its last byte arrives after it.
    sealed, blob = seal(world)
    upload_id = create_upload(client, world, sealed).json()["upload_id"]
    assert patch(client, upload_id, 0, blob[:50]).status_code == 204
    soon = datetime.now(timezone.utc) + timedelta(seconds=1)
    set_deadline(database_url, world.tender["id"], soon)
    while datetime.now(timezone.utc) <= soon + timedelta(milliseconds=50):
        pass  # poll the clock until the deadline is behind us
    r = patch(client, upload_id, 50, blob[50:])
    assert r.status_code == 409 and r.json()["error"]["code"] == "deadline_passed"
    assert counts(database_url)["bids"] == 0


def test_second_bid_supersedes_the_first_and_both_are_logged(client: TestClient, world: World,
                                                             database_url: str) -> None:
    first = submit(client, world)
    second = submit(client, world, summary={**SUMMARY, "price": "88000000.00"})
    bids = {b["id"]: b for b in client.get("/api/bids").json()["bids"]}
    assert bids[first["bid"]]["status"] == "superseded" and bids[second["bid"]]["status"] == "active"
    assert second["receipt"]["log_index"] > first["receipt"]["log_index"]
    kinds = run_db(database_url, lambda c: c.fetch("SELECT kind FROM log_entries ORDER BY idx"))
    assert [k["kind"] for k in kinds].count("bid.received") == 2
    assert client.get(f"/api/tenders/{world.tender['id']}").json()["tender"]["bids_received"] == 1


def test_withdrawal_before_the_deadline_and_refusal_after(client: TestClient, world: World, database_url: str) -> None:
    done = submit(client, world)
    r = client.post(f"/api/bids/{done['bid']}/withdraw")
    assert r.status_code == 200, r.text
    entry = run_db(database_url, lambda c: c.fetchrow("SELECT kind, body FROM log_entries WHERE idx = $1",
                                                       r.json()["log_index"]))
    assert entry["kind"] == "bid.withdrawn"
    assert client.post(f"/api/bids/{done['bid']}/withdraw").json()["error"]["code"] == "bid_not_active"
    again = submit(client, world)
    set_deadline(database_url, world.tender["id"], datetime.now(timezone.utc) - timedelta(seconds=1))
    r = client.post(f"/api/bids/{again['bid']}/withdraw")
    assert r.status_code == 409 and r.json()["error"]["code"] == "deadline_passed"
    assert client.get("/api/bids").json()["bids"][0]["status"] == "active"


def test_cli_generates_registers_seals_submits_and_checks(client: TestClient, database_url: str, settings: Settings,
                                                          tmp_path: Any, capsys: Any) -> None:
    from trading import cli

    agent = make_user(database_url, "agent")
    bidder = make_user(database_url, "bidder")
    code = credit_code_of(database_url, bidder.organisation_id)
    (tmp_path / "pass").write_text("a long passphrase\n")
    (tmp_path / "pw").write_text(bidder.password)
    (tmp_path / "summary.json").write_text('{"price": "1234.5", "duration_days": 90, "quality": "合格"}')
    (tmp_path / "doc.pdf").write_bytes(b"%PDF " + b"d" * 20000)
    keys, login_args = str(tmp_path / "org.keys"), ["--username", bidder.username, "--password-file", str(tmp_path / "pw")]
    tender = publish_tender(client, agent, tender_input([], 0, decryption_rule="void"))
    with serve(settings) as base:
        assert cli.main(["keys", "generate", "--owner", code, "--out", keys, "--passphrase-file",
                         str(tmp_path / "pass"), "--iterations", "1000"]) == 0
        assert cli.main(["keys", "generate", "--owner", code, "--out", keys, "--passphrase-file",
                         str(tmp_path / "pass")]) == 2  # never overwrites
        assert cli.main(["keys", "register", "--server", base, *login_args, "--keys", keys,
                         "--passphrase-file", str(tmp_path / "pass")]) == 0
        out = str(tmp_path / "sealed")
        assert cli.main(["bid", "seal", "--tender-url", f"{base}/tenders/{tender['id']}", "--lot", "L2",
                         "--summary", str(tmp_path / "summary.json"), "--file", str(tmp_path / "doc.pdf"),
                         "--keys", keys, "--passphrase-file", str(tmp_path / "pass"), "--out", out]) == 0
        capsys.readouterr()
        assert cli.main(["bid", "submit", "--server", base, *login_args, "--dir", out, "--quiet"]) == 0
        printed = capsys.readouterr().out
        assert "log index" in printed and "verified" in printed
        # Submitting again resumes (nothing left to send) and re-verifies.
        assert cli.main(["bid", "submit", "--server", base, *login_args, "--dir", out, "--quiet"]) == 0
        assert cli.main(["bid", "status", "--server", base, *login_args, "--tender", tender["id"]]) == 0
        assert "receipt verified" in capsys.readouterr().out
        # A wrong password is a clear error, not a traceback.
        (tmp_path / "bad").write_text("wrong password")
        assert cli.main(["bid", "status", "--server", base, "--username", bidder.username,
                         "--password-file", str(tmp_path / "bad")]) == 2
        assert "login failed" in capsys.readouterr().err


class _DropSecondPatch(httpx.HTTPTransport):
    """A transport that loses the connection on the second PATCH, as a flaky network would."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            self.patches += 1
            if self.patches == 2:
                raise httpx.WriteError("connection reset by peer")
        return super().handle_request(request)


def test_cli_upload_resumes_after_a_dropped_connection(client: TestClient, world: World, settings: Settings,
                                                       tmp_path: Any) -> None:
    from trading import cli

    sealed, blob = seal(world, files=[("f.bin", b"r" * 700_000)])
    upload_id = create_upload(client, world, sealed).json()["upload_id"]
    path = tmp_path / "bid.sealed"
    path.write_bytes(blob)
    with serve(settings) as base:
        transport = _DropSecondPatch()
        with httpx.Client(base_url=base, transport=transport) as http:
            login(http, world.bidder)  # type: ignore[arg-type]
            result = cli.upload_file(http, f"/api/uploads/{upload_id}", path, len(blob), chunk_bytes=256 << 10,
                                     backoff=0)
        assert transport.patches == 4  # three pieces, plus the one lost and resent after a HEAD
        receipts.verify_receipt(result["receipt"], platform_key(client))


def test_long_patch_records_its_offset_on_the_way_and_keeps_bytes_on_disconnect(tmp_path: Any) -> None:
    import asyncio

    from starlette.requests import ClientDisconnect

    from trading import uploads

    piece = bytes(range(256)) * 256  # 64 KiB, what uvicorn hands over at a time
    total = 64 << 20  # past the first checkpoint by more than the writer may lag

    async def body() -> Any:
        for _ in range(total // len(piece)):
            yield piece
        raise ClientDisconnect()

    async def main() -> tuple[uploads.Received, list[int], Any]:
        registry = uploads.UploadRegistry()
        upload_id = uuid.uuid4()
        path = uploads.incoming_path(tmp_path, upload_id)
        progress = await uploads.prepare(registry, path, upload_id, 0)
        recorded: list[int] = []

        async def record(offset: int) -> None:
            recorded.append(offset)

        received = await uploads.receive(body(), path, progress, 1 << 30, None, record)
        return received, recorded, progress

    received, recorded, progress = asyncio.run(main())
    assert received.disconnected and received.offset == total
    assert recorded and recorded[0] >= uploads.RECORD_EVERY_BYTES  # durable before the request ended
    expected = hashlib.sha256(piece * (total // len(piece))).hexdigest()
    assert progress.digest.hexdigest() == expected and progress.position == total
    assert next(tmp_path.rglob("*.part")).stat().st_size == total


def test_an_upload_claimed_by_another_instance_is_refused_until_the_claim_ends(
        client: TestClient, world: World, database_url: str, settings: Settings) -> None:
    from trading import store, submission

    sealed, blob = seal(world)
    upload_id = create_upload(client, world, sealed).json()["upload_id"]
    # Another server instance is in the middle of a PATCH of this upload: its claim is in the database.
    other = uuid.uuid4()
    assert run_db(database_url, lambda c: store.claim_upload(c, uuid.UUID(upload_id), other, submission.CLAIM_LEASE))
    refused = patch(client, upload_id, 0, blob)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "upload_locked"
    assert run_db(database_url, lambda c: c.fetchval('SELECT "offset" FROM uploads WHERE id = $1', uuid.UUID(upload_id))) == 0

    # A claim left by a crashed instance expires by itself; then the upload goes on.
    run_db(database_url, lambda c: c.execute(
        "UPDATE uploads SET claimed_until = clock_timestamp() - interval '1 second' WHERE id = $1", uuid.UUID(upload_id)))
    done = patch(client, upload_id, 0, blob)
    assert done.status_code == 200, done.text
    claim = run_db(database_url, lambda c: c.fetchrow("SELECT claim_token, claimed_until FROM uploads WHERE id = $1",
                                                      uuid.UUID(upload_id)))
    assert claim["claim_token"] is None and claim["claimed_until"] is None, "the PATCH released its claim"


def test_a_patch_that_lost_its_claim_stops_recording(database_url: str, client: TestClient, world: World) -> None:
    from trading import store, submission

    sealed, _ = seal(world)
    upload_id = uuid.UUID(create_upload(client, world, sealed).json()["upload_id"])
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    assert run_db(database_url, lambda c: store.claim_upload(c, upload_id, mine, submission.CLAIM_LEASE))
    assert not run_db(database_url, lambda c: store.claim_upload(c, upload_id, theirs, submission.CLAIM_LEASE))
    assert run_db(database_url, lambda c: store.set_offset(c, upload_id, 0, mine, submission.CLAIM_LEASE))
    assert not run_db(database_url, lambda c: store.set_offset(c, upload_id, 0, theirs, submission.CLAIM_LEASE))


async def _expire(dsn: str, settings: Settings) -> int:
    from tenderhall import db
    from tenderhall.platform_key import load_or_create
    from trading import service, submission, uploads

    pool = await db.create_pool(dsn, 1, 2)
    try:
        deps = service.Deps(pool, settings, load_or_create(settings.platform_key_path), uploads.UploadRegistry())
        return await submission.expire_abandoned_uploads(deps)
    finally:
        await pool.close()


def test_uploads_abandoned_past_the_deadline_are_expired_and_their_bytes_removed(
        client: TestClient, world: World, database_url: str, settings: Settings) -> None:
    from trading import uploads

    sealed, blob = seal(world)
    upload_id = create_upload(client, world, sealed).json()["upload_id"]
    assert patch(client, upload_id, 0, blob[:100]).status_code == 204
    partial = uploads.incoming_path(settings.storage_dir, uuid.UUID(upload_id))
    assert partial.stat().st_size == 100
    still_open = create_upload(client, world, seal(world, lot="L2")[0], lot="L2").json()["upload_id"]

    set_deadline(database_url, world.tender["id"], datetime.now(timezone.utc) - timedelta(seconds=1))
    run_db(database_url, lambda c: c.execute("UPDATE tenders SET deadline = now() + interval '1 hour' "
                                             "WHERE id <> $1", uuid.UUID(world.tender["id"])))
    assert run_async(_expire(database_url, settings)) == 2
    rows = run_db(database_url, lambda c: c.fetch("SELECT id::text, status, failure FROM uploads"))
    status = {r["id"]: (r["status"], r["failure"]) for r in rows}
    assert status[upload_id] == ("failed", "deadline_passed")
    assert status[still_open] == ("failed", "deadline_passed"), "same tender: its deadline passed too"
    assert not partial.exists()
    assert run_db(database_url, lambda c: c.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'uploads.expired'")) == 1


# ---------------------------------------------------------------------------- review fixes: uploads


def _as_current(user: User) -> Any:
    from tenderhall.accounts import CurrentUser

    return CurrentUser(id=user.id, username=user.username, display_name=user.username, roles=frozenset(user.roles),
                       organisation_id=user.organisation_id)


async def _with_deps(dsn: str, settings: Settings, work: Any) -> Any:
    """Run `work(deps)` against the use cases directly (as another app instance would), on its own pool."""
    from tenderhall import db
    from tenderhall.platform_key import load_or_create
    from trading import service, uploads

    pool = await db.create_pool(dsn, 1, 4)
    try:
        return await work(service.Deps(pool, settings, load_or_create(settings.platform_key_path),
                                       uploads.UploadRegistry()))
    finally:
        await pool.close()


def _offset_of(dsn: str, upload_id: Any) -> int:
    return run_db(dsn, lambda c: c.fetchval('SELECT "offset" FROM uploads WHERE id = $1', uuid.UUID(str(upload_id))))


def test_too_long_body_keeps_the_offset_it_recorded_on_the_way(
        client: TestClient, world: World, database_url: str, settings: Settings, monkeypatch: Any) -> None:
    import asyncio

    from trading import submission, uploads
    from trading.tenders import TooLarge

    # Small checkpoints, so a small bid records its offset mid-body (as a > 32 MiB body would).
    monkeypatch.setattr(uploads, "BATCH_BYTES", 16 << 10)
    monkeypatch.setattr(uploads, "RECORD_EVERY_BYTES", 64 << 10)
    sealed, blob = seal(world, files=[("f.bin", b"t" * 600_000)])
    upload_id = uuid.UUID(create_upload(client, world, sealed).json()["upload_id"])

    async def chunked(data: bytes) -> Any:  # no Content-Length, no checksum: overrun found mid-body
        for i in range(0, len(data), 8 << 10):
            yield data[i:i + (8 << 10)]
            await asyncio.sleep(0.002)  # lets each checkpoint's fsync finish, so its offset is recorded

    async def work(deps: Any) -> None:
        with pytest.raises(TooLarge) as refused:
            await submission.patch_upload(
                deps, _as_current(world.bidder), upload_id, offset_header="0",
                content_type=uploads.OFFSET_CONTENT_TYPE, content_length=None, checksum=None,
                chunks=chunked(blob + b"x" * 200_000))
        assert refused.value.code == "upload_too_long"

    run_async(_with_deps(database_url, settings, work))
    offset = _offset_of(database_url, upload_id)
    assert 0 < offset < len(blob), "the offset was recorded on the way"
    assert uploads.incoming_path(settings.storage_dir, upload_id).stat().st_size == offset
    # The upload resumes from the recorded offset (this instance re-hashes the prefix on disk).
    r = patch(client, str(upload_id), offset, blob[offset:])
    assert r.status_code == 200, r.text
    assert r.json()["receipt"]["ciphertext_sha256"] == hashlib.sha256(blob).hexdigest()


def test_lost_partial_bytes_fail_the_upload_with_a_clear_409(client: TestClient, world: World, database_url: str,
                                                             settings: Settings) -> None:
    from trading import uploads

    for damage in ("missing", "short"):
        sealed, blob = seal(world)
        upload_id = create_upload(client, world, sealed).json()["upload_id"]
        assert patch(client, upload_id, 0, blob[:500]).status_code == 204
        partial = uploads.incoming_path(settings.storage_dir, uuid.UUID(upload_id))
        if damage == "missing":
            partial.unlink()
        else:
            with partial.open("r+b") as f:
                f.truncate(200)
        r = patch(client, upload_id, 500, blob[500:])
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "upload_failed" and "lost" in r.json()["error"]["message"]
        status = client.get(f"/api/uploads/{upload_id}").json()
        assert (status["status"], status["failure"]) == ("failed", "storage_lost")
        assert patch(client, upload_id, 500, blob[500:]).json()["error"]["code"] == "upload_failed"
    assert counts(database_url)["bids"] == 0


def test_a_patch_finding_the_upload_completed_once_it_holds_the_claim_gets_409(
        client: TestClient, world: World, database_url: str, settings: Settings, monkeypatch: Any) -> None:
    from trading import submission, uploads

    sealed, blob = seal(world)
    upload_id = uuid.UUID(create_upload(client, world, sealed).json()["upload_id"])
    user = _as_current(world.bidder)
    claimed = submission._claimed

    async def one(data: bytes) -> Any:
        if data:
            yield data

    async def work(deps: Any) -> None:
        completed: list[dict[str, Any]] = []

        @contextlib.asynccontextmanager
        async def completing_first(deps_: Any, upload: uuid.UUID) -> Any:
            # The retried PATCH has read the upload (receiving); the original PATCH completes it now.
            if not completed:
                completed.append({})
                monkeypatch.setattr(submission, "_claimed", claimed)
                completed[0] = await submission.patch_upload(
                    deps, user, upload_id, offset_header="0", content_type=uploads.OFFSET_CONTENT_TYPE,
                    content_length=str(len(blob)), checksum=None, chunks=one(blob))
            async with claimed(deps_, upload) as claim:
                yield claim

        monkeypatch.setattr(submission, "_claimed", completing_first)
        with pytest.raises(submission.StateConflict) as refused:
            await submission.patch_upload(deps, user, upload_id, offset_header=str(len(blob)),
                                          content_type=uploads.OFFSET_CONTENT_TYPE, content_length="0",
                                          checksum=None, chunks=one(b""))
        assert refused.value.code == "upload_complete"
        assert completed[0]["complete"]

    run_async(_with_deps(database_url, settings, work))
    assert counts(database_url)["bids"] == 1


def test_a_completion_cut_off_before_its_commit_completes_at_the_next_patch(
        client: TestClient, world: World, database_url: str, settings: Settings) -> None:
    from trading import uploads

    sealed, blob = seal(world)
    upload_id = uuid.UUID(create_upload(client, world, sealed).json()["upload_id"])
    assert patch(client, str(upload_id), 0, blob[:-100]).status_code == 204
    # The rest arrived and its offset was recorded; the file was moved to its bid path; then the
    # server died before the completing transaction committed: the upload is still receiving.
    partial = uploads.incoming_path(settings.storage_dir, upload_id)
    with partial.open("ab") as f:
        f.write(blob[-100:])
    run_db(database_url, lambda c: c.execute('UPDATE uploads SET "offset" = length WHERE id = $1', upload_id))
    final = uploads.bid_path(settings.storage_dir, uuid.UUID(world.tender["id"]), upload_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    uploads.move_durably(partial, final)
    assert client.head(f"/api/uploads/{upload_id}").headers["Upload-Offset"] == str(len(blob))

    # The client resumes at the offset HEAD gives: an empty PATCH at the last byte completes the bid.
    r = patch(client, str(upload_id), len(blob), b"")
    assert r.status_code == 200, r.text
    receipts.verify_receipt(r.json()["receipt"], platform_key(client))
    assert final.read_bytes() == blob and not partial.exists()
    assert client.get(f"/api/uploads/{upload_id}").json()["status"] == "complete"


def test_one_receiving_upload_per_lot_and_organisation(client: TestClient, world: World, database_url: str,
                                                       monkeypatch: Any) -> None:
    from trading import store, submission

    first, first_blob = seal(world)
    first_id = create_upload(client, world, first).json()["upload_id"]
    assert patch(client, first_id, 0, first_blob[:100]).status_code == 204
    second, second_blob = seal(world)
    # While a PATCH of the first is running (its claim is live), a second upload is refused.
    sending = uuid.uuid4()
    assert run_db(database_url, lambda c: store.claim_upload(c, uuid.UUID(first_id), sending, submission.CLAIM_LEASE))
    before = counts(database_url)
    r = create_upload(client, world, second)
    _refused(client, database_url, r, 409, "upload_in_progress", before)
    assert first_id in r.json()["error"]["message"] and "HEAD" in r.json()["error"]["message"]
    # Another lot is another upload.
    other, _ = seal(world, lot="L2")
    assert create_upload(client, world, other, lot="L2").status_code == 201
    # Re-posting the receiving upload's own manifest still says "replayed" (the CLI then resumes it).
    assert create_upload(client, world, first).json()["error"]["code"] == "replayed_manifest"

    # Two creations at the same moment: the unique index refuses the loser, named the same way.
    real = store.receiving_upload
    calls: list[int] = []

    async def misses_the_first_time(*args: Any) -> Any:
        calls.append(1)
        return None if len(calls) == 1 else await real(*args)

    monkeypatch.setattr(store, "receiving_upload", misses_the_first_time)
    r = create_upload(client, world, second)
    _refused(client, database_url, r, 409, "upload_in_progress", before | {"uploads": before["uploads"] + 1})
    assert first_id in r.json()["error"]["message"] and len(calls) == 2
    monkeypatch.setattr(store, "receiving_upload", real)
    run_db(database_url, lambda c: store.release_claim(c, uuid.UUID(first_id), sending))

    # Once the first completes, a new upload is allowed ...
    assert patch(client, first_id, 100, first_blob[100:]).status_code == 200
    second_id = create_upload(client, world, second).json()["upload_id"]
    # ... and once that one fails, another.
    tampered = bytearray(second_blob)
    tampered[10] ^= 1
    assert patch(client, second_id, 0, bytes(tampered)).json()["error"]["code"] == "digest_mismatch"
    third, _ = seal(world)
    assert create_upload(client, world, third).status_code == 201


def test_migration_0005_fails_all_but_the_newest_of_uploads_receiving_side_by_side(
        client: TestClient, world: World, database_url: str) -> None:
    from tenderhall import db

    sealed, _ = seal(world)
    older = uuid.UUID(create_upload(client, world, sealed).json()["upload_id"])
    migration = next(m for m in db.load_migrations() if m.version == 5)
    newer = uuid.uuid4()

    async def work(conn: Any) -> dict[uuid.UUID, tuple[str, str | None]]:
        tr = conn.transaction()
        await tr.start()
        try:  # as before the migration: the index gone, two uploads of one lot receiving
            await conn.execute("DROP INDEX uploads_one_receiving_key")
            await conn.execute(
                "INSERT INTO uploads (id, tender_id, lot_code, organisation_id, user_id, manifest, manifest_sha256, "
                "signature, key_set_id, length, updated_at) SELECT $2, tender_id, lot_code, organisation_id, "
                "user_id, manifest, 'other', signature, key_set_id, length, updated_at + interval '1 second' "
                "FROM uploads WHERE id = $1", older, newer)
            await conn.execute(migration.sql)
            rows = await conn.fetch("SELECT id, status, failure FROM uploads")
            return {r["id"]: (r["status"], r["failure"]) for r in rows}
        finally:
            await tr.rollback()

    status = run_db(database_url, work)
    assert status == {older: ("failed", "abandoned"), newer: ("receiving", None)}


def test_a_new_upload_replaces_an_unfinished_one_nobody_is_sending(
        client: TestClient, world: World, database_url: str, settings: Settings) -> None:
    # A bidder whose tab closed mid-upload seals again: the abandoned upload gives way.
    from trading import uploads

    first, first_blob = seal(world)
    first_id = create_upload(client, world, first).json()["upload_id"]
    assert patch(client, first_id, 0, first_blob[:100]).status_code == 204
    partial = uploads.incoming_path(settings.storage_dir, uuid.UUID(first_id))
    assert partial.exists()
    second, second_blob = seal(world)
    created = create_upload(client, world, second)
    assert created.status_code == 201 and created.json()["replaced"] == [first_id]
    assert not partial.exists()
    old = run_db(database_url, lambda c: c.fetchrow("SELECT status, failure FROM uploads WHERE id = $1",
                                                    uuid.UUID(first_id)))
    assert (old["status"], old["failure"]) == ("failed", "replaced")
    late = patch(client, first_id, 100, first_blob[100:])
    assert late.status_code == 409 and late.json()["error"]["code"] == "upload_failed"
    assert patch(client, created.json()["upload_id"], 0, second_blob).status_code == 200


def test_creation_answers_with_the_tus_headers(client: TestClient, world: World, settings: Settings) -> None:
    sealed, blob = seal(world)
    created = create_upload(client, world, sealed)
    assert created.status_code == 201
    assert created.headers["Tus-Resumable"] == "1.0.0"
    assert created.headers["Tus-Extension"] == "creation,checksum"
    assert created.headers["Tus-Max-Size"] == str(settings.max_bid_bytes)
    assert created.headers["Upload-Length"] == str(len(blob))
    assert created.headers["Location"] == f"/api/uploads/{created.json()['upload_id']}"
