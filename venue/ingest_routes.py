"""Positions over HTTP and a websocket, and the supervisors' map reads.

Positioning systems POST batches (JSON array or NDJSON) to /api/venue/positions or keep a
websocket at /ws/venue/positions sending one batch per message; both answer each batch with
its report {accepted, rejected, errors: [{index, error}], duplicate}. They authenticate with
the device token (`Authorization: Bearer`, compared in constant time); a logged-in admin may
send batches too (with the CSRF token, testing from a browser) — the door controllers' rule
(venue/access_routes.py, DeviceRoute). Codes: 401 invalid_device_token, or login_required with
no token and no login; 403 role_forbidden (a user who is not an admin) or csrf_failed; 413 a
body over 4 MiB (too_large) or over 10,000 records (too_many_records); 415 neither JSON nor
NDJSON; 400 a body that is no array (malformed_json, not_an_array) or a bad Idempotency-Key.

The websocket closes with 4401 (no or wrong token), 4403 (not an admin, or cross-origin with a
session) and 1009 (a message over 4 MiB); a message that is not a batch is answered with
{"error": {code, message}} and the socket stays open.
"""

from __future__ import annotations

from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from tenderhall.web import (
    PUBLIC, ApiDoc, ApiError, GuardedWebSocketRoute, _origin_ok, json_ok, read_body, resolve_session, roles, route,
)
from venue import position_service as service
from venue.access_routes import DeviceRoute
from venue.devices import bearer, token_ok
from venue.ingest import JSON, MAX_BODY_BYTES, NDJSON, BatchInvalid, RecordInvalid, batch_id, parse_time

SUPERVISORS = roles("supervisor", "admin")
CLOSE_TOO_BIG = 1009  # RFC 6455 7.4.1: a message too big to process
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


async def _socket_caller_ok(websocket: WebSocket) -> bool:
    """A device with the right token, or a logged-in admin of this origin; else the socket is closed."""
    given = bearer(websocket)
    if given is not None:
        if token_ok(given, websocket.state.venue_device_token):
            return True
        await websocket.close(CLOSE_UNAUTHENTICATED, "the device token is not this venue's")
        return False
    if not _origin_ok(websocket):
        await websocket.close(CLOSE_FORBIDDEN, "cross-origin websocket refused")
        return False
    session = await resolve_session(websocket)
    if session is None:
        await websocket.close(CLOSE_UNAUTHENTICATED, "a device token or an admin's login is needed")
        return False
    if "admin" not in session.user.roles:
        await websocket.close(CLOSE_FORBIDDEN, "only positioning systems and admins may send positions")
        return False
    return True


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def post_positions(request: Request) -> Response:
    """A batch of positions (JSON array or NDJSON); the per-record report."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in (JSON, NDJSON):
        raise ApiError(415, "unsupported_media_type", f"send the batch as {JSON} (an array) or {NDJSON}")
    body = bytes(await read_body(request, MAX_BODY_BYTES, "the batch"))
    try:
        report = await service.take_batch(
            request.state.pool, request.state.venue_engine, request.state.settings.venue_position_retention_days, body,
            ndjson=media_type == NDJSON, batch_key=batch_id(body, request.headers.get("idempotency-key")), now=_now())
    except BatchInvalid as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return json_ok(report.as_json())


async def positions_socket(websocket: WebSocket) -> None:
    """/ws/venue/positions: each message a batch (JSON array or NDJSON), each answered with its report."""
    await websocket.accept()  # first, so that the device sees the close code and reason
    if not await _socket_caller_ok(websocket):
        return
    state = websocket.state
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                data = (message.get("text") or "").encode()
            if len(data) > MAX_BODY_BYTES:
                await websocket.close(CLOSE_TOO_BIG, f"a batch may have at most {MAX_BODY_BYTES} bytes")
                return
            try:
                report = await service.take_batch(
                    state.pool, state.venue_engine, state.settings.venue_position_retention_days, data,
                    ndjson=not data.lstrip().startswith(b"["), batch_key=batch_id(data, None), now=_now())
            except BatchInvalid as exc:
                await websocket.send_json({"error": {"code": exc.code, "message": exc.message}})
                continue
            await websocket.send_json(report.as_json())
    except WebSocketDisconnect:
        return


# ---------------------------------------------------------------------------- the map's reads


def _moment(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_time(raw, name)
    except RecordInvalid as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None


def _period(request: Request) -> tuple[datetime, datetime]:
    """?from=&to= (ISO 8601 with a zone); `to` defaults to now and `from` to an hour before it."""
    end = _moment(request, "to") or _now()
    start = _moment(request, "from") or end - service.DEFAULT_PERIOD
    return start, end


async def get_live(request: Request) -> Response:
    """Every tracked person's current state for the live map."""
    return json_ok(service.live(request.state.venue_engine, _now()))


async def get_trajectory(request: Request) -> Response:
    """A person's positions in a period, at most 20,000 (evenly thinned when there are more)."""
    try:
        person = service.person_id(request.path_params["person_id"])
        result = await service.trajectory(request.state.pool, person, *_period(request)) if person else None
    except service.QueryInvalid as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    if result is None:
        raise ApiError(404, "person_not_found", "no such person")
    return json_ok(result)


async def get_heatmap(request: Request) -> Response:
    """Positions of a floor in a period counted per square of `cell` metres."""
    floor = request.query_params.get("floor", "")
    raw_cell = request.query_params.get("cell") or "1"
    try:
        cell = service.cell_size(raw_cell)
        result = await service.heatmap(request.state.pool, service.floor_code(floor), *_period(request), cell)
    except service.QueryInvalid as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    return json_ok(result)


_REPORT = {"type": "object", "required": ["accepted", "rejected", "errors", "duplicate"], "properties": {
    "accepted": {"type": "integer"}, "rejected": {"type": "integer"}, "duplicate": {"type": "boolean"},
    "errors": {"type": "array", "items": {"type": "object", "required": ["index", "error"], "properties": {
        "index": {"type": "integer"}, "error": {"type": "string"}}}}}}
_RECORD = {"type": "object", "required": ["tag", "t", "x", "y", "floor"], "properties": {
    "tag": {"type": "string"}, "t": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}]},
    "x": {"type": "number"}, "y": {"type": "number"}, "floor": {"type": "string"},
    "quality": {"type": ["number", "null"]}}}
_PERSON_STATE = {"type": "object", "properties": {
    "person": {"type": "string"}, "name": {"type": ["string", "null"]}, "role": {"type": ["string", "null"]},
    "tag": {"type": "string"}, "floor": {"type": "string"}, "x": {"type": "number"}, "y": {"type": "number"},
    "zone": {"type": ["string", "null"]}, "zone_floor": {"type": ["string", "null"]},
    "since": {"type": "string", "format": "date-time"}, "last_seen": {"type": "string", "format": "date-time"},
    "trail": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}}
_SUPERVISOR_ERRORS = {401: "not logged in (login_required)", 403: "not a supervisor or admin (role_forbidden)"}
TAGS = ("venue",)

ROUTES = [
    DeviceRoute("/api/venue/positions", post_positions, methods=["POST"], doc=ApiDoc(
        "A batch of positions from a positioning system (JSON array or NDJSON, at most 10,000 records, 4 MiB); "
        "an Idempotency-Key header (or the body's SHA-256) makes a re-sent batch count once",
        request={"type": "array", "items": _RECORD}, response=_REPORT, tags=TAGS, extra_responses={
            400: "malformed_json, not_an_array, invalid_idempotency_key",
            401: "login_required (no token, not logged in), invalid_device_token", 403: "role_forbidden, csrf_failed",
            413: "too_large, too_many_records", 415: "unsupported_media_type"})),
    GuardedWebSocketRoute("/ws/venue/positions", positions_socket, access=PUBLIC),
    route("/api/venue/live", get_live, access=SUPERVISORS, doc=ApiDoc(
        "Every tracked person's current state: position, zone and since when, last seen, short trail",
        response={"type": "object", "properties": {"at": {"type": "string", "format": "date-time"},
                                                   "people": {"type": "array", "items": _PERSON_STATE}}},
        tags=TAGS, extra_responses=_SUPERVISOR_ERRORS)),
    route("/api/venue/people/{person_id}/trajectory", get_trajectory, access=SUPERVISORS, doc=ApiDoc(
        "A person's positions from ?from= to ?to= (default: the last hour), at most 20,000 points, evenly thinned",
        response={"type": "object", "properties": {
            "person": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"},
            "total": {"type": "integer"}, "downsampled": {"type": "boolean"},
            "points": {"type": "array", "items": {"type": "object", "properties": {
                "t": {"type": "string", "format": "date-time"}, "floor": {"type": "string"},
                "x": {"type": "number"}, "y": {"type": "number"}}}}}},
        tags=TAGS, extra_responses={**_SUPERVISOR_ERRORS, 400: "invalid_query", 404: "person_not_found"})),
    route("/api/venue/heatmap", get_heatmap, access=SUPERVISORS, doc=ApiDoc(
        "Positions of ?floor= from ?from= to ?to= (default: the last hour) counted per square of ?cell= metres (default 1)",
        response={"type": "object", "properties": {
            "floor": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"}, "cell": {"type": "number"},
            "cells": {"type": "array", "items": {"type": "object", "properties": {
                "x": {"type": "number"}, "y": {"type": "number"}, "count": {"type": "integer"}}}}}},
        tags=TAGS, extra_responses={**_SUPERVISOR_ERRORS, 400: "invalid_query"})),
]
