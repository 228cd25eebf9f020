"""Every endpoint of the evaluation domain, as one list for create_app."""

from __future__ import annotations

from starlette.routing import BaseRoute

from evaluation import draw_routes, familiar_routes, pool_routes, session_routes

ROUTES: list[BaseRoute] = [*pool_routes.ROUTES, *draw_routes.ROUTES, *familiar_routes.ROUTES, *session_routes.ROUTES]
