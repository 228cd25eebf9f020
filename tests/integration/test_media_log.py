"""Recorded segments in the transparency log and on the hall's bus topic; the hub in the app's lifespan."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.testclient import TestClient

from tenderhall import db, log
from tenderhall.app import create_app
from tenderhall.media_hub import MediaHub
from tenderhall.media_log import LOG_KIND, segment_logger
from tenderhall.media_recorder import Segment
from tenderhall.platform_key import PlatformKey
from tenderhall.settings import Settings
from tests.factories import run_async


def make_segment(tmp_path: Path, room: str) -> Segment:
    path = tmp_path / "host-20250102T030405Z-abcdef.webm"
    path.write_bytes(b"\x1a\x45\xdf\xa3 not really webm")
    started = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    return Segment(room=room, path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                   bytes=path.stat().st_size, started_at=started, ended_at=started + timedelta(seconds=61.5),
                   tracks=("video/VP8", "audio/opus"), timing_path=tmp_path / "t.json")


async def log_and_read(dsn: str, key: PlatformKey, segment: Segment) -> tuple[list[log.LogEntry], list[asyncpg.Record]]:
    pool = await db.create_pool(dsn, 1, 2)
    try:
        await segment_logger(pool, key)(segment)
        async with pool.acquire() as conn:
            entries = [e for e in await log.entries(conn) if e.kind == LOG_KIND]
            events = await conn.fetch("SELECT topic, kind, payload FROM events WHERE kind = $1", LOG_KIND)
    finally:
        await pool.close()
    return entries, events


def test_a_hall_segment_is_logged_and_announced_on_the_tender_topic(database_url: str, tmp_path: Path) -> None:
    tender = str(uuid.uuid4())
    segment = make_segment(tmp_path, f"hall:{tender}")
    entries, events = run_async(log_and_read(database_url, PlatformKey(Ed25519PrivateKey.generate()), segment))
    [entry] = entries
    body = {"room": f"hall:{tender}", "segment": segment.path.name, "sha256": segment.sha256,
            "bytes": segment.bytes, "started_at": "2025-01-02T03:04:05.000Z", "ended_at": "2025-01-02T03:05:06.500Z"}
    assert entry.entry["body"] == body
    [event] = events
    payload = event["payload"] if isinstance(event["payload"], dict) else json.loads(event["payload"])
    assert (event["topic"], payload) == (f"tender:{tender}", {**body, "log_index": entry.index})


def test_a_segment_of_another_room_is_logged_without_an_event(database_url: str, tmp_path: Path) -> None:
    entries, events = run_async(log_and_read(database_url, PlatformKey(Ed25519PrivateKey.generate()),
                                             make_segment(tmp_path, "eval:s1:room-2")))
    assert [e.entry["body"]["room"] for e in entries] == ["eval:s1:room-2"]
    assert events == []


def test_the_app_lifespan_owns_a_media_hub(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        hub = client.app_state["media_hub"]
        assert isinstance(hub, MediaHub)
        assert hub.stats("hall:x")["viewers"] == 0
