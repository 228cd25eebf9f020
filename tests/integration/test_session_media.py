"""A session's media through the real app: aiortc clients signal over the session socket (and the
HTTP routes), media flows through the session's worker process, recordings are logged and served,
rooms' presence drives the fault rules, and a stalled publisher raises one alert.

The aiortc clients live on the TestClient's event loop (client.portal), so they keep sending and
receiving while the test thread waits on the app.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest
from aiortc import RTCRtpSender
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import evaluation.session_media
from evaluation.jobs import apply_fault_rules
from evaluation.session_service import media_room
from tenderhall.settings import Settings
from tests.factories import login, make_user, run_db
from tests.rtc_peers import PublisherPeer, ViewerPeer, accept, opus_packets, vp8_frames
from tests.session_world import SessionWorld, make_world, ok, refused, sign_in_all
from tests.unit.test_media_hub import assert_contiguous, decode_counts, frame_indices, wait_until

# A hang (a reply or event that never comes) fails here rather than after the suite's 300 s.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Loopback ICE for the workers; the app's own live check out of the way (the tests call it)."""
    monkeypatch.setattr(evaluation.session_media, "LIVE_CHECK_SECONDS", 3600.0)
    return dataclasses.replace(settings, rtc_host_addresses=("127.0.0.1",))


@pytest.fixture(scope="module")
def media() -> dict[str, list[bytes]]:
    return {"video": vp8_frames(320, 240, 60, keyint=15, bitrate=300_000, seed=5), "audio": opus_packets(50)}


# ---------------------------------------------------------------------------- helpers


class Socket:
    """A session socket: numbered requests whose replies are matched by id, events kept in order."""

    def __init__(self, client: TestClient, user: Any, session_id: str) -> None:
        login(client, user)
        self.ws = client.websocket_connect(f"/ws/sessions/{session_id}")
        self.ws.__enter__()
        self.events: list[dict[str, Any]] = []
        self._next = 0
        self.open = True
        # One round trip: the server has now taken this socket in (a room's terminal is counted).
        refused_reply(self.ask("hello"), 400, "unknown_type")

    def ask(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._next += 1
        self.ws.send_json({"id": self._next, "type": kind, **fields})
        while True:
            message = self.ws.receive_json()
            if message.get("type") == "reply" and message.get("id") == self._next:
                return message
            self.events.append(message)

    def event(self, kind: str) -> dict[str, Any]:
        """The first event of `kind` not yet taken, reading on until it comes."""
        while True:
            for i, event in enumerate(self.events):
                if event.get("kind") == kind:
                    return self.events.pop(i)
            self.events.append(self.ws.receive_json())

    def close(self) -> None:
        if self.open:
            self.open = False
            self.ws.__exit__(None, None, None)


def answer(reply: dict[str, Any]) -> dict[str, str]:
    assert reply["ok"] is True, reply
    return reply["result"]


def refused_reply(reply: dict[str, Any], status: int, code: str) -> None:
    assert reply["ok"] is False and (reply["status"], reply["error"]["code"]) == (status, code), reply


def on_loop(client: TestClient, make: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Build an aiortc peer on the app's loop, where its connection will run."""

    async def build() -> Any:
        return make(*args, **kwargs)

    return client.portal.call(build)


def h264_publisher(media: dict[str, list[bytes]]) -> PublisherPeer:
    """A publisher whose video section offers H.264 only (no VP8)."""
    peer = PublisherPeer(media["video"], media["audio"])
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    for transceiver in peer.pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(h264)
    return peer


def scalar(dsn: str, sql: str, *args: Any) -> Any:
    return run_db(dsn, lambda c: c.fetchval(sql, *args))


def eventually(dsn: str, sql: str, *args: Any, what: str, timeout: float = 20.0) -> Any:
    """Poll a query until it returns a truthy value (work the app finishes after a call returns)."""
    give_up = time.monotonic() + timeout
    while not (value := scalar(dsn, sql, *args)):
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)  # polling the database, not waiting for a fixed event
    return value


def close_peers(client: TestClient, *peers: Any) -> None:
    for peer in peers:
        if peer is not None:
            client.portal.call(peer.close)


def down_since(client: TestClient, world: SessionWorld, room: str) -> Any:
    """The room's down_since once the presence updates under way are done."""
    client.portal.call(client.app_state["session_media"].settled)
    return scalar(client.app_state["settings"].database_url,
                  "SELECT down_since FROM session_rooms WHERE session_id = $1 AND room_id = $2",
                  uuid.UUID(world.session_id), uuid.UUID(room))


# ---------------------------------------------------------------------------- tests


def test_rooms_send_and_receive_over_the_session_socket_and_every_refusal_is_precise(
        client: TestClient, settings: Settings, media: dict, tmp_path: Path) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=2, rooms=2, bidders=2)
    sign_in_all(world)
    (e0, e1), (room_a, room_b) = world.experts, world.rooms  # e0 sits in room a, e1 in room b
    session_media = client.app_state["session_media"]
    a, b, s = (Socket(client, u, world.session_id) for u in (e0.user, e1.user, world.supervisor))
    publisher = viewer = watcher = sender = h264 = None
    try:
        publisher = on_loop(client, PublisherPeer, media["video"], media["audio"])
        publish_offer = client.portal.call(publisher.offer)
        viewer = on_loop(client, ViewerPeer, keep=True)
        view_offer = client.portal.call(viewer.offer)
        sender = on_loop(client, ViewerPeer, send_video=media["video"])
        sendrecv_offer = client.portal.call(sender.offer)
        h264 = on_loop(client, h264_publisher, media)
        h264_offer = client.portal.call(h264.offer)
        assert "VP8" not in h264_offer["sdp"] and "H264" in h264_offer["sdp"]

        # Supervisors receive only; a view that would send is refused whoever asks.
        refused_reply(s.ask("publish", offer=publish_offer), 403, "receive_only")
        refused_reply(s.ask("view", room=room_a, offer=sendrecv_offer), 403, "receive_only")
        refused_reply(b.ask("view", room=room_a, offer=sendrecv_offer), 403, "receive_only")
        refused_reply(a.ask("publish", offer=h264_offer), 422, "codec_unsupported")
        refused_reply(b.ask("view", room=room_a, offer=h264_offer), 422, "codec_unsupported")
        refused_reply(b.ask("view", room=room_b, offer=view_offer), 422, "own_room")
        refused_reply(b.ask("view", room=str(uuid.uuid4()), offer=view_offer), 422, "unknown_room")
        refused_reply(b.ask("view", room="room b", offer=view_offer), 422, "invalid_body")
        # Someone off the committee: refused over HTTP, and their socket is closed 4403 (a user
        # with no part at all: 4404, the session's existence is not told).
        outsider = make_user(dsn, "expert")
        login(client, outsider)
        refused(client.post(f"{world.url}/media/publish", json=publish_offer), 403, "not_on_committee")
        refused(client.post(f"{world.url}/media/rooms/{room_a}/view", json=view_offer), 403, "not_on_committee")
        for user, code in ((outsider, 4403), (world.hall.bidders[0].user, 4404)):
            login(client, user)
            with client.websocket_connect(f"/ws/sessions/{world.session_id}") as ws, \
                    pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == code, closed.value
            assert closed.value.reason.startswith("not_on_committee:" if code == 4403 else "session_not_found:")
        # Nothing refused started the session's media worker.
        assert session_media.workers.running() == []

        # Room a publishes; room b and the supervisor (over HTTP) receive it, byte for byte.
        client.portal.call(accept, publisher.pc, answer(a.ask("publish", offer=publish_offer)))
        client.portal.call(viewer.accept, answer(b.ask("view", room=room_a, offer=view_offer)))
        watcher = on_loop(client, ViewerPeer)
        login(client, world.supervisor)
        watched = client.post(f"{world.url}/media/rooms/{room_a}/view", json=client.portal.call(watcher.offer))
        client.portal.call(watcher.accept, ok(watched))
        assert "a=sendonly" in watched.json()["sdp"] and "a=recvonly" not in watched.json()["sdp"]
        got = viewer.received
        client.portal.call(wait_until, lambda: len(got["video"].payloads) >= 30 and len(got["audio"].payloads) >= 20
                           and len(watcher.received["video"].arrivals) >= 10, "room b and the supervisor receiving")
        assert_contiguous(frame_indices(got["video"].payloads, media["video"]), len(media["video"]))
        assert set(got["audio"].payloads) <= set(media["audio"])
        [key] = session_media.workers.running()
        assert key == world.session_id

        # Room a hangs up: its segment is logged and listed, and decodes with audio and video.
        client.portal.call(publisher.close)
        eventually(dsn, "SELECT count(*) FROM session_segments", what="the segment's row")
        [row] = run_db(dsn, lambda c: c.fetch("SELECT * FROM session_segments"))
        entry = run_db(dsn, lambda c: c.fetchrow("SELECT body FROM log_entries WHERE kind = 'media.segment'"))
        body = json.loads(entry["body"])["body"]  # the stored entry: {"body", "index", "kind", "time"}
        assert row["room_id"] == uuid.UUID(room_a) and body["room"] == media_room(uuid.UUID(world.session_id),
                                                                                  uuid.UUID(room_a))
        assert body["sha256"] == row["sha256"] and body["segment"] == row["file_name"]
        assert s.event("media.segment")["payload"]["sha256"] == row["sha256"]
        login(client, e0.user)
        refused(client.get(f"{world.url}/recordings"), 403, "not_allowed")
        refused(client.get(f"{world.url}/recordings/{row['id']}"), 403, "not_allowed")
        login(client, world.supervisor)
        [listed] = ok(client.get(f"{world.url}/recordings"))["segments"]
        assert (listed["id"], listed["room"], listed["sha256"]) == (row["id"], room_a, row["sha256"])
        assert set(listed["tracks"]) == {"video/VP8", "audio/opus"}
        download = client.get(f"{world.url}/recordings/{row['id']}")
        assert download.status_code == 200 and download.headers["content-type"] == "video/webm"
        assert hashlib.sha256(download.content).hexdigest() == row["sha256"] and len(download.content) == row["bytes"]
        (tmp_path / "segment.webm").write_bytes(download.content)
        counts = decode_counts(tmp_path / "segment.webm")
        assert counts.get("video", 0) > 0 and counts.get("audio", 0) > 0, counts
        timing = ok(client.get(f"{world.url}/recordings/{row['id']}?timing=1"))
        assert timing["segment"] == row["file_name"] and {t["kind"] for t in timing["tracks"]} == {"video", "audio"}
        refused(client.get(f"{world.url}/recordings/999999"), 404, "segment_not_found")
    finally:
        close_peers(client, publisher, viewer, watcher, sender, h264)
        for socket in (a, b, s):
            socket.close()


def test_a_room_that_drops_after_the_start_rejoins_and_past_its_window_the_session_is_suspended(
        client: TestClient, settings: Settings, media: dict) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=2, rooms=2, bidders=2)
    sign_in_all(world)
    (e0, e1), (room_a, room_b) = world.experts, world.rooms
    session_media = client.app_state["session_media"]
    s = Socket(client, world.supervisor, world.session_id)
    a, b = Socket(client, e0.user, world.session_id), Socket(client, e1.user, world.session_id)
    publisher = None
    try:
        # Before the start a room's socket coming and going is not a fault.
        b.close()
        b = Socket(client, e1.user, world.session_id)
        assert down_since(client, world, room_b) is None
        ok(world.act(world.agent, "advance"))  # sign_in -> declarations: the evaluation has started
        # Room a publishes over HTTP this time.
        publisher = on_loop(client, PublisherPeer, media["video"], media["audio"])
        login(client, e0.user)
        published = client.post(f"{world.url}/media/publish", json=client.portal.call(publisher.offer))
        client.portal.call(accept, publisher.pc, ok(published))
        name = media_room(uuid.UUID(world.session_id), uuid.UUID(room_a))
        pid = client.portal.call(session_media.workers.hub, world.session_id).pid

        # A publisher delivering packets is live; one that stops (its connection kept) is reported once.
        client.portal.call(wait_until, lambda: publisher.video.sent >= 20, "the publisher connected and sending")
        assert client.portal.call(session_media.check_live) == []
        time.sleep(0.3)  # between two looks of the live check
        assert client.portal.call(session_media.check_live) == []
        senders = publisher.pc.getSenders()
        tracks = [sender.track for sender in senders]
        for sender in senders:
            sender.replaceTrack(None)
        stalled: list[str] = []
        deadline = time.monotonic() + 10
        while not stalled and time.monotonic() < deadline:
            time.sleep(0.3)  # between two looks of the live check
            stalled = client.portal.call(session_media.check_live)
        assert stalled == [name]
        assert client.portal.call(session_media.check_live) == []  # once per stall
        alert = s.event("session.alert")["payload"]
        assert (alert["alert"], alert["room"]) == ("recording_stalled", room_a)
        assert scalar(dsn, "SELECT count(*) FROM log_entries WHERE kind = 'session.alert'") == 1
        assert scalar(dsn, "SELECT count(*) FROM session_room_events WHERE kind = 'recording_stalled' "
                           "AND room_id = $1", uuid.UUID(room_a)) == 1
        for sender, track in zip(senders, tracks):
            sender.replaceTrack(track)

        # Room b's only socket goes: the room is down, and no step is taken until it is back.
        b.close()
        assert down_since(client, world, room_b) is not None
        assert s.event("session.room_dropped")["payload"]["room"] == room_b
        [snap_b] = [r for r in world.snapshot(world.supervisor)["rooms"] if r["id"] == room_b]
        assert snap_b["down_since"] is not None
        refused(world.act(world.agent, "advance"), 409, "room_down")
        b = Socket(client, e1.user, world.session_id)
        assert down_since(client, world, room_b) is None
        assert s.event("session.room_rejoined")["payload"]["room"] == room_b
        # Two sockets of one room: closing one leaves the room up.
        Socket(client, e1.user, world.session_id).close()
        assert down_since(client, world, room_b) is None
        assert scalar(dsn, "SELECT array_agg(kind ORDER BY id) FROM session_room_events WHERE room_id = $1",
                      uuid.UUID(room_b)) == ["ready", "dropped", "rejoined"]

        # Down again, now past the rejoin window: the fault job suspends the session and ends its media.
        b.close()
        assert down_since(client, world, room_b) is not None
        run_db(dsn, lambda c: c.execute("UPDATE session_rooms SET down_since = down_since - interval '5 hours' "
                                        "WHERE session_id = $1 AND room_id = $2", uuid.UUID(world.session_id),
                                        uuid.UUID(room_b)))
        segments_before = scalar(dsn, "SELECT count(*) FROM session_segments")
        client.portal.call(apply_fault_rules, client.app, client.app_state)
        assert world.snapshot(world.supervisor)["step"] == "suspended"
        assert s.event("session.suspended")["payload"]["rooms"] == [room_b]
        assert session_media.workers.running() == []
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        # The publisher's open segment was finished and logged as the worker ended.
        assert scalar(dsn, "SELECT count(*) FROM session_segments") == segments_before + 1
        assert scalar(dsn, "SELECT count(*) FROM log_entries WHERE kind = 'media.segment'") == segments_before + 1
        refused_reply(a.ask("publish", offer={"type": "offer", "sdp": "v=0"}), 409, "wrong_step")
    finally:
        close_peers(client, publisher)
        for socket in (a, b, s):
            socket.close()


def test_a_room_whose_terminal_left_during_sign_in_is_down_once_the_evaluation_starts(
        client: TestClient, settings: Settings) -> None:
    world = make_world(client, settings.database_url, experts=2, rooms=2, bidders=1)
    sign_in_all(world)
    (e0, e1), (room_a, room_b) = world.experts, world.rooms
    s = Socket(client, world.supervisor, world.session_id)
    a, b = Socket(client, e0.user, world.session_id), Socket(client, e1.user, world.session_id)
    try:
        b.close()  # before the start: not a fault yet
        assert down_since(client, world, room_b) is None
        ok(world.act(world.agent, "advance"))  # the evaluation starts without room b's terminal
        client.portal.call(client.app_state["session_media"].settled)
        assert down_since(client, world, room_b) is not None and down_since(client, world, room_a) is None
        assert s.event("session.room_dropped")["payload"]["room"] == room_b
        refused(world.act(world.agent, "advance"), 409, "room_down")
    finally:
        a.close()
        s.close()
