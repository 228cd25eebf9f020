"""The shell's endpoints: health, readiness, OpenAPI, language, home; plus the shell's domains."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tenderhall import admin_routes, event_routes, key_routes, log_routes, openapi, session_routes
from tenderhall.app import healthz, readyz
from tenderhall.i18n import LANGUAGES
from tenderhall.web import ANY_USER, PUBLIC, ApiDoc, json_ok, render, route, set_cookie


async def openapi_document(request: Request) -> Response:
    """The OpenAPI 3.1 document of the JSON API, built from the routes' declarations."""
    return json_ok(openapi.document(request.app.routes))


async def switch_language(request: Request) -> Response:
    """Remember the chosen UI language in a cookie and go back."""
    lang = request.query_params.get("to", "")
    response = RedirectResponse(session_routes.safe_next(request.query_params.get("next")), status_code=303)
    if lang in LANGUAGES:
        set_cookie(request, response, "lang", lang, max_age=365 * 86400, http_only=False)
    return response


async def home(request: Request) -> Response:
    """The start page: what this user can do now, by role."""
    return render(request, "home.html", {})


ROUTES = [
    route("/healthz", healthz, access=PUBLIC, doc=ApiDoc("Process liveness", tags=("platform",))),
    route("/readyz", readyz, access=PUBLIC, doc=ApiDoc("Database reachable and migrations current", tags=("platform",))),
    route("/api/openapi.json", openapi_document, access=PUBLIC, doc=ApiDoc("This document", tags=("platform",))),
    route("/lang", switch_language, access=PUBLIC),
    route("/", home, access=ANY_USER),
    *session_routes.ROUTES,
    *admin_routes.ROUTES,
    *key_routes.ROUTES,
    *log_routes.ROUTES,
    *event_routes.ROUTES,
]
