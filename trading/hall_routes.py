"""Opening-hall endpoints: the hall page and snapshot, the host's and bidders' acts, the record, host video."""

from __future__ import annotations

import uuid
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from tenderhall.key_routes import key_owner
from tenderhall.media_hub import MediaRefused
from tenderhall.web import ANY_USER, PUBLIC, ApiDoc, ApiError, json_ok, read_json, render, roles, route
from trading import hall_decryption as decryption
from trading import hall_service as hall
from trading import hall_snapshot
from trading import service
from trading.routes import _deps, _id, mapped

AGENT = roles("agent")
BIDDER = roles("bidder")
TAGS = ("opening hall",)
_ERR = {401: "not logged in (login_required)", 403: "role not allowed (role_forbidden), CSRF (csrf_failed), "
        "not the host (not_host), not a bidder here (not_a_bidder)", 404: "tender_not_found",
        409: "wrong_step, hall_locked, tender_cancelled"}
_OBJ = {"type": "object"}


def _room(tender_id: uuid.UUID) -> str:
    return f"hall:{tender_id}"


def _video_live(request: Request, tender_id: uuid.UUID) -> bool:
    hub = getattr(request.state, "media_hub", None)
    return bool(hub is not None and hub.stats(_room(tender_id)).get("publishers"))


def _act(handler: Callable[..., Awaitable[dict[str, Any]]], *, body: bool = True,
         path_int: str | None = None) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that parses the id (and JSON body), calls one hall use case and answers its result."""

    async def endpoint(request: Request) -> Response:
        args: list[Any] = [_deps(request), request.state.user, _id(request, "tender_id", "tender")]
        if path_int:
            raw = request.path_params[path_int]
            try:
                args.append(int(raw))
            except ValueError:
                raise ApiError(404, "not_found", f"{raw!r} is not an id") from None
        if body:
            args.append(await read_json(request))
        return json_ok(await handler(*args))

    endpoint.__name__ = f"api_hall_{handler.__name__}"
    endpoint.__doc__ = handler.__doc__
    return mapped(endpoint)


@mapped
async def api_hall(request: Request) -> Response:
    """The hall as the caller may see it: step, countdown times, bidders, progress, read-outs, record."""
    tender_id = _id(request, "tender_id", "tender")
    snapshot = await hall_snapshot.snapshot(_deps(request), request.state.user, tender_id,
                                   video_live=_video_live(request, tender_id))
    return json_ok({"hall": snapshot})


@mapped
async def hall_page(request: Request) -> Response:
    """The opening hall page: everything live over the tender's event topic."""
    deps = _deps(request)
    user = request.state.user
    tender_id = _id(request, "tender_id", "tender")
    tender = await service.get_tender(deps, user, tender_id)
    role = await hall.hall_role(deps, user, tender_id)
    return render(request, "trading/hall.html", {
        "tender": tender, "key_owner": key_owner(user).label, "is_host": role.host,
        "custodian_position": role.custodian_position, "is_bidder": role.bidder,
        "sign_key_id": await hall.signing_key_id(deps, user) if role.bidder else None,
    })


@mapped
async def record_page(request: Request) -> Response:
    """The opening record (开标记录) as a page."""
    tender_id = _id(request, "tender_id", "tender")
    record, _data, sha256 = await hall.record_of(_deps(request), tender_id)
    return render(request, "trading/hall_record.html", {"record": record, "sha256": sha256,
                                                        "tender": record["tender"]})


@mapped
async def api_record_json(request: Request) -> Response:
    """The record's canonical JSON: exactly the bytes whose SHA-256 is logged and signed."""
    _record, data, sha256 = await hall.record_of(_deps(request), _id(request, "tender_id", "tender"))
    return Response(data, media_type="application/json", headers={"X-Record-SHA256": sha256})


@mapped
async def api_ocds(request: Request) -> Response:
    """OCDS 1.1 release package of a published tender and, after the opening, its bids."""
    tender_id = _id(request, "tender_id", "tender")
    uri = str(request.url_for("ocds", tender_id=str(tender_id)))
    return json_ok(await hall_snapshot.ocds_package(_deps(request), tender_id, uri))


async def _media(request: Request, *, host_only: bool) -> tuple[Any, service.Deps, Any, uuid.UUID]:
    """(hub, deps, user, tender id) for a video call; 503 without a hub, 403 not_host when the host is needed."""
    hub = getattr(request.state, "media_hub", None)
    if hub is None:
        raise ApiError(503, "media_unavailable", "the media hub is not running on this server")
    deps = _deps(request)
    user = request.state.user
    tender_id = _id(request, "tender_id", "tender")
    role = await hall.hall_role(deps, user, tender_id)
    if host_only and not role.host:
        raise ApiError(403, "not_host", "only the host streams video into the hall")
    return hub, deps, user, tender_id


async def _video(request: Request, publish: bool) -> Response:
    hub, deps, user, tender_id = await _media(request, host_only=publish)
    offer = await read_json(request)
    try:
        if publish:
            answer = await hub.publish(_room(tender_id), f"user:{user.id}", offer)
            await hall.announce_video(deps, tender_id, True)
        else:
            answer = await hub.view(_room(tender_id), f"user:{user.id}", offer)
    except MediaRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return json_ok(answer)


@mapped
async def api_video_publish(request: Request) -> Response:
    """The host's camera and microphone into the hall (SDP offer in, answer out)."""
    return await _video(request, True)


@mapped
async def api_video_view(request: Request) -> Response:
    """Watch the host's video, receive-only (SDP offer in, answer out)."""
    return await _video(request, False)


@mapped
async def api_video_stop(request: Request) -> Response:
    """The host stops streaming; the recording's segment is finished and logged."""
    hub, deps, user, tender_id = await _media(request, host_only=True)
    await hub.leave(_room(tender_id), f"user:{user.id}")
    await hall.announce_video(deps, tender_id, False)
    return json_ok({"live": False})


def _post(path: str, endpoint: Callable[[Request], Awaitable[Response]], access: Any, summary: str,
          request: dict[str, Any] | None = None, errors: dict[int, str] | None = None) -> Any:
    return route(f"/api/tenders/{{tender_id}}/hall/{path}", endpoint, methods=["POST"], access=access, doc=ApiDoc(
        summary, request=request or _OBJ, response=_OBJ, tags=TAGS, extra_responses={**_ERR, **(errors or {})}))


_TEXT = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}

ROUTES = [
    route("/tenders/{tender_id}/hall", hall_page, access=ANY_USER, name="hall"),
    route("/tenders/{tender_id}/hall/record", record_page, access=ANY_USER, name="hall_record"),
    route("/api/tenders/{tender_id}/hall", api_hall, access=ANY_USER, doc=ApiDoc(
        "The opening hall as the caller may see it (docs/hall.md)", response={"type": "object", "properties": {
            "hall": _OBJ}}, tags=TAGS, extra_responses={404: "tender_not_found", 401: "login_required"})),
    route("/api/tenders/{tender_id}/hall/record.json", api_record_json, access=ANY_USER, doc=ApiDoc(
        "The opening record's canonical JSON", response=_OBJ, tags=TAGS,
        extra_responses={404: "record_not_found, tender_not_found", 401: "login_required"})),
    route("/api/tenders/{tender_id}/ocds", api_ocds, access=PUBLIC, name="ocds", doc=ApiDoc(
        "OCDS 1.1 release package (tender, lots; after the opening the bids extension)", response={
            "type": "object", "required": ["uri", "version", "releases"]}, tags=("open data",),
        extra_responses={404: "tender_not_found"})),
    _post("sign-in", _act(hall.sign_in, body=False), BIDDER, "Sign in to the opening (签到)",
          errors={409: "already_signed_in, wrong_step"}),
    _post("start-sign-in", _act(hall.start_sign_in, body=False), AGENT, "Host: start sign-in"),
    _post("close-submissions", _act(hall.close_submissions, body=False), AGENT,
          "Host: close submissions at the deadline and freeze the bids", errors={409: "before_deadline, wrong_step"}),
    _post("deposits", _act(hall.set_deposit), AGENT, "Host: record a bidder's deposit check (保证金)",
          {"type": "object", "required": ["organisation_id", "deposit"], "properties": {
              "organisation_id": {"type": "string", "format": "uuid"},
              "deposit": {"type": "string", "enum": ["confirmed", "missing"]}, "note": {"type": "string"}}},
          {404: "bidder_not_found", 422: "invalid_body"}),
    _post("publish-bidders", _act(hall.publish_bidders, body=False), AGENT,
          "Host: publish the bidder list and open the decryption window (or fail the opening)"),
    _post("decrypt", _act(decryption.decrypt), BIDDER, "Bidder: send the bid's content key; the server opens and verifies it",
          {"type": "object", "required": ["bid_id", "content_key"], "properties": {
              "bid_id": {"type": "string", "format": "uuid"}, "content_key": {"type": "string"}}},
          {403: "not_your_bid", 404: "bid_not_found", 409: "window_closed, already_opened",
           422: "key_mismatch, ciphertext_invalid, invalid_body"}),
    _post("close-window", _act(decryption.close_window, body=False), AGENT, "Host: close the decryption window",
          errors={409: "window_open"}),
    _post("shares", _act(decryption.release_shares), ANY_USER, "Custodian: release shares of bids waiting for custodians",
          {"type": "object", "required": ["shares"], "properties": {"shares": {"type": "array"}}},
          {403: "not_custodian", 409: "share_already_released, bid_not_waiting", 422: "invalid_body"}),
    _post("finish-custodians", _act(decryption.finish_custodians, body=False), AGENT,
          "Host: end the custodian step; bids still closed become void"),
    _post("read-next", _act(hall.read_next), AGENT, "Host: read out (唱标) the next opened bid, or all with {all: true}",
          errors={409: "nothing_to_read"}),
    _post("record", _act(hall.generate_record, body=False), AGENT, "Host: generate the opening record",
          errors={409: "objection_unanswered, reading_unfinished"}),
    _post("confirm", _act(hall.confirm_record), BIDDER, "Bidder: confirm the record by signing its digest",
          {"type": "object", "required": ["signature"], "properties": {"signature": {"type": "string"}}},
          {409: "already_confirmed, confirm_deadline_passed", 422: "bad_signature"}),
    _post("objections", _act(hall.raise_objection), BIDDER, "Bidder: raise an objection (异议)", _TEXT,
          {409: "not_signed_in", 422: "invalid_body"}),
    _post("objections/{objection_id}/answer", _act(hall.answer_objection, path_int="objection_id"), AGENT,
          "Host: answer an objection", {"type": "object", "required": ["answer"], "properties": {
              "answer": {"type": "string"}}}, {404: "objection_not_found", 409: "already_answered"}),
    _post("chat", _act(hall.send_chat), ANY_USER, "Host or signed-in bidder: write in the hall chat", _TEXT,
          {429: "chat_too_fast", 422: "invalid_body"}),
    _post("chat/{message_id}/hide", _act(hall.hide_chat, body=False, path_int="message_id"), AGENT,
          "Host: hide a chat message", errors={404: "message_not_found"}),
    _post("close", _act(hall.close_opening), AGENT, "Host: close the opening with the resumption time (复会时间)",
          {"type": "object", "properties": {"resumption_at": {"type": ["string", "null"], "format": "date-time"}}},
          {409: "confirmations_pending"}),
    _post("video/publish", api_video_publish, AGENT, "Host: stream camera and microphone (SDP offer → answer)",
          {"type": "object", "required": ["sdp", "type"]}, {422: "media_refused", 503: "media_unavailable"}),
    _post("video/stop", api_video_stop, AGENT, "Host: stop streaming (the recording segment is closed and logged)",
          errors={503: "media_unavailable"}),
    _post("video/view", api_video_view, ANY_USER, "Watch the host's video, receive-only (SDP offer → answer)",
          {"type": "object", "required": ["sdp", "type"]}, {422: "media_refused", 503: "media_unavailable"}),
]
