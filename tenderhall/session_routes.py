"""Session endpoints: the login and logout pages, the JSON session API and the session cookie."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tenderhall import accounts
from tenderhall.web import (
    ANY_USER, AUTH_ERRORS, CSRF_COOKIE, PUBLIC, SESSION_COOKIE, ApiDoc, client_ip, cookie_secure, json_object,
    json_ok, read_form, read_json, render, route, set_cookie, string_field,
)

# --- helpers ---------------------------------------------------------------------------------


def safe_next(target: Any) -> str:
    """A redirect target only if it is a path on this site (no open redirect)."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def user_json(user: accounts.CurrentUser) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "display_name": user.display_name,
        "roles": sorted(user.roles),
        "organisation_id": str(user.organisation_id) if user.organisation_id else None,
        "organisation_name": user.organisation_name,
    }


async def _start_session(request: Request, user: accounts.CurrentUser) -> tuple[str, str]:
    """Create the session (ending any earlier one from this browser) and audit the login.

    Returns (session token for the cookie, CSRF token); the caller sets the cookie.
    """
    settings = request.state.settings
    async with request.state.pool.acquire() as conn:
        async with conn.transaction():
            old = request.cookies.get(SESSION_COOKIE)
            if old:  # no session fixation: a login always gets a fresh token
                await accounts.end_session(conn, old)
            token, csrf = await accounts.create_session(conn, user.id, client_ip(request), settings.session_hours)
            await accounts.record_audit(conn, "login", actor_id=user.id, subject=f"user:{user.id}", ip=client_ip(request))
    return token, csrf


def _set_session_cookie(request: Request, response: Response, token: str) -> None:
    # HttpOnly (scripts never see it), SameSite=Lax, Secure per settings/https: web.set_cookie.
    set_cookie(request, response, SESSION_COOKIE, token, max_age=request.state.settings.session_hours * 3600)


async def _end_session(request: Request, response: Response) -> None:
    token = request.cookies.get(SESSION_COOKIE, "")
    user = request.state.user
    async with request.state.pool.acquire() as conn:
        async with conn.transaction():
            await accounts.end_session(conn, token)
            await accounts.record_audit(conn, "logout", actor_id=user.id, subject=f"user:{user.id}", ip=client_ip(request))
    response.delete_cookie(SESSION_COOKIE, path="/", secure=cookie_secure(request), httponly=True, samesite="lax")


async def _authenticate(request: Request, username: str, password: str) -> accounts.CurrentUser:
    # Outside any transaction: the failed attempt must be stored even though login fails.
    async with request.state.pool.acquire() as conn:
        return await accounts.authenticate(conn, username, password, client_ip(request), request.state.settings)


# --- login and logout pages ------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    """The login form."""
    return render(request, "login.html", {"next": safe_next(request.query_params.get("next"))})


async def login_submit(request: Request) -> Response:
    """Check the form's password; on success start a session and go to `next`."""
    _ = request.state.translator.gettext
    form = await read_form(request)
    username, password = form.get("username"), form.get("password")
    target = safe_next(form.get("next"))
    context: dict[str, Any] = {"next": target, "username": username if isinstance(username, str) else ""}
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        return render(request, "login.html", {**context, "message": _("Enter your username and password.")}, status=400)
    try:
        user = await _authenticate(request, username, password)
    except accounts.LoginThrottled as exc:
        minutes = max(1, exc.retry_after // 60)
        response = render(request, "login.html", {
            **context, "message": _("Too many failed logins. Try again in %(minutes)d minutes.") % {"minutes": minutes}},
            status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except accounts.LoginFailed:
        return render(request, "login.html", {**context, "message": _("Wrong username or password.")}, status=401)
    token, _csrf = await _start_session(request, user)
    response = RedirectResponse(target, status_code=303)
    _set_session_cookie(request, response, token)
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


async def logout_submit(request: Request) -> Response:
    """End the session on the server and forget the cookie."""
    response = RedirectResponse("/login", status_code=303)
    await _end_session(request, response)
    return response


# --- the JSON session API --------------------------------------------------------------------


async def api_login(request: Request) -> Response:
    """Log in with {username, password}; answer the user and the CSRF token for later calls.

    This route waives the CSRF token (csrf=False) on purpose: there is no session yet to
    hold one, and a forged cross-site login cannot happen here anyway. read_json refuses
    anything but application/json, and a browser sends that content type cross-site only
    after a CORS preflight, which this server never grants; a plain HTML form can only send
    urlencoded, multipart or text/plain. On top of that the route wrapper refuses any
    state-changing request whose Origin is not this host.
    """
    body = json_object(await read_json(request))
    username = string_field(body, "username", max_len=64)
    password = string_field(body, "password", max_len=1024)
    assert username is not None and password is not None
    user = await _authenticate(request, username, password)
    token, csrf = await _start_session(request, user)
    response = json_ok({"user": user_json(user), "csrf_token": csrf})
    _set_session_cookie(request, response, token)
    return response


async def api_logout(request: Request) -> Response:
    """End this session."""
    response = json_ok({"logged_out": True})
    await _end_session(request, response)
    return response


async def api_current(request: Request) -> Response:
    """Who is logged in, and the CSRF token to send with state-changing calls."""
    session = request.state.session
    return json_ok({"user": user_json(session.user), "csrf_token": session.csrf_token,
                    "expires_at": session.expires_at.isoformat()})


# --- OpenAPI declarations --------------------------------------------------------------------

_STR = {"type": "string"}
USER_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "string", "format": "uuid"}, "username": _STR, "display_name": _STR,
    "roles": {"type": "array", "items": {"type": "string", "enum": list(accounts.ROLES)}},
    "organisation_id": {"type": ["string", "null"], "format": "uuid"}, "organisation_name": {"type": ["string", "null"]}}}
SESSION_SCHEMA = {"type": "object", "required": ["user", "csrf_token"],
                  "properties": {"user": USER_SCHEMA, "csrf_token": _STR}}
TAGS_SESSION = ("session",)

ROUTES = [
    route("/login", login_page, access=PUBLIC, name="login"),
    route("/login", login_submit, methods=["POST"], access=PUBLIC),
    route("/logout", logout_submit, methods=["POST"], access=ANY_USER, name="logout"),
    route("/api/session", api_login, methods=["POST"], access=PUBLIC, csrf=False, doc=ApiDoc(
        "Log in with a username and password",
        request={"type": "object", "required": ["username", "password"],
                 "properties": {"username": _STR, "password": _STR}},
        response=SESSION_SCHEMA, tags=TAGS_SESSION,
        extra_responses={400: "missing field", 401: "wrong username or password (login_failed)",
                         403: "cross-origin request (csrf_failed)", 415: "body is not application/json",
                         429: "too many failed logins (too_many_attempts); see Retry-After"})),
    route("/api/session", api_current, access=ANY_USER, doc=ApiDoc(
        "The current user and CSRF token", response={**SESSION_SCHEMA, "properties": {
            **SESSION_SCHEMA["properties"], "expires_at": {"type": "string", "format": "date-time"}}},
        tags=TAGS_SESSION, extra_responses={401: "not logged in (login_required)"})),
    route("/api/session", api_logout, methods=["DELETE"], access=ANY_USER, doc=ApiDoc(
        "Log out (ends the session on the server)",
        response={"type": "object", "properties": {"logged_out": {"type": "boolean"}}},
        tags=TAGS_SESSION, extra_responses=AUTH_ERRORS)),
]
