"""Live events for browsers: a websocket per topic that resumes from the client's last event id.

The socket subscribes to the local bus *before* it reads the backlog from the outbox, then
sends live events skipping ids it already sent: every event after `after` arrives once, in
id order, whichever instance the client reconnects to. Close codes: 4400 bad parameters,
4401 not logged in, 4403 topic not allowed, 4409 the client fell behind (reconnect with
the last id).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from tenderhall import bus as event_bus
from tenderhall.accounts import CurrentUser
from tenderhall.web import ANY_USER, ApiDoc, ApiError, GuardedWebSocketRoute, _origin_ok, json_ok, resolve_session, route

BACKLOG_PAGE = 500
MAX_TOPIC = 200

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_LAGGED = 4409
# How often a quiet socket checks that its session is still alive (logout, expiry).
SESSION_RECHECK_SECONDS = 30.0


def _uuid_exact(text: str) -> uuid.UUID | None:
    """The UUID if `text` is its canonical lowercase form (the form emitters use), else None."""
    try:
        value = uuid.UUID(text)
    except ValueError:
        return None
    return value if str(value) == text else None


def topic_allowed(user: CurrentUser, topic: str) -> bool:
    """Who may follow a topic: tender:<id> any user; org:<id> its members; user:<id> that user;
    platform admins; venue supervisors and admins. Anything else (unknown prefix, malformed id)
    is refused."""
    if topic == "platform":
        return "admin" in user.roles
    if topic == "venue":  # the evaluation area's live map and alerts
        return bool({"admin", "supervisor"} & set(user.roles))
    prefix, _, rest = topic.partition(":")
    ident = _uuid_exact(rest)
    if ident is None:
        return False
    if prefix == "tender":
        return True
    if prefix == "org":
        return user.organisation_id == ident
    if prefix == "user":
        return user.id == ident
    return False


def _parse_after(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


async def _wait_for_disconnect(websocket: WebSocket) -> None:
    # Clients have nothing to say on this socket; reading is how a disconnect is noticed.
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def events_socket(websocket: WebSocket) -> None:
    """/ws/events?topic=…&after=<last id>: the backlog after `after`, then live events."""
    await websocket.accept()  # accept first so that browsers see the close code and reason
    if not _origin_ok(websocket):
        await websocket.close(CLOSE_FORBIDDEN, "cross-origin websocket refused")
        return
    session = await resolve_session(websocket)
    if session is None:
        await websocket.close(CLOSE_UNAUTHENTICATED, "log in first")
        return
    topic = websocket.query_params.get("topic", "")
    after = _parse_after(websocket.query_params.get("after"))
    if not topic or len(topic) > MAX_TOPIC:
        await websocket.close(CLOSE_BAD_REQUEST, "the topic parameter is required")
        return
    if after is None:
        await websocket.close(CLOSE_BAD_REQUEST, "after must be a non-negative integer event id")
        return
    if not topic_allowed(session.user, topic):
        await websocket.close(CLOSE_FORBIDDEN, "topic not allowed")
        return

    bus: event_bus.Bus = websocket.state.bus
    disconnected = asyncio.create_task(_wait_for_disconnect(websocket))
    try:
        async with bus.subscribe(topic) as subscription:
            # Subscribed first: anything committed from now on is queued, everything before it
            # is in the outbox; overlap is removed by id in send_live.
            last = await send_backlog(websocket, topic, after, disconnected)
            await send_live(websocket, subscription, disconnected, last)
    except WebSocketDisconnect:
        pass
    finally:
        disconnected.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await disconnected


async def send_backlog(websocket: WebSocket, topic: str, after: int, disconnected: asyncio.Task[Any]) -> int:
    """Send the topic's events after `after` from the outbox, a page at a time; the last id sent."""
    last = after
    while True:
        async with websocket.state.pool.acquire() as conn:
            backlog = await event_bus.events_after(conn, topic, last, BACKLOG_PAGE)
        for event in backlog:
            await websocket.send_text(event.text)
            last = event.id
        if len(backlog) < BACKLOG_PAGE or disconnected.done():
            return last


async def send_live(websocket: WebSocket, subscription: event_bus.Subscription, disconnected: asyncio.Task[Any],
                    last: int) -> None:
    """Send queued events as they come until the client leaves, lags or its session ends.

    A plain queue get: when a burst is queued (a read-out of every bid) it is drained without
    a trip through the event loop per event, which is what keeps a thousand sockets in time.
    The disconnect watcher and the session check wake the loop with None.
    """
    expired = asyncio.Event()
    disconnected.add_done_callback(lambda _task: subscription.interrupt())
    checker = asyncio.create_task(_recheck_session(websocket, subscription, expired))
    try:
        while not disconnected.done():
            event = await subscription.queue.get()
            if subscription.lagged:
                await websocket.close(CLOSE_LAGGED, "too far behind; reconnect with your last event id")
                return
            if expired.is_set():
                await websocket.close(CLOSE_UNAUTHENTICATED, "the session has ended; log in again")
                return
            if event is None or event.id <= last:
                continue
            await websocket.send_text(event.text)
            last = event.id
    finally:
        checker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await checker


async def _recheck_session(websocket: WebSocket, subscription: event_bus.Subscription, expired: asyncio.Event) -> None:
    # A socket outlives the request that opened it: stop when the session ends, however quiet
    # or busy the topic is.
    while True:
        await asyncio.sleep(SESSION_RECHECK_SECONDS)
        if await resolve_session(websocket) is None:
            expired.set()
            subscription.interrupt()
            return


async def list_events(request: Request) -> Response:
    """Up to 500 events of ?topic= after ?after= (an event id), for clients that poll."""
    topic = request.query_params.get("topic", "")
    after = _parse_after(request.query_params.get("after"))
    if not topic or len(topic) > MAX_TOPIC:
        raise ApiError(400, "missing_parameter", "the query parameter 'topic' is required")
    if after is None:
        raise ApiError(400, "invalid_parameter", "'after' must be a non-negative integer event id")
    if not topic_allowed(request.state.user, topic):
        raise ApiError(403, "topic_forbidden", "topic not allowed")
    async with request.state.pool.acquire() as conn:
        events = await event_bus.events_after(conn, topic, after, BACKLOG_PAGE)
    return json_ok({"topic": topic, "events": [e.as_json() for e in events],
                    "last_id": events[-1].id if events else after, "more": len(events) == BACKLOG_PAGE})


EVENT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["id", "topic", "kind", "payload", "created_at"],
    "properties": {"id": {"type": "integer"}, "topic": {"type": "string"}, "kind": {"type": "string"},
                   "payload": {"type": "object"}, "created_at": {"type": "string", "format": "date-time"}},
}

ROUTES = [
    GuardedWebSocketRoute("/ws/events", events_socket, access=ANY_USER),
    route("/api/events", list_events, access=ANY_USER,
          doc=ApiDoc("Events of a topic after an event id (polling)", tags=("events",),
                     response={"type": "object", "required": ["topic", "events", "last_id", "more"],
                               "properties": {"topic": {"type": "string"},
                                              "events": {"type": "array", "items": EVENT_SCHEMA},
                                              "last_id": {"type": "integer"}, "more": {"type": "boolean"}}},
                     extra_responses={400: "missing or malformed parameter", 401: "not logged in",
                                      403: "topic not allowed"})),
]
