"""Trading endpoints: tenders (pages and JSON), tus-style sealed-bid uploads, bids and receipts."""

from __future__ import annotations

import uuid
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tenderhall.web import PUBLIC, ApiDoc, ApiError, json_ok, page_params, read_json, render, roles, route
from tenderhall.web import path_uuid as _id
from trading import service, submission, uploads
from trading.tenders import (
    DEFAULT_SUMMARY_FIELDS, EVALUATION_METHODS, TradingError, parse_checksum,
)

AGENT = roles("agent")
BIDDER = roles("bidder")
TUS_HEADERS = {"Tus-Resumable": uploads.TUS_VERSION}


def _deps(request: Request) -> service.Deps:
    state = request.state
    return service.Deps(state.pool, state.settings, state.platform_key, uploads.registry_of(request.app))


def mapped(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Turn the trading domain's errors into ApiError (JSON for the API, an error page otherwise)."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except TradingError as exc:
            headers = dict(TUS_HEADERS) if request.url.path.startswith("/api/uploads") else None
            raise ApiError(exc.status, exc.code, exc.message, headers) from None

    wrapper.__name__ = endpoint.__name__
    wrapper.__doc__ = endpoint.__doc__
    return wrapper


def _user(request: Request) -> Any:
    return getattr(request.state, "user", None)


# ---------------------------------------------------------------------------- tenders (JSON)


@mapped
async def api_list_tenders(request: Request) -> Response:
    """Published tenders for everyone, plus the caller's own drafts; ?page=&per_page=."""
    page, per_page = page_params(request)
    return json_ok(await service.list_tenders(_deps(request), _user(request), page, per_page))


@mapped
async def api_create_tender(request: Request) -> Response:
    """Create a draft tender (agents)."""
    tender = await service.create_tender(_deps(request), request.state.user, await read_json(request))
    return json_ok({"tender": tender}, status=201, headers={"Location": f"/api/tenders/{tender['id']}"})


@mapped
async def api_get_tender(request: Request) -> Response:
    """A tender's terms, lots, custodians' keys and the count of bids received."""
    return json_ok({"tender": await service.get_tender(_deps(request), _user(request), _id(request, "tender_id", "tender"))})


@mapped
async def api_publish_tender(request: Request) -> Response:
    """Publish a draft: freeze the terms and the custodians' keys, log it."""
    tender = await service.publish_tender(_deps(request), request.state.user, _id(request, "tender_id", "tender"))
    return json_ok({"tender": tender})


@mapped
async def api_change_tender(request: Request) -> Response:
    """A clarification or deadline extension of a published tender."""
    change = await service.add_change(_deps(request), request.state.user, _id(request, "tender_id", "tender"),
                                      await read_json(request))
    return json_ok({"change": change}, status=201)


# ---------------------------------------------------------------------------- uploads (tus 1.0)


def _check_tus(request: Request) -> None:
    version = request.headers.get("tus-resumable")
    if version is not None and version != uploads.TUS_VERSION:
        raise ApiError(412, "tus_version", f"only Tus-Resumable {uploads.TUS_VERSION} is supported",
                       {**TUS_HEADERS, "Tus-Version": uploads.TUS_VERSION})


@mapped
async def api_create_upload(request: Request) -> Response:
    """tus creation: submit the signed manifest; the ciphertext follows by PATCH."""
    _check_tus(request)
    created = await submission.create_upload(_deps(request), request.state.user, _id(request, "tender_id", "tender"),
                                          request.path_params["lot"], await read_json(request))
    location = f"/api/uploads/{created['upload_id']}"
    return json_ok(created, status=201, headers={**TUS_HEADERS, "Location": location, "Upload-Offset": "0",
                                                  "Upload-Length": str(created["length"]),
                                                  "Tus-Extension": uploads.TUS_EXTENSIONS,
                                                  "Tus-Max-Size": str(request.state.settings.max_bid_bytes)})


@mapped
async def api_upload_status(request: Request) -> Response:
    """HEAD: Upload-Offset and Upload-Length (tus); GET: the same as JSON with status, bid and receipt."""
    status = await submission.upload_status(_deps(request), request.state.user, _id(request, "upload_id", "upload"))
    headers = {**TUS_HEADERS, "Upload-Offset": str(status["offset"]), "Upload-Length": str(status["length"]),
               "Cache-Control": "no-store"}
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return json_ok(status, headers=headers)


@mapped
async def api_patch_upload(request: Request) -> Response:
    """tus PATCH: append bytes at Upload-Offset; the last byte completes the bid and returns its receipt."""
    _check_tus(request)
    try:
        checksum = parse_checksum(request.headers.get("upload-checksum"))
    except TradingError as exc:
        raise ApiError(400, exc.code, exc.message, TUS_HEADERS) from None
    result = await submission.patch_upload(
        _deps(request), request.state.user, _id(request, "upload_id", "upload"),
        offset_header=request.headers.get("upload-offset"), content_type=request.headers.get("content-type", ""),
        content_length=request.headers.get("content-length"), checksum=checksum, chunks=request.stream())
    headers = {**TUS_HEADERS, "Upload-Offset": str(result["offset"])}
    if result["complete"]:
        return json_ok(result, headers=headers)
    return Response(status_code=204, headers=headers)


# ---------------------------------------------------------------------------- bids


@mapped
async def api_list_bids(request: Request) -> Response:
    """The caller's organisation's own bids (?tender= to narrow)."""
    raw = request.query_params.get("tender")
    tender_id = None
    if raw:
        try:
            tender_id = uuid.UUID(raw)
        except ValueError:
            raise ApiError(400, "bad_tender", "tender must be a tender id") from None
    return json_ok(await submission.list_bids(_deps(request), request.state.user, tender_id))


@mapped
async def api_bid_receipt(request: Request) -> Response:
    """The signed receipt of one of the organisation's bids."""
    return json_ok(await submission.get_receipt(_deps(request), request.state.user, _id(request, "bid_id", "bid")))


@mapped
async def api_withdraw_bid(request: Request) -> Response:
    """Withdraw an active bid before the deadline."""
    return json_ok(await submission.withdraw_bid(_deps(request), request.state.user, _id(request, "bid_id", "bid")))


@mapped
async def api_confirm_bid(request: Request) -> Response:
    """Re-confirm an active bid after the tender changed (signature by the bid's signing key)."""
    data = await read_json(request)
    return json_ok(await submission.confirm_bid(_deps(request), request.state.user, _id(request, "bid_id", "bid"), data))


# ---------------------------------------------------------------------------- pages


@mapped
async def tenders_page(request: Request) -> Response:
    """The list of tenders, paginated."""
    page, per_page = page_params(request, max_per_page=20)
    listing = await service.list_tenders(_deps(request), _user(request), page, per_page)
    pages = max(1, -(-listing["total"] // per_page))
    return render(request, "trading/tenders.html", {**listing, "pages": pages})


async def tender_new_page(request: Request) -> Response:
    """The agent's form for a new tender (sent as JSON by tender_form.js)."""
    custodians = await service.custodian_choices(_deps(request))
    return render(request, "trading/tender_new.html", {
        "custodians": custodians, "methods": EVALUATION_METHODS, "summary_fields": DEFAULT_SUMMARY_FIELDS})


@mapped
async def tender_page(request: Request) -> Response:
    """One tender: terms, changes, bid count; publish and change for its agent; a link to bid for bidders."""
    tender = await service.get_tender(_deps(request), _user(request), _id(request, "tender_id", "tender"))
    return render(request, "trading/tender.html", {"tender": tender, "methods": EVALUATION_METHODS})


@mapped
async def bid_page(request: Request) -> Response:
    """The bidder's page: fill the opening summary, choose files, seal in the browser and upload."""
    tender_id = _id(request, "tender_id", "tender")
    context = await submission.bidder_context(_deps(request), request.state.user, tender_id)
    if context["tender"]["status"] != "published":
        return RedirectResponse(f"/tenders/{tender_id}", status_code=303)
    return render(request, "trading/bid.html", context)


# ---------------------------------------------------------------------------- declarations

_STR = {"type": "string"}
_ERR = {401: "not logged in (login_required)", 403: "role not allowed (role_forbidden) or CSRF (csrf_failed)"}
TENDER_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "string", "format": "uuid"}, "code": _STR, "name": _STR, "tenderer": _STR, "status": _STR,
    "deadline": {"type": "string", "format": "date-time"}, "budget": _STR, "control_price": {"type": ["string", "null"]},
    "evaluation_method": {"type": "string", "enum": list(EVALUATION_METHODS)}, "version": {"type": "integer"},
    "decryption_minutes": {"type": "integer"}, "decryption_rule": {"type": "string", "enum": ["custodians", "void"]},
    "threshold": {"type": "integer"}, "lots": {"type": "array"}, "custodians": {"type": "array"},
    "summary_fields": {"type": "array"}, "bids_received": {"type": ["integer", "null"]},
    "min_bidders": {"type": "integer"}, "show_bid_count": {"type": "boolean"},
    "hall_opens_minutes": {"type": "integer"}, "confirm_minutes": {"type": "integer"}}}
TENDER_INPUT = {"type": "object", "required": ["code", "name", "tenderer", "lots", "budget", "evaluation_method", "deadline"],
                "properties": {
    "code": _STR, "name": _STR, "tenderer": _STR, "budget": {"type": "string", "description": "decimal, > 0, 2 places"},
    "control_price": {"type": ["string", "null"], "description": "decimal, <= budget"},
    "evaluation_method": {"type": "string", "enum": list(EVALUATION_METHODS)},
    "deadline": {"type": "string", "format": "date-time"},
    "decryption_minutes": {"type": "integer", "minimum": 5, "maximum": 240, "default": 30},
    "decryption_rule": {"type": "string", "enum": ["custodians", "void"]},
    "custodians": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    "threshold": {"type": "integer"},
    "lots": {"type": "array", "items": {"type": "object", "properties": {"code": _STR, "name": _STR, "budget": _STR}}},
    "summary_fields": {"type": "array"},
    "min_bidders": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 3},
    "show_bid_count": {"type": "boolean", "default": True},
    "hall_opens_minutes": {"type": "integer", "minimum": 5, "maximum": 1440, "default": 30},
    "confirm_minutes": {"type": "integer", "minimum": 5, "maximum": 1440, "default": 30}}}
RECEIPT_SCHEMA = {"type": "object", "description": "tenderhall-bid-receipt/1, Ed25519-signed by the platform"}
TAGS_T, TAGS_B = ("tenders",), ("bids",)

ROUTES = [
    route("/api/tenders", api_list_tenders, access=PUBLIC, doc=ApiDoc(
        "List tenders (published; and your drafts)", response={"type": "object", "properties": {
            "tenders": {"type": "array", "items": TENDER_SCHEMA}, "page": {"type": "integer"},
            "per_page": {"type": "integer"}, "total": {"type": "integer"}}}, tags=TAGS_T,
        extra_responses={400: "bad page or per_page (invalid_query)"})),
    route("/api/tenders", api_create_tender, methods=["POST"], access=AGENT, doc=ApiDoc(
        "Create a draft tender", request=TENDER_INPUT, response={"type": "object", "properties": {"tender": TENDER_SCHEMA}},
        status=201, tags=TAGS_T, extra_responses={
            422: "invalid terms (invalid_tender, not_a_custodian)", 409: "code taken (duplicate_code)", **_ERR})),
    route("/api/tenders/{tender_id}", api_get_tender, access=PUBLIC, doc=ApiDoc(
        "A tender with everything needed to seal a bid", response={"type": "object", "properties": {"tender": TENDER_SCHEMA}},
        tags=TAGS_T, extra_responses={404: "no such tender (tender_not_found)"})),
    route("/api/tenders/{tender_id}/publish", api_publish_tender, methods=["POST"], access=AGENT, doc=ApiDoc(
        "Publish a draft (pins custodian keys, logs tender.published)",
        response={"type": "object", "properties": {"tender": TENDER_SCHEMA}}, tags=TAGS_T, extra_responses={
            404: "not your tender", 409: "not a draft (not_draft)",
            422: "deadline in the past (deadline_in_past), custodian without keys (custodian_without_keys)", **_ERR})),
    route("/api/tenders/{tender_id}/changes", api_change_tender, methods=["POST"], access=AGENT, doc=ApiDoc(
        "Clarify or extend the deadline of a published tender (bids then need re-confirmation)",
        request={"type": "object", "required": ["kind"], "properties": {
            "kind": {"type": "string", "enum": ["clarification", "deadline_extension"]}, "text": _STR,
            "deadline": {"type": "string", "format": "date-time"}}},
        response={"type": "object"}, status=201, tags=TAGS_T, extra_responses={
            404: "not your tender", 409: "not published (not_published) or deadline passed (deadline_passed)",
            422: "invalid change", **_ERR})),
    route("/api/tenders/{tender_id}/lots/{lot}/uploads", api_create_upload, methods=["POST"], access=BIDDER, doc=ApiDoc(
        "Start a sealed-bid upload (tus creation) with the signed manifest",
        request={"type": "object", "required": ["manifest", "signature"], "properties": {
            "manifest": {"type": "object", "description": "tenderhall-sealed-bid/1 manifest (docs/sealing.md)"},
            "signature": {"type": "string", "description": "b64url raw r||s ECDSA P-256 over canonical_json(manifest)"}}},
        response={"type": "object", "properties": {"upload_id": _STR, "offset": {"type": "integer"},
                                                   "length": {"type": "integer"}, "manifest_sha256": _STR}},
        status=201, tags=TAGS_B, extra_responses={
            404: "tender_not_found, lot_not_found", 409: "deadline_passed, duplicate_upload, replayed_manifest",
            413: "bid_too_large", 422: "no_keys, invalid_manifest, wrong_tender, wrong_lot, wrong_organisation, "
                 "wrong_signing_key, wrong_bidder_key, wrong_custodians, wrong_threshold, client_clock_skew, bad_signature",
            **_ERR})),
    route("/api/uploads/{upload_id}", api_upload_status, methods=["GET", "HEAD"], access=BIDDER, doc=ApiDoc(
        "Upload status (HEAD gives Upload-Offset/Upload-Length as tus does)",
        response={"type": "object", "properties": {"offset": {"type": "integer"}, "length": {"type": "integer"},
                                                   "status": _STR, "failure": {"type": ["string", "null"]},
                                                   "bid": {"type": ["string", "null"]}, "receipt": RECEIPT_SCHEMA}},
        tags=TAGS_B, extra_responses={404: "upload_not_found", **_ERR})),
    route("/api/uploads/{upload_id}", api_patch_upload, methods=["PATCH"], access=BIDDER, doc=ApiDoc(
        "Append ciphertext at Upload-Offset (application/offset+octet-stream; optional Upload-Checksum: sha256 <b64>)",
        response={"type": "object", "description": "204 while incomplete; 200 with bid and receipt on the last byte"},
        tags=TAGS_B, extra_responses={
            400: "bad headers", 404: "upload_not_found", 409: "offset_mismatch, deadline_passed, upload_complete, "
            "upload_failed, upload_locked", 413: "upload_too_long", 415: "unsupported_media_type",
            422: "digest_mismatch (the upload fails)", 460: "checksum_mismatch (bytes discarded)", **_ERR})),
    route("/api/bids", api_list_bids, access=BIDDER, doc=ApiDoc(
        "My organisation's bids (?tender=)", response={"type": "object", "properties": {"bids": {"type": "array"}}},
        tags=TAGS_B, extra_responses=_ERR)),
    route("/api/bids/{bid_id}/receipt", api_bid_receipt, access=BIDDER, doc=ApiDoc(
        "A bid's signed receipt", response=RECEIPT_SCHEMA, tags=TAGS_B, extra_responses={404: "bid_not_found", **_ERR})),
    route("/api/bids/{bid_id}/withdraw", api_withdraw_bid, methods=["POST"], access=BIDDER, doc=ApiDoc(
        "Withdraw a bid before the deadline", response={"type": "object"}, tags=TAGS_B,
        extra_responses={404: "bid_not_found", 409: "deadline_passed, bid_not_active", **_ERR})),
    route("/api/bids/{bid_id}/confirm", api_confirm_bid, methods=["POST"], access=BIDDER, doc=ApiDoc(
        "Re-confirm a bid for the tender's current version",
        request={"type": "object", "required": ["signature"], "properties": {"signature": {
            "type": "string", "description": "b64url raw r||s over canonical_json({bid, tender, tender_version, manifest_sha256})"}}},
        response={"type": "object"}, tags=TAGS_B, extra_responses={
            404: "bid_not_found", 409: "deadline_passed, bid_not_active, confirmation_not_needed",
            422: "bad_signature", **_ERR})),
    route("/tenders", tenders_page, access=PUBLIC, name="tenders"),
    route("/tenders/new", tender_new_page, access=AGENT, name="tender_new"),
    route("/tenders/{tender_id}", tender_page, access=PUBLIC, name="tender"),
    route("/tenders/{tender_id}/bid", bid_page, access=BIDDER, name="bid"),
]
