"""The venue's alerts over HTTP: the list for supervisors and admins, a supervisor's acknowledgement."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tenderhall.web import AUTH_ERRORS, ApiDoc, ApiError, json_ok, page_params, read_json, roles, route
from venue import alerts
from venue.rules import ALERT_CLASSES

READERS = roles("supervisor", "admin")
SUPERVISOR = roles("supervisor")
TAGS = ("venue",)
_ALERT = {"type": "object", "required": ["id", "rule", "class", "severity", "at", "message", "people", "evidence"],
          "properties": {"class": {"type": "string", "enum": list(ALERT_CLASSES)},
                         "message": {"type": "string", "description": "in English, as stored and logged"},
                         "phrase": {"type": ["string", "null"], "description": "what the message was made of: "
                                    "a key of venue/rules.py PHRASES, null for an alert without one"},
                         "params": {"type": "object", "additionalProperties": {"type": "string"}}}}


async def api_alerts(request: Request) -> Response:
    """Alerts newest first; ?open=1 for those not acknowledged yet; ?class= one class of them
    (evaluation, trajectory, business); ?page=, ?per_page=."""
    page, per_page = page_params(request)
    raw = request.query_params.get("open", "0")
    if raw not in ("0", "1", "true", "false", ""):
        raise ApiError(400, "invalid_query", "open must be 1 or 0")
    alert_class = request.query_params.get("class") or None
    if alert_class is not None and alert_class not in ALERT_CLASSES:
        raise ApiError(400, "invalid_query", f"class must be one of {', '.join(ALERT_CLASSES)}")
    return json_ok(await alerts.page(request.state.pool, raw in ("1", "true"), page, per_page, alert_class))


async def api_acknowledge(request: Request) -> Response:
    """A supervisor acknowledges an alert with a note (logged, pushed as venue.alert_acknowledged)."""
    state = request.state
    try:
        alert = await alerts.acknowledge(state.pool, state.platform_key, state.user.id,
                                         request.path_params["alert_id"], await read_json(request))
    except alerts.AlertRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return json_ok({"alert": alert})


ROUTES = [
    route("/api/venue/alerts", api_alerts, access=READERS, doc=ApiDoc(
        "The venue's alerts, newest first (open=1: not acknowledged; class=evaluation, trajectory or business)",
        tags=TAGS,
        response={"type": "object", "required": ["alerts", "page", "per_page", "total"],
                  "properties": {"alerts": {"type": "array", "items": _ALERT}}},
        extra_responses={**AUTH_ERRORS, 400: "invalid_query"})),
    route("/api/venue/alerts/{alert_id:int}/ack", api_acknowledge, methods=["POST"], access=SUPERVISOR, doc=ApiDoc(
        "Acknowledge an alert with a note (supervisors)", tags=TAGS,
        request={"type": "object", "required": ["note"], "properties": {
            "note": {"type": "string", "minLength": 1, "maxLength": alerts.MAX_NOTE}}},
        response={"type": "object", "required": ["alert"], "properties": {"alert": _ALERT}},
        extra_responses={**AUTH_ERRORS, 404: "alert_not_found", 409: "already_acknowledged",
                         422: "invalid_note"})),
]
