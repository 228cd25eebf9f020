"""Floor plan endpoints: list and read floors (supervisors, admins, agents), create and replace a
plan (admins, optimistic versions), and the /venue/floors page with an SVG of each plan.

A plan body may be up to 2 MiB (413 too_large); an invalid plan is 422 plan_invalid with the
validation error's code, message and feature in `error.detail` (venue/floorplan.py lists the codes).
"""

from __future__ import annotations

from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from tenderhall.web import AUTH_ERRORS, ApiDoc, ApiError, json_ok, read_json, render, roles, route
from venue import floor_service as svc
from venue.access_service import Deps

TAGS = ("venue floors",)
ADMIN = roles("admin")
READERS = roles("admin", "supervisor", "agent")
PAGE = roles("admin", "supervisor")


def mapped(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """FloorRefused → ApiError (JSON with its detail for the API, the error page otherwise)."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except svc.FloorRefused as exc:
            raise ApiError(exc.status, exc.code, exc.message, detail=exc.detail) from None

    wrapper.__name__ = endpoint.__name__
    wrapper.__doc__ = endpoint.__doc__
    return wrapper


@mapped
async def api_list(request: Request) -> Response:
    """Every floor: code, level, name, venue, version, zone and door counts."""
    return json_ok(await svc.list_floors(request.state.pool))


@mapped
async def api_floor(request: Request) -> Response:
    """One floor with its plan (GeoJSON), transform and version."""
    return json_ok(await svc.floor_detail(request.state.pool, request.path_params["code"]))


@mapped
async def api_create(request: Request) -> Response:
    """Admin: a new floor with its plan."""
    body = await read_json(request, svc.PLAN_MAX_BYTES)
    floor = await svc.create_floor(Deps.of(request.state), request.state.user, body)
    return json_ok({"floor": floor}, status=201, headers={"Location": f"/api/venue/floors/{floor['code']}"})


@mapped
async def api_replace(request: Request) -> Response:
    """Admin: replace a floor's plan (send the version you edited)."""
    body = await read_json(request, svc.PLAN_MAX_BYTES)
    floor = await svc.update_floor(Deps.of(request.state), request.state.user, request.path_params["code"], body)
    return json_ok({"floor": floor})


async def floors_page(request: Request) -> Response:
    """The floors with a drawing of each; admins upload or edit plans here."""
    return render(request, "venue/floors.html", await svc.page(request.state.pool))


_TRANSFORM = {"type": "object", "description": "positioning system → local metres: rotate, scale, translate",
              "properties": {"scale": {"type": "number", "default": 1}, "rotation_deg": {"type": "number", "default": 0},
                             "dx": {"type": "number", "default": 0}, "dy": {"type": "number", "default": 0}}}
_PLAN = {"type": "object", "description": "GeoJSON FeatureCollection in local metres: units (Polygon; kind, name, "
                                          "capacity?, closed_area?, room_id?) and doors (Point; reader_id, "
                                          "inside_zone, outside_zone?, capacity?)"}
CREATE_INPUT = {"type": "object", "required": ["venue_id", "code", "level", "name", "plan"], "properties": {
    "venue_id": {"type": "string", "format": "uuid"}, "code": {"type": "string", "pattern": svc.CODE.pattern},
    "level": {"type": "integer"}, "name": {"type": "string"}, "plan": _PLAN, "transform": _TRANSFORM}}
REPLACE_INPUT = {"type": "object", "required": ["version", "plan"], "properties": {
    "version": {"type": "integer", "description": "the version you edited"}, "plan": _PLAN, "transform": _TRANSFORM,
    "level": {"type": "integer"}, "name": {"type": "string"}}}
FLOOR_OUTPUT = {"type": "object", "properties": {"floor": {"type": "object"}}}
SAVE_ERRORS = {**AUTH_ERRORS, 413: "the body exceeds 2 MiB (too_large)",
               422: "invalid_field, unknown_venue, or plan_invalid (error.detail: code, message, feature)"}

ROUTES = [
    route("/api/venue/floors", api_list, access=READERS,
          doc=ApiDoc("Floors of every venue", tags=TAGS, extra_responses=AUTH_ERRORS)),
    route("/api/venue/floors", api_create, methods=["POST"], access=ADMIN,
          doc=ApiDoc("Admin: add a floor with its plan", request=CREATE_INPUT, response=FLOOR_OUTPUT, status=201,
                     tags=TAGS, extra_responses={**SAVE_ERRORS, 409: "floor_exists, level_taken, reader_taken"})),
    route("/api/venue/floors/{code}", api_floor, access=READERS,
          doc=ApiDoc("A floor's plan, transform and version", tags=TAGS,
                     extra_responses={**AUTH_ERRORS, 404: "floor_not_found"})),
    route("/api/venue/floors/{code}", api_replace, methods=["PUT"], access=ADMIN,
          doc=ApiDoc("Admin: replace a floor's plan", request=REPLACE_INPUT, response=FLOOR_OUTPUT, tags=TAGS,
                     extra_responses={**SAVE_ERRORS, 404: "floor_not_found",
                                      409: "version_conflict (error.detail.version: the current one), level_taken, "
                                           "reader_taken"})),
    route("/venue/floors", floors_page, access=PAGE, name="venue_floors"),
]
