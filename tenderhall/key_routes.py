"""Key registration endpoints: a bidder organisation's or custodian's key sets, as the /keys page and a JSON API."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from tenderhall import accounts, keys
from tenderhall.web import ANY_USER, AUTH_ERRORS, ApiDoc, ApiError, client_ip, json_ok, read_json, render, roles, route

KEY_OWNERS = roles("bidder", "custodian")


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
KEY_SET_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "string", "format": "uuid"}, "organisation_id": {"type": ["string", "null"]},
    "custodian_id": {"type": ["string", "null"]}, "sign_spki": _STR, "sign_key_id": _STR, "decrypt_spki": _STR,
    "decrypt_key_id": _STR, "created_at": _STR, "revoked_at": {"type": ["string", "null"]}, "active": {"type": "boolean"}}}
TAGS_KEYS = ("keys",)

ROUTES = [
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
