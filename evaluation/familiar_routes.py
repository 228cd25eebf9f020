"""The familiar-faces metric (熟面孔) for supervisors: GET /api/familiar-faces and the page /familiar-faces."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from evaluation import familiar
from evaluation.familiar_store import familiar_summary
from tenderhall.formatting import display_zone
from tenderhall.web import AUTH_ERRORS, ApiDoc, ApiError, json_ok, render, roles, route

SUPERVISION = roles("supervisor", "admin")


def _today(request: Request) -> date:
    """The centre's local date: periods and the default range follow its calendar, not UTC's."""
    return datetime.now(display_zone(request.state.settings.display_timezone)).date()


async def _summary(request: Request, query: familiar.FamiliarQuery) -> dict[str, Any]:
    async with request.state.pool.acquire() as conn:
        return await familiar_summary(
            conn, start=query.start, end=query.end, period=query.period, window_days=query.window_days,
            zone=request.state.settings.display_timezone, top=query.top)


async def api_familiar_faces(request: Request) -> Response:
    """The familiar-faces metric per period; 422 (invalid_query) for a request it cannot answer."""
    try:
        query = familiar.parse_query(request.query_params, _today(request))
    except familiar.FamiliarQueryError as exc:
        raise ApiError(422, "invalid_query", exc.message) from None
    return json_ok(await _summary(request, query))


async def familiar_faces_page(request: Request) -> Response:
    """A table per period, a chart of the tenderer-repeat share and the most repeated pairings."""
    params = {k: request.query_params.get(k, "") for k in ("period", "from", "to", "window_days")}
    try:
        query = familiar.parse_query(request.query_params, _today(request))
    except familiar.FamiliarQueryError as exc:
        return render(request, "evaluation/familiar_faces.html",
                      {"error": exc.message, "error_field": exc.field, "params": params, "summary": None}, status=422)
    summary = await _summary(request, query)
    form = {"period": query.period, "from": query.start.isoformat(), "to": query.end.isoformat(),
            "window_days": str(query.window_days)}
    return render(request, "evaluation/familiar_faces.html", {
        "summary": summary, "params": form, "percent": familiar.percent,
        "bars": familiar.bars(summary["periods"], "tenderer_repeat_share"),
    })


# --- OpenAPI declarations --------------------------------------------------------------------

_SHARE = {"type": ["string", "null"], "pattern": r"^[01]\.[0-9]{4}$",
          "description": "a decimal with 4 places as text; null when there is nothing to divide by"}
_COUNTS = {
    "evaluations": {"type": "integer"}, "experts": {"type": "integer", "description": "distinct experts"},
    "tenderer_repeat_evaluations": {"type": "integer"}, "tenderer_repeat_share": _SHARE,
    "agent_repeat_evaluations": {"type": "integer"}, "agent_repeat_share": _SHARE,
    "expert_pairs": {"type": "integer"}, "expert_repeat_pairs": {"type": "integer"}, "expert_repeat_share": _SHARE,
}
_DATE = {"type": "string", "format": "date"}
_PAIRING = {"type": "object", "properties": {
    "expert_id": {"type": "string", "format": "uuid"}, "expert_name": {"type": "string"},
    "counterpart": {"type": "string"}, "counterpart_name": {"type": "string"}, "meetings": {"type": "integer"},
    "first_met_at": {"type": "string", "format": "date-time"}, "last_met_at": {"type": "string", "format": "date-time"}}}
SUMMARY_SCHEMA = {"type": "object", "properties": {
    "period": {"type": "string", "enum": list(familiar.PERIODS)}, "from": _DATE, "to": _DATE,
    "window_days": {"type": "integer"}, "time_zone": {"type": "string"},
    "periods": {"type": "array", "items": {"type": "object", "properties": {
        "period_start": _DATE, "from": _DATE, "to": _DATE, **_COUNTS}}},
    "totals": {"type": "object", "properties": _COUNTS},
    "repeated_pairings": {"type": "object", "properties": {
        "tenderer": {"type": "array", "items": _PAIRING}, "agent": {"type": "array", "items": _PAIRING}}},
}}

ROUTES = [
    route("/familiar-faces", familiar_faces_page, access=SUPERVISION, name="familiar_faces"),
    route("/api/familiar-faces", api_familiar_faces, access=SUPERVISION, doc=ApiDoc(
        "Familiar faces (熟面孔) per period: ?period=week|month (month), ?from=&to= local dates YYYY-MM-DD "
        "(the last 12 months), ?window_days=1..730 (180), ?top=1..100 (10)",
        response=SUMMARY_SCHEMA, tags=("evaluation",),
        extra_responses={422: "bad period, date, range (from after to, over 5 years) or window_days (invalid_query)",
                         **AUTH_ERRORS})),
]
