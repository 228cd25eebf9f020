"""The event bus across server instances: live delivery, resume without loss or duplicates, access."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import anyio
import asyncpg
import pytest
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tenderhall import bus
from tenderhall.accounts import CurrentUser
from tenderhall.app import create_app
from tenderhall.event_routes import topic_allowed
from tenderhall.settings import Settings
from tests.factories import login, make_user, run_db

TIMEOUT = 10.0


def receive(ws: WebSocketTestSession, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next JSON message, failing the test after `timeout` seconds instead of hanging.

    (TestClient's receive has no timeout; this waits on the same stream inside its portal.)
    Raises WebSocketDisconnect when the server closed the socket.
    """

    async def next_message() -> Any:
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    message = ws.portal.call(next_message)
    ws._raise_on_close(message)
    return json.loads(message["text"])


def closed_with(ws: WebSocketTestSession) -> tuple[int, str]:
    with pytest.raises(WebSocketDisconnect) as caught:
        receive(ws)
    return caught.value.code, caught.value.reason


def emit(dsn: str, topic: str, *kinds: str, rollback: bool = False) -> list[int]:
    """Emit events in one transaction and commit it (or roll it back); return their ids."""

    class Rollback(Exception):
        pass

    async def work(conn: asyncpg.Connection) -> list[int]:
        ids: list[int] = []
        try:
            async with conn.transaction():
                for kind in kinds:
                    ids.append(await bus.emit(conn, topic, kind, {"kind": kind}))
                if rollback:
                    raise Rollback
        except Rollback:
            pass
        return ids

    return run_db(dsn, work)


@pytest.fixture
def two_instances(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """Two app instances on one database, as behind a load balancer (separate data dirs)."""
    other = settings.with_(data_dir=tmp_path / "instance-b")
    with TestClient(create_app(settings)) as a, TestClient(create_app(other)) as b:
        yield a, b


def tender_topic() -> str:
    return f"tender:{uuid.uuid4()}"


def test_an_event_committed_anywhere_reaches_subscribers_on_every_instance(
    two_instances: tuple[TestClient, TestClient], database_url: str
) -> None:
    a, b = two_instances
    user = make_user(database_url, "bidder")
    login(a, user)
    login(b, user)
    topic = tender_topic()
    with a.websocket_connect(f"/ws/events?topic={topic}") as on_a, b.websocket_connect(f"/ws/events?topic={topic}") as on_b:
        [event_id] = emit(database_url, topic, "bid.received")
        for ws in (on_a, on_b):
            message = receive(ws)
            assert message["id"] == event_id
            assert (message["topic"], message["kind"], message["payload"]) == (topic, "bid.received", {"kind": "bid.received"})
            assert message["created_at"]


def test_reconnecting_with_the_last_id_gets_exactly_the_missed_events(
    two_instances: tuple[TestClient, TestClient], database_url: str
) -> None:
    a, b = two_instances
    user = make_user(database_url, "agent")
    login(a, user)
    login(b, user)
    topic = tender_topic()
    with b.websocket_connect(f"/ws/events?topic={topic}") as ws:
        [first] = emit(database_url, topic, "opening.started")
        assert receive(ws)["id"] == first
    missed = emit(database_url, topic, "bid.decrypted", "bid.decrypted", "bid.read")
    emit(database_url, tender_topic(), "elsewhere")  # another topic: never delivered here
    # Reconnect to the *other* instance, as a load balancer may send it.
    with a.websocket_connect(f"/ws/events?topic={topic}&after={first}") as ws:
        assert [receive(ws)["id"] for _ in missed] == missed
        live = emit(database_url, topic, "opening.closed", "record.signed")
        assert [receive(ws)["id"] for _ in live] == live  # no duplicate of the backlog, no gap
    assert missed == sorted(missed) and live[0] > missed[-1]


def test_events_of_a_rolled_back_transaction_never_arrive(
    two_instances: tuple[TestClient, TestClient], database_url: str
) -> None:
    _, b = two_instances
    login(b, make_user(database_url, "expert"))
    topic = tender_topic()
    with b.websocket_connect(f"/ws/events?topic={topic}") as ws:
        assert emit(database_url, topic, "phantom", rollback=True)
        [marker] = emit(database_url, topic, "marker")
        message = receive(ws)
        assert (message["id"], message["kind"]) == (marker, "marker")
    assert [e["kind"] for e in b.get(f"/api/events?topic={topic}").json()["events"]] == ["marker"]


def test_anonymous_socket_is_closed_4401(two_instances: tuple[TestClient, TestClient]) -> None:
    a, _ = two_instances
    with a.websocket_connect(f"/ws/events?topic={tender_topic()}") as ws:
        assert closed_with(ws) == (4401, "log in first")


def test_topics_the_user_may_not_follow_are_closed_4403(
    two_instances: tuple[TestClient, TestClient], database_url: str
) -> None:
    a, _ = two_instances
    bidder = make_user(database_url, "bidder")
    login(a, bidder)
    for topic in (f"org:{uuid.uuid4()}", f"user:{uuid.uuid4()}", "platform", "nonsense", f"tender:{str(uuid.uuid4()).upper()}"):
        with a.websocket_connect(f"/ws/events?topic={topic}") as ws:
            assert closed_with(ws) == (4403, "topic not allowed"), topic
        response = a.get("/api/events", params={"topic": topic})
        assert response.status_code == 403 and response.json()["error"]["message"] == "topic not allowed"
    # The bidder's own organisation and own user topics are fine.
    for topic in (f"org:{bidder.organisation_id}", f"user:{bidder.id}"):
        [event_id] = emit(database_url, topic, "notice")
        with a.websocket_connect(f"/ws/events?topic={topic}") as ws:
            assert receive(ws)["id"] == event_id


def test_malformed_after_is_closed_4400(two_instances: tuple[TestClient, TestClient], database_url: str) -> None:
    a, _ = two_instances
    login(a, make_user(database_url, "agent"))
    for query in (f"topic={tender_topic()}&after=-1", f"topic={tender_topic()}&after=abc", "after=3"):
        with a.websocket_connect(f"/ws/events?{query}") as ws:
            assert closed_with(ws)[0] == 4400, query
    assert a.get(f"/api/events?topic={tender_topic()}&after=x").status_code == 400
    assert a.get("/api/events").status_code == 400


def test_a_subscriber_that_falls_behind_is_closed_4409_and_resumes(
    two_instances: tuple[TestClient, TestClient], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two_instances
    login(a, make_user(database_url, "agent"))
    monkeypatch.setattr(bus, "QUEUE_LIMIT", 2)  # the pump delivers a batch faster than the queue holds
    topic = tender_topic()
    received: list[int] = []
    with a.websocket_connect(f"/ws/events?topic={topic}") as ws:
        [marker] = emit(database_url, topic, "marker")
        assert receive(ws)["id"] == marker  # from here on, new events come through the live queue
        ids = emit(database_url, topic, *[f"live{i}" for i in range(8)])
        with pytest.raises(WebSocketDisconnect) as caught:
            while True:
                received.append(receive(ws)["id"])
        assert caught.value.code == 4409
    last = received[-1] if received else marker
    with a.websocket_connect(f"/ws/events?topic={topic}&after={last}") as ws:
        received += [receive(ws)["id"] for _ in range(len(ids) - len(received))]
    assert received == ids


def test_polling_endpoint_pages_after_an_id(two_instances: tuple[TestClient, TestClient], database_url: str) -> None:
    a, _ = two_instances
    assert a.get(f"/api/events?topic={tender_topic()}").status_code == 401
    login(a, make_user(database_url, "supervisor"))
    topic = tender_topic()
    ids = emit(database_url, topic, "a", "b", "c")
    body = a.get("/api/events", params={"topic": topic, "after": ids[0]}).json()
    assert [e["id"] for e in body["events"]] == ids[1:]
    assert body["last_id"] == ids[-1] and body["more"] is False


def _user(roles: set[str], org: uuid.UUID | None = None) -> CurrentUser:
    return CurrentUser(uuid.uuid4(), "u", "U", frozenset(roles), org)


def test_topic_allowed_rules() -> None:
    org = uuid.uuid4()
    bidder, admin = _user({"bidder"}, org), _user({"admin"})
    tender = uuid.uuid4()
    assert topic_allowed(bidder, f"tender:{tender}") and topic_allowed(admin, f"tender:{tender}")
    assert topic_allowed(bidder, f"org:{org}") and not topic_allowed(admin, f"org:{org}")
    assert topic_allowed(bidder, f"user:{bidder.id}") and not topic_allowed(bidder, f"user:{admin.id}")
    assert topic_allowed(admin, "platform") and not topic_allowed(bidder, "platform")
    for bad in ("", "tender:", "tender:nope", f"tender:{tender.hex}", f"bid:{tender}", f"org:{{{org}}}", "platform:x"):
        assert not topic_allowed(admin, bad), bad


def test_a_socket_closes_4401_once_its_session_has_ended(
    two_instances: tuple[TestClient, TestClient], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenderhall import event_routes

    monkeypatch.setattr(event_routes, "SESSION_RECHECK_SECONDS", 0.2)
    a, _ = two_instances
    agent = make_user(database_url, "agent")
    login(a, agent)
    topic = tender_topic()
    with a.websocket_connect(f"/ws/events?topic={topic}") as ws:
        [first] = emit(database_url, topic, "before")
        assert receive(ws)["id"] == first, "the socket works while the session lives"
        run_db(database_url, lambda c: c.execute("DELETE FROM sessions WHERE user_id = $1", agent.id))  # logout elsewhere

        def busy_topic() -> None:  # an event every 50 ms for 2 s: the socket is never quiet
            for _ in range(40):
                emit(database_url, topic, "busy")
                time.sleep(0.05)

        emitter = threading.Thread(target=busy_topic)
        emitter.start()
        messages = []
        try:
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    messages.append(ws.receive_json())
        finally:
            emitter.join()
        assert (closed.value.code, closed.value.reason) == (4401, "the session has ended; log in again")
        assert len(messages) < 40, "closed while events were still flowing"
