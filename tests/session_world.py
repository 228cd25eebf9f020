"""An evaluation-session world: a tender opened in the hall (real sealed bids, opened by their
bidders), a committee drawn and confirmed, venues with rooms, staff and a supervisor, and a
scheduled session. Experts sign in with P-256 keys made here as a browser would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from starlette.testclient import TestClient

from evaluation.session_state import declaration_message, report_signature_message
from tenderhall.canonical import b64url
from tests.draw_world import Secret, add_expert, evaluation_request
from tests.factories import TestUser as User, login, make_user, run_db
from tests.hall_world import Hall, content_key, make_hall, post, shift, to_decryption


@dataclass
class Expert:
    user: User
    expert_id: uuid.UUID
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key(self) -> str:
        return b64url(self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))

    def sign(self, message: bytes) -> str:
        r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
        return b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass
class SessionWorld:
    client: TestClient
    hall: Hall
    draw: dict[str, Any]
    experts: list[Expert]
    rooms: list[str]
    staff: list[User]
    supervisor: User
    admin: User
    session_id: str = ""

    @property
    def agent(self) -> User:
        return self.hall.agent

    @property
    def url(self) -> str:
        return f"/api/sessions/{self.session_id}"

    @property
    def bidders(self) -> list[str]:
        return [str(b.user.organisation_id) for b in self.hall.bidders]

    def act(self, user: User, act: str, body: Any = None) -> Any:
        login(self.client, user)
        return self.client.post(f"{self.url}/acts/{act}", json=body if body is not None else {})

    def snapshot(self, user: User) -> dict[str, Any]:
        login(self.client, user)
        response = self.client.get(self.url)
        assert response.status_code == 200, response.text
        return response.json()["session"]


def ok(response: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def open_hall(client: TestClient, dsn: str, bidders: int = 3, files: list[tuple[str, bytes]] | None = None) -> Hall:
    """A tender whose bids were opened by their bidders, with the opening closed."""
    hall = make_hall(client, dsn, bidders=bidders, rule="void", min_bidders=1, files=files)
    to_decryption(client, hall)
    for b in hall.bidders:
        response = post(client, b.user, hall, "decrypt", {"bid_id": b.bids[-1]["bid"], "content_key": content_key(b)})
        assert response.status_code == 200, response.text
    # The record, its confirmations and the close are the hall's own tests; the session needs a closed opening.
    shift(dsn, "UPDATE openings SET step = 'closed' WHERE tender_id = $1", uuid.UUID(hall.id))
    return hall


def draw_committee(client: TestClient, dsn: str, hall: Hall, count: int) -> tuple[dict[str, Any], list[Expert]]:
    """Experts with logins, drawn for the tender and each accepting in the app."""
    experts = []
    for _ in range(count):
        person = make_user(dsn, "expert")
        experts.append(Expert(person, add_expert(dsn, user_id=person.id)))
    login(client, hall.agent)
    secret = Secret()
    response = client.post("/api/draws", json=evaluation_request(hall.id, secret, count=count, backups=0,
                                                                 needed_in_minutes=30))
    assert response.status_code == 201, response.text
    draw = response.json()["draw"]
    response = client.post(f"/api/draws/{draw['id']}/run", json={"secret": secret.text})
    assert response.status_code == 200, response.text
    for e in experts:
        login(client, e.user)
        [invitation] = client.get("/api/draws/invitations").json()["invitations"]
        reply = client.post(f"/api/draws/{draw['id']}/seats/{invitation['position']}/reply", json={"answer": "accept"})
        assert reply.status_code == 200, reply.text
    return draw, experts


def make_venues(client: TestClient, admin: User, count: int) -> list[str]:
    """One venue per room: the main venue (Fuzhou) first, then sub-venues in other cities."""
    login(client, admin)
    cities = [("福州市公共资源交易中心", "350100"), ("厦门市公共资源交易中心", "350200"), ("泉州市公共资源交易中心", "350500"),
              ("漳州市公共资源交易中心", "350600"), ("龙岩市公共资源交易中心", "350800")]
    rooms = []
    for name, region in cities[:count]:
        created = ok(client.post("/api/venues", json={"name": name, "region_code": region,
                                                      "rooms": [{"name": "评标室1", "seats": 5}]}))
        rooms.append(created["rooms"][0])
    return rooms


def make_world(client: TestClient, dsn: str, *, experts: int = 3, rooms: int = 3, bidders: int = 3,
               schedule: bool = True, files: list[tuple[str, bytes]] | None = None, **session: Any) -> SessionWorld:
    hall = open_hall(client, dsn, bidders, files)
    draw, people = draw_committee(client, dsn, hall, experts)
    admin = make_user(dsn, "admin")
    room_ids = make_venues(client, admin, rooms)
    staff = [hall.agent] + [make_user(dsn, "agent") for _ in range(rooms - 1)]
    world = SessionWorld(client, hall, draw, people, room_ids, staff, make_user(dsn, "supervisor"), admin)
    if schedule:
        login(client, hall.agent)
        body = {"tender_id": hall.id, "scheduled_start": draw["needed_at"],
                "rooms": [{"room_id": r, "staff_id": str(s.id)} for r, s in zip(room_ids, staff)],
                "supervisors": [str(world.supervisor.id)], **session}
        world.session_id = ok(client.post("/api/sessions", json=body))["id"]
    return world


def sign_in_all(world: SessionWorld, opened: bool = False) -> None:
    """Open sign-in (the names unseal), every expert signs in at a room, every room is confirmed."""
    if not opened:
        ok(world.act(world.agent, "open-sign-in"))
    for i, e in enumerate(world.experts):
        ok(world.act(e.user, "sign-in", {"room_id": world.rooms[i % len(world.rooms)], "public_key": e.public_key}))
    for room, staff in zip(world.rooms, world.staff):
        ok(world.act(staff, "confirm-room", {"room_id": room}))


def declare(world: SessionWorld, e: Expert, conflict: bool = False, statement: str = "本人与投标人无利害关系。") -> Any:
    signature = e.sign(declaration_message(world.session_id, conflict, statement))
    return world.act(e.user, "declare", {"conflict": conflict, "statement": statement, "signature": signature})


def sign_report(world: SessionWorld, e: Expert, sha256: str, dissent: str | None = None) -> Any:
    body: dict[str, Any] = {"signature": e.sign(report_signature_message(world.session_id, sha256))}
    if dissent is not None:
        body["dissent"] = dissent
    return world.act(e.user, "sign-report", body)


def through_election(world: SessionWorld) -> Expert:
    """Sign-in, declarations and the chair vote; returns the chair."""
    sign_in_all(world)
    ok(world.act(world.agent, "advance"))
    for e in world.experts:
        ok(declare(world, e))
    ok(world.act(world.agent, "advance"))
    chair = world.experts[0]
    for e in world.experts:  # until a strict majority elects the chair
        if ok(world.act(e.user, "vote", {"candidate": str(chair.user.id)}))["winner"]:
            break
    ok(world.act(world.agent, "advance"))
    return chair


def pass_all(world: SessionWorld) -> None:
    criteria = [c["id"] for c in world.snapshot(world.experts[0].user)["scheme"]["initial_review"]]
    for e in world.experts:
        cells = [{"bidder": b, "criterion": c, "passed": True} for b in world.bidders for c in criteria]
        ok(world.act(e.user, "review", {"verdicts": cells}))


def set_dsn_time(dsn: str, sql: str, *args: Any) -> None:
    run_db(dsn, lambda c: c.execute(sql, *args))
