"""Every endpoint of the venue domain (and the supervisors' map), as one list for create_app."""

from __future__ import annotations

from starlette.routing import BaseRoute

from supervision import routes as supervision_routes
from venue import access_routes, alert_routes, floor_routes, ingest_routes

ROUTES: list[BaseRoute] = [*floor_routes.ROUTES, *access_routes.ROUTES, *ingest_routes.ROUTES, *alert_routes.ROUTES,
                           *supervision_routes.ROUTES]
