"""Administration endpoints: organisations and users, as a page with forms and as a JSON API."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tenderhall import accounts
from tenderhall.credit_code import CreditCodeError
from tenderhall.passwords import PasswordPolicyError
from tenderhall.session_routes import USER_SCHEMA
from tenderhall.web import (
    AUTH_ERRORS, MAX_PER_PAGE, ApiDoc, ApiError, client_ip, json_object, json_ok, page_params, read_form, read_json,
    render, roles, route, string_field, uuid_field,
)

ADMIN = roles("admin")


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
            row = await accounts.get_organisation(conn, org_id)
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
                org = await accounts.get_organisation(conn, organisation_id)
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
            row = await accounts.get_user_details(conn, user_id)
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
    body = json_object(await read_json(request))
    row = await create_organisation(
        request, string_field(body, "credit_code", max_len=64) or "", string_field(body, "name", max_len=200) or "",
        string_field(body, "kind", max_len=32) or "")
    return json_ok({"organisation": organisation_json(row)}, status=201)


async def api_list_organisations(request: Request) -> Response:
    """Organisations, by name, one page at a time."""
    page, per_page = page_params(request)
    async with request.state.pool.acquire() as conn:
        rows = await accounts.list_organisations(conn, per_page, (page - 1) * per_page)
        total = await accounts.count_organisations(conn)
    return json_ok({"organisations": [organisation_json(r) for r in rows], "page": page, "per_page": per_page, "total": total})


async def api_create_user(request: Request) -> Response:
    """Create a user with roles (a bidder belongs to a bidder organisation)."""
    body = json_object(await read_json(request))
    username, display_name, password = _user_fields(body.get("username"), body.get("display_name"), body.get("password"))
    role_names = body.get("roles")
    if not isinstance(role_names, list) or not all(isinstance(r, str) for r in role_names):
        raise ApiError(400, "invalid_field", "roles must be a list of role names")
    org_id = uuid_field(string_field(body, "organisation_id", required=False, max_len=64), "organisation_id")
    row = await create_user(request, username=username, display_name=display_name, password=password,
                            role_names=role_names, organisation_id=org_id)
    return json_ok({"user": admin_user_json(row)}, status=201)


async def api_list_users(request: Request) -> Response:
    """Users, by username, one page at a time (?page=, ?per_page= up to 100)."""
    page, per_page = page_params(request)
    async with request.state.pool.acquire() as conn:
        rows = await accounts.list_users(conn, per_page, (page - 1) * per_page)
        total = await accounts.count_users(conn)
    return json_ok({"users": [admin_user_json(r) for r in rows], "page": page, "per_page": per_page, "total": total})


async def _admin_context(request: Request, page: int, per_page: int) -> dict[str, Any]:
    async with request.state.pool.acquire() as conn:
        users = await accounts.list_users(conn, per_page, (page - 1) * per_page)
        total = await accounts.count_users(conn)
        organisations = await accounts.list_organisations(conn, 1000, 0)
    pages = max(1, (total + per_page - 1) // per_page)
    return {"users": users, "organisations": organisations, "page": page, "per_page": per_page, "pages": pages,
            "total": total, "roles": accounts.ROLES, "kinds": accounts.ORGANISATION_KINDS}


async def admin_users_page(request: Request) -> Response:
    """Organisations and users, with forms to add both."""
    page, per_page = page_params(request)
    created = request.query_params.get("created")
    notice = None
    if created in ("organisation", "user"):
        _ = request.state.translator.gettext
        notice = _("The organisation was created.") if created == "organisation" else _("The user was created.")
    return render(request, "admin_users.html", {**await _admin_context(request, page, per_page), "notice": notice})


async def admin_users_submit(request: Request) -> Response:
    """The admin page's two forms: `form=organisation` or `form=user`."""
    form = await read_form(request)
    which = form.get("form")
    values = {k: v for k, v in form.items() if isinstance(v, str) and k not in ("password", "csrf_token")}
    try:
        if which == "organisation":
            await create_organisation(request, str(form.get("credit_code", "")), str(form.get("name", "")),
                                      str(form.get("kind", "")))
        elif which == "user":
            username, display_name, password = _user_fields(form.get("username"), form.get("display_name"),
                                                            form.get("password"))
            org_id = uuid_field(str(form.get("organisation_id") or "") or None, "organisation_id")
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


# --- OpenAPI declarations --------------------------------------------------------------------

_STR = {"type": "string"}
ADMIN_USER_SCHEMA = {"type": "object", "properties": {
    **USER_SCHEMA["properties"], "disabled": {"type": "boolean"}, "created_at": {"type": "string", "format": "date-time"}}}
ORG_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "string", "format": "uuid"}, "credit_code": _STR, "name": _STR,
    "kind": {"type": "string", "enum": list(accounts.ORGANISATION_KINDS)}, "created_at": {"type": "string", "format": "date-time"}}}
PAGE_PROPS = {"page": {"type": "integer", "minimum": 1}, "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
              "total": {"type": "integer"}}
TAGS_ADMIN = ("administration",)

ROUTES = [
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
]
