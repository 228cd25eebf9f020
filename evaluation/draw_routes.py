"""Draw endpoints: request, run, follow and verify draws; drawn people answer by one-time link or in the app."""

from __future__ import annotations

import uuid
from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.background import BackgroundTask
from starlette.responses import RedirectResponse, Response

from evaluation import draw_replies as replies
from evaluation import draw_service as svc
from evaluation.draw_rules import DrawRefused
from evaluation.draw_verify import verify_draw
from tenderhall.web import (
    AUTH_ERRORS, PUBLIC, ApiDoc, ApiError, client_ip, json_ok, page_params, read_form, read_json, render, roles, route,
)

REQUESTERS = roles("agent", "supervisor", "admin")
EXPERT = roles("expert")
TAGS = ("draws",)
TOKEN_MAX = 100


def _deps(request: Request) -> svc.Deps:
    s = request.state
    return svc.Deps(s.pool, s.settings, s.platform_key, s.data_key)


def mapped(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """DrawRefused → ApiError (JSON with its detail for the API, the error page otherwise)."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except DrawRefused as exc:
            raise ApiError(exc.status, exc.code, exc.message, detail=exc.detail) from None

    wrapper.__name__ = endpoint.__name__
    wrapper.__doc__ = endpoint.__doc__
    return wrapper


def _draw_id(request: Request) -> uuid.UUID:
    raw = request.path_params["draw_id"]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, "draw_not_found", f"no draw has id {raw!r}") from None


def _sending(request: Request, response: Response) -> Response:
    """The response, with the notices its act queued sent once it has gone out: now rather than at
    the next job run, without making the requester wait on a mail server (a failure stays queued)."""
    response.background = BackgroundTask(replies.deliver_pending, _deps(request))
    return response


# ---------------------------------------------------------------------------- JSON


@mapped
async def api_list(request: Request) -> Response:
    """Draws you requested (supervisors and admins: all), newest first; ?page=&per_page=."""
    page, per_page = page_params(request)
    return json_ok(await svc.list_draws(_deps(request), request.state.user, page, per_page))


@mapped
async def api_schedule(request: Request) -> Response:
    """Schedule a draw and publish the commitment to its secret; impossible requests are refused here."""
    draw = await svc.schedule(_deps(request), request.state.user, await read_json(request))
    return json_ok({"draw": draw}, status=201, headers={"Location": f"/api/draws/{draw['id']}"})


@mapped
async def api_view(request: Request) -> Response:
    """Terms, status and confirmation counts of a draw and its extensions; never names."""
    return json_ok({"draw": await svc.view(_deps(request), request.state.user, _draw_id(request))})


@mapped
async def api_run(request: Request) -> Response:
    """Reveal the secret and draw; the members are notified at once."""
    body = await read_json(request)
    secret = body.get("secret") if isinstance(body, dict) else None
    draw = await svc.run(_deps(request), request.state.user, _draw_id(request), secret)
    return _sending(request, json_ok({"draw": draw}))


@mapped
async def api_cancel(request: Request) -> Response:
    """Cancel a draw that has not run."""
    return json_ok({"draw": await svc.cancel(_deps(request), request.state.user, _draw_id(request))})


@mapped
async def api_extend(request: Request) -> Response:
    """Schedule an extension draw for the seats left empty once the backups ran out."""
    draw = await svc.extend(_deps(request), request.state.user, _draw_id(request), await read_json(request))
    return json_ok({"draw": draw}, status=201)


@mapped
async def api_unseal(request: Request) -> Response:
    """Open the names at the sign-in (from an hour before the start; intermediaries at once)."""
    return json_ok({"draw": await svc.unseal(_deps(request), request.state.user, _draw_id(request))})


@mapped
async def api_names(request: Request) -> Response:
    """The drawn people, once unsealed; every reading is recorded and logged."""
    return json_ok(await svc.names(_deps(request), request.state.user, _draw_id(request), client_ip(request)))


@mapped
async def api_record(request: Request) -> Response:
    """The published draw record (tenderhall-draw/1): pseudonyms, digests, seed inputs, result."""
    async with request.state.pool.acquire() as conn:
        return json_ok(await svc.published_record(conn, _draw_id(request)))


@mapped
async def api_verification(request: Request) -> Response:
    """Recompute the draw from its published record and log entries; say whether it matches."""
    async with request.state.pool.acquire() as conn:
        result = await verify_draw(conn, _draw_id(request), request.state.platform_key.public)
    if result is None:
        raise ApiError(404, "draw_not_found", "no draw with a published result has this id")
    return json_ok({"ok": result.ok, "problems": list(result.problems)})


@mapped
async def api_invitations(request: Request) -> Response:
    """Your invitations waiting for an answer (experts)."""
    return json_ok({"invitations": await replies.invitations(_deps(request), request.state.user)})


@mapped
async def api_reply_in_app(request: Request) -> Response:
    """Accept or decline an invitation: {"answer": "accept"|"decline", "reason"?}."""
    body = await read_json(request)
    body = body if isinstance(body, dict) else {}
    result = await replies.reply_in_app(_deps(request), request.state.user, _draw_id(request),
                                    request.path_params["position"], body.get("answer"), body.get("reason"))
    return _sending(request, json_ok(result))


def _token(request: Request) -> str:
    token = request.path_params["token"]
    if not 20 <= len(token) <= TOKEN_MAX:
        raise ApiError(404, "link_not_found", "this confirmation link is not valid")
    return token


@mapped
async def api_reply_by_link(request: Request) -> Response:
    """Answer through the one-time link: {"answer": "accept"|"decline", "reason"?}."""
    body = await read_json(request)
    body = body if isinstance(body, dict) else {}
    result = await replies.reply_by_token(_deps(request), _token(request), body.get("answer"), body.get("reason"))
    return _sending(request, json_ok(result))


# ---------------------------------------------------------------------------- pages


@mapped
async def list_page(request: Request) -> Response:
    page, per_page = page_params(request)
    data = await svc.list_draws(_deps(request), request.state.user, page, per_page)
    return render(request, "evaluation/draws.html", {**data, "pages": max(1, -(-data["total"] // per_page))})


async def new_page(request: Request) -> Response:
    choices = await svc.form_choices(_deps(request), request.state.user)
    return render(request, "evaluation/draw_new.html", {**choices, "tender_id": request.query_params.get("tender", "")})


@mapped
async def draw_page(request: Request) -> Response:
    draw = await svc.view(_deps(request), request.state.user, _draw_id(request))
    # Live updates: the tender's topic (counts only, any user may follow it), else the requester's own.
    topic = f"tender:{draw['tender_id']}" if draw["tender_id"] else f"user:{request.state.user.id}"
    async with request.state.pool.acquire() as conn:
        after = await conn.fetchval("SELECT coalesce(max(id), 0) FROM events WHERE topic = $1", topic)
    return render(request, "evaluation/draw.html", {"draw": draw, "topic": topic, "after": after})


@mapped
async def names_page(request: Request) -> Response:
    data = await svc.names(_deps(request), request.state.user, _draw_id(request), client_ip(request))
    return render(request, "evaluation/draw_names.html", data)


@mapped
async def verify_page(request: Request) -> Response:
    draw_id = _draw_id(request)
    async with request.state.pool.acquire() as conn:
        result = await verify_draw(conn, draw_id, request.state.platform_key.public)
        record = await svc.published_record(conn, draw_id) if result is not None else None
    if result is None:
        raise ApiError(404, "draw_not_found", "no draw with a published result has this id")
    return render(request, "evaluation/draw_verify.html", {"result": result, "record": record})


@mapped
async def invitations_page(request: Request) -> Response:
    return render(request, "evaluation/invitations.html",
                  {"invitations": await replies.invitations(_deps(request), request.state.user)})


@mapped
async def reply_page(request: Request) -> Response:
    """GET shows the invitation; POST (a form) answers it."""
    token = _token(request)
    deps = _deps(request)
    if request.method == "POST":
        form = await read_form(request)
        done = await replies.reply_by_token(deps, token, form.get("answer"), form.get("reason") or None)
        return _sending(request, RedirectResponse(f"/draws/reply/{token}?answered={done['status']}", status_code=303))
    invitation = await replies.invitation_by_token(deps, token)
    return render(request, "evaluation/draw_reply.html", {"invitation": invitation, "token": token,
                                                          "answered": request.query_params.get("answered")})


_GROUP = {"type": "object", "required": ["specialty", "count"], "properties": {
    "specialty": {"type": "string", "description": "specialty code; everyone under it qualifies (A01 takes A0101, ...)"},
    "count": {"type": "integer", "minimum": 1}, "backups": {"type": "integer", "minimum": 0, "default": 2},
    "quotas": {"type": "array", "items": {"type": "object", "properties": {
        "region": {"type": "string", "description": "division code prefix"}, "count": {"type": "integer"}}}},
    "exclude_regions": {"type": "array", "items": {"type": "string"}}}}
DRAW_INPUT = {"type": "object", "required": ["title", "spec", "needed_at", "commitment"], "properties": {
    "purpose": {"type": "string", "enum": ["evaluation", "intermediary", "inspection"], "default": "evaluation"},
    "title": {"type": "string"}, "tender_id": {"type": "string", "format": "uuid"},
    "tender_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    "purchaser_name": {"type": "string"}, "purchaser_code": {"type": "string"}, "project": {"type": "string"},
    "spec": {"type": "object", "properties": {"groups": {"type": "array", "items": _GROUP}}},
    "needed_at": {"type": "string", "format": "date-time"}, "draw_after": {"type": "string", "format": "date-time"},
    "reply_minutes": {"type": "integer", "default": 15},
    "commitment": {"type": "string", "description": 'hex SHA-256("tenderhall-draw-commitment/1" || secret)'}}}
REPLY_INPUT = {"type": "object", "required": ["answer"], "properties": {
    "answer": {"type": "string", "enum": ["accept", "decline"]}, "reason": {"type": "string", "maxLength": 500}}}
DRAW_OUTPUT = {"type": "object", "properties": {"draw": {"type": "object"}}}

ERRORS = {**AUTH_ERRORS, 404: "no such draw", 409: "the draw is not in a state that allows this",
          422: "invalid request, or impossible (error.detail says how many candidates each rule left)"}

ROUTES = [
    route("/api/draws", api_list, access=REQUESTERS, doc=ApiDoc("List draws", tags=TAGS, extra_responses=AUTH_ERRORS)),
    route("/api/draws", api_schedule, methods=["POST"], access=REQUESTERS,
          doc=ApiDoc("Schedule a draw with a commitment", request=DRAW_INPUT, response=DRAW_OUTPUT, status=201, tags=TAGS,
                     extra_responses={**ERRORS, 429: "too many draws of yours wait to be run"})),
    route("/api/draws/invitations", api_invitations, access=EXPERT,
          doc=ApiDoc("Your invitations waiting for an answer", tags=TAGS, extra_responses=AUTH_ERRORS)),
    # The link's token is itself an unguessable secret, which a forged cross-site request cannot
    # know: no CSRF token is needed (the Origin check still applies).
    route("/api/draws/reply/{token}", api_reply_by_link, methods=["POST"], access=PUBLIC, csrf=False,
          doc=ApiDoc("Answer an invitation through its one-time link", request=REPLY_INPUT, tags=TAGS,
                     extra_responses={**ERRORS, 410: "the reply window has closed"})),
    route("/api/draws/{draw_id}", api_view, access=REQUESTERS, doc=ApiDoc("A draw's status", tags=TAGS, extra_responses=ERRORS)),
    route("/api/draws/{draw_id}/run", api_run, methods=["POST"], access=REQUESTERS,
          doc=ApiDoc("Reveal the secret and draw", request={"type": "object", "required": ["secret"], "properties": {
              "secret": {"type": "string", "description": "base64url of the committed secret"}}},
                     response=DRAW_OUTPUT, tags=TAGS, extra_responses=ERRORS)),
    route("/api/draws/{draw_id}/cancel", api_cancel, methods=["POST"], access=REQUESTERS,
          doc=ApiDoc("Cancel a scheduled draw", tags=TAGS, extra_responses=ERRORS)),
    route("/api/draws/{draw_id}/extend", api_extend, methods=["POST"], access=REQUESTERS,
          doc=ApiDoc("Schedule an extension draw", request={"type": "object", "required": ["commitment"], "properties": {
              "commitment": {"type": "string"}, "backups": {"type": "integer"},
              "draw_after": {"type": "string", "format": "date-time"}}},
                     response=DRAW_OUTPUT, status=201, tags=TAGS, extra_responses=ERRORS)),
    route("/api/draws/{draw_id}/unseal", api_unseal, methods=["POST"], access=REQUESTERS,
          doc=ApiDoc("Unseal the names at sign-in", tags=TAGS, extra_responses=ERRORS)),
    route("/api/draws/{draw_id}/names", api_names, access=REQUESTERS,
          doc=ApiDoc("The drawn people (after unsealing; logged)", tags=TAGS, extra_responses=ERRORS)),
    route("/api/draws/{draw_id}/record", api_record, access=PUBLIC,
          doc=ApiDoc("The published draw record", tags=TAGS, extra_responses={404: "not drawn"})),
    route("/api/draws/{draw_id}/verification", api_verification, access=PUBLIC,
          doc=ApiDoc("Re-verify the draw", tags=TAGS, extra_responses={404: "not drawn"})),
    route("/api/draws/{draw_id}/seats/{position:int}/reply", api_reply_in_app, methods=["POST"], access=EXPERT,
          doc=ApiDoc("Answer your invitation in the app", request=REPLY_INPUT, tags=TAGS,
                     extra_responses={**ERRORS, 410: "the reply window has closed"})),
    route("/draws", list_page, access=REQUESTERS),
    route("/draws/new", new_page, access=REQUESTERS),
    route("/draws/invitations", invitations_page, access=EXPERT),
    route("/draws/reply/{token}", reply_page, methods=["GET", "POST"], access=PUBLIC),
    route("/draws/{draw_id}", draw_page, access=REQUESTERS),
    route("/draws/{draw_id}/names", names_page, access=REQUESTERS),
    route("/draws/{draw_id}/verify", verify_page, access=PUBLIC),
]
