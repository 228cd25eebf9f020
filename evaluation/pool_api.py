"""The expert and intermediary pools' JSON API (admins manage, supervisors read and record credit)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from evaluation import pool_import, pool_intermediaries as agencies, pool_service as service
from evaluation.pool_csv import MAX_BYTES, CsvFileError
from evaluation.pool_http import ADMIN, EXPERT, READERS, actor, deps, mapped, path_id, query_dict
from tenderhall.web import ANY_USER, AUTH_ERRORS, ApiDoc, ApiError, json_ok, page_params, read_body, read_json, route

CSV_TYPES = ("text/csv", "text/plain", "application/csv", "application/octet-stream", "application/vnd.ms-excel")
FILTERS = ("q", "region", "specialty", "status")


def _leave_days(body: Any) -> Any:
    """PUT …/leave takes a list of days, or {"days": [...]}."""
    return body.get("days") if isinstance(body, dict) else body


# ---------------------------------------------------------------------------- experts


@mapped
async def api_specialties(request: Request) -> Response:
    """The specialty code tree (flat, sorted, each with its parent)."""
    return json_ok({"specialties": await service.specialty_tree(deps(request))})


@mapped
async def api_list_experts(request: Request) -> Response:
    """Experts matching ?q= (name or employer), ?region=, ?specialty= (prefixes), ?status=; paginated."""
    page, per_page = page_params(request)
    return json_ok(await service.list_experts(deps(request), query_dict(request, FILTERS), page, per_page))


@mapped
async def api_add_expert(request: Request) -> Response:
    """Add an expert (the ID number is validated, sealed, and never returned)."""
    expert = await service.add_expert(deps(request), actor(request), await read_json(request))
    return json_ok({"expert": expert}, status=201, headers={"Location": f"/api/experts/{expert['id']}"})


@mapped
async def api_get_expert(request: Request) -> Response:
    """One expert with leave days and declared avoidances."""
    return json_ok({"expert": await service.get_expert(deps(request), path_id(request, "expert_id"))})


@mapped
async def api_edit_expert(request: Request) -> Response:
    """Change an expert's fields; send the version you read (409 stale_version otherwise)."""
    expert = await service.edit_expert(deps(request), actor(request), path_id(request, "expert_id"),
                                       await read_json(request))
    return json_ok({"expert": expert})


@mapped
async def api_expert_status(request: Request) -> Response:
    """Suspend, reactivate or retire an expert."""
    expert = await service.change_status(deps(request), actor(request), path_id(request, "expert_id"),
                                         await read_json(request))
    return json_ok({"expert": expert})


@mapped
async def api_expert_leave(request: Request) -> Response:
    """Replace an expert's leave calendar."""
    days = await service.set_leave(deps(request), actor(request), path_id(request, "expert_id"),
                                   replace=_leave_days(await read_json(request)))
    return json_ok({"leave": days})


@mapped
async def api_add_avoidance(request: Request) -> Response:
    """Declare an organisation or a user the expert must avoid."""
    avoidance = await service.add_avoidance(deps(request), actor(request), path_id(request, "expert_id"),
                                            await read_json(request))
    return json_ok({"avoidance": avoidance}, status=201)


@mapped
async def api_remove_avoidance(request: Request) -> Response:
    """Withdraw a declared avoidance."""
    await service.remove_avoidance(deps(request), actor(request), path_id(request, "expert_id"),
                                   path_id(request, "avoidance_id"))
    return json_ok({"removed": True})


@mapped
async def api_expert_credit(request: Request) -> Response:
    """An expert's credit history, newest first."""
    page, per_page = page_params(request)
    return json_ok(await service.credit_history(deps(request), "expert", path_id(request, "expert_id"), page, per_page))


@mapped
async def api_record_expert_credit(request: Request) -> Response:
    """Record a deduction (negative delta) or commendation of an expert."""
    event = await service.record_credit(deps(request), actor(request), "expert", path_id(request, "expert_id"),
                                        await read_json(request))
    return json_ok({"credit": event}, status=201)


async def read_csv(request: Request) -> bytes:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in CSV_TYPES:
        raise ApiError(415, "unsupported_media_type", "send the file as the body, with Content-Type: text/csv")
    return bytes(await read_body(request, MAX_BYTES, "the CSV file"))


@mapped
async def api_import_experts(request: Request) -> Response:
    """Import experts from a CSV body; ?mode=good_rows imports the good rows of a file with errors."""
    mode = pool_import.parse_mode(request.query_params.get("mode"))
    raw = await read_csv(request)
    try:
        result = await pool_import.import_experts(deps(request), actor(request), raw, mode)
    except CsvFileError as exc:
        return json_ok({"error": {"code": exc.code, "message": exc.message}, "mode": mode, "imported": 0,
                        "errors": [e.as_json() for e in exc.errors]}, status=422)
    body = result.as_json()
    if result.refused:
        body["error"] = {"code": "invalid_rows", "message": f"{body['rejected_rows']} row(s) have errors; nothing "
                         "was imported (send ?mode=good_rows to import the others)"}
        return json_ok(body, status=422)
    return json_ok(body)


# ---------------------------------------------------------------------------- the expert's own record


@mapped
async def api_my_record(request: Request) -> Response:
    """The logged-in expert's own record (masked ID number, leave, avoidances)."""
    d = deps(request)
    return json_ok({"expert": await service.get_expert(d, await service.own_expert_id(d, request.state.user))})


@mapped
async def api_my_leave(request: Request) -> Response:
    """The expert replaces their own leave calendar."""
    d = deps(request)
    expert_id = await service.own_expert_id(d, request.state.user)
    days = await service.set_leave(d, actor(request), expert_id, replace=_leave_days(await read_json(request)),
                                   self_service=True)
    return json_ok({"leave": days})


@mapped
async def api_my_add_avoidance(request: Request) -> Response:
    """The expert declares an organisation or a person they must avoid."""
    d = deps(request)
    expert_id = await service.own_expert_id(d, request.state.user)
    avoidance = await service.add_avoidance(d, actor(request), expert_id, await read_json(request))
    return json_ok({"avoidance": avoidance}, status=201)


@mapped
async def api_my_remove_avoidance(request: Request) -> Response:
    """The expert withdraws one of their declared avoidances."""
    d = deps(request)
    expert_id = await service.own_expert_id(d, request.state.user)
    await service.remove_avoidance(d, actor(request), expert_id, path_id(request, "avoidance_id"))
    return json_ok({"removed": True})


# ---------------------------------------------------------------------------- intermediaries


@mapped
async def api_list_intermediaries(request: Request) -> Response:
    """Intermediaries matching ?q=, ?region=, ?category=, ?status=; paginated."""
    page, per_page = page_params(request)
    params = query_dict(request, ("q", "region", "category", "status"))
    return json_ok(await agencies.list_intermediaries(deps(request), params, page, per_page))


@mapped
async def api_add_intermediary(request: Request) -> Response:
    """Add an intermediary (agency) with its service categories."""
    agency = await agencies.add_intermediary(deps(request), actor(request), await read_json(request))
    return json_ok({"intermediary": agency}, status=201, headers={"Location": f"/api/intermediaries/{agency['id']}"})


@mapped
async def api_get_intermediary(request: Request) -> Response:
    """One intermediary."""
    return json_ok({"intermediary": await agencies.get_intermediary(deps(request), path_id(request, "intermediary_id"))})


@mapped
async def api_edit_intermediary(request: Request) -> Response:
    """Change an intermediary's fields; send the version you read."""
    agency = await agencies.edit_intermediary(deps(request), actor(request), path_id(request, "intermediary_id"),
                                              await read_json(request))
    return json_ok({"intermediary": agency})


@mapped
async def api_intermediary_status(request: Request) -> Response:
    """Suspend, reactivate or retire an intermediary."""
    agency = await agencies.change_status(deps(request), actor(request), path_id(request, "intermediary_id"),
                                          await read_json(request))
    return json_ok({"intermediary": agency})


@mapped
async def api_intermediary_credit(request: Request) -> Response:
    """An intermediary's credit history, newest first."""
    page, per_page = page_params(request)
    return json_ok(await service.credit_history(deps(request), "intermediary", path_id(request, "intermediary_id"),
                                                page, per_page))


@mapped
async def api_record_intermediary_credit(request: Request) -> Response:
    """Record a deduction or commendation of an intermediary."""
    event = await service.record_credit(deps(request), actor(request), "intermediary",
                                        path_id(request, "intermediary_id"), await read_json(request))
    return json_ok({"credit": event}, status=201)


# ---------------------------------------------------------------------------- declarations

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_CODES = {"type": "array", "items": _STR}
_PAGE = {"page": _INT, "per_page": _INT, "total": _INT, "pages": _INT}
STATUS_ENUM = {"type": "string", "enum": ["active", "suspended", "retired"]}
SPECIALTY_SCHEMA = {"type": "object", "properties": {"code": _STR, "name": _STR, "parent": _NSTR}}
AVOIDANCE_SCHEMA = {"type": "object", "properties": {
    "id": _STR, "organisation_code": _NSTR, "organisation_name": _NSTR, "user_id": _NSTR, "username": _NSTR,
    "display_name": _NSTR, "note": _STR, "declared_at": _STR}}
EXPERT_SCHEMA = {"type": "object", "properties": {
    "id": _STR, "name": _STR, "id_number_masked": _STR, "phone": _STR, "email": _NSTR, "employer_name": _STR,
    "employer_code": _STR, "region": _STR, "region_name": _NSTR, "title": _STR, "specialties": _CODES,
    "specialty_names": {"type": "object"}, "status": STATUS_ENUM, "credit_score": _INT,
    "below_threshold": {"type": "boolean"}, "user_id": _NSTR, "username": _NSTR, "version": _INT,
    "created_at": _STR, "updated_at": _STR, "leave": _CODES, "avoidances": {"type": "array", "items": AVOIDANCE_SCHEMA}}}
EXPERT_INPUT = {"type": "object", "required": ["name", "id_number", "phone", "employer_name", "employer_code", "region",
                                               "specialties", "title"], "properties": {
    "name": _STR, "id_number": {"type": "string", "description": "GB 11643 citizen ID number; stored sealed"},
    "phone": {"type": "string", "description": "mainland mobile"}, "email": _NSTR, "employer_name": _STR,
    "employer_code": {"type": "string", "description": "unified social credit code (GB 32100)"},
    "region": {"type": "string", "description": "six-digit administrative division code"},
    "specialties": _CODES, "title": _STR, "status": STATUS_ENUM,
    "user_id": {"type": ["string", "null"], "description": "a login with the expert role"}}}
EXPERT_PATCH = {"type": "object", "required": ["version"],
                "properties": {**EXPERT_INPUT["properties"], "version": _INT}}
STATUS_INPUT = {"type": "object", "required": ["status"], "properties": {"status": STATUS_ENUM, "version": _INT}}
LEAVE_INPUT = {"type": "object", "properties": {"days": {"type": "array", "items": {"type": "string", "format": "date"}}},
               "description": "a list of YYYY-MM-DD days, or {\"days\": [...]}"}
LEAVE_OUT = {"type": "object", "properties": {"leave": _CODES}}
AVOIDANCE_INPUT = {"type": "object", "properties": {
    "organisation_code": _STR, "user_id": _STR, "note": _STR}, "description": "organisation_code or user_id"}
CREDIT_INPUT = {"type": "object", "required": ["delta", "reason"], "properties": {
    "delta": {"type": "integer", "minimum": -100, "maximum": 100, "description": "non-zero; negative = deduction"},
    "reason": _STR, "evidence": _STR}}
CREDIT_EVENT = {"type": "object", "properties": {
    "id": _INT, "delta": _INT, "score_after": _INT, "reason": _STR, "evidence": _STR, "recorded_by": _STR,
    "recorded_by_name": _STR, "recorded_at": _STR, "log_index": {"type": ["integer", "null"]}}}
CREDIT_HISTORY = {"type": "object", "properties": {
    "subject": _STR, "id": _STR, "name": _STR, "credit_score": _INT, "threshold": _INT,
    "below_threshold": {"type": "boolean"}, "events": {"type": "array", "items": CREDIT_EVENT}, **_PAGE}}
ROW_ERROR = {"type": "object", "properties": {"row": _INT, "column": _STR, "message": _STR}}
IMPORT_OUT = {"type": "object", "properties": {
    "mode": _STR, "rows": _INT, "imported": _INT, "rejected_rows": _INT,
    "errors": {"type": "array", "items": ROW_ERROR}, "file_sha256": _STR, "log_index": {"type": ["integer", "null"]}}}
INTERMEDIARY_SCHEMA = {"type": "object", "properties": {
    "id": _STR, "name": _STR, "credit_code": _STR, "region": _STR, "region_name": _NSTR, "contact_name": _STR,
    "phone": _STR, "email": _NSTR, "categories": _CODES, "category_names": {"type": "object"}, "status": STATUS_ENUM,
    "credit_score": _INT, "below_threshold": {"type": "boolean"}, "version": _INT, "created_at": _STR,
    "updated_at": _STR}}
INTERMEDIARY_INPUT = {"type": "object", "required": ["name", "credit_code", "region", "contact_name", "phone",
                                                     "categories"], "properties": {
    "name": _STR, "credit_code": _STR, "region": _STR, "contact_name": _STR, "phone": _STR, "email": _NSTR,
    "categories": {"type": "array", "items": _STR, "description": "codes under S (S01 工程造价咨询, …)"},
    "status": STATUS_ENUM}}
INTERMEDIARY_PATCH = {"type": "object", "required": ["version"],
                      "properties": {**INTERMEDIARY_INPUT["properties"], "version": _INT}}

TAGS = ("expert pool",)
TAGS_I = ("intermediaries",)
E_ONE = {"type": "object", "properties": {"expert": EXPERT_SCHEMA}}
I_ONE = {"type": "object", "properties": {"intermediary": INTERMEDIARY_SCHEMA}}
REMOVED = {"type": "object", "properties": {"removed": {"type": "boolean"}}}
CREDIT_OUT = {"type": "object", "properties": {"credit": {"type": "object"}}}
BAD = {422: "invalid field (invalid_field), unknown_specialty, unknown_user, user_not_expert", 400: "body not an object"}
NF = {404: "no such expert (expert_not_found)"}
NFI = {404: "no such intermediary (intermediary_not_found)"}
E = "/api/experts/{expert_id:uuid}"
AG = "/api/intermediaries/{intermediary_id:uuid}"

ROUTES = [
    route("/api/specialties", api_specialties, access=ANY_USER, doc=ApiDoc(
        "The specialty code tree", response={"type": "object", "properties": {
            "specialties": {"type": "array", "items": SPECIALTY_SCHEMA}}}, tags=TAGS, extra_responses=AUTH_ERRORS)),
    route("/api/experts", api_list_experts, access=READERS, doc=ApiDoc(
        "List experts (?q=, ?region=, ?specialty=, ?status=, ?page=, ?per_page=)", response={
            "type": "object", "properties": {"experts": {"type": "array", "items": EXPERT_SCHEMA}, **_PAGE}},
        tags=TAGS, extra_responses={400: "bad query", **AUTH_ERRORS})),
    route("/api/experts", api_add_expert, methods=["POST"], access=ADMIN, doc=ApiDoc(
        "Add an expert", request=EXPERT_INPUT, response=E_ONE, status=201, tags=TAGS,
        extra_responses={**BAD, 409: "duplicate_id_number or user_already_linked", **AUTH_ERRORS})),
    route("/api/experts/import", api_import_experts, methods=["POST"], access=ADMIN, doc=ApiDoc(
        "Import experts from a CSV body (text/csv; ?mode=all|good_rows)", response=IMPORT_OUT, tags=TAGS,
        extra_responses={422: "bad file (invalid_csv) or rows with errors (invalid_rows): nothing imported",
                         413: "file over 5 MiB or 20,000 rows", 415: "not text/csv", **AUTH_ERRORS})),
    route("/api/experts/me", api_my_record, access=EXPERT, doc=ApiDoc(
        "Your own expert record", response=E_ONE, tags=TAGS,
        extra_responses={404: "your login is not linked to an expert", **AUTH_ERRORS})),
    route("/api/experts/me/leave", api_my_leave, methods=["PUT"], access=EXPERT, doc=ApiDoc(
        "Replace your own leave calendar", request=LEAVE_INPUT, response=LEAVE_OUT, tags=TAGS,
        extra_responses={422: "bad day", 404: "not linked", **AUTH_ERRORS})),
    route("/api/experts/me/avoidances", api_my_add_avoidance, methods=["POST"], access=EXPERT, doc=ApiDoc(
        "Declare an avoidance", request=AVOIDANCE_INPUT, response={"type": "object", "properties": {
            "avoidance": AVOIDANCE_SCHEMA}}, status=201, tags=TAGS, extra_responses={**BAD, **AUTH_ERRORS})),
    route("/api/experts/me/avoidances/{avoidance_id:uuid}", api_my_remove_avoidance, methods=["DELETE"],
          access=EXPERT, doc=ApiDoc("Withdraw one of your avoidances", response=REMOVED, tags=TAGS,
                                    extra_responses={404: "no such avoidance", **AUTH_ERRORS})),
    route(E, api_get_expert, access=READERS, doc=ApiDoc(
        "One expert", response=E_ONE, tags=TAGS, extra_responses={**NF, **AUTH_ERRORS})),
    route(E, api_edit_expert, methods=["PATCH"], access=ADMIN, doc=ApiDoc(
        "Edit an expert (optimistic: send the version)", request=EXPERT_PATCH, response=E_ONE, tags=TAGS,
        extra_responses={**BAD, **NF, 409: "stale_version, duplicate_id_number, user_already_linked", **AUTH_ERRORS})),
    route(E + "/status", api_expert_status, methods=["POST"], access=ADMIN, doc=ApiDoc(
        "Suspend, reactivate or retire an expert", request=STATUS_INPUT, response=E_ONE, tags=TAGS,
        extra_responses={**BAD, **NF, 409: "stale_version", **AUTH_ERRORS})),
    route(E + "/leave", api_expert_leave, methods=["PUT"], access=ADMIN, doc=ApiDoc(
        "Replace an expert's leave calendar", request=LEAVE_INPUT, response=LEAVE_OUT, tags=TAGS,
        extra_responses={422: "bad day", **NF, **AUTH_ERRORS})),
    route(E + "/avoidances", api_add_avoidance, methods=["POST"], access=ADMIN, doc=ApiDoc(
        "Declare an avoidance for an expert", request=AVOIDANCE_INPUT, response={"type": "object", "properties": {
            "avoidance": AVOIDANCE_SCHEMA}}, status=201, tags=TAGS, extra_responses={**BAD, **NF, **AUTH_ERRORS})),
    route(E + "/avoidances/{avoidance_id:uuid}", api_remove_avoidance, methods=["DELETE"], access=ADMIN, doc=ApiDoc(
        "Withdraw an expert's avoidance", response=REMOVED, tags=TAGS,
        extra_responses={404: "no such avoidance", **AUTH_ERRORS})),
    route(E + "/credit", api_expert_credit, access=READERS, doc=ApiDoc(
        "An expert's credit history", response=CREDIT_HISTORY, tags=TAGS, extra_responses={**NF, **AUTH_ERRORS})),
    route(E + "/credit", api_record_expert_credit, methods=["POST"], access=READERS, doc=ApiDoc(
        "Record a credit deduction or commendation", request=CREDIT_INPUT, response=CREDIT_OUT, status=201,
        tags=TAGS, extra_responses={422: "invalid delta or reason", **NF, **AUTH_ERRORS})),
    route("/api/intermediaries", api_list_intermediaries, access=READERS, doc=ApiDoc(
        "List intermediaries (?q=, ?region=, ?category=, ?status=)", response={"type": "object", "properties": {
            "intermediaries": {"type": "array", "items": INTERMEDIARY_SCHEMA}, **_PAGE}},
        tags=TAGS_I, extra_responses={400: "bad query", **AUTH_ERRORS})),
    route("/api/intermediaries", api_add_intermediary, methods=["POST"], access=ADMIN, doc=ApiDoc(
        "Add an intermediary", request=INTERMEDIARY_INPUT, response=I_ONE, status=201, tags=TAGS_I,
        extra_responses={**BAD, 409: "duplicate_credit_code", **AUTH_ERRORS})),
    route(AG, api_get_intermediary, access=READERS, doc=ApiDoc(
        "One intermediary", response=I_ONE, tags=TAGS_I, extra_responses={**NFI, **AUTH_ERRORS})),
    route(AG, api_edit_intermediary, methods=["PATCH"], access=ADMIN, doc=ApiDoc(
        "Edit an intermediary (send the version)", request=INTERMEDIARY_PATCH, response=I_ONE, tags=TAGS_I,
        extra_responses={**BAD, **NFI, 409: "stale_version or duplicate_credit_code", **AUTH_ERRORS})),
    route(AG + "/status", api_intermediary_status, methods=["POST"], access=ADMIN, doc=ApiDoc(
        "Suspend, reactivate or retire an intermediary", request=STATUS_INPUT, response=I_ONE, tags=TAGS_I,
        extra_responses={**BAD, **NFI, 409: "stale_version", **AUTH_ERRORS})),
    route(AG + "/credit", api_intermediary_credit, access=READERS, doc=ApiDoc(
        "An intermediary's credit history", response=CREDIT_HISTORY, tags=TAGS_I,
        extra_responses={**NFI, **AUTH_ERRORS})),
    route(AG + "/credit", api_record_intermediary_credit, methods=["POST"], access=READERS, doc=ApiDoc(
        "Record a credit deduction or commendation of an intermediary", request=CREDIT_INPUT, response=CREDIT_OUT,
        status=201, tags=TAGS_I, extra_responses={422: "invalid delta or reason", **NFI, **AUTH_ERRORS})),
]
