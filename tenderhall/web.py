"""HTTP plumbing shared by every domain: routes that declare their roles, CSRF, errors, rendering.

Every endpoint is made with `route()` and names who may call it: `PUBLIC`, `ANY_USER`, or a
set of roles. The wrapper resolves the session, refuses the rest (401/403 with a stable
code), checks CSRF on every state-changing request, and maps domain errors in one place.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Literal
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.formparsers import FormParser, MultiPartException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute

from tenderhall import accounts
from tenderhall.i18n import LANGUAGES, current_language

SESSION_COOKIE = "th_session"
CSRF_COOKIE = "th_csrf"
LANG_COOKIE = "lang"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_PER_PAGE = 100

PUBLIC: Literal["public"] = "public"
ANY_USER: Literal["user"] = "user"
Access = Literal["public", "user"] | frozenset[str]

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """An error with an HTTP status, a stable machine code and a message for people."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        # Structured facts behind the message (e.g. how many candidates each rule left), JSON only.
        self.detail = detail or {}


@dataclass(frozen=True)
class ApiDoc:
    """What the OpenAPI document says of a JSON endpoint."""

    summary: str
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    status: int = 200
    tags: tuple[str, ...] = ()
    extra_responses: dict[int, str] = field(default_factory=dict)


# What every route with a role or login requirement may answer instead (for ApiDoc.extra_responses).
AUTH_ERRORS = {401: "not logged in (login_required)", 403: "role not allowed (role_forbidden) or CSRF failure (csrf_failed)"}


def roles(*names: str) -> frozenset[str]:
    unknown = set(names) - set(accounts.ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")
    return frozenset(names)


def is_api(path: str) -> bool:
    return path.startswith("/api/") or path.startswith("/ws/")


def error_response(request: Request, error: ApiError) -> Response:
    """JSON for the API; a page (or a redirect to the login) for browsers."""
    if is_api(request.url.path):
        return JSONResponse(
            {"error": {"code": error.code, "message": error.message, **({"detail": error.detail} if error.detail else {})}},
            status_code=error.status, headers=error.headers,
        )
    if error.status == 401:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    # The page needs the same context as any other (user, token, languages) for base.html.
    response = render(request, "error.html", {"error": error}, status=error.status)
    response.headers.update(error.headers)
    return response


async def resolve_session(conn: HTTPConnection) -> accounts.Session | None:
    token = conn.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    async with conn.state.pool.acquire() as db:
        return await accounts.load_session(db, token)


def _origin_ok(request: HTTPConnection) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def check_csrf(request: Request, session: accounts.Session | None) -> None:
    """Refuse a state-changing request without the right token (header or form field).

    With a session the token is the session's; before login it is the double-submit cookie.
    """
    if not _origin_ok(request):
        raise ApiError(403, "csrf_failed", "cross-origin request refused")
    expected = session.csrf_token if session else request.cookies.get(CSRF_COOKIE)
    given = request.headers.get("x-csrf-token")
    if given is None:
        content_type = request.headers.get("content-type", "")
        if content_type.lower().startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await read_form(request)  # multipart is refused there (415)
            value = form.get("csrf_token")
            given = value if isinstance(value, str) else None
    if not expected or not given or not accounts.same_secret(given, expected):
        raise ApiError(403, "csrf_failed", "missing or wrong CSRF token; reload the page and try again")


def _language(request: HTTPConnection) -> str:
    lang = request.cookies.get(LANG_COOKIE) or request.state.settings.default_language
    return lang if lang in LANGUAGES else request.state.settings.default_language


def authorise(session: accounts.Session | None, access: Access) -> accounts.CurrentUser | None:
    """Who may call: raise ApiError 401/403, or return the user (None for anonymous public)."""
    user = session.user if session else None
    if access == PUBLIC:
        return user
    if user is None:
        raise ApiError(401, "login_required", "log in first")
    if access == ANY_USER or user.roles & access:
        return user
    raise ApiError(403, "role_forbidden", "your role may not do this")


def guarded(endpoint: Endpoint, access: Access, *, csrf: bool = True) -> Endpoint:
    async def wrapper(request: Request) -> Response:
        current_language.set(_language(request))
        try:
            session = await resolve_session(request)
            request.state.session = session
            request.state.user = authorise(session, access)
            if request.method not in SAFE_METHODS:
                # The Origin check holds even where the token is waived (csrf=False).
                if not _origin_ok(request):
                    raise ApiError(403, "csrf_failed", "cross-origin request refused")
                if csrf:
                    await check_csrf(request, session)
            return await endpoint(request)
        except ApiError as error:
            return error_response(request, error)
        except accounts.AccountError as error:
            headers = {"Retry-After": str(error.retry_after)} if isinstance(error, accounts.LoginThrottled) else None
            return error_response(request, ApiError(error.status, error.code, error.message, headers))

    wrapper.__name__ = getattr(endpoint, "__name__", "endpoint")
    wrapper.__doc__ = endpoint.__doc__
    return wrapper


class GuardedRoute(Route):
    """A Route that remembers who may call it and what the OpenAPI document says of it."""

    def __init__(self, path: str, endpoint: Endpoint, *, methods: Iterable[str], access: Access,
                 name: str | None = None, doc: ApiDoc | None = None, csrf: bool = True) -> None:
        self.access, self.doc = access, doc
        super().__init__(path, guarded(endpoint, access, csrf=csrf), methods=list(methods), name=name)


class GuardedWebSocketRoute(WebSocketRoute):
    """A websocket route with declared access; the endpoint itself checks the session."""

    def __init__(self, path: str, endpoint: Callable[..., Awaitable[None]], *, access: Access, name: str | None = None) -> None:
        self.access, self.doc = access, None
        super().__init__(path, endpoint, name=name)


def route(path: str, endpoint: Endpoint, *, methods: Iterable[str] = ("GET",), access: Access,
          name: str | None = None, doc: ApiDoc | None = None, csrf: bool = True) -> GuardedRoute:
    return GuardedRoute(path, endpoint, methods=methods, access=access, name=name, doc=doc, csrf=csrf)


async def read_body(request: Request, limit: int, what: str) -> bytearray:
    """The whole body, refused with 413 as soon as it (or its declared length) passes `limit`."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"{what} exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"{what} exceeds {limit} bytes")
    return body


async def read_json(request: Request, max_bytes: int | None = None) -> Any:
    """Parse a JSON body with a size limit; ApiError 413/415/400 with a precise message."""
    limit = max_bytes or request.state.settings.max_json_bytes
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    body = await read_body(request, limit, "the JSON body")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


MAX_FORM_FIELDS = 100


async def read_form(request: Request, max_bytes: int | None = None, max_fields: int = MAX_FORM_FIELDS) -> FormData:
    """Parse an urlencoded form body with size and field limits; ApiError 413/415 otherwise.

    The only way this app reads a form (never `request.form()`, which buffers any size and
    spools multipart to disk). Multipart is refused: no page uploads files through a form.
    Parsed once per request; later calls (the CSRF check, then the handler) get the same form.
    """
    cached = getattr(request.state, "parsed_form", None)
    if cached is not None:
        return cached
    limit = max_bytes or request.state.settings.max_form_bytes
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       "multipart forms (file uploads) are not accepted here; send application/x-www-form-urlencoded")
    if media_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "unsupported_media_type", "send the form as application/x-www-form-urlencoded")
    body = await read_body(request, limit, "the form")

    async def replay() -> Any:
        yield bytes(body)

    try:
        form = await FormParser(request.headers, replay(), max_fields=max_fields, max_part_size=limit).parse()
    except MultiPartException:
        raise ApiError(413, "too_large", f"the form has more than {max_fields} fields") from None
    request.state.parsed_form = form
    return form


def client_ip(request: HTTPConnection) -> str:
    """The peer address as the server sees it, or "unknown"."""
    return request.client.host if request.client else "unknown"


MAX_PAGE = 1_000_000


def path_uuid(request: Request, name: str, what: str) -> uuid.UUID:
    """The path parameter `name` as a UUID; ApiError 404 `<what>_not_found` when it is not one."""
    raw = request.path_params[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, f"{what}_not_found", f"no {what} has id {raw!r}") from None


def page_params(request: Request, max_per_page: int = MAX_PER_PAGE) -> tuple[int, int]:
    """?page= (from 1) and ?per_page= (1 to max_per_page, default 20); ApiError 400 with the reason when out of range."""
    def number(name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        if not raw.isascii() or not raw.isdigit():
            raise ApiError(400, "invalid_query", f"{name} must be a positive whole number, got {raw[:40]!r}")
        if len(raw) > 9:  # beyond any real listing, and before OFFSET overflows bigint
            raise ApiError(400, "invalid_query", f"{name} must be at most {MAX_PAGE}")
        return int(raw)

    page, per_page = number("page", 1), number("per_page", 20)
    if page < 1:
        raise ApiError(400, "invalid_query", "page starts at 1")
    if page > MAX_PAGE:
        raise ApiError(400, "invalid_query", f"page must be at most {MAX_PAGE}")
    if not 1 <= per_page <= max_per_page:
        raise ApiError(400, "invalid_query", f"per_page must be between 1 and {max_per_page}")
    return page, per_page


def json_object(body: Any) -> dict[str, Any]:
    """`body` if it is a JSON object; ApiError 400 (invalid_body) otherwise."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "send a JSON object")
    return body


def string_field(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 500) -> str | None:
    """The string `body[name]`, None when absent or empty and not required; ApiError 400 (invalid_field) otherwise."""
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


def uuid_field(value: str | None, name: str) -> uuid.UUID | None:
    """`value` as a UUID (None stays None); ApiError 400 (invalid_field) when it is not one."""
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(400, "invalid_field", f"{name} is not a UUID") from None


def render(request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200) -> Response:
    """Render a page with the user, CSRF token and language in its context."""
    session = getattr(request.state, "session", None)
    csrf = session.csrf_token if session else request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    user = getattr(request.state, "user", None) or (session.user if session else None)
    ctx = {"user": user, "csrf_token": csrf,
           "language": current_language.get(), "languages": LANGUAGES}
    ctx.update(context or {})
    response = request.state.templates.TemplateResponse(request, template, ctx, status_code=status)
    if session is None and request.cookies.get(CSRF_COOKIE) != csrf:
        set_cookie(request, response, CSRF_COOKIE, csrf, http_only=True)
    return response


def cookie_secure(request: HTTPConnection) -> bool:
    configured = request.state.settings.cookie_secure
    return request.url.scheme == "https" if configured is None else configured


def set_cookie(request: HTTPConnection, response: Response, name: str, value: str, *,
               max_age: int | None = None, http_only: bool = True) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=http_only, secure=cookie_secure(request),
                        samesite="lax", path="/")


def json_ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)
