"""Access control endpoints: people, credentials and rules (admins; supervisors read), door
decisions and door events for door controllers (HTTP and the /ws/venue/doors websocket), the
decision record, and 代理码 issue and scan (the API and the /venue/agent-codes page).

Door controllers authenticate with `Authorization: Bearer <venue device token>` (venue/devices.py,
compared in constant time); a logged-in admin may call the same endpoints from a browser, with
the usual CSRF token. Their declared access is therefore `admin`: without a token the request
is judged as any admin route (401 login_required, 403 role_forbidden); a wrong token is 401
invalid_device_token. Bodies are at most 64 KiB and 500 door events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any, Awaitable, Callable, Iterable, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.websockets import WebSocket, WebSocketDisconnect

from tenderhall.web import (
    AUTH_ERRORS, ApiDoc, ApiError, GuardedRoute, GuardedWebSocketRoute, _origin_ok, error_response, guarded, json_ok,
    page_params, path_uuid, read_json, render, resolve_session, roles, route,
)
from venue import access_people as people
from venue import access_service as svc
from venue.devices import bearer, token_ok

log = logging.getLogger(__name__)

T = TypeVar("T")
TAGS = ("venue access",)
ADMIN = roles("admin")
READERS = roles("admin", "supervisor")
STAFF = roles("agent", "admin")
MAX_BODY = 64 * 1024
MAX_EVENTS = 500
CLOSE_BAD_MESSAGE, CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN = 4400, 4401, 4403
_OBJ = {"type": "object"}


async def _run(work: Awaitable[T]) -> T:
    """The service's refusals as API errors (status, stable code, message, detail)."""
    try:
        return await work
    except svc.AccessRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message, detail=exc.detail) from None


def _refused(exc: svc.AccessRefused) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, detail=exc.detail)


def _deps(request: Request) -> svc.Deps:
    return svc.Deps.of(request.state)


def _uuid_query(request: Request, name: str) -> uuid.UUID | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name} must be a UUID") from None


class DeviceRoute(GuardedRoute):
    """A door controller's route: the device bearer token, or else whatever an admin route asks."""

    def __init__(self, path: str, endpoint: Callable[[Request], Awaitable[Response]], *, methods: Iterable[str],
                 doc: ApiDoc | None = None) -> None:
        as_admin = guarded(endpoint, ADMIN)

        async def device_or_admin(request: Request) -> Response:
            given = bearer(request)
            if given is None:
                return await as_admin(request)
            try:
                if not token_ok(given, request.state.venue_device_token):
                    raise ApiError(401, "invalid_device_token", "the device token is not this venue's",
                                   headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
                request.state.user = None
                return await endpoint(request)
            except ApiError as error:
                return error_response(request, error)

        # Route's own constructor: GuardedRoute's would put the session check before the token's.
        Route.__init__(self, path, device_or_admin, methods=list(methods))
        self.access, self.doc = ADMIN, doc


# ---------------------------------------------------------------------------- people, credentials, rules


async def api_add_person(request: Request) -> Response:
    return json_ok(await _run(people.add_person(_deps(request), request.state.user, await read_json(request, MAX_BODY))),
                   201)


async def api_people(request: Request) -> Response:
    page, per_page = page_params(request)
    role = request.query_params.get("role") or None
    return json_ok(await _run(people.list_people(_deps(request), role, per_page, (page - 1) * per_page)))


async def api_person(request: Request) -> Response:
    return json_ok(await _run(people.get_person(_deps(request), path_uuid(request, "person_id", "person"))))


async def api_add_credential(request: Request) -> Response:
    person_id = path_uuid(request, "person_id", "person")
    return json_ok(await _run(people.add_credential(_deps(request), request.state.user, person_id,
                                                 await read_json(request, MAX_BODY))), 201)


async def api_credentials(request: Request) -> Response:
    return json_ok(await _run(people.list_credentials(_deps(request), path_uuid(request, "person_id", "person"))))


async def api_revoke_credential(request: Request) -> Response:
    return json_ok(await _run(people.revoke_credential(_deps(request), request.state.user,
                                                    request.path_params["credential_id"])))


async def api_add_rule(request: Request) -> Response:
    return json_ok(await _run(people.add_rule(_deps(request), request.state.user, await read_json(request, MAX_BODY))), 201)


async def api_rules(request: Request) -> Response:
    page, per_page = page_params(request)
    return json_ok(await _run(people.list_rules(_deps(request), _uuid_query(request, "person_id"),
                                             request.query_params.get("revoked") in ("1", "true"), per_page,
                                             (page - 1) * per_page)))


async def api_revoke_rule(request: Request) -> Response:
    return json_ok(await _run(people.revoke_rule(_deps(request), request.state.user, request.path_params["rule_id"])))


# ---------------------------------------------------------------------------- devices


async def api_decide(request: Request) -> Response:
    """{reader_id, credential} → {granted, reason, person?}, from memory."""
    body = await read_json(request, MAX_BODY)
    try:
        return json_ok(svc.decide_request(request.state.venue_engine, body, svc.utc_now()))
    except svc.AccessRefused as exc:
        raise _refused(exc) from None


async def api_door_events(request: Request) -> Response:
    """One door event {reader_id, kind, at?} or a list of them."""
    body = await read_json(request, MAX_BODY)
    items = body if isinstance(body, list) else [body]
    if len(items) > MAX_EVENTS:
        raise ApiError(413, "too_many_events", f"send at most {MAX_EVENTS} door events a request")
    try:
        return json_ok(svc.record_door_events(request.state.venue_engine, items, svc.utc_now()))
    except svc.AccessRefused as exc:
        raise _refused(exc) from None


async def api_decisions(request: Request) -> Response:
    page, per_page = page_params(request)
    reader = request.query_params.get("reader_id") or None
    return json_ok(await _run(svc.list_decisions(_deps(request), _uuid_query(request, "person_id"), reader, per_page,
                                                 (page - 1) * per_page)))


def _answer(engine: Any, text: str | None) -> dict[str, Any]:
    """The reply to one controller message: {type: decide, ...} or {type: door_event, ...}."""
    data: Any = None
    try:
        if text is None or len(text) > MAX_BODY:
            raise svc.AccessRefused(f"send JSON text messages of at most {MAX_BODY} bytes", code="bad_message",
                                    status=400)
        try:
            data = json.loads(text)
        except ValueError:
            raise svc.AccessRefused("a message is a JSON object", code="bad_message", status=400) from None
        kind = data.get("type") if isinstance(data, dict) else None
        now = svc.utc_now()
        if kind == "decide":
            reply = {"type": "decision", **svc.decide_request(engine, data, now)}
        elif kind == "door_event":
            reply = {"type": "door_events", **svc.record_door_events(engine, [data], now)}
        else:
            raise svc.AccessRefused("type must be decide or door_event", code="unknown_type", status=400)
    except svc.AccessRefused as exc:
        reply = {"type": "error", "error": {"code": exc.code, "message": exc.message}}
    reply["id"] = data.get("id") if isinstance(data, dict) else None
    return reply


async def _read_messages(websocket: WebSocket, outbox: asyncio.Queue[dict[str, Any] | None]) -> None:
    engine = websocket.state.venue_engine
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            outbox.put_nowait(_answer(engine, message.get("text")))
    finally:
        outbox.put_nowait(None)


async def _refusal(websocket: WebSocket) -> tuple[int, str] | None:
    """Why this websocket may not be a door controller's (close code, reason), or None."""
    given = bearer(websocket)
    if given is not None:
        return None if token_ok(given, websocket.state.venue_device_token) else (
            CLOSE_UNAUTHENTICATED, "the device token is not this venue's")
    if not _origin_ok(websocket):
        return CLOSE_FORBIDDEN, "cross-origin websocket refused"
    auth = await resolve_session(websocket)
    if auth is None:
        return CLOSE_UNAUTHENTICATED, "a device token or an admin's login is needed"
    return None if "admin" in auth.user.roles else (CLOSE_FORBIDDEN, "only door controllers and admins")


async def doors_socket(websocket: WebSocket) -> None:
    """/ws/venue/doors: a door controller sends {id?, type: decide, reader_id, credential} or
    {id?, type: door_event, reader_id, kind, at?} and gets {type: decision|door_events|error, id, ...};
    the server sends {type: policy_changed, version} when the policy reloads."""
    await websocket.accept()
    refusal = await _refusal(websocket)
    if refusal is not None:
        await websocket.close(*refusal)
        return
    desk = websocket.state.venue_engine.parts.get("access_desk")
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    desk.controllers.add(outbox)
    reader = asyncio.create_task(_read_messages(websocket, outbox))
    try:
        while (message := await outbox.get()) is not None:
            await websocket.send_text(json.dumps(message, ensure_ascii=False))
    except WebSocketDisconnect:
        pass
    finally:
        desk.controllers.discard(outbox)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
            await reader


# ---------------------------------------------------------------------------- 代理码


async def api_issue_agent_code(request: Request) -> Response:
    return json_ok(await _run(people.issue_agent_code(_deps(request), request.state.user,
                                                   await read_json(request, MAX_BODY))), 201)


async def api_agent_codes(request: Request) -> Response:
    tender_id = _uuid_query(request, "tender_id")
    if tender_id is None:
        raise ApiError(400, "invalid_query", "tender_id is required")
    return json_ok(await _run(people.list_agent_codes(_deps(request), request.state.user, tender_id)))


async def api_scan_agent_code(request: Request) -> Response:
    return json_ok(await _run(people.scan_agent_code(_deps(request), request.state.user,
                                                  await read_json(request, MAX_BODY))))


async def agent_codes_page(request: Request) -> Response:
    """Issue a 代理码 (its QR shown once), list a tender's codes, and scan one at the entrance."""
    return render(request, "venue/agent_codes.html", await _run(people.agent_codes_page(_deps(request),
                                                                                          request.state.user)))


# ---------------------------------------------------------------------------- routes

_ERRORS = {**AUTH_ERRORS, 413: "too_large", 422: "invalid_body and field codes"}
_DEVICE_ERRORS = {**_ERRORS, 401: "login_required, invalid_device_token", 413: "too_large, too_many_events",
                  503: "policy_not_loaded"}


def _doc(summary: str, request: bool = False, status: int = 200, errors: dict[int, str] | None = None) -> ApiDoc:
    return ApiDoc(summary, request=_OBJ if request else None, response=_OBJ, status=status, tags=TAGS,
                  extra_responses={**_ERRORS, **(errors or {})})


ROUTES = [
    route("/api/venue/people", api_add_person, methods=["POST"], access=ADMIN,
          doc=_doc("Add a venue person (name, role, optional user/organisation/expert)", True, 201,
                   {409: "user_has_person", 422: "invalid_body, unknown_user, unknown_organisation, unknown_expert"})),
    route("/api/venue/people", api_people, access=READERS, doc=_doc("Venue people, by name (?role=)")),
    route("/api/venue/people/{person_id}", api_person, access=READERS,
          doc=_doc("A venue person with their credentials and the zone they were last let into", errors={
              404: "person_not_found"})),
    route("/api/venue/people/{person_id}/credentials", api_add_credential, methods=["POST"], access=ADMIN,
          doc=_doc("Bind a badge or tag to the person for a period", True, 201,
                   {404: "person_not_found", 409: "credential_in_use"})),
    route("/api/venue/people/{person_id}/credentials", api_credentials, access=READERS,
          doc=_doc("The person's credentials, revoked ones included", errors={404: "person_not_found"})),
    route("/api/venue/credentials/{credential_id:int}/revoke", api_revoke_credential, methods=["POST"], access=ADMIN,
          doc=_doc("Revoke a credential", errors={404: "credential_not_found", 409: "already_revoked"})),
    route("/api/venue/access/rules", api_add_rule, methods=["POST"], access=ADMIN,
          doc=_doc("Add an access rule (person or role; zone on a floor or zone kind; window)", True, 201,
                   {422: "invalid_body, unknown_person, unknown_floor, unknown_zone"})),
    route("/api/venue/access/rules", api_rules, access=READERS,
          doc=_doc("Stored access rules (?person_id=, ?revoked=1) and those the sessions give now")),
    route("/api/venue/access/rules/{rule_id:int}/revoke", api_revoke_rule, methods=["POST"], access=ADMIN,
          doc=_doc("Revoke an access rule", errors={404: "rule_not_found", 409: "already_revoked"})),
    DeviceRoute("/api/venue/access/decide", api_decide, methods=["POST"],
                doc=ApiDoc("Door controller: grant or deny a credential at a reader, with a reason code", request=_OBJ,
                           response=_OBJ, tags=TAGS, extra_responses=_DEVICE_ERRORS)),
    DeviceRoute("/api/venue/doors/events", api_door_events, methods=["POST"],
                doc=ApiDoc("Door controller: door events (opened, closed, forced, held_open), one or a list",
                           request=_OBJ, response=_OBJ, tags=TAGS, extra_responses=_DEVICE_ERRORS)),
    route("/api/venue/access/decisions", api_decisions, access=READERS,
          doc=_doc("Door decisions, newest first (?person_id=, ?reader_id=), with their log index")),
    route("/api/venue/agent-codes", api_issue_agent_code, methods=["POST"], access=STAFF,
          doc=_doc("代理码: issue a one-day code for an agent's staff member (shown once)", True, 201,
                   {403: "not_your_tender, not_your_staff", 404: "tender_not_found", 422: "invalid_body, not_an_agent"})),
    route("/api/venue/agent-codes", api_agent_codes, access=STAFF,
          doc=_doc("代理码 issued for a tender (?tender_id=), without the codes",
                   errors={403: "not_your_tender", 404: "tender_not_found"})),
    route("/api/venue/agent-codes/scan", api_scan_agent_code, methods=["POST"], access=STAFF,
          doc=_doc("代理码: a scan at the entrance, accepted or refused with a reason (recorded and logged)", True,
                   errors={404: "tender_not_found"})),
    route("/venue/agent-codes", agent_codes_page, access=STAFF, name="venue_agent_codes"),
    GuardedWebSocketRoute("/ws/venue/doors", doors_socket, access=ADMIN),
]
