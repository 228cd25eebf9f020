"""Every route of the whole app × every role (and anonymous) gets the access it declares.

The walk covers the routes of every domain as mounted by create_app, so a new route is
checked the day it is added, and a plain starlette Route (with no declared access) fails.
"""

from __future__ import annotations

import re
import uuid
from typing import Iterator

import pytest
from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.routing import BaseRoute, Mount
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tenderhall import accounts
from tenderhall.app import create_app
from tenderhall.settings import Settings
from tenderhall.web import PUBLIC, GuardedRoute, GuardedWebSocketRoute, is_api
from tests.factories import login, make_user

ANONYMOUS = "anonymous"
PRINCIPALS = [ANONYMOUS, *accounts.ROLES]
ANON_CSRF = "anonymous-double-submit-token"
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    """(full path, route) for every route, inside mounts too; the static files mount is skipped."""
    for r in routes:
        if isinstance(r, Mount):
            if r.name == "static":
                continue
            # A mount of a bare ASGI app has no routes and so no declared access: report it.
            if not r.routes:
                yield prefix + r.path, r
            yield from walk(list(r.routes), prefix + r.path)
        else:
            yield prefix + getattr(r, "path", "?"), r


def fill(path: str, route: BaseRoute) -> str:
    """The path with each parameter replaced by a random value of its convertor's type."""
    convertors = getattr(route, "param_convertors", {})

    def value(match: re.Match[str]) -> str:
        convertor = convertors.get(match.group(1))
        if isinstance(convertor, IntegerConvertor):
            return str(uuid.uuid4().int % 10**6)
        if isinstance(convertor, FloatConvertor):
            return "1.5"
        return str(uuid.uuid4())

    return _PARAM.sub(value, path)


def all_routes(settings: Settings) -> list[tuple[str, BaseRoute]]:
    return list(walk(list(create_app(settings).routes)))


def test_every_route_declares_its_access(settings: Settings) -> None:
    routes = all_routes(settings)
    assert len(routes) > 10
    for path, r in routes:
        assert isinstance(r, (GuardedRoute, GuardedWebSocketRoute)), (
            f"{path} is a plain {type(r).__name__}: make it with tenderhall.web.route() and declare access=")
        access = r.access
        assert access in (PUBLIC, "user") or (isinstance(access, frozenset) and access and access <= set(accounts.ROLES)), (
            f"{path} declares unknown access {access!r}")


def _csrf_headers(client: TestClient, principal: str, tokens: dict[str, str]) -> dict[str, str]:
    return {"X-CSRF-Token": tokens[principal]} if principal in tokens else {}


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_route_access_matches_declaration(settings: Settings, principal: str) -> None:
    app = create_app(settings)
    routes = [(p, r) for p, r in walk(list(app.routes)) if isinstance(r, GuardedRoute)]
    user = None if principal == ANONYMOUS else make_user(settings.database_url, principal)
    problems: list[str] = []
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        tokens: dict[str, str] = {}

        def sign_in() -> None:
            if user is None:
                client.cookies.set("th_csrf", ANON_CSRF)
                tokens[ANONYMOUS] = ANON_CSRF
            else:
                client.cookies.clear()
                tokens[principal] = login(client, user)
                del client.headers["X-CSRF-Token"]  # sent per request below

        sign_in()
        for path, r in routes:
            url = fill(path, r)
            for method in sorted((r.methods or set()) - {"HEAD"}):
                kwargs: dict = {"headers": _csrf_headers(client, principal, tokens)}
                if method not in ("GET", "DELETE", "OPTIONS"):
                    kwargs["json"] = {}
                response = client.request(method, url, **kwargs)
                where = f"{principal} {method} {url} → {response.status_code}"
                code = None
                if response.headers.get("content-type", "").startswith("application/json"):
                    try:
                        code = (response.json().get("error") or {}).get("code")
                    except (ValueError, AttributeError):
                        code = None
                forbidden = response.status_code == 403 and (
                    code == "role_forbidden" or 'data-code="role_forbidden"' in response.text)
                if r.access == PUBLIC:
                    expected = "allowed"
                elif user is None:
                    expected = "login"
                elif r.access == "user" or principal in r.access:
                    expected = "allowed"
                else:
                    expected = "forbidden"

                if expected == "login":
                    if is_api(path):
                        if response.status_code != 401 or code != "login_required":
                            problems.append(f"{where}: expected 401 login_required")
                    elif response.status_code != 303 or not response.headers.get("location", "").startswith("/login"):
                        problems.append(f"{where}: expected 303 to /login")
                elif expected == "forbidden":
                    if not forbidden:
                        problems.append(f"{where}: expected 403 role_forbidden")
                    elif not is_api(path) and "text/html" not in response.headers.get("content-type", ""):
                        problems.append(f"{where}: a page should render error.html")
                else:
                    if response.status_code == 401 or forbidden:
                        problems.append(f"{where}: expected access ({code})")
                    if response.status_code == 403 and code == "csrf_failed":
                        problems.append(f"{where}: the CSRF token was refused")

                # Logout routes (or anything else) may have ended the session: start a new one.
                if user is not None and method != "GET" and client.get("/api/session").status_code == 401:
                    sign_in()
    assert not problems, "\n".join(problems)


def test_non_public_websockets_refuse_anonymous(settings: Settings) -> None:
    app = create_app(settings)
    sockets = [(p, r) for p, r in walk(list(app.routes)) if isinstance(r, GuardedWebSocketRoute) and r.access != PUBLIC]
    with TestClient(app) as client:
        for path, r in sockets:
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect(fill(path, r)) as ws:
                    ws.receive_text()
            assert refused.value.code != 1000, f"{path} closed normally for an anonymous client"
