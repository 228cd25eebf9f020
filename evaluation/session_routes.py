"""Evaluation session endpoints: pages, the JSON API of every act, recordings and documents, and
the session's websocket (events out; acts, media signalling and marks in)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from evaluation import session_acts as acts
from evaluation import session_faults
from evaluation import session_service as svc
from evaluation import session_view as view
from evaluation import venue_service
from evaluation.draw_service import Deps
from evaluation.scoring import ScoringError
from evaluation.session_rules import SessionRefused
from evaluation.session_state import report_bytes
from tenderhall.accounts import CurrentUser
from tenderhall.event_routes import send_backlog, send_live
from tenderhall.media_hub import MediaRefused
from tenderhall.web import (
    ANY_USER, ApiDoc, ApiError, GuardedWebSocketRoute, _origin_ok, json_ok, page_params, path_uuid, read_json,
    render, resolve_session, roles, route,
)

log = logging.getLogger(__name__)

TAGS = ("evaluation sessions",)
ADMIN = roles("admin")
AGENTS = roles("agent", "admin")
BIDDER = roles("bidder")
MAX_MESSAGE = 128 * 1024
CLOSE_BAD_REQUEST, CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4400, 4401, 4403, 4404
_OBJ = {"type": "object"}
ENDED = ("closed", "failed", "suspended")
_ERR = {401: "login_required", 403: "not_allowed, not_on_committee, receive_only, csrf_failed",
        404: "session_not_found", 409: "wrong_step and the step's own codes", 422: "invalid_body and field codes"}


def deps_of(state: Any) -> Deps:
    return Deps(state.pool, state.settings, state.platform_key, state.data_key)


def _error(exc: Exception) -> ApiError:
    if isinstance(exc, (SessionRefused, MediaRefused)):
        return ApiError(exc.status, exc.code, exc.message, detail=getattr(exc, "detail", None))
    assert isinstance(exc, ScoringError)
    return ApiError(422, exc.code, exc.message, detail=exc.detail)


def mapped(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (SessionRefused, MediaRefused, ScoringError) as exc:
            raise _error(exc) from None

    wrapper.__name__ = endpoint.__name__
    wrapper.__doc__ = endpoint.__doc__
    return wrapper


def _int_param(request: Request, name: str, what: str) -> int:
    raw = request.path_params[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, f"{what}not_found", f"no {what} has id {raw!r}")
    return int(raw)


# Every act of the session, by name: (function, takes a body). The same table serves the JSON
# API and the websocket, so both refuse and accept exactly the same things.
Act = Callable[..., Awaitable[dict[str, Any]]]
ACTS: dict[str, tuple[Act, bool]] = {
    "open-sign-in": (svc.open_sign_in, False),
    "sign-in": (svc.sign_in, True),
    "confirm-room": (svc.confirm_room, True),
    "decision": (session_faults.record_decision, True),
    "advance": (acts.advance, False),
    "release-member": (acts.release_member, True),
    "declare": (acts.declare, True),
    "vote": (acts.vote, True),
    "review": (acts.review, True),
    "score": (acts.score, True),
    "explain-deviation": (acts.explain_deviation, True),
    "clarifications": (acts.ask_clarification, True),
    "sign-report": (acts.sign_report, True),
    "mark": (acts.mark, True),
}


async def run_act(state: Any, user: CurrentUser, session_id: uuid.UUID, name: str, body: Any) -> dict[str, Any]:
    """Run one act; a session that has ended (closed, failed, suspended) ends its media, so the
    last recordings are finished and logged."""
    act = ACTS.get(name)
    if act is None:
        raise SessionRefused(f"unknown act {name!r}; acts: {', '.join(ACTS)}", code="unknown_act", status=404)
    function, takes_body = act
    deps = deps_of(state)
    result = await (function(deps, user, session_id, body) if takes_body else function(deps, user, session_id))
    if result.get("step") in ENDED or result.get("choice") == "postpone":
        await state.session_media.end(session_id)
    elif result.get("step") == "declarations":
        await state.session_media.started(session_id)
    return result


# ---------------------------------------------------------------------------- JSON


@mapped
async def api_create(request: Request) -> Response:
    """Schedule a session (tender agent or admin)."""
    created = await svc.create(deps_of(request.state), request.state.user, await read_json(request))
    return json_ok(created, status=201, headers={"Location": f"/api/sessions/{created['id']}"})


@mapped
async def api_list(request: Request) -> Response:
    """Sessions the caller takes part in (admins: all), latest start first; ?page=&per_page=."""
    page, per_page = page_params(request)
    return json_ok(await view.list_sessions(deps_of(request.state), request.state.user, page, per_page))


@mapped
async def api_snapshot(request: Request) -> Response:
    """The session as the caller may see it."""
    return json_ok({"session": await view.snapshot(deps_of(request.state), request.state.user,
                                                   path_uuid(request, "session_id", "session"))})


@mapped
async def api_act(request: Request) -> Response:
    """One act of the session (see ACTS); the body as the act describes."""
    name = request.path_params["act"]
    body = await read_json(request) if ACTS.get(name, (None, False))[1] else None
    return json_ok(await run_act(request.state, request.state.user,
                                 path_uuid(request, "session_id", "session"), name, body))


@mapped
async def api_review_clarification(request: Request) -> Response:
    """A supervisor approves (with the answer's deadline in hours) or rejects a drafted question."""
    return json_ok(await acts.review_clarification(
        deps_of(request.state), request.state.user, path_uuid(request, "session_id", "session"),
        _int_param(request, "clarification_id", "clarification"), await read_json(request)))


@mapped
async def api_answer_clarification(request: Request) -> Response:
    """The bidder answers an approved clarification before its deadline."""
    return json_ok(await acts.answer_clarification(deps_of(request.state), request.state.user,
                                                   _int_param(request, "clarification_id", "clarification"),
                                                   await read_json(request)))


@mapped
async def api_my_clarifications(request: Request) -> Response:
    """Questions to the caller's organisation, approved or answered, newest first."""
    found = await view.clarifications_of_bidder(deps_of(request.state), request.state.user)
    return json_ok({"clarifications": [{k: v for k, v in c.items() if k != "deadline_at"} for c in found]})


@mapped
async def clarifications_page(request: Request) -> Response:
    """The bidder's clarification requests, with a form to answer each before its deadline."""
    found = await view.clarifications_of_bidder(deps_of(request.state), request.state.user)
    return render(request, "evaluation/clarifications.html", {"clarifications": found})


@mapped
async def api_report(request: Request) -> Response:
    """The report, its digest and the signatures on it."""
    return json_ok(await view.report(deps_of(request.state), request.state.user,
                                     path_uuid(request, "session_id", "session")))


@mapped
async def api_report_json(request: Request) -> Response:
    """The report's canonical JSON: exactly the bytes whose SHA-256 the experts sign."""
    found = await view.report(deps_of(request.state), request.state.user, path_uuid(request, "session_id", "session"))
    data, sha256 = report_bytes(found["report"])
    return Response(data, media_type="application/json", headers={"X-Report-SHA256": sha256})


@mapped
async def api_recordings(request: Request) -> Response:
    """The session manifest: every recorded segment, its times, digest and log index, and the marks."""
    return json_ok(await view.manifest(deps_of(request.state), request.state.user,
                                       path_uuid(request, "session_id", "session")))


@mapped
async def api_recording_file(request: Request) -> Response:
    """One segment's WebM file (?timing=1: its wall-clock timing file), for playback."""
    timing = request.query_params.get("timing") == "1"
    path = await view.segment_file(deps_of(request.state), request.state.user,
                                   path_uuid(request, "session_id", "session"),
                                   _int_param(request, "segment_id", "segment"), timing)
    return FileResponse(path, media_type="application/json" if timing else "video/webm")


@mapped
async def api_document(request: Request) -> Response:
    """One document of an opened bid, decrypted as it is sent; every view is logged."""
    stream, size = await view.open_document(deps_of(request.state), request.state.user,
                                            path_uuid(request, "session_id", "session"),
                                            path_uuid(request, "bid_id", "bid"), request.path_params["name"])
    headers = {"Content-Disposition": "inline", "Cache-Control": "no-store"}
    if size is not None:
        headers["Content-Length"] = str(size)
    return StreamingResponse(stream, media_type="application/octet-stream", headers=headers)


@mapped
async def api_venues(request: Request) -> Response:
    """Venues and their evaluation rooms."""
    return json_ok(await venue_service.list_venues(deps_of(request.state)))


@mapped
async def api_create_venue(request: Request) -> Response:
    """Admin: add a venue (name, six-digit region code, address) with its rooms [{name, seats}]."""
    return json_ok(await venue_service.create_venue(deps_of(request.state), request.state.user,
                                                    await read_json(request)), status=201)


async def _media(request: Request, publish: bool) -> Response:
    media = request.state.session_media
    session_id = path_uuid(request, "session_id", "session")
    offer = await read_json(request)
    if publish:
        return json_ok(await media.publish(request.state.user, session_id, offer))
    return json_ok(await media.view(request.state.user, session_id, path_uuid(request, "room_id", "room"), offer))


@mapped
async def api_publish(request: Request) -> Response:
    """The caller's room sends its camera and microphone (SDP offer → answer)."""
    return await _media(request, True)


@mapped
async def api_view(request: Request) -> Response:
    """Receive one room's audio and video, receive-only (SDP offer → answer)."""
    return await _media(request, False)


# ---------------------------------------------------------------------------- pages


@mapped
async def session_page(request: Request) -> Response:
    """The session page: rooms' video, the step's work, everything live over the session socket."""
    session_id = path_uuid(request, "session_id", "session")
    snapshot = await view.snapshot(deps_of(request.state), request.state.user, session_id)
    return render(request, "evaluation/session.html", {"session": snapshot,
                                                       "ice_servers": request.state.settings.ice_servers()})


@mapped
async def report_page(request: Request) -> Response:
    """The evaluation report (评标报告) as a page, with its digest and signatures."""
    found = await view.report(deps_of(request.state), request.state.user, path_uuid(request, "session_id", "session"))
    return render(request, "evaluation/session_report.html", found)


@mapped
async def new_session_page(request: Request) -> Response:
    """The scheduling form: a lot ready for evaluation, the start, the rooms and their staff, supervisors."""
    return render(request, "evaluation/session_new.html",
                  await view.form_choices(deps_of(request.state), request.state.user))


@mapped
async def api_form_choices(request: Request) -> Response:
    """What the scheduling form offers the caller."""
    return json_ok(await view.form_choices(deps_of(request.state), request.state.user))


@mapped
async def venues_page(request: Request) -> Response:
    """Venues and their evaluation rooms; admins add venues here."""
    return render(request, "evaluation/venues.html", await venue_service.list_venues(deps_of(request.state)))


@mapped
async def sessions_page(request: Request) -> Response:
    """The caller's sessions."""
    page, per_page = page_params(request)
    return render(request, "evaluation/sessions.html",
                  await view.list_sessions(deps_of(request.state), request.state.user, page, per_page))


# ---------------------------------------------------------------------------- websocket


async def _handle(websocket: WebSocket, deps: Deps, user: CurrentUser, session_id: uuid.UUID,
                  message: dict[str, Any]) -> Any:
    kind = message.get("type")
    media = websocket.state.session_media
    if kind == "act":
        return await run_act(websocket.state, user, session_id, str(message.get("act")), message.get("body"))
    if kind == "publish":
        return await media.publish(user, session_id, message.get("offer"))
    if kind == "view":
        return await media.view(user, session_id, svc.uuid_of(message.get("room"), "room"), message.get("offer"))
    raise SessionRefused("type must be act, publish or view", code="unknown_type", status=400)


async def _reader(websocket: WebSocket, deps: Deps, user: CurrentUser, session_id: uuid.UUID) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None or len(text) > MAX_MESSAGE:
            await websocket.send_text(json.dumps({"type": "reply", "ok": False, "error": {
                "code": "bad_message", "message": f"send JSON text messages of at most {MAX_MESSAGE} bytes"}}))
            continue
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            await websocket.send_text(json.dumps({"type": "reply", "ok": False, "error": {
                "code": "bad_message", "message": "a message is a JSON object"}}))
            continue
        reply: dict[str, Any] = {"type": "reply", "id": data.get("id")}
        try:
            reply.update(ok=True, result=await _handle(websocket, deps, user, session_id, data))
        except (SessionRefused, MediaRefused, ScoringError) as exc:
            error = _error(exc)
            reply.update(ok=False, status=error.status, error={"code": error.code, "message": error.message,
                                                               "detail": error.detail})
        except ApiError as error:
            reply.update(ok=False, status=error.status, error={"code": error.code, "message": error.message})
        except Exception:  # noqa: BLE001 - one failed message must not end the socket unanswered
            log.exception("session %s: a %r message failed", session_id, data.get("type"))
            reply.update(ok=False, status=500, error={"code": "internal_error",
                                                      "message": "the server failed on this message; it was logged"})
        await websocket.send_text(json.dumps(reply))


async def session_socket(websocket: WebSocket) -> None:
    """/ws/sessions/{id}?after=<last event id>: the session's events (backlog, then live); the
    client sends {id, type: act|publish|view, ...} and gets {type: reply, id, ok, result|error}."""
    await websocket.accept()
    if not _origin_ok(websocket):
        await websocket.close(CLOSE_FORBIDDEN, "cross-origin websocket refused")
        return
    auth = await resolve_session(websocket)
    if auth is None:
        await websocket.close(CLOSE_UNAUTHENTICATED, "log in first")
        return
    try:
        session_id = uuid.UUID(websocket.path_params["session_id"])
        after = int(websocket.query_params.get("after") or 0)
    except ValueError:
        await websocket.close(CLOSE_BAD_REQUEST, "a session id and a numeric after are needed")
        return
    deps = deps_of(websocket.state)
    user = auth.user
    try:
        async with deps.pool.acquire() as conn:
            session = await svc.ss.session(conn, session_id)
            if session is None:
                raise svc.not_found(session_id)
            caller = await svc.who(conn, session, user)
            await svc.require_part_or_invited(conn, deps, session, caller)
    except SessionRefused as exc:
        await websocket.close(CLOSE_NOT_FOUND if exc.status == 404 else CLOSE_FORBIDDEN, _close_reason(exc))
        return
    media = websocket.state.session_media
    topic = svc.topic(session_id)
    reader = asyncio.create_task(_reader(websocket, deps, user, session_id))
    seated = False
    try:
        if caller.room is not None:
            # A terminal of the room: counted as soon as joined() starts, so left() must follow.
            seated = True
            await media.joined(session_id, caller.room)
        async with websocket.state.bus.subscribe(topic) as subscription:
            # The reader ends when the client leaves: it plays the event socket's disconnect watcher.
            await send_live(websocket, subscription, reader, await send_backlog(websocket, topic, after, reader))
    except WebSocketDisconnect:
        pass
    finally:
        reader.cancel()
        if seated:  # before anything else that awaits: a cancelled handler still marks its room
            await media.left(session_id, caller.room)
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
            await reader


def _close_reason(exc: SessionRefused) -> str:
    """'<code>: <message>', cut to the 123 bytes a close frame's reason may hold (RFC 6455 §5.5)."""
    return f"{exc.code}: {exc.message}".encode()[:123].decode(errors="ignore")


def _post(path: str, endpoint: Any, summary: str, access: Any = ANY_USER, errors: dict[int, str] | None = None) -> Any:
    return route(path, endpoint, methods=["POST"], access=access, doc=ApiDoc(
        summary, request=_OBJ, response=_OBJ, tags=TAGS, extra_responses={**_ERR, **(errors or {})}))


def _get(path: str, endpoint: Any, summary: str, access: Any = ANY_USER) -> Any:
    return route(path, endpoint, access=access, doc=ApiDoc(summary, response=_OBJ, tags=TAGS, extra_responses=_ERR))


ROUTES = [
    route("/sessions", sessions_page, access=ANY_USER, name="sessions"),
    route("/sessions/new", new_session_page, access=AGENTS, name="session_new"),
    route("/venues", venues_page, access=ANY_USER, name="venues"),
    _get("/api/sessions/form-choices", api_form_choices, "What the scheduling form offers the caller", AGENTS),
    route("/sessions/{session_id}", session_page, access=ANY_USER, name="session"),
    route("/sessions/{session_id}/report", report_page, access=ANY_USER, name="session_report"),
    route("/clarifications", clarifications_page, access=BIDDER, name="clarifications"),
    _get("/api/sessions", api_list, "Evaluation sessions you take part in"),
    _post("/api/sessions", api_create, "Schedule an evaluation session (tender agent or admin)", AGENTS,
          {404: "tender_not_found", 409: "opening_not_closed, no_bids, session_exists, no_draw"}),
    _get("/api/sessions/{session_id}", api_snapshot, "The session as the caller may see it"),
    _post("/api/sessions/{session_id}/acts/{act}", api_act, "One act of the session: " + ", ".join(ACTS)),
    _post("/api/sessions/{session_id}/clarifications/{clarification_id}/review", api_review_clarification,
          "Supervisor: approve or reject a drafted clarification"),
    _get("/api/sessions/{session_id}/report", api_report, "The evaluation report with its digest and signatures"),
    _get("/api/sessions/{session_id}/report.json", api_report_json, "The report's canonical JSON"),
    _get("/api/sessions/{session_id}/recordings", api_recordings, "The session's recording manifest"),
    _get("/api/sessions/{session_id}/recordings/{segment_id}", api_recording_file, "One recorded segment (WebM)"),
    _get("/api/sessions/{session_id}/bids/{bid_id}/documents/{name}", api_document,
         "One bid document, decrypted on demand (logged)"),
    _post("/api/sessions/{session_id}/media/publish", api_publish, "The room's camera and microphone (SDP offer → answer)"),
    _post("/api/sessions/{session_id}/media/rooms/{room_id}/view", api_view, "Receive one room, receive-only"),
    _get("/api/clarifications", api_my_clarifications, "Clarification requests to your organisation", BIDDER),
    _post("/api/clarifications/{clarification_id}/answer", api_answer_clarification,
          "Bidder: answer a clarification before its deadline", BIDDER),
    _get("/api/venues", api_venues, "Venues and their evaluation rooms"),
    _post("/api/venues", api_create_venue, "Admin: add a venue with its evaluation rooms", ADMIN),
    GuardedWebSocketRoute("/ws/sessions/{session_id}", session_socket, access=ANY_USER),
]
