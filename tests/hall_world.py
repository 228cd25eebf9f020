"""An opening-hall world for integration and browser tests: a host, custodians, bidders with sealed bids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.testclient import TestClient

from tenderhall.canonical import b64url
from tests.factories import TestUser as User, login, make_user, run_db
from tests.integration.test_submission import (
    Keys, World, credit_code_of, publish_tender, register_keys, submit, tender_input,
)
from trading import key_wrap
from trading.manifest import validate_manifest


@dataclass
class Bidder:
    user: User
    keys: Keys
    credit_code: str
    bids: list[dict[str, Any]] = field(default_factory=list)

    def world(self, hall: "Hall") -> World:
        return World(hall.dsn, hall.agent, self.user, self.keys, hall.custodian_keys, hall.tender, self.credit_code)


@dataclass
class Hall:
    dsn: str
    agent: User
    custodians: list[User]
    custodian_keys: list[Keys]
    bidders: list[Bidder]
    tender: dict[str, Any]

    @property
    def id(self) -> str:
        return self.tender["id"]

    def url(self, action: str = "") -> str:
        return f"/api/tenders/{self.id}/hall" + (f"/{action}" if action else "")


# Not the insider test's marker price: read-out prices legitimately reach the database WAL.
PRICES = ["88765432.10", "87000000.00", "89100000.50"]


def make_hall(client: TestClient, dsn: str, *, bidders: int = 3, rule: str = "custodians", threshold: int = 2,
              custodians: int = 3, files: list[tuple[str, bytes]] | None = None, **tender: Any) -> Hall:
    """Publish a one-lot tender and submit one sealed bid per bidder (the deadline is still ahead)."""
    agent = make_user(dsn, "agent")
    people = [make_user(dsn, "custodian") for _ in range(custodians if rule == "custodians" else 0)]
    custodian_keys = [register_keys(client, c) for c in people]
    group = []
    for _ in range(bidders):
        user = make_user(dsn, "bidder")
        group.append(Bidder(user, register_keys(client, user), credit_code_of(dsn, user.organisation_id)))
    # The deadline is two hours ahead; the hall opens before it so the tests can walk in.
    tender.setdefault("hall_opens_minutes", 240)
    data = tender_input(people, threshold if rule == "custodians" else 0, decryption_rule=rule,
                        lots=[{"code": "L1", "name": "一标段", "budget": "100000000.00"}], **tender)
    published = publish_tender(client, agent, data)
    hall = Hall(dsn, agent, people, custodian_keys, group, published)
    for i, b in enumerate(group):
        login(client, b.user)
        summary = {"price": PRICES[i % len(PRICES)], "duration_days": 180 + i, "quality": "合格"}
        b.bids.append(submit(client, b.world(hall), summary=summary, **({"files": files} if files else {})))
    return hall


def shift(dsn: str, sql: str, *args: Any) -> None:
    run_db(dsn, lambda c: c.execute(sql, *args))


def pass_deadline(hall: Hall) -> None:
    moment = datetime.now(timezone.utc) - timedelta(seconds=1)
    shift(hall.dsn, "UPDATE tenders SET deadline = $2 WHERE id = $1", uuid.UUID(hall.id), moment)


def end_window(hall: Hall) -> None:
    moment = datetime.now(timezone.utc) - timedelta(seconds=1)
    shift(hall.dsn, "UPDATE openings SET window_ends_at = $2 WHERE tender_id = $1", uuid.UUID(hall.id), moment)


def content_key(bidder: Bidder) -> str:
    manifest = validate_manifest(bidder.bids[-1]["sealed"].manifest)
    return b64url(key_wrap.unwrap_bidder_key(manifest.bidder_wrap.enc, bidder.keys.decrypt))


def share(hall: Hall, bidder: Bidder, position: int) -> str:
    manifest = validate_manifest(bidder.bids[-1]["sealed"].manifest)
    wrap = manifest.custodian_wraps[position - 1]
    return b64url(key_wrap.unwrap_share(wrap.enc, hall.custodian_keys[position - 1].decrypt))


def post(client: TestClient, user: User, hall: Hall, action: str, body: Any = None) -> Any:
    login(client, user)
    return client.post(hall.url(action), json=body if body is not None else {})


def to_decryption(client: TestClient, hall: Hall) -> None:
    """Walk the host through sign-in, the deadline, deposits and the published list."""
    assert post(client, hall.agent, hall, "start-sign-in").status_code == 200
    for b in hall.bidders:
        r = post(client, b.user, hall, "sign-in")
        assert r.status_code == 200, r.text
    pass_deadline(hall)
    r = post(client, hall.agent, hall, "close-submissions")
    assert r.status_code == 200, r.text
    for b in hall.bidders:
        r = post(client, hall.agent, hall, "deposits", {"organisation_id": str(b.user.organisation_id),
                                                        "deposit": "confirmed"})
        assert r.status_code == 200, r.text
    r = post(client, hall.agent, hall, "publish-bidders")
    assert r.status_code == 200 and r.json()["step"] == "decryption", r.text
