"""The media hub with real aiortc peers on loopback, in-process: forwarding, receive-only viewers, recording, guards."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from fractions import Fraction
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator

import aioice.ice
import aioice.stun
import aiortc
import av
import pytest
from aiortc import RTCBundlePolicy, RTCPeerConnection, RTCRtpReceiver

from tenderhall import rtc_packets
from tenderhall.media_hub import MediaHub, MediaRefused
from tenderhall.media_log import segment_body, topic_for_room
from tenderhall.media_offer import answer_direction, ice_configuration, parse_offer
from tenderhall.media_recorder import Segment, SegmentRecorder, room_directory, vp8_is_keyframe, vp8_keyframe_size
from tenderhall.settings import Settings
from tests.rtc_peers import PublisherPeer, ViewerPeer, accept, configuration, make_offer, opus_packets, vp8_frames

ROOM = "hall:7f0c2a4e-0000-4000-8000-000000000001"
KEYINT = 15  # a keyframe every half second: viewers and replacements start quickly


@pytest.fixture(autouse=True)
def fast_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorten aioice's STUN retransmissions, as aiortc's own tests do, so failed checks end fast."""
    monkeypatch.setattr(aioice.stun, "RETRY_MAX", 1)
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.1)


@pytest.fixture(scope="module")
def media() -> dict[str, list[bytes]]:
    return {"a": vp8_frames(320, 240, 60, keyint=KEYINT, bitrate=300_000, seed=1),
            "b": vp8_frames(320, 240, 60, keyint=KEYINT, bitrate=300_000, seed=2),
            "opus": opus_packets(50)}


@pytest.fixture
def hub_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", rtc_host_addresses=("127.0.0.1",))


class Segments(list[Segment]):
    async def __call__(self, segment: Segment) -> None:
        self.append(segment)


@pytest.fixture
async def hub(hub_settings: Settings) -> AsyncIterator[MediaHub]:
    segments = Segments()
    hub = MediaHub(hub_settings, on_segment=segments)
    hub.segments = segments  # type: ignore[attr-defined]
    yield hub
    await hub.close()


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll the condition (the peers run on this loop) and fail with `what` after `timeout` seconds."""
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def join_viewer(hub: MediaHub, participant: str, **kwargs: object) -> ViewerPeer:
    viewer = ViewerPeer(**kwargs)  # type: ignore[arg-type]
    await viewer.accept(await hub.view(ROOM, participant, await viewer.offer()))
    return viewer


async def start_publisher(hub: MediaHub, video: list[bytes], audio: list[bytes] | None,
                          participant: str = "host") -> PublisherPeer:
    publisher = PublisherPeer(video, audio)
    await accept(publisher.pc, await hub.publish(ROOM, participant, await publisher.offer()))
    return publisher


def frame_indices(received: list[bytes], source: list[bytes]) -> list[int]:
    """Where each received frame sits in the source loop; fails on a frame the source never sent."""
    index = {payload: i for i, payload in enumerate(source)}
    missing = [i for i, payload in enumerate(received) if payload not in index]
    assert not missing, f"frames {missing[:5]} are not byte-identical to any frame the publisher sent"
    return [index[payload] for payload in received]


def assert_contiguous(indices: list[int], period: int) -> None:
    gaps = [(a, b) for a, b in zip(indices, indices[1:]) if b != (a + 1) % period]
    assert not gaps, f"frames skipped or reordered at {gaps[:5]}"


def decode_counts(path: Path, limit: int = 20) -> dict[str, int]:
    """Decode up to `limit` frames of each stream of the file."""
    counts: dict[str, int] = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            counts[stream.type] = 0
        for packet in container.demux():
            if counts[packet.stream.type] >= limit:
                continue
            counts[packet.stream.type] += len(packet.decode())
    return counts


# --- forwarding ------------------------------------------------------------------------------


async def test_two_viewers_receive_the_publishers_frames_byte_for_byte(hub: MediaHub, media: dict) -> None:
    # The viewers join before the publisher exists: the room's forwarding tracks wait for it.
    viewers = [await join_viewer(hub, f"viewer-{i}", keep=True) for i in range(2)]
    publisher = await start_publisher(hub, media["a"], media["opus"])
    try:
        await wait_until(lambda: all(len(v.received["video"].payloads) >= 30 and len(v.received["audio"].payloads) >= 40
                                     for v in viewers), "30 video frames and 40 audio packets at each viewer")
        for viewer in viewers:
            video = viewer.received["video"].payloads
            assert vp8_is_keyframe(video[0]), "a viewer starts at a keyframe"
            assert_contiguous(frame_indices(video, media["a"]), len(media["a"]))
            audio = viewer.received["audio"].payloads
            assert_contiguous(frame_indices(audio, media["opus"]), len(media["opus"]))
        stats = hub.stats(ROOM)
        assert (stats["publishers"], stats["publisher"], stats["viewers"]) == (1, "host", 2)
        assert stats["packets_forwarded"] >= 2 * 70
    finally:
        for peer in (*viewers, publisher):
            await peer.close()


async def test_a_viewer_that_offers_media_is_answered_without_receiving_it(hub: MediaHub, media: dict) -> None:
    viewer = ViewerPeer(send_video=media["b"])
    offer = await viewer.offer()
    assert "a=sendrecv" in offer["sdp"]
    answer = await hub.view(ROOM, "pushy", offer)
    await viewer.accept(answer)
    directions = [line[2:] for line in answer["sdp"].splitlines()
                  if line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")]
    assert directions == ["sendonly", "sendonly"]
    publisher = await start_publisher(hub, media["a"], None)
    try:
        await wait_until(lambda: len(viewer.received["video"].arrivals) >= 10, "video at the sending viewer")
        video = viewer.pc.getTransceivers()[0]
        assert video.currentDirection == "recvonly"
        assert video.sender.track.sent == 0, "the viewer's sender never started: the hub takes nothing from it"
    finally:
        await viewer.close()
        await publisher.close()


async def test_a_new_publish_replaces_the_connection_and_viewers_follow_it(hub: MediaHub, media: dict) -> None:
    viewer = await join_viewer(hub, "viewer", keep=True)
    first = await start_publisher(hub, media["a"], media["opus"])
    second: PublisherPeer | None = None
    try:
        await wait_until(lambda: len(viewer.received["video"].payloads) >= 10, "frames from the first connection")
        second = await start_publisher(hub, media["b"], media["opus"])
        source_b = set(media["b"])
        await wait_until(lambda: sum(p in source_b for p in viewer.received["video"].payloads) >= 20,
                         "20 frames from the replacing connection")
        video = viewer.received["video"].payloads
        switch = next(i for i, p in enumerate(video) if p in source_b)
        assert_contiguous(frame_indices(video[:switch], media["a"]), len(media["a"]))
        assert vp8_is_keyframe(video[switch]), "after the switch the viewer starts again at a keyframe"
        assert_contiguous(frame_indices(video[switch:], media["b"]), len(media["b"]))
        assert second.keyframe_requests >= 1, "the hub asked the new connection for a keyframe"
        assert hub.stats(ROOM)["publishers"] == 1
        await wait_until(lambda: len(hub.segments) == 1, "the first connection's segment")  # type: ignore[attr-defined]
    finally:
        await viewer.close()
        await first.close()
        if second is not None:
            await second.close()


async def test_a_viewers_keyframe_request_reaches_the_publisher(hub: MediaHub, media: dict) -> None:
    viewer = await join_viewer(hub, "viewer")
    publisher = await start_publisher(hub, media["a"], None)
    try:
        await wait_until(lambda: len(viewer.received["video"].arrivals) >= 5, "video at the viewer")
        await asyncio.sleep(0.6)  # past the hub's minimum interval between keyframe requests
        before = publisher.keyframe_requests
        receiver = viewer.pc.getTransceivers()[0].receiver
        assert await rtc_packets.send_pli(receiver)
        await wait_until(lambda: publisher.keyframe_requests > before, "the PLI passed on to the publisher", 5)
    finally:
        await viewer.close()
        await publisher.close()


# --- recording -------------------------------------------------------------------------------


async def test_the_recording_decodes_with_audio_and_video_and_its_digest_matches(
        hub: MediaHub, media: dict, hub_settings: Settings) -> None:
    publisher = await start_publisher(hub, media["a"], media["opus"])
    await wait_until(lambda: hub.stats(ROOM)["packets_received"] >= 60, "a second and a half of media at the hub")
    await hub.leave(ROOM, "host")
    await publisher.close()
    assert hub.stats(ROOM)["publishers"] == 0
    [segment] = hub.segments  # type: ignore[attr-defined]
    assert segment.room == ROOM
    assert segment.path.parent == hub_settings.data_dir / "recordings" / ROOM.replace(":", "_")
    data = segment.path.read_bytes()
    assert (segment.sha256, segment.bytes) == (hashlib.sha256(data).hexdigest(), len(data))
    assert segment.tracks == ("video/VP8", "audio/opus")
    assert segment.started_at < segment.ended_at
    counts = decode_counts(segment.path)
    assert counts["video"] >= 10 and counts["audio"] >= 10, counts
    timing = json.loads(segment.timing_path.read_text())
    assert {t["kind"] for t in timing["tracks"]} == {"video", "audio"}
    assert all(t["first_packet_at"] and t["packets"] > 0 for t in timing["tracks"])


async def test_a_publisher_that_hangs_up_is_dropped_and_its_segment_handed_on_once(hub: MediaHub, media: dict) -> None:
    viewer = await join_viewer(hub, "viewer")
    publisher = await start_publisher(hub, media["a"], media["opus"])
    try:
        await wait_until(lambda: len(viewer.received["video"].arrivals) >= 5, "video at the viewer")
        await publisher.close()  # no leave(): the hub learns it from the connection
        await wait_until(lambda: hub.stats(ROOM)["publishers"] == 0 and len(hub.segments) == 1,  # type: ignore[attr-defined]
                         "the publisher dropped and its segment handed on", 10)
        assert hub.stats(ROOM)["viewers"] == 1, "viewers stay for the next publisher"
        await hub.leave(ROOM, "host")  # after the drop: nothing more to hand on
        assert len(hub.segments) == 1  # type: ignore[attr-defined]
    finally:
        await viewer.close()


async def test_the_recorder_waits_for_a_keyframe_and_keeps_audio_that_came_first(tmp_path: Path, media: dict) -> None:
    recorder = SegmentRecorder(tmp_path, "eval:s1:room-2", "room 2/bad", ("video", "audio"))
    start = time.time()
    video_frames = media["a"][1:]  # starts just after a keyframe: the next KEYINT - 1 frames are useless alone
    events = [(i * 0.02, "audio", i) for i in range(90)] + [(0.01 + j / 30, "video", j) for j in range(45)]
    for at, kind, i in sorted(events):
        if kind == "audio":
            packet = av.Packet(media["opus"][i % 50])
            packet.pts, packet.time_base = i * 960, Fraction(1, 48000)
        else:
            packet = av.Packet(video_frames[i])
            packet.pts, packet.time_base = 1000 + i * 3000, Fraction(1, 90000)
        recorder.write(kind, packet, start + at)  # type: ignore[arg-type]
    segment = await recorder.close()
    assert segment is not None and segment.path.name.startswith("room_2_bad-")
    counts = decode_counts(segment.path, limit=1000)
    assert counts["audio"] >= 85 and counts["video"] == 45 - (KEYINT - 1), counts
    timing = {t["kind"]: t for t in json.loads(segment.timing_path.read_text())["tracks"]}
    assert timing["video"]["skipped"] == KEYINT - 1
    assert timing["audio"]["file_offset_seconds"] == 0
    assert timing["video"]["file_offset_seconds"] == pytest.approx(0.01 + (KEYINT - 1) / 30, abs=0.002)


async def test_a_recorder_that_got_nothing_leaves_no_file(tmp_path: Path) -> None:
    recorder = SegmentRecorder(tmp_path / "r", "hall:x", "host", ("video",))
    assert await recorder.close() is None
    assert not (tmp_path / "r").exists()


# --- refusals --------------------------------------------------------------------------------


async def test_offers_the_hub_cannot_forward_are_refused_precisely(hub: MediaHub) -> None:
    pc = RTCPeerConnection(configuration())
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    offer = await make_offer(pc)
    await pc.close()
    no_vp8 = offer["sdp"].replace("VP8/90000", "AV1X/90000")
    with pytest.raises(MediaRefused) as refused:
        await hub.view(ROOM, "v", {"sdp": no_vp8, "type": "offer"})
    assert refused.value.code == "codec_unsupported" and "VP8" in refused.value.message
    no_opus = offer["sdp"].replace("opus/48000", "ISAC/48000")
    with pytest.raises(MediaRefused, match="Opus"):
        await hub.publish(ROOM, "host", {"sdp": no_opus, "type": "offer"})
    with pytest.raises(MediaRefused) as refused:
        await hub.view(ROOM, "v", {"sdp": offer["sdp"], "type": "answer"})
    assert refused.value.code == "not_an_offer"
    with pytest.raises(MediaRefused) as refused:
        await hub.publish(ROOM, "host", offer)  # a receive-only offer has nothing to publish
    assert refused.value.code == "nothing_to_publish"
    data = offer["sdp"] + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n"
    with pytest.raises(MediaRefused) as refused:
        await hub.view(ROOM, "v", {"sdp": data, "type": "offer"})
    assert refused.value.code == "unsupported_section"
    with pytest.raises(MediaRefused) as refused:
        await hub.view("../etc", "v", offer)
    assert refused.value.code == "bad_room"
    assert hub.stats(ROOM)["viewers"] == 0


async def test_a_full_room_and_a_second_publisher_are_refused(hub_settings: Settings, media: dict) -> None:
    hub = MediaHub(hub_settings, max_viewers=1)
    try:
        await hub.view(ROOM, "first", await ViewerPeer().offer())
        with pytest.raises(MediaRefused) as refused:
            await hub.view(ROOM, "second", await ViewerPeer().offer())
        assert (refused.value.code, refused.value.status) == ("room_full", 503)
        await hub.view(ROOM, "first", await ViewerPeer().offer())  # the same viewer again replaces itself
        await hub.publish(ROOM, "host", await PublisherPeer(media["a"], media["opus"]).offer())
        with pytest.raises(MediaRefused) as refused:
            await hub.publish(ROOM, "intruder", await PublisherPeer(media["b"], None).offer())
        assert (refused.value.code, refused.value.status) == ("room_has_publisher", 409)
    finally:
        await hub.close()
    assert hub.stats(ROOM)["viewers"] == 0
    with pytest.raises(MediaRefused, match="shutting down"):
        await hub.view(ROOM, "late", await ViewerPeer().offer())


# --- pure helpers and guards -----------------------------------------------------------------


def test_answer_directions_never_receive_from_viewers_and_never_send_to_publishers() -> None:
    assert [answer_direction("view", d) for d in ("sendrecv", "recvonly", "sendonly", "inactive")] == [
        "sendonly", "sendonly", "inactive", "inactive"]
    assert [answer_direction("publish", d) for d in ("sendrecv", "sendonly", "recvonly", "inactive")] == [
        "recvonly", "recvonly", "inactive", "inactive"]


def test_offer_sections_are_read_with_session_level_direction_and_rejected_ports() -> None:
    sdp = ("v=0\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\n"
           "a=rtpmap:97 rtx/90000\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n")
    video, audio = parse_offer({"sdp": sdp, "type": "offer"})
    assert (video.kind, video.mid, video.direction, video.codecs) == ("video", "0", "sendonly", ("vp8", "rtx"))
    assert (audio.kind, audio.direction) == ("audio", "inactive")
    with pytest.raises(MediaRefused, match="more than one video"):
        parse_offer({"sdp": sdp.replace("m=audio 0", "m=video 9").replace("opus/48000/2", "VP8/90000"),
                     "type": "offer"})


def test_hall_rooms_map_to_their_tender_topic_and_segments_to_log_bodies(tmp_path: Path) -> None:
    assert topic_for_room("hall:1234") == "tender:1234"
    assert topic_for_room("eval:s1:room-2") is None and topic_for_room("hall:") is None
    assert room_directory(tmp_path, "eval:s1:room-2") == tmp_path / "eval_s1_room-2"
    from datetime import datetime, timezone
    moment = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    segment = Segment("hall:1", tmp_path / "a.webm", "ab" * 32, 10, moment, moment, ("video/VP8",), tmp_path / "a.json")
    assert segment_body(segment) == {"room": "hall:1", "segment": "a.webm", "sha256": "ab" * 32, "bytes": 10,
                                     "started_at": "2025-01-02T03:04:05.678Z", "ended_at": "2025-01-02T03:04:05.678Z"}


def test_vp8_keyframes_and_their_size_are_read_from_the_frame_header(media: dict) -> None:
    keyframe, delta = media["a"][0], media["a"][1]
    assert vp8_is_keyframe(keyframe) and not vp8_is_keyframe(delta)
    assert vp8_keyframe_size(keyframe) == (320, 240) and vp8_keyframe_size(delta) is None


def test_ice_servers_are_exactly_the_configured_ones_and_media_is_bundled() -> None:
    none = ice_configuration(Settings())
    assert none.iceServers == [] and none.bundlePolicy == RTCBundlePolicy.MAX_BUNDLE
    given = ice_configuration(Settings(rtc_ice_servers=("stun:stun.example.org:3478", "turn:turn.example.org:443")))
    assert [server.urls for server in given.iceServers or []] == ["stun:stun.example.org:3478",
                                                                 "turn:turn.example.org:443"]
    with pytest.raises(ValueError, match="TENDERHALL_ICE_SERVERS"):
        MediaHub(Settings(rtc_ice_servers=("https://stun.example.org",)))
    turn = ice_configuration(Settings(rtc_ice_servers=("stun:s.example.org", "turns:t.example.org:443"),
                                      rtc_turn_username="hall", rtc_turn_credential="secret"))
    servers = turn.iceServers or []
    assert (servers[0].username, servers[1].username, servers[1].credential) == (None, "hall", "secret")


def test_ice_host_addresses_apply_only_inside_their_block() -> None:
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)
    with rtc_packets.host_addresses(("127.0.0.1", "::1")):
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
        with rtc_packets.host_addresses(()):
            assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)
    with pytest.raises(ValueError):
        with rtc_packets.host_addresses(("localhost",)):
            pass


async def test_the_hubs_answer_offers_the_configured_host_address(hub: MediaHub) -> None:
    viewer = ViewerPeer()
    answer = await hub.view(ROOM, "v", await viewer.offer())
    await viewer.close()
    candidates = [line for line in answer["sdp"].splitlines() if line.startswith("a=candidate:")]
    assert candidates and all(" 127.0.0.1 " in line for line in candidates)


@pytest.fixture
def receiver_internals() -> Iterator[None]:
    rtc_packets.check_internals()
    yield
    rtc_packets.check_internals()


def test_the_internals_guard_fails_loudly_when_aiortc_changes(monkeypatch: pytest.MonkeyPatch,
                                                              receiver_internals: None) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(rtc_packets.RtcInternalsChanged, match="aiortc 1.17.0 is installed"):
        rtc_packets.check_internals()
    monkeypatch.undo()
    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_pli")
    with pytest.raises(rtc_packets.RtcInternalsChanged, match="_send_rtcp_pli"):
        rtc_packets.check_internals()
    monkeypatch.undo()
    with pytest.raises(rtc_packets.RtcInternalsChanged, match="receive_packets"):
        rtc_packets.receive_packets(object())  # type: ignore[arg-type]
