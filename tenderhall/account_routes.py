"""Account endpoints: login and logout (page and JSON), user administration, key registration."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tenderhall import accounts, keys
from tenderhall.credit_code import CreditCodeError
from tenderhall.passwords import PasswordPolicyError
from tenderhall.web import (
    ANY_USER, CSRF_COOKIE, PUBLIC, SESSION_COOKIE, ApiDoc, ApiError, cookie_secure, json_ok, read_json, render,
    roles, route, set_cookie,
)

ADMIN = roles("admin")
KEY_OWNERS = roles("bidder", "custodian")
MAX_PER_PAGE = 100


# --- helpers ---------------------------------------------------------------------------------


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


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


def _string(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 500) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, "invalid_field", f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"{name} must be a string")
    if len(value) > max_len:
        raise ApiError(400, "invalid_field", f"{name} may have at most {max_len} characters")
    return value


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "send a JSON object")
    return body


def _uuid(value: str | None, name: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(400, "invalid_field", f"{name} is not a UUID") from None


def _page(request: Request) -> tuple[int, int]:
    """?page= (from 1) and ?per_page= (1 to 100); 400 with the reason when out of range."""
    def number(name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        if not raw.isdigit():
            raise ApiError(400, "invalid_query", f"{name} must be a positive whole number, got {raw!r}")
        return int(raw)

    page, per_page = number("page", 1), number("per_page", 20)
    if page < 1:
        raise ApiError(400, "invalid_query", "page starts at 1")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ApiError(400, "invalid_query", f"per_page must be between 1 and {MAX_PER_PAGE}")
    return page, per_page


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
    form = await request.form()
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
    body = _object(await read_json(request))
    username = _string(body, "username", max_len=64)
    password = _string(body, "password", max_len=1024)
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


# --- administration --------------------------------------------------------------------------

ORG_COLUMNS = "id, credit_code, name, kind, created_at"
LIST_ORGANISATIONS = f"SELECT {ORG_COLUMNS} FROM organisations ORDER BY name, id LIMIT $1 OFFSET $2"
COUNT_ORGANISATIONS = "SELECT count(*) FROM organisations"
GET_ORGANISATION = f"SELECT {ORG_COLUMNS} FROM organisations WHERE id = $1"
LIST_USERS = """
SELECT u.id, u.username, u.display_name, u.roles, u.organisation_id, o.name AS organisation_name,
       u.disabled, u.created_at
FROM users u LEFT JOIN organisations o ON o.id = u.organisation_id
ORDER BY u.username LIMIT $1 OFFSET $2"""
COUNT_USERS = "SELECT count(*) FROM users"
GET_USER = """
SELECT u.id, u.username, u.display_name, u.roles, u.organisation_id, o.name AS organisation_name,
       u.disabled, u.created_at
FROM users u LEFT JOIN organisations o ON o.id = u.organisation_id WHERE u.id = $1"""


def organisation_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": str(row["id"]), "credit_code": row["credit_code"], "name": row["name"], "kind": row["kind"],
            "created_at": row["created_at"].isoformat()}


def admin_user_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": str(row["id"]), "username": row["username"], "display_name": row["display_name"],
            "roles": sorted(row["roles"]), "organisation_id": str(row["organisation_id"]) if row["organisation_id"] else None,
            "organisation_name": row["organisation_name"], "disabled": row["disabled"],
            "created_at": row["created_at"].isoformat()}


async def create_organisation(request: Request, credit_code: str, name: str, kind: str) -> asyncpg.Record:
    """Create and audit an organisation; ApiError 400/409 with the reason when refused."""
    admin = request.state.user
    async with request.state.pool.acquire() as conn:
        async with conn.transaction():
            try:
                org_id = await accounts.create_organisation(conn, credit_code_text=credit_code, name=name, kind=kind)
            except CreditCodeError as exc:
                raise ApiError(400, "invalid_credit_code", str(exc)) from None
            row = await conn.fetchrow(GET_ORGANISATION, org_id)
            await accounts.record_audit(conn, "organisation.created", actor_id=admin.id, subject=f"organisation:{org_id}",
                                        detail={"credit_code": row["credit_code"], "name": row["name"], "kind": row["kind"]},
                                        ip=client_ip(request))
    return row


async def create_user(request: Request, *, username: str, display_name: str, password: str, role_names: list[str],
                      organisation_id: uuid.UUID | None) -> asyncpg.Record:
    """Create and audit a user; ApiError 400/409 with the reason when refused."""
    admin = request.state.user
    async with request.state.pool.acquire() as conn:
        async with conn.transaction():
            if organisation_id is not None:
                org = await conn.fetchrow(GET_ORGANISATION, organisation_id)
                if org is None:
                    raise ApiError(400, "unknown_organisation", f"no organisation has id {organisation_id}")
                if "bidder" in role_names and org["kind"] != "bidder":
                    raise ApiError(400, "account_error", "a bidder must belong to a bidder organisation")
            try:
                user_id = await accounts.create_user(
                    conn, username=username, display_name=display_name, password=password, roles=role_names,
                    organisation_id=organisation_id, scrypt_n=request.state.settings.scrypt_n)
            except PasswordPolicyError as exc:
                raise ApiError(400, "weak_password", str(exc)) from None
            row = await conn.fetchrow(GET_USER, user_id)
            await accounts.record_audit(conn, "user.created", actor_id=admin.id, subject=f"user:{user_id}",
                                        detail={"username": username, "roles": sorted(set(role_names)),
                                                "organisation_id": str(organisation_id) if organisation_id else None},
                                        ip=client_ip(request))
    return row


def _user_fields(username: Any, display_name: Any, password: Any) -> tuple[str, str, str]:
    if not isinstance(username, str) or not username.strip():
        raise ApiError(400, "invalid_field", "username is required")
    if not isinstance(password, str) or not password:
        raise ApiError(400, "invalid_field", "password is required")
    if display_name is None or display_name == "":
        display_name = username
    if not isinstance(display_name, str) or len(display_name) > 200:
        raise ApiError(400, "invalid_field", "display_name must be a string of at most 200 characters")
    return username.strip(), display_name.strip() or username.strip(), password


async def api_create_organisation(request: Request) -> Response:
    """Create an organisation (credit code checked per GB 32100)."""
    body = _object(await read_json(request))
    row = await create_organisation(
        request, _string(body, "credit_code", max_len=64) or "", _string(body, "name", max_len=200) or "",
        _string(body, "kind", max_len=32) or "")
    return json_ok({"organisation": organisation_json(row)}, status=201)


async def api_list_organisations(request: Request) -> Response:
    """Organisations, by name, one page at a time."""
    page, per_page = _page(request)
    async with request.state.pool.acquire() as conn:
        rows = await conn.fetch(LIST_ORGANISATIONS, per_page, (page - 1) * per_page)
        total = await conn.fetchval(COUNT_ORGANISATIONS)
    return json_ok({"organisations": [organisation_json(r) for r in rows], "page": page, "per_page": per_page, "total": total})


async def api_create_user(request: Request) -> Response:
    """Create a user with roles (a bidder belongs to a bidder organisation)."""
    body = _object(await read_json(request))
    username, display_name, password = _user_fields(body.get("username"), body.get("display_name"), body.get("password"))
    role_names = body.get("roles")
    if not isinstance(role_names, list) or not all(isinstance(r, str) for r in role_names):
        raise ApiError(400, "invalid_field", "roles must be a list of role names")
    org_id = _uuid(_string(body, "organisation_id", required=False, max_len=64), "organisation_id")
    row = await create_user(request, username=username, display_name=display_name, password=password,
                            role_names=role_names, organisation_id=org_id)
    return json_ok({"user": admin_user_json(row)}, status=201)


async def api_list_users(request: Request) -> Response:
    """Users, by username, one page at a time (?page=, ?per_page= up to 100)."""
    page, per_page = _page(request)
    async with request.state.pool.acquire() as conn:
        rows = await conn.fetch(LIST_USERS, per_page, (page - 1) * per_page)
        total = await conn.fetchval(COUNT_USERS)
    return json_ok({"users": [admin_user_json(r) for r in rows], "page": page, "per_page": per_page, "total": total})


async def _admin_context(request: Request, page: int, per_page: int) -> dict[str, Any]:
    async with request.state.pool.acquire() as conn:
        users = await conn.fetch(LIST_USERS, per_page, (page - 1) * per_page)
        total = await conn.fetchval(COUNT_USERS)
        organisations = await conn.fetch(LIST_ORGANISATIONS, 1000, 0)
    pages = max(1, (total + per_page - 1) // per_page)
    return {"users": users, "organisations": organisations, "page": page, "per_page": per_page, "pages": pages,
            "total": total, "roles": accounts.ROLES, "kinds": accounts.ORGANISATION_KINDS}


async def admin_users_page(request: Request) -> Response:
    """Organisations and users, with forms to add both."""
    page, per_page = _page(request)
    created = request.query_params.get("created")
    notice = None
    if created in ("organisation", "user"):
        _ = request.state.translator.gettext
        notice = _("The organisation was created.") if created == "organisation" else _("The user was created.")
    return render(request, "admin_users.html", {**await _admin_context(request, page, per_page), "notice": notice})


async def admin_users_submit(request: Request) -> Response:
    """The admin page's two forms: `form=organisation` or `form=user`."""
    form = await request.form()
    which = form.get("form")
    values = {k: v for k, v in form.items() if isinstance(v, str) and k not in ("password", "csrf_token")}
    try:
        if which == "organisation":
            await create_organisation(request, str(form.get("credit_code", "")), str(form.get("name", "")),
                                      str(form.get("kind", "")))
        elif which == "user":
            username, display_name, password = _user_fields(form.get("username"), form.get("display_name"),
                                                            form.get("password"))
            org_id = _uuid(str(form.get("organisation_id") or "") or None, "organisation_id")
            await create_user(request, username=username, display_name=display_name, password=password,
                              role_names=[r for r in form.getlist("roles") if isinstance(r, str)], organisation_id=org_id)
        else:
            raise ApiError(400, "invalid_field", "form must be organisation or user")
    except (ApiError, accounts.AccountError) as exc:
        status = exc.status
        context = await _admin_context(request, 1, 20)
        return render(request, "admin_users.html",
                      {**context, "error": exc.message, "error_form": which, "values": values,
                       "checked_roles": form.getlist("roles")}, status=status)
    return RedirectResponse(f"/admin/users?created={which}", status_code=303)


# --- key registration ------------------------------------------------------------------------


def key_owner(user: accounts.CurrentUser) -> keys.Owner:
    """Whose keys this user manages: its bidder organisation, or itself as a custodian."""
    if user.has("bidder"):
        if user.organisation_id is None:
            raise ApiError(400, "no_organisation", "a bidder without an organisation cannot register keys")
        return keys.Owner(organisation_id=user.organisation_id)
    return keys.Owner(custodian_id=user.id)


async def api_register_keys(request: Request) -> Response:
    """Register a new key set for the caller's organisation (bidder) or the caller (custodian).

    The previous active set is revoked in the same transaction; the registration goes into
    the transparency log so anyone can later tell which keys were valid when.
    """
    user = request.state.user
    try:
        key_set_input = keys.validate_key_set(await read_json(request))
    except keys.KeyValidationError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    try:
        done = await keys.register_logged(request.state.pool, request.state.platform_key, key_owner(user), user.id,
                                          key_set_input, ip=client_ip(request))
    except keys.KeyConflict as exc:
        raise ApiError(409, "key_exists", str(exc)) from None
    revoked = [str(r) for r in done.revoked]
    return json_ok({"key_set": done.key_set.as_json(), "revoked": revoked, "log_index": done.log_index}, status=201)


async def api_list_keys(request: Request) -> Response:
    """The caller's key sets: the active one first, then the revoked ones."""
    owner = key_owner(request.state.user)
    async with request.state.pool.acquire() as conn:
        sets = await keys.list_for_owner(conn, owner)
    return json_ok({"owner": owner.label, "key_sets": [s.as_json() for s in sets]})


async def api_get_key_set(request: Request) -> Response:
    """One key set's public keys (anyone logged in may verify signatures with them)."""
    raw = request.path_params["key_set_id"]
    try:
        key_set_id = uuid.UUID(raw)
    except ValueError:
        raise ApiError(400, "invalid_path", f"{raw!r} is not a key set id (a UUID)") from None
    async with request.state.pool.acquire() as conn:
        key_set = await keys.get(conn, key_set_id)
    if key_set is None:
        raise ApiError(404, "not_found", f"no key set has id {key_set_id}")
    return json_ok({"key_set": key_set.as_json()})


async def keys_page(request: Request) -> Response:
    """The caller's keys, with generation, backup and restore done in the browser."""
    owner = key_owner(request.state.user)
    async with request.state.pool.acquire() as conn:
        sets = await keys.list_for_owner(conn, owner)
    active = next((s for s in sets if s.active), None)
    return render(request, "keys.html", {"owner": owner.label, "active": active,
                                         "revoked": [s for s in sets if not s.active]})


# --- OpenAPI declarations --------------------------------------------------------------------

_STR = {"type": "string"}
USER_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "string", "format": "uuid"}, "username": _STR, "display_name": _STR,
    "roles": {"type": "array", "items": {"type": "string", "enum": list(accounts.ROLES)}},
    "organisation_id": {"type": ["string", "null"], "format": "uuid"}, "organisation_name": {"type": ["string", "null"]}}}
ADMIN_USER_SCHEMA = {"type": "object", "properties": {
    **USER_SCHEMA["properties"], "disabled": {"type": "boolean"}, "created_at": {"type": "string", "format": "date-time"}}}
SESSION_SCHEMA = {"type": "object", "required": ["user", "csrf_token"],
                  "properties": {"user": USER_SCHEMA, "csrf_token": _STR}}
ORG_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "string", "format": "uuid"}, "credit_code": _STR, "name": _STR,
    "kind": {"type": "string", "enum": list(accounts.ORGANISATION_KINDS)}, "created_at": {"type": "string", "format": "date-time"}}}
PAGE_PROPS = {"page": {"type": "integer", "minimum": 1}, "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
              "total": {"type": "integer"}}
KEY_SET_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "string", "format": "uuid"}, "organisation_id": {"type": ["string", "null"]},
    "custodian_id": {"type": ["string", "null"]}, "sign_spki": _STR, "sign_key_id": _STR, "decrypt_spki": _STR,
    "decrypt_key_id": _STR, "created_at": _STR, "revoked_at": {"type": ["string", "null"]}, "active": {"type": "boolean"}}}
TAGS_SESSION, TAGS_ADMIN, TAGS_KEYS = ("session",), ("administration",), ("keys",)
AUTH_ERRORS = {401: "not logged in (login_required)", 403: "role not allowed (role_forbidden) or CSRF failure (csrf_failed)"}

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
    route("/admin/users", admin_users_page, access=ADMIN, name="admin_users"),
    route("/admin/users", admin_users_submit, methods=["POST"], access=ADMIN),
    route("/api/organisations", api_create_organisation, methods=["POST"], access=ADMIN, doc=ApiDoc(
        "Create an organisation",
        request={"type": "object", "required": ["credit_code", "name", "kind"], "properties": {
            "credit_code": {"type": "string", "description": "unified social credit code, GB 32100"},
            "name": _STR, "kind": {"type": "string", "enum": list(accounts.ORGANISATION_KINDS)}}},
        response={"type": "object", "properties": {"organisation": ORG_SCHEMA}}, status=201, tags=TAGS_ADMIN,
        extra_responses={400: "invalid field or credit code (invalid_credit_code)", 409: "credit code already registered",
                         **AUTH_ERRORS})),
    route("/api/organisations", api_list_organisations, access=ADMIN, doc=ApiDoc(
        "List organisations (?page=, ?per_page= up to 100)",
        response={"type": "object", "properties": {"organisations": {"type": "array", "items": ORG_SCHEMA}, **PAGE_PROPS}},
        tags=TAGS_ADMIN, extra_responses={400: "bad page or per_page", **AUTH_ERRORS})),
    route("/api/users", api_create_user, methods=["POST"], access=ADMIN, doc=ApiDoc(
        "Create a user",
        request={"type": "object", "required": ["username", "password", "roles"], "properties": {
            "username": _STR, "display_name": _STR, "password": _STR,
            "roles": {"type": "array", "items": {"type": "string", "enum": list(accounts.ROLES)}},
            "organisation_id": {"type": "string", "format": "uuid"}}},
        response={"type": "object", "properties": {"user": ADMIN_USER_SCHEMA}}, status=201, tags=TAGS_ADMIN,
        extra_responses={400: "invalid field, role or weak password", 409: "username taken", **AUTH_ERRORS})),
    route("/api/users", api_list_users, access=ADMIN, doc=ApiDoc(
        "List users (?page=, ?per_page= up to 100)",
        response={"type": "object", "properties": {"users": {"type": "array", "items": ADMIN_USER_SCHEMA}, **PAGE_PROPS}},
        tags=TAGS_ADMIN, extra_responses={400: "bad page or per_page", **AUTH_ERRORS})),
    route("/keys", keys_page, access=KEY_OWNERS, name="keys"),
    route("/api/keys", api_register_keys, methods=["POST"], access=KEY_OWNERS, doc=ApiDoc(
        "Register a new key set (revokes the active one)",
        request={"type": "object", "required": ["sign_spki", "decrypt_spki"], "properties": {
            "sign_spki": {"type": "string", "description": "base64url DER SubjectPublicKeyInfo, ECDSA P-256"},
            "decrypt_spki": {"type": "string", "description": "base64url DER SubjectPublicKeyInfo, ECDH P-256"}}},
        response={"type": "object", "properties": {"key_set": KEY_SET_SCHEMA,
                                                    "revoked": {"type": "array", "items": _STR},
                                                    "log_index": {"type": ["integer", "null"]}}},
        status=201, tags=TAGS_KEYS,
        extra_responses={400: "not a P-256 SPKI (not_spki, wrong_curve, wrong_key_type, same_key, …)",
                         409: "a key is already registered (key_exists)", **AUTH_ERRORS})),
    route("/api/keys", api_list_keys, access=KEY_OWNERS, doc=ApiDoc(
        "My key sets, active and revoked",
        response={"type": "object", "properties": {"owner": _STR, "key_sets": {"type": "array", "items": KEY_SET_SCHEMA}}},
        tags=TAGS_KEYS, extra_responses=AUTH_ERRORS)),
    route("/api/keys/{key_set_id}", api_get_key_set, access=ANY_USER, doc=ApiDoc(
        "One key set's public keys",
        response={"type": "object", "properties": {"key_set": KEY_SET_SCHEMA}}, tags=TAGS_KEYS,
        extra_responses={400: "not a UUID", 404: "no such key set", 401: "not logged in (login_required)"})),
]
