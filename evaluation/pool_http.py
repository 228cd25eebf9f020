"""What the pool's API and pages share: who may call, the use cases' dependencies, error mapping."""

from __future__ import annotations

import uuid
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from evaluation.pool import PoolError
from evaluation.pool_service import Actor, Deps
from tenderhall.web import ApiError, client_ip, roles

ADMIN = roles("admin")
# Supervisors read the pool and record credit; whoever requests a draw (agents) must not see it.
READERS = roles("admin", "supervisor")
EXPERT = roles("expert")

Endpoint = Callable[[Request], Awaitable[Response]]


def deps(request: Request) -> Deps:
    state = request.state
    return Deps(state.pool, state.settings, state.platform_key, state.data_key)


def actor(request: Request) -> Actor:
    return Actor(request.state.user, client_ip(request))


def api_error(exc: PoolError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


def mapped(endpoint: Endpoint) -> Endpoint:
    """Turn the pool's errors into ApiError (JSON for the API, the error page otherwise)."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except PoolError as exc:
            raise api_error(exc) from None

    wrapper.__name__ = endpoint.__name__
    wrapper.__doc__ = endpoint.__doc__
    return wrapper


def path_id(request: Request, name: str) -> uuid.UUID:
    """A path parameter declared `{name:uuid}` (starlette converts it)."""
    value = request.path_params[name]
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def query_dict(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    return {n: request.query_params.get(n, "") for n in names}


def pager_query(filters: dict[str, str], per_page: int) -> str:
    """The query string a pager link keeps (filters that are set, and per_page), ending with '&'."""
    kept = {k: v for k, v in filters.items() if v}
    if per_page != 20:
        kept["per_page"] = str(per_page)
    return urlencode(kept) + "&" if kept else ""


def form_dict(form: Any, names: tuple[str, ...], lists: tuple[str, ...] = ()) -> dict[str, Any]:
    """The named fields of a form (lists for `lists`), leaving out absent ones."""
    data: dict[str, Any] = {}
    for name in names:
        if name in lists:
            data[name] = [v for v in form.getlist(name) if isinstance(v, str) and v]
        elif name in form and isinstance(form[name], str):
            data[name] = form[name]
    return data
