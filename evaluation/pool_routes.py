"""The expert and intermediary pools' endpoints: the pages (pool_pages) and the JSON API (pool_api).

Admins manage both pools; supervisors read them and record credit; an expert sees and keeps
their own record (leave days, declared avoidances) at /experts/me. Everyone else, the agents
who request draws above all, is refused: whoever draws must not see the pool.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from evaluation import pool_api, pool_pages

ROUTES: list[BaseRoute] = [*pool_pages.ROUTES, *pool_api.ROUTES]
