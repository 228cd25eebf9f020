"""The event bus: a transactional outbox in PostgreSQL, woken by LISTEN/NOTIFY.

`emit()` writes an event in the caller's transaction, so an event exists exactly when its
state change committed. Every server instance listens on one channel, reads new events in
id order and hands them to its local subscribers; a client that reconnects asks for the
events after the last id it saw, so nothing is lost across reconnects or instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator

import asyncpg

from tenderhall import db

log = logging.getLogger(__name__)

CHANNEL = "tenderhall_events"
# Events a slow subscriber may fall behind before it is told to resync; above the largest
# burst one act emits (a read-out of every bid of a large opening).
QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class Event:
    id: int
    topic: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "topic": self.topic, "kind": self.kind, "payload": self.payload,
                "created_at": self.created_at.isoformat()}

    @functools.cached_property
    def text(self) -> str:
        """The JSON text sent to subscribers, encoded once however many sockets carry it."""
        return json.dumps(self.as_json(), ensure_ascii=False, separators=(",", ":"))


def _event(row: asyncpg.Record) -> Event:
    return Event(row["id"], row["topic"], row["kind"], row["payload"], row["created_at"])


async def emit(conn: asyncpg.Connection, topic: str, kind: str, payload: dict[str, Any]) -> int:
    """Write an event in the caller's transaction; it is delivered once that commits."""
    await db.take_order_lock(conn)
    event_id = await conn.fetchval(
        "INSERT INTO events (topic, kind, payload) VALUES ($1, $2, $3) RETURNING id", topic, kind, payload
    )
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(event_id))
    return event_id


async def emit_many(conn: asyncpg.Connection, topic: str, events: list[tuple[str, dict[str, Any]]]) -> list[int]:
    """Write several events on one topic in the caller's transaction, in order, with one notification."""
    if not events:
        return []
    await db.take_order_lock(conn)
    rows = await conn.fetch(
        "INSERT INTO events (topic, kind, payload) SELECT $1, k, p FROM unnest($2::text[], $3::jsonb[]) "
        "WITH ORDINALITY AS e(k, p, n) ORDER BY n RETURNING id",
        topic, [kind for kind, _ in events], [payload for _, payload in events])
    ids = sorted(r["id"] for r in rows)
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(ids[-1]))
    return ids


async def events_after(conn: asyncpg.Connection, topic: str, after_id: int, limit: int = 500) -> list[Event]:
    rows = await conn.fetch(
        "SELECT * FROM events WHERE topic = $1 AND id > $2 ORDER BY id LIMIT $3", topic, after_id, limit
    )
    return [_event(r) for r in rows]


class Subscription:
    """A bounded queue of one topic's live events; overflowing marks it lagged (client resyncs)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_LIMIT)
        self.lagged = False

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True

    def interrupt(self) -> None:
        """Wake a reader blocked on the queue (None); a full queue needs no waking."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class Bus:
    """One per app instance: a LISTEN connection and a pump fanning events out by topic."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self.pool, self.dsn = pool, dsn
        self._subscribers: dict[str, set[Subscription]] = {}
        self._wake = asyncio.Event()
        self._last_id = 0
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.pool.acquire() as conn:
            self._last_id = await conn.fetchval("SELECT coalesce(max(id), 0) FROM events")
        await self._listen()
        self._task = asyncio.create_task(self._pump(), name="bus-pump")

    async def _listen(self) -> None:
        self._listener = await db.connect(self.dsn)
        await self._listener.add_listener(CHANNEL, lambda *_: self._wake.set())
        self._listener.add_termination_listener(lambda *_: self._wake.set())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener and not self._listener.is_closed():
            await self._listener.close()

    async def _pump(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=5.0)
            except TimeoutError:
                pass  # a periodic sweep also covers a notification lost with a dropped listener
            self._wake.clear()
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                await self._deliver_new()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # InterfaceError too: a connection lost mid-query raises it, and a dead pump
                # would silently stop live delivery on this instance for good.
                log.warning("event bus: %s; retrying", exc)
                await asyncio.sleep(1.0)

    async def _deliver_new(self) -> None:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT 1000", self._last_id)
        for row in rows:
            event = _event(row)
            self._last_id = event.id
            for sub in list(self._subscribers.get(event.topic, ())):
                sub.offer(event)
        if len(rows) == 1000:
            self._wake.set()

    @contextlib.asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Subscription]:
        sub = Subscription(topic)
        self._subscribers.setdefault(topic, set()).add(sub)
        try:
            yield sub
        finally:
            self._subscribers[topic].discard(sub)
            if not self._subscribers[topic]:
                del self._subscribers[topic]
