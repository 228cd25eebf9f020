"""The opening hall end to end over the API: every step, the custodian path, the record, every refusal."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from starlette.testclient import TestClient

from tenderhall import cli
from tenderhall.canonical import b64url
from tenderhall.keyfile import encrypt_keyfile
from tenderhall.settings import Settings
from tests.factories import login, make_user, run_db
from tests.hall_world import (
    Hall, content_key, end_window, make_hall, pass_deadline, post, share, to_decryption,
)
from tests.integration.test_submission import serve
from tests.ocds_schema import errors as ocds_errors
from tests.ocds_schema import package_validator
from trading.hall import record_confirmation_message
from trading import sealing, uploads
from trading.manifest import validate_manifest


def sign_record(hall: Hall, bidder_index: int, sha256: str) -> str:
    key = hall.bidders[bidder_index].keys.sign
    der = key.sign(record_confirmation_message(hall.id, sha256), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def snapshot(client: TestClient, user: Any, hall: Hall) -> dict[str, Any]:
    login(client, user)
    r = client.get(hall.url())
    assert r.status_code == 200, r.text
    return r.json()["hall"]


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def bid_id(hall: Hall, i: int) -> str:
    return hall.bidders[i].bids[-1]["bid"]


@pytest.fixture(scope="module")
def validator() -> Any:
    return package_validator()


@pytest.fixture
def hall(client: TestClient, database_url: str) -> Hall:
    return make_hall(client, database_url)


def opened_files(hall: Hall, settings: Settings, bid: str, target: Any) -> set[str]:
    """What the evaluation gets: the kept content key opens the stored ciphertext."""
    row = run_db(hall.dsn, lambda c: c.fetchrow(
        "SELECT ob.content_key, b.upload_id, u.manifest FROM opening_bids ob JOIN bids b ON b.id = ob.bid_id "
        "JOIN uploads u ON u.id = b.upload_id WHERE ob.bid_id = $1", uuid.UUID(bid)))
    path = uploads.bid_path(settings.storage_dir, uuid.UUID(hall.id), row["upload_id"])
    with path.open("rb") as stream:
        opened = sealing.open_bid(stream, bytes(row["content_key"]), validate_manifest(row["manifest"]), target)
    return {f.name for f in opened.files}


def test_full_opening_with_one_bid_opened_by_custodians(client: TestClient, hall: Hall, settings: Settings,
                                                        validator: Any, tmp_path: Any) -> None:
    waiting = snapshot(client, hall.bidders[0].user, hall)
    assert waiting["step"] == "waiting" and waiting["bids_received"] == 3
    assert waiting["bidders"] == [] and waiting["bids"] == []

    to_decryption(client, hall)
    mine = snapshot(client, hall.bidders[0].user, hall)
    assert [b["mine"] for b in mine["bids"]].count(True) == 1
    assert all(b["summary"] is None for b in mine["bids"])  # nothing is read before the read-out

    for i in (0, 1):
        r = post(client, hall.bidders[i].user, hall, "decrypt", {"bid_id": bid_id(hall, i),
                                                                "content_key": content_key(hall.bidders[i])})
        assert r.status_code == 200, r.text
    progress = snapshot(client, hall.agent, hall)["progress"]
    assert progress["decrypted"] == 2 and progress["waiting"] == 1

    refused(post(client, hall.agent, hall, "close-window"), 409, "window_open")
    end_window(hall)
    r = post(client, hall.agent, hall, "close-window")
    assert r.json()["step"] == "custodians", r.text

    third = hall.bidders[2]
    custodian_view = snapshot(client, hall.custodians[0], hall)
    assert "release_shares" in custodian_view["actions"]
    assert [b["share_enc"] is not None for b in custodian_view["bids"]].count(True) == 1
    r = post(client, hall.custodians[0], hall, "shares", {"shares": [{"bid_id": bid_id(hall, 2),
                                                                    "share": share(hall, third, 1)}]})
    assert r.status_code == 200 and r.json()["opened"] == 0, r.text
    r = post(client, hall.custodians[2], hall, "shares", {"shares": [{"bid_id": bid_id(hall, 2),
                                                                    "share": share(hall, third, 3)}]})
    assert r.status_code == 200 and r.json()["opened"] == 1, r.text
    state = snapshot(client, hall.agent, hall)
    assert state["step"] == "reading"
    assert {b["opened_by"] for b in state["bids"]} == {"bidder", "custodians"}
    assert opened_files(hall, settings, bid_id(hall, 2), tmp_path) == {"技术标.pdf"}
    assert (tmp_path / "技术标.pdf").read_bytes().startswith(b"MARKER-FILE-PLAINTEXT")
    assert not list(settings.storage_dir.rglob("技术标.pdf"))  # no plaintext rests on the server

    r = post(client, hall.agent, hall, "read-next")
    assert r.status_code == 200 and len(r.json()["read"]) == 1
    r = post(client, hall.bidders[1].user, hall, "objections", {"text": "第二标段报价的大写与小写不一致？"})
    assert r.status_code == 200, r.text
    objection = r.json()["objection"]
    refused(post(client, hall.agent, hall, "record"), 409, "reading_unfinished")
    assert post(client, hall.agent, hall, "read-next", {"all": True}).status_code == 200
    refused(post(client, hall.agent, hall, "read-next"), 409, "nothing_to_read")
    refused(post(client, hall.agent, hall, "record"), 409, "objection_unanswered")
    r = post(client, hall.agent, hall, f"objections/{objection}/answer", {"answer": "已核对，一致。"})
    assert r.status_code == 200, r.text
    refused(post(client, hall.agent, hall, f"objections/{objection}/answer", {"answer": "again"}), 409,
            "already_answered")

    seen = snapshot(client, hall.bidders[2].user, hall)
    prices = {b["bidder"]: b["summary"]["price"] for b in seen["bids"]}
    assert sorted(prices.values()) == ["87000000.00", "88765432.10", "89100000.50"]
    words = {b["summary"]["price"]: b["amounts_in_words"]["price"] for b in seen["bids"]}
    assert words["88765432.10"] == "捌仟捌佰柒拾陆万伍仟肆佰叁拾贰元壹角"

    r = post(client, hall.agent, hall, "record")
    assert r.status_code == 200, r.text
    sha = r.json()["record_sha256"]
    login(client, hall.bidders[0].user)
    raw = client.get(hall.url("record.json"))
    assert hashlib.sha256(raw.content).hexdigest() == sha == raw.headers["X-Record-SHA256"]
    record = raw.json()
    assert record["objections"][0]["answer"] == "已核对，一致。"
    assert [b["read_order"] for b in record["bids"]] == [1, 2, 3]
    assert client.get(f"/tenders/{hall.id}/hall/record").status_code == 200

    refused(post(client, hall.agent, hall, "close"), 409, "confirmations_pending")
    refused(post(client, hall.bidders[0].user, hall, "confirm", {"signature": sign_record(hall, 1, sha)}), 422,
            "bad_signature")
    for i in range(3):
        r = post(client, hall.bidders[i].user, hall, "confirm", {"signature": sign_record(hall, i, sha)})
        assert r.status_code == 200, r.text
    refused(post(client, hall.bidders[0].user, hall, "confirm", {"signature": sign_record(hall, 0, sha)}), 409,
            "already_confirmed")
    resume = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    r = post(client, hall.agent, hall, "close", {"resumption_at": resume})
    assert r.status_code == 200 and r.json()["step"] == "closed", r.text

    kinds = run_db(hall.dsn, lambda c: c.fetch("SELECT kind FROM log_entries ORDER BY idx"))
    kinds = [k["kind"] for k in kinds]
    for kind in ("opening.bidders_published", "opening.bid_opened", "opening.read_out", "opening.record",
                 "opening.record_confirmed", "opening.closed", "opening.objection", "opening.shares_released"):
        assert kind in kinds, kind
    timeline = snapshot(client, hall.bidders[0].user, hall)["timeline"]
    assert timeline[-1]["kind"] == "hall.closed"

    client.cookies.clear()  # open data needs no login
    package = client.get(f"/api/tenders/{hall.id}/ocds").json()
    assert ocds_errors(validator, package) == []
    release = package["releases"][0]
    assert release["tender"]["status"] == "complete"
    assert sorted(d["value"]["amount"] for d in release["bids"]["details"]) == [87000000, 88765432.1, 89100000.5]


def test_bad_decryption_requests_are_refused_precisely(client: TestClient, hall: Hall) -> None:
    to_decryption(client, hall)
    a, b = hall.bidders[0], hall.bidders[1]
    # someone else's bid
    refused(post(client, a.user, hall, "decrypt", {"bid_id": bid_id(hall, 1), "content_key": content_key(b)}), 403,
            "not_your_bid")
    # a wrong key: refused, counted as a failed attempt, retry allowed
    wrong = b64url(bytes(32))
    refused(post(client, a.user, hall, "decrypt", {"bid_id": bid_id(hall, 0), "content_key": wrong}), 422,
            "key_mismatch")
    mine = [x for x in snapshot(client, a.user, hall)["bids"] if x["mine"]][0]
    assert mine["attempts"] == 1 and mine["status"] == "listed"
    refused(post(client, a.user, hall, "decrypt", {"bid_id": bid_id(hall, 0), "content_key": "short"}), 422,
            "invalid_body")
    # a bidder acting as host
    refused(post(client, a.user, hall, "close-window"), 403, "role_forbidden")
    # the right key opens; twice is refused
    assert post(client, a.user, hall, "decrypt", {"bid_id": bid_id(hall, 0),
                                                  "content_key": content_key(a)}).status_code == 200
    refused(post(client, a.user, hall, "decrypt", {"bid_id": bid_id(hall, 0), "content_key": content_key(a)}), 409,
            "already_opened")
    # after the window
    end_window(hall)
    refused(post(client, b.user, hall, "decrypt", {"bid_id": bid_id(hall, 1), "content_key": content_key(b)}), 409,
            "window_closed")
    # another agent is not this tender's host
    other = make_user(hall.dsn, "agent")
    refused(post(client, other, hall, "close-window"), 403, "not_host")
    # a custodian's share outside the custodian step
    refused(post(client, hall.custodians[0], hall, "shares", {"shares": [{"bid_id": bid_id(hall, 1),
                                                                        "share": share(hall, b, 1)}]}), 409, "wrong_step")


def test_steps_out_of_order_and_early_acts_are_refused(client: TestClient, hall: Hall, validator: Any) -> None:
    before = client.get(f"/api/tenders/{hall.id}/ocds").json()
    assert ocds_errors(validator, before) == [] and "bids" not in before["releases"][0]
    refused(post(client, hall.agent, hall, "close-submissions"), 409, "wrong_step")
    assert post(client, hall.agent, hall, "start-sign-in").status_code == 200
    refused(post(client, hall.agent, hall, "start-sign-in"), 409, "wrong_step")
    refused(post(client, hall.agent, hall, "close-submissions"), 409, "before_deadline")
    assert post(client, hall.bidders[0].user, hall, "sign-in").status_code == 200
    refused(post(client, hall.bidders[0].user, hall, "sign-in"), 409, "already_signed_in")
    outsider = make_user(hall.dsn, "bidder")
    refused(post(client, outsider, hall, "sign-in"), 403, "not_a_bidder")
    # before the list, other bidders see neither who signed in nor who wrote
    assert post(client, hall.bidders[0].user, hall, "chat", {"text": "你好"}).status_code == 200
    refused(post(client, hall.bidders[0].user, hall, "chat", {"text": "again"}), 429, "chat_too_fast")
    refused(post(client, hall.bidders[1].user, hall, "chat", {"text": "hi"}), 409, "not_signed_in")
    other_view = snapshot(client, hall.bidders[1].user, hall)
    assert other_view["bidders"] == [] and other_view["chat"][0]["by"] is None
    host_view = snapshot(client, hall.agent, hall)
    assert [b["signed_in_at"] is not None for b in host_view["bidders"]] == [True]
    refused(post(client, hall.bidders[0].user, hall, "objections", {"text": ""}), 422, "invalid_body")
    refused(post(client, hall.bidders[0].user, hall, "objections", {"text": "x" * 2001}), 422, "invalid_body")


def test_missing_deposits_fail_the_opening(client: TestClient, hall: Hall) -> None:
    assert post(client, hall.agent, hall, "start-sign-in").status_code == 200
    pass_deadline(hall)
    assert post(client, hall.agent, hall, "close-submissions").status_code == 200
    r = post(client, hall.agent, hall, "deposits", {"organisation_id": str(hall.bidders[0].user.organisation_id),
                                                    "deposit": "missing", "note": "未到账"})
    assert r.status_code == 200
    refused(post(client, hall.agent, hall, "deposits", {"organisation_id": str(uuid.uuid4()),
                                                         "deposit": "confirmed"}), 404, "bidder_not_found")
    refused(post(client, hall.agent, hall, "deposits", {"organisation_id": str(uuid.uuid4()), "deposit": "maybe"}),
            422, "invalid_body")
    r = post(client, hall.agent, hall, "publish-bidders")
    assert r.json()["step"] == "failed", r.text
    state = snapshot(client, hall.bidders[1].user, hall)
    assert state["step"] == "failed" and "needs at least 3" in state["failure_reason"]
    assert {b["status"] for b in state["bids"]} == {"excluded"}


def test_a_tender_hiding_its_bid_count_shows_it_nowhere_before_the_list(client: TestClient, database_url: str) -> None:
    hall = make_hall(client, database_url, show_bid_count=False)
    assert post(client, hall.agent, hall, "start-sign-in").status_code == 200
    assert post(client, hall.bidders[0].user, hall, "sign-in").status_code == 200
    seen = snapshot(client, hall.bidders[1].user, hall)
    assert seen["bids_received"] is None and seen["signed_in_count"] is None
    assert client.get(f"/api/tenders/{hall.id}").json()["tender"]["bids_received"] is None
    host = snapshot(client, hall.agent, hall)
    assert host["bids_received"] == 3 and host["signed_in_count"] == 1
    payloads = run_db(hall.dsn, lambda c: c.fetch(
        "SELECT payload FROM events WHERE topic = $1 AND kind IN ('hall.signed_in', 'bid.received')", f"tender:{hall.id}"))
    assert payloads and all("signed_in" not in p["payload"] and "bids" not in p["payload"] for p in payloads)
    bodies = run_db(hall.dsn, lambda c: c.fetch("SELECT body FROM log_entries WHERE kind = 'opening.signed_in'"))
    assert bodies and all('"signed_in"' not in b["body"] for b in bodies)


def test_void_rule_voids_bids_not_decrypted(client: TestClient, database_url: str) -> None:
    hall = make_hall(client, database_url, rule="void", min_bidders=2)
    to_decryption(client, hall)
    for i in (0, 1):
        assert post(client, hall.bidders[i].user, hall, "decrypt", {
            "bid_id": bid_id(hall, i), "content_key": content_key(hall.bidders[i])}).status_code == 200
    end_window(hall)
    assert post(client, hall.agent, hall, "close-window").json()["step"] == "reading"
    statuses = sorted(b["status"] for b in snapshot(client, hall.agent, hall)["bids"])
    assert statuses == ["opened", "opened", "void"]


def test_restart_in_the_decryption_window_loses_nothing(client: TestClient, hall: Hall, settings: Settings) -> None:
    to_decryption(client, hall)
    with serve(settings) as base:
        with httpx.Client(base_url=base) as web:
            login(web, hall.bidders[0].user)  # type: ignore[arg-type]
            r = web.post(hall.url("decrypt"), json={"bid_id": bid_id(hall, 0), "content_key": content_key(hall.bidders[0])})
            assert r.status_code == 200, r.text
            before = web.get(hall.url()).json()["hall"]
    with serve(settings) as base:  # a fresh process state: everything comes from the database
        with httpx.Client(base_url=base) as web:
            login(web, hall.bidders[1].user)  # type: ignore[arg-type]
            after = web.get(hall.url()).json()["hall"]
            assert after["step"] == "decryption" and after["window_ends_at"] == before["window_ends_at"]
            assert after["progress"]["decrypted"] == 1
            r = web.post(hall.url("decrypt"), json={"bid_id": bid_id(hall, 1), "content_key": content_key(hall.bidders[1])})
            assert r.status_code == 200, r.text
            assert web.get(hall.url()).json()["hall"]["progress"]["decrypted"] == 2


def test_shares_need_the_right_custodian_and_count_once(client: TestClient, hall: Hall) -> None:
    to_decryption(client, hall)
    end_window(hall)
    assert post(client, hall.agent, hall, "close-window").json()["step"] == "custodians"
    third = hall.bidders[2]
    refused(post(client, hall.bidders[0].user, hall, "shares", {"shares": [
        {"bid_id": bid_id(hall, 2), "share": share(hall, third, 1)}]}), 403, "not_custodian")
    bad = base64.urlsafe_b64encode(bytes(33)).decode().rstrip("=")
    assert post(client, hall.custodians[0], hall, "shares", {"shares": [
        {"bid_id": bid_id(hall, 2), "share": bad}]}).status_code == 200
    refused(post(client, hall.custodians[0], hall, "shares", {"shares": [
        {"bid_id": bid_id(hall, 2), "share": share(hall, third, 1)}]}), 409, "share_already_released")
    # a bad share plus one good one cannot open; a third good one does (the bad one is skipped)
    assert post(client, hall.custodians[1], hall, "shares", {"shares": [
        {"bid_id": bid_id(hall, 2), "share": share(hall, third, 2)}]}).json()["opened"] == 0
    assert post(client, hall.custodians[2], hall, "shares", {"shares": [
        {"bid_id": bid_id(hall, 2), "share": share(hall, third, 3)}]}).json()["opened"] == 1


def _keyfile(tmp_path: Any, name: str, keys: Any) -> list[str]:
    path = tmp_path / f"{name}.keys"
    path.write_bytes(encrypt_keyfile(name, keys.sign, keys.decrypt, "a long passphrase", iterations=1000))
    (tmp_path / "pass").write_text("a long passphrase\n")
    return ["--keys", str(path), "--passphrase-file", str(tmp_path / "pass")]


def _login_args(tmp_path: Any, user: Any) -> list[str]:
    (tmp_path / f"pw-{user.username}").write_text(user.password)
    return ["--username", user.username, "--password-file", str(tmp_path / f"pw-{user.username}")]


def test_cli_decrypts_a_bid_and_releases_custodian_shares(client: TestClient, hall: Hall, settings: Settings,
                                                          tmp_path: Any, capsys: Any) -> None:
    to_decryption(client, hall)
    first = hall.bidders[0]
    with serve(settings) as base:
        common = ["--server", base, "--tender", hall.id]
        assert cli.main(["hall", "decrypt", *common, *_login_args(tmp_path, first.user),
                         *_keyfile(tmp_path, "bidder", first.keys)]) == 0
        assert "decrypted and verified" in capsys.readouterr().out
        # a key file that is not the bidder's: unwrapping fails on this machine and nothing is sent
        assert cli.main(["hall", "decrypt", *common, *_login_args(tmp_path, hall.bidders[1].user),
                         *_keyfile(tmp_path, "wrong", hall.custodian_keys[0])]) == 1
        assert "cannot unwrap" in capsys.readouterr().out
        end_window(hall)
        assert post(client, hall.agent, hall, "close-window").json()["step"] == "custodians"
        for position in (1, 2):
            assert cli.main(["hall", "release", *common, *_login_args(tmp_path, hall.custodians[position - 1]),
                             *_keyfile(tmp_path, f"custodian{position}", hall.custodian_keys[position - 1])]) == 0
        assert "2 bid(s) opened now" in capsys.readouterr().out
        assert cli.main(["hall", "release", *common, *_login_args(tmp_path, hall.custodians[2]),
                         *_keyfile(tmp_path, "custodian3", hall.custodian_keys[2])]) == 2
    state = snapshot(client, hall.agent, hall)
    assert state["step"] == "reading" and state["progress"]["decrypted"] == 3
