"""Recorded media segments into the transparency log (kind "media.segment") and onto the room's bus topic."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import asyncpg

from tenderhall import bus, log
from tenderhall.media_recorder import Segment
from tenderhall.platform_key import PlatformKey

LOG_KIND = "media.segment"


def topic_for_room(room: str) -> str | None:
    """The bus topic that hears about a room's segments: "hall:<tender>" -> "tender:<tender>",
    an evaluation session's "session-<session>:<room>" -> "session:<session>"; other rooms none."""
    prefix, _, rest = room.partition(":")
    if prefix == "hall" and rest:
        return f"tender:{rest}"
    if prefix.startswith("session-") and rest:
        return f"session:{prefix[len('session-'):]}"
    return None


def segment_body(segment: Segment) -> dict[str, Any]:
    """The log entry body: what anyone needs to check a segment file against the log."""
    return {"room": segment.room, "segment": segment.path.name, "sha256": segment.sha256, "bytes": segment.bytes,
            "started_at": log.iso_utc(segment.started_at), "ended_at": log.iso_utc(segment.ended_at)}


async def log_segment(conn: asyncpg.Connection, signer: PlatformKey, segment: Segment) -> int:
    """Append the segment's entry and emit it in the caller's transaction; returns the log index."""
    body = segment_body(segment)
    appended = await log.append_entry(conn, signer, LOG_KIND, body)
    topic = topic_for_room(segment.room)
    if topic is not None:
        await bus.emit(conn, topic, LOG_KIND, {**body, "log_index": appended.index})
    return appended.index


def segment_logger(pool: asyncpg.Pool, signer: PlatformKey) -> Callable[[Segment], Awaitable[None]]:
    """The hub's on_segment: one transaction per segment on the pool."""

    async def on_segment(segment: Segment) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await log_segment(conn, signer, segment)

    return on_segment
