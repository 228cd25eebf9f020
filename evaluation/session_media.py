"""A session's media: signalling to its worker hub, who may send, rooms' presence, recordings.

Each session's media runs in a worker process of its own (tenderhall/media_workers.py). A room
publishes its camera and microphone to the hub under the room's media name and views every
other room; supervisors only view. Whether a caller may send is decided here from their part in
the session, and the worker's hub answers a viewer's offer receive-only whatever it asks. An
offer is judged (codecs, sections, directions) before the session's worker is started, so a
refused offer costs no process.

A room is up while at least one terminal of it holds the session's socket. The count changes
at once when a socket opens or closes; the database follows in a task of its own, one update at
a time, so a socket handler that is cancelled (a server shutting down, a test client leaving)
still marks its room down, and a close racing a reconnect ends with the state of the last one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from typing import Any, Awaitable

from evaluation import session_rules as rules
from evaluation import session_store as ss
from evaluation.draw_service import Deps
from evaluation.session_rules import SessionRefused
from evaluation.session_service import (
    announce, media_room, not_found, parse_media_room, require_part, room_presence, server_now, who,
)
from tenderhall.accounts import CurrentUser
from tenderhall.media_hub import MediaRefused
from tenderhall.media_log import log_segment
from tenderhall.media_offer import parse_offer
from tenderhall.media_recorder import Segment
from tenderhall.media_workers import MediaWorkers, WorkerError

log = logging.getLogger(__name__)

# A room whose publisher delivered no packet between two looks is reported stalled.
LIVE_CHECK_SECONDS = 5.0
MEDIA_STEPS = tuple(s for s in rules.STEPS if s not in ("closed", "failed", "suspended"))


class SessionMedia:
    """The server's side of every session's media; one per app."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.workers = MediaWorkers(deps.settings, on_segment=self.on_segment)
        self._present: Counter[tuple[uuid.UUID, uuid.UUID]] = Counter()
        self._seen: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self._presence_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._received: dict[str, int] = {}
        self._stalled: set[str] = set()

    async def close(self) -> None:
        await self.settled()  # presence updates still under way need the pool, closed after this
        await self.workers.close()

    async def settled(self) -> None:
        """Wait for the presence updates under way: each room's state in the database is then its sockets'."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- signalling

    async def _caller(self, user: CurrentUser, session_id: uuid.UUID) -> tuple[Any, Any]:
        async with self.deps.pool.acquire() as conn:
            session = await ss.session(conn, session_id)
            if session is None:
                raise not_found(session_id)
            caller = await who(conn, session, user)
        require_part(caller)
        if session["step"] not in MEDIA_STEPS:
            raise SessionRefused(f"the session is {session['step']}: its media has ended", code="wrong_step")
        return session, caller

    async def _hub(self, session_id: uuid.UUID) -> Any:
        try:
            return await self.workers.hub(str(session_id))
        except WorkerError as exc:
            raise SessionRefused(str(exc), code="media_unavailable", status=503) from None

    @staticmethod
    async def _negotiate(call: Awaitable[dict[str, str]]) -> dict[str, str]:
        try:
            return await call
        except WorkerError as exc:  # the worker died or stopped answering mid-offer
            raise SessionRefused(str(exc), code="media_unavailable", status=503) from None

    async def publish(self, user: CurrentUser, session_id: uuid.UUID, offer: Any) -> dict[str, str]:
        """The caller's room camera and microphone into the hub (SDP offer -> answer)."""
        _session, caller = await self._caller(user, session_id)
        if rules.media_role(caller.participant) != "send_receive" or caller.room is None:
            raise SessionRefused("you may receive media only: only a room's terminal sends", code="receive_only",
                                 status=403)
        parse_offer(offer)  # codec_unsupported and the other offer refusals, before a worker starts
        hub = await self._hub(session_id)
        return await self._negotiate(hub.publish(media_room(session_id, caller.room), f"room:{caller.room}", offer))

    async def view(self, user: CurrentUser, session_id: uuid.UUID, room_id: uuid.UUID, offer: Any) -> dict[str, str]:
        """Receive one room's media, receive-only; an offer that would send is refused (403 receive_only)."""
        _session, caller = await self._caller(user, session_id)
        directions = [s.direction for s in parse_offer(offer)]
        rules.check_offer_directions("receive_only", directions)
        if caller.room == room_id:
            raise SessionRefused("a room does not view itself", code="own_room", status=422)
        async with self.deps.pool.acquire() as conn:
            rooms = {r["room_id"] for r in await ss.session_rooms(conn, session_id)}
        if room_id not in rooms:
            raise SessionRefused("that room is not in this session", code="unknown_room", status=422)
        hub = await self._hub(session_id)
        return await self._negotiate(hub.view(media_room(session_id, room_id), f"user:{user.id}", offer))

    async def end(self, session_id: uuid.UUID) -> None:
        """The session is over: its worker exits and its last segments are logged."""
        await self.workers.end(str(session_id))
        for name in [n for n in self._received if (parse_media_room(n) or (None,))[0] == session_id]:
            del self._received[name]
        self._stalled = {n for n in self._stalled if (parse_media_room(n) or (None,))[0] != session_id}
        self._seen = {k for k in self._seen if k[0] != session_id}

    # -- presence: a room is up while a terminal of it holds the session's socket

    async def joined(self, session_id: uuid.UUID, room_id: uuid.UUID) -> None:
        """A terminal of the room opened the session's socket (counted before the first await)."""
        key = (session_id, room_id)
        self._seen.add(key)
        self._present[key] += 1
        if self._present[key] == 1:
            await self._settle(key)

    async def left(self, session_id: uuid.UUID, room_id: uuid.UUID) -> None:
        """A terminal's socket closed (counted before the first await; the update outlives a cancelled caller)."""
        key = (session_id, room_id)
        self._present[key] -= 1
        if self._present[key] <= 0:
            del self._present[key]
            await self._settle(key)

    async def started(self, session_id: uuid.UUID) -> None:
        """The evaluation has started: a room whose terminal was connected during sign-in but is not
        now is down from now (a room only ever driven through the JSON API has no presence to judge)."""
        async with self.deps.pool.acquire() as conn:
            rooms = [r["room_id"] for r in await ss.session_rooms(conn, session_id) if not r["left_out"]]
        for room_id in rooms:
            key = (session_id, room_id)
            if key in self._seen and self._present.get(key, 0) == 0:
                await self._settle(key)

    async def _settle(self, key: tuple[uuid.UUID, uuid.UUID]) -> None:
        task = asyncio.ensure_future(self._record_presence(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    async def _record_presence(self, key: tuple[uuid.UUID, uuid.UUID]) -> None:
        async with self._presence_lock:
            # The count as it is now, not as it was when this update was asked for.
            await room_presence(self.deps, key[0], key[1], self._present.get(key, 0) > 0)

    # -- recordings

    async def on_segment(self, segment: Segment) -> None:
        """A closed segment: its digest into the log, its row into the session's manifest."""
        parsed = parse_media_room(segment.room)
        async with self.deps.pool.acquire() as conn, conn.transaction():
            index = await log_segment(conn, self.deps.platform_key, segment)
            if parsed is not None:
                session_id, room_id = parsed
                await ss.insert_segment(conn, session_id, room_id, segment.path.name, segment.timing_path.name,
                                        segment.sha256, segment.bytes, segment.tracks, segment.started_at,
                                        segment.ended_at, index)

    async def check_live(self) -> list[str]:
        """Report (once per stall) a room whose publisher stopped delivering packets; returns the rooms."""
        stalled: list[str] = []
        for key in self.workers.running():
            session_id = uuid.UUID(key)
            async with self.deps.pool.acquire() as conn:
                rooms = [r["room_id"] for r in await ss.session_rooms(conn, session_id) if not r["left_out"]]
            if key not in self.workers.running():
                continue  # ended meanwhile: asking for its hub would start it again
            hub = await self.workers.hub(key)
            for room_id in rooms:
                name = media_room(session_id, room_id)
                try:
                    stats = await hub.stats(name)
                except (MediaRefused, WorkerError):
                    continue
                received = stats["packets_received"] if stats["publishers"] else None
                before = self._received.get(name)
                if received is None:
                    self._received.pop(name, None)
                    self._stalled.discard(name)
                    continue
                self._received[name] = received
                if before is not None and received == before and name not in self._stalled:
                    self._stalled.add(name)
                    stalled.append(name)
                    await self._report_stall(session_id, room_id)
                elif received != before:
                    self._stalled.discard(name)
        return stalled

    async def _report_stall(self, session_id: uuid.UUID, room_id: uuid.UUID) -> None:
        async with self.deps.pool.acquire() as conn, conn.transaction():
            now = await server_now(conn)
            await ss.room_event(conn, session_id, room_id, "recording_stalled", now)
            await announce(conn, self.deps, session_id, "alert", {
                "alert": "recording_stalled", "room": str(room_id), "severity": "high",
                "message": "a room's publisher stopped delivering packets: its recording has a gap"})

    async def run_live_check(self) -> None:
        while True:
            await asyncio.sleep(LIVE_CHECK_SECONDS)
            try:
                await self.check_live()
            except Exception:  # noqa: BLE001 - the check must outlive one failed look
                log.exception("the sessions' live recording check failed")
