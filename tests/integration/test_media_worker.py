"""A session's media in a worker process: forwarding and recording through it, segments reported back,
memory returned to the system when the session ends, a dead worker replaced."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import psutil
import pytest

from tenderhall.media_hub import MediaRefused
from tenderhall.media_recorder import Segment
from tenderhall.media_workers import MediaWorkers
from tenderhall.settings import Settings
from tests.rtc_peers import PublisherPeer, ViewerPeer, accept, opus_packets, vp8_frames
from tests.unit.test_media_hub import assert_contiguous, decode_counts, frame_indices, wait_until

ROOM = "session:3f1c7a2e-0000-4000-8000-000000000001:room-1"


@pytest.fixture(scope="module")
def media() -> dict[str, list[bytes]]:
    return {"video": vp8_frames(320, 240, 60, keyint=15, bitrate=300_000, seed=3), "audio": opus_packets(50)}


async def test_a_session_worker_forwards_records_and_exits_with_the_session(tmp_path: Path, media: dict) -> None:
    segments: list[Segment] = []

    async def on_segment(segment: Segment) -> None:
        segments.append(segment)

    workers = MediaWorkers(Settings(data_dir=tmp_path / "data", rtc_host_addresses=("127.0.0.1",)), on_segment)
    publisher, viewer = PublisherPeer(media["video"], media["audio"]), ViewerPeer(keep=True)
    try:
        hub = await workers.hub("session-1")
        assert await workers.hub("session-1") is hub  # one worker per session
        assert hub.pid != os.getpid() and psutil.pid_exists(hub.pid)
        await accept(publisher.pc, await hub.publish(ROOM, "room-1", await publisher.offer()))
        await viewer.accept(await hub.view(ROOM, "supervisor-1", await viewer.offer()))
        await wait_until(lambda: len(viewer.received["video"].payloads) >= 30, "30 frames through the worker")
        assert_contiguous(frame_indices(viewer.received["video"].payloads, media["video"]), len(media["video"]))
        stats = await hub.stats(ROOM)
        assert (stats["publisher"], stats["viewers"]) == ("room-1", 1)
        with pytest.raises(MediaRefused) as refused:
            await hub.view("bad room!", "x", await ViewerPeer().offer())
        assert (refused.value.code, refused.value.status) == ("bad_room", 400)
    finally:
        await viewer.close()
        await publisher.close()
        pid = hub.pid
        await workers.end("session-1")
    # The process is gone (its memory with it) and its recording was reported before it went.
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert workers.running() == []
    [segment] = segments
    assert segment.room == ROOM and segment.sha256 == hashlib.sha256(segment.path.read_bytes()).hexdigest()
    counts = decode_counts(segment.path)
    assert counts.get("video", 0) > 0 and counts.get("audio", 0) > 0
    await workers.close()


async def test_a_worker_that_died_is_started_again(tmp_path: Path) -> None:
    workers = MediaWorkers(Settings(data_dir=tmp_path / "data", rtc_host_addresses=("127.0.0.1",)))
    try:
        first = await workers.hub("session-2")
        first.proc.kill()
        await first.proc.wait()
        second = await workers.hub("session-2")
        assert second.pid != first.pid and (await second.stats(ROOM))["viewers"] == 0
    finally:
        await workers.close()
