"""The expert and intermediary pools' pages: server-rendered lists, forms and histories.

Forms post urlencoded with the CSRF token; success redirects (303) back with a `notice`; a
refusal renders the same page again with the message and the error's status.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from evaluation import pool_import, pool_intermediaries as agencies, pool_service as service
from evaluation.pool import INTERMEDIARY_CHECKS, REGION_NAMES, STATUSES, TITLES, PoolError, day_range, parse_day
from evaluation.pool import FieldError, PoolInvalid
from evaluation.pool_csv import COLUMNS, CsvFileError, template
from evaluation.pool_http import (
    ADMIN, EXPERT, READERS, actor, deps, form_dict, mapped, pager_query, path_id, query_dict,
)
from evaluation.pool_api import read_csv
from evaluation.specialty_tree import INTERMEDIARY_ROOT
from tenderhall.web import ApiError, page_params, read_form, render, route

NOTICES = {
    "added": "The expert was added.", "saved": "The changes were saved.", "status": "The status was changed.",
    "leave": "The leave calendar was updated.", "avoidance": "The avoidance was recorded.",
    "removed": "The avoidance was withdrawn.", "credit": "The credit change was recorded.",
    "intermediary": "The intermediary was added.",
}
EXPERT_FIELDS = ("name", "id_number", "phone", "email", "employer_name", "employer_code", "region", "specialties",
                 "title", "status")


FIELD_LABELS = {
    "name": "Full name", "id_number": "ID number", "phone": "Mobile phone", "email": "E-mail",
    "employer_name": "Employer", "employer_code": "Employer's unified social credit code", "region": "Region",
    "specialties": "Specialties", "title": "Professional title", "status": "Status", "user_id": "Login",
    "version": "Version", "delta": "Change", "reason": "Reason", "evidence": "Evidence",
    "organisation_code": "Organisation's unified social credit code", "note": "Note", "days": "Leave calendar",
    "day": "Leave calendar", "credit_code": "Unified social credit code", "contact_name": "Contact person",
    "categories": "Service categories",
}


def _message(request: Request, exc: PoolError) -> str:
    """The refusal in the page's language: each bad field by its label, with what is wrong."""
    _ = request.state.translator.gettext
    if isinstance(exc, PoolInvalid):
        return "; ".join(f"{_(FIELD_LABELS.get(f, f))}: {_(m)}" for f, m in exc.errors)
    return _(exc.message)


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def _back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?notice={notice}", status_code=303)


async def _tree(request: Request) -> list[dict[str, Any]]:
    return await service.specialty_tree(deps(request))


def _is_admin(request: Request) -> bool:
    return request.state.user.has("admin")


# ---------------------------------------------------------------------------- experts: list and forms


@mapped
async def experts_page(request: Request) -> Response:
    """The pool: search by name or employer, region, specialty and status; paginated."""
    page, per_page = page_params(request)
    filters = query_dict(request, ("q", "region", "specialty", "status"))
    listing = await service.list_experts(deps(request), filters, page, per_page)
    return render(request, "evaluation/experts.html", {
        **listing, "filters": filters, "query": pager_query(filters, per_page), "statuses": STATUSES,
        "regions": REGION_NAMES, "tree": await _tree(request), "notice": _notice(request),
        "can_manage": _is_admin(request)})


async def _form(request: Request, *, expert: dict[str, Any] | None, values: dict[str, Any], error: str | None = None,
                status: int = 200) -> Response:
    tree = [s for s in await _tree(request) if not s["code"].startswith(INTERMEDIARY_ROOT)]
    return render(request, "evaluation/expert_form.html", {
        "expert": expert, "values": values, "error": error, "tree": tree, "titles": TITLES, "statuses": STATUSES,
        "regions": REGION_NAMES}, status=status)


def _expert_form_data(form: Any) -> dict[str, Any]:
    data = form_dict(form, EXPERT_FIELDS, lists=("specialties",))
    if not data.get("id_number"):
        data.pop("id_number", None)  # on edit: blank keeps the number on file
    return data


@mapped
async def expert_new_page(request: Request) -> Response:
    """The form for a new expert."""
    return await _form(request, expert=None, values={"status": "active"})


@mapped
async def expert_new_submit(request: Request) -> Response:
    form = await read_form(request)
    data = _expert_form_data(form)
    try:
        data["user_id"] = await service.user_id_for(deps(request), str(form.get("username") or ""))
        expert = await service.add_expert(deps(request), actor(request), data)
    except PoolError as exc:
        # The ID number is never written back into the page, not even the one just typed.
        values = {**data, "username": form.get("username", ""), "id_number": ""}
        return await _form(request, expert=None, values=values, error=_message(request, exc), status=exc.status)
    return _back(f"/experts/{expert['id']}", "added")


@mapped
async def expert_edit_page(request: Request) -> Response:
    """The form to edit an expert (the version goes with it)."""
    expert = await service.get_expert(deps(request), path_id(request, "expert_id"))
    return await _form(request, expert=expert, values={**expert, "username": expert["username"] or ""})


@mapped
async def expert_edit_submit(request: Request) -> Response:
    expert_id = path_id(request, "expert_id")
    form = await read_form(request)
    data = _expert_form_data(form)
    data["version"] = form.get("version")
    try:
        data["user_id"] = await service.user_id_for(deps(request), str(form.get("username") or ""))
        await service.edit_expert(deps(request), actor(request), expert_id, data)
    except PoolError as exc:
        expert = await service.get_expert(deps(request), expert_id)
        values = {**data, "username": form.get("username", ""), "id_number": ""}
        if exc.code == "stale_version":
            values["version"] = expert["version"]  # resubmitting now applies over the newer record
        return await _form(request, expert=expert, values=values, error=_message(request, exc), status=exc.status)
    return _back(f"/experts/{expert_id}", "saved")


# ---------------------------------------------------------------------------- one expert


async def _expert_page(request: Request, expert_id: uuid.UUID, *, own: bool, error: str | None = None,
                       status: int = 200) -> Response:
    expert = await service.get_expert(deps(request), expert_id)
    return render(request, "evaluation/expert.html", {
        "expert": expert, "own": own, "can_manage": not own and _is_admin(request), "statuses": STATUSES,
        "threshold": request.state.settings.credit_threshold, "today": date.today().isoformat(),
        "notice": _notice(request), "error": error, "base": "/experts/me" if own else f"/experts/{expert_id}"},
        status=status)


@mapped
async def expert_page(request: Request) -> Response:
    """One expert: details (ID number masked), leave calendar, avoidances; actions for admins."""
    return await _expert_page(request, path_id(request, "expert_id"), own=False)


@mapped
async def my_record_page(request: Request) -> Response:
    """The logged-in expert's own record, with their leave days and declared avoidances."""
    return await _expert_page(request, await service.own_expert_id(deps(request), request.state.user), own=True)


async def _target(request: Request) -> tuple[uuid.UUID, bool, str]:
    """(expert id, own record?, page path) of a detail-page form."""
    if "expert_id" in request.path_params:
        expert_id = path_id(request, "expert_id")
        return expert_id, False, f"/experts/{expert_id}"
    return await service.own_expert_id(deps(request), request.state.user), True, "/experts/me"


@mapped
async def expert_status_submit(request: Request) -> Response:
    expert_id = path_id(request, "expert_id")
    form = await read_form(request)
    try:
        await service.change_status(deps(request), actor(request), expert_id, form_dict(form, ("status", "version")))
    except PoolError as exc:
        return await _expert_page(request, expert_id, own=False, error=_message(request, exc), status=exc.status)
    return _back(f"/experts/{expert_id}", "status")


@mapped
async def leave_submit(request: Request) -> Response:
    """Add a day or a range of days (action=add, first, last) or remove one (action=remove, day)."""
    expert_id, own, path = await _target(request)
    form = await read_form(request)
    try:
        if form.get("action") == "remove":
            try:
                days = (parse_day(form.get("day")),)
            except FieldError as exc:
                raise PoolInvalid([("day", str(exc))]) from None
            await service.set_leave(deps(request), actor(request), expert_id, remove=days, self_service=own)
        else:
            days = day_range(form.get("first"), form.get("last"))
            await service.set_leave(deps(request), actor(request), expert_id, add=days, self_service=own)
    except PoolError as exc:
        return await _expert_page(request, expert_id, own=own, error=_message(request, exc), status=exc.status)
    return _back(path, "leave")


@mapped
async def avoidance_submit(request: Request) -> Response:
    """Declare an avoidance: an organisation's credit code or a platform username, and a note."""
    expert_id, own, path = await _target(request)
    form = await read_form(request)
    data = form_dict(form, ("organisation_code", "note"))
    try:
        username = str(form.get("username") or "").strip()
        if username:
            data["user_id"] = await service.user_id_for(deps(request), username)
        await service.add_avoidance(deps(request), actor(request), expert_id, data)
    except PoolError as exc:
        return await _expert_page(request, expert_id, own=own, error=_message(request, exc), status=exc.status)
    return _back(path, "avoidance")


@mapped
async def avoidance_delete(request: Request) -> Response:
    expert_id, own, path = await _target(request)
    await service.remove_avoidance(deps(request), actor(request), expert_id, path_id(request, "avoidance_id"))
    return _back(path, "removed")


# ---------------------------------------------------------------------------- credit


async def _credit_page(request: Request, subject: str, subject_id: uuid.UUID, *, error: str | None = None,
                       values: dict[str, Any] | None = None, status: int = 200) -> Response:
    page, per_page = page_params(request)
    history = await service.credit_history(deps(request), subject, subject_id, page, per_page)
    return render(request, "evaluation/expert_credit.html", {
        "history": history, "notice": _notice(request), "error": error, "values": values or {},
        "back": f"/{subject}s/{subject_id}" if subject == "expert" else f"/intermediaries/{subject_id}"},
        status=status)


@mapped
async def expert_credit_page(request: Request) -> Response:
    """An expert's credit history, with the form to record a deduction or commendation."""
    return await _credit_page(request, "expert", path_id(request, "expert_id"))


async def _credit_submit(request: Request, subject: str, subject_id: uuid.UUID, path: str) -> Response:
    form = await read_form(request)
    data = form_dict(form, ("delta", "reason", "evidence"))
    try:
        await service.record_credit(deps(request), actor(request), subject, subject_id, data)
    except PoolError as exc:
        if exc.status == 404:
            raise
        return await _credit_page(request, subject, subject_id, error=_message(request, exc), values=data, status=exc.status)
    return _back(path, "credit")


@mapped
async def expert_credit_submit(request: Request) -> Response:
    expert_id = path_id(request, "expert_id")
    return await _credit_submit(request, "expert", expert_id, f"/experts/{expert_id}/credit")


# ---------------------------------------------------------------------------- import


@mapped
async def experts_import_page(request: Request) -> Response:
    """Choose a CSV file; experts_import.js sends it and shows the report below."""
    return render(request, "evaluation/experts_import.html", {"columns": COLUMNS, "template": template()})


async def experts_import_submit(request: Request) -> Response:
    """The CSV as the body (text/csv); answers the report as an HTML fragment for the page."""
    try:
        mode = pool_import.parse_mode(request.query_params.get("mode"))
        raw = await read_csv(request)
        result = await pool_import.import_experts(deps(request), actor(request), raw, mode)
        context: dict[str, Any] = {"result": result.as_json(), "error": None}
        status = 422 if result.refused else 200
    except CsvFileError as exc:
        context = {"result": {"imported": 0, "errors": [e.as_json() for e in exc.errors]}, "error": exc.message}
        status = 422
    except PoolError as exc:
        context, status = {"result": None, "error": _message(request, exc)}, exc.status
    except ApiError as exc:
        context, status = {"result": None, "error": exc.message}, exc.status
    return render(request, "evaluation/_import_report.html", context, status=status)


# ---------------------------------------------------------------------------- intermediaries

INTERMEDIARY_FIELDS = tuple(INTERMEDIARY_CHECKS)


async def _intermediaries(request: Request, *, error: str | None = None, values: dict[str, Any] | None = None,
                          status: int = 200) -> Response:
    page, per_page = page_params(request)
    filters = query_dict(request, ("q", "region", "category", "status"))
    listing = await agencies.list_intermediaries(deps(request), filters, page, per_page)
    categories = [s for s in await _tree(request) if s["code"].startswith(INTERMEDIARY_ROOT) and len(s["code"]) > 1]
    return render(request, "evaluation/intermediaries.html", {
        **listing, "filters": filters, "query": pager_query(filters, per_page), "statuses": STATUSES,
        "categories": categories, "regions": REGION_NAMES, "notice": _notice(request), "error": error,
        "values": values or {}, "can_manage": _is_admin(request)}, status=status)


@mapped
async def intermediaries_page(request: Request) -> Response:
    """The 中介超市 pool: search and list; admins add agencies here."""
    return await _intermediaries(request)


@mapped
async def intermediaries_submit(request: Request) -> Response:
    form = await read_form(request)
    data = form_dict(form, INTERMEDIARY_FIELDS, lists=("categories",))
    try:
        agency = await agencies.add_intermediary(deps(request), actor(request), data)
    except PoolError as exc:
        return await _intermediaries(request, error=_message(request, exc), values=data, status=exc.status)
    return _back(f"/intermediaries/{agency['id']}", "intermediary")


async def _intermediary(request: Request, intermediary_id: uuid.UUID, *, error: str | None = None,
                        values: dict[str, Any] | None = None, status: int = 200) -> Response:
    agency = await agencies.get_intermediary(deps(request), intermediary_id)
    history = await service.credit_history(deps(request), "intermediary", intermediary_id, 1, 20)
    categories = [s for s in await _tree(request) if s["code"].startswith(INTERMEDIARY_ROOT) and len(s["code"]) > 1]
    return render(request, "evaluation/intermediary.html", {
        "agency": agency, "values": values or agency, "history": history, "categories": categories,
        "statuses": STATUSES, "regions": REGION_NAMES, "notice": _notice(request), "error": error,
        "can_manage": _is_admin(request)}, status=status)


@mapped
async def intermediary_page(request: Request) -> Response:
    """One intermediary: details, credit history; edit and status for admins, credit for supervisors."""
    return await _intermediary(request, path_id(request, "intermediary_id"))


@mapped
async def intermediary_submit(request: Request) -> Response:
    intermediary_id = path_id(request, "intermediary_id")
    form = await read_form(request)
    data = {**form_dict(form, INTERMEDIARY_FIELDS, lists=("categories",)), "version": form.get("version")}
    try:
        await agencies.edit_intermediary(deps(request), actor(request), intermediary_id, data)
    except PoolError as exc:
        if exc.status == 404:
            raise
        return await _intermediary(request, intermediary_id, error=_message(request, exc), values=data, status=exc.status)
    return _back(f"/intermediaries/{intermediary_id}", "saved")


@mapped
async def intermediary_status_submit(request: Request) -> Response:
    intermediary_id = path_id(request, "intermediary_id")
    form = await read_form(request)
    try:
        await agencies.change_status(deps(request), actor(request), intermediary_id,
                                     form_dict(form, ("status", "version")))
    except PoolError as exc:
        if exc.status == 404:
            raise
        return await _intermediary(request, intermediary_id, error=_message(request, exc), status=exc.status)
    return _back(f"/intermediaries/{intermediary_id}", "status")


@mapped
async def intermediary_credit_submit(request: Request) -> Response:
    intermediary_id = path_id(request, "intermediary_id")
    form = await read_form(request)
    try:
        await service.record_credit(deps(request), actor(request), "intermediary", intermediary_id,
                                    form_dict(form, ("delta", "reason", "evidence")))
    except PoolError as exc:
        if exc.status == 404:
            raise
        return await _intermediary(request, intermediary_id, error=_message(request, exc), status=exc.status)
    return _back(f"/intermediaries/{intermediary_id}", "credit")


EX = "/experts/{expert_id:uuid}"
AG = "/intermediaries/{intermediary_id:uuid}"
ROUTES = [
    route("/experts", experts_page, access=READERS, name="experts"),
    route("/experts/new", expert_new_page, access=ADMIN),
    route("/experts/new", expert_new_submit, methods=["POST"], access=ADMIN),
    route("/experts/import", experts_import_page, access=ADMIN),
    route("/experts/import", experts_import_submit, methods=["POST"], access=ADMIN),
    route("/experts/me", my_record_page, access=EXPERT),
    route("/experts/me/leave", leave_submit, methods=["POST"], access=EXPERT),
    route("/experts/me/avoidances", avoidance_submit, methods=["POST"], access=EXPERT),
    route("/experts/me/avoidances/{avoidance_id:uuid}/delete", avoidance_delete, methods=["POST"], access=EXPERT),
    route(EX, expert_page, access=READERS),
    route(EX + "/edit", expert_edit_page, access=ADMIN),
    route(EX + "/edit", expert_edit_submit, methods=["POST"], access=ADMIN),
    route(EX + "/status", expert_status_submit, methods=["POST"], access=ADMIN),
    route(EX + "/leave", leave_submit, methods=["POST"], access=ADMIN),
    route(EX + "/avoidances", avoidance_submit, methods=["POST"], access=ADMIN),
    route(EX + "/avoidances/{avoidance_id:uuid}/delete", avoidance_delete, methods=["POST"], access=ADMIN),
    route(EX + "/credit", expert_credit_page, access=READERS),
    route(EX + "/credit", expert_credit_submit, methods=["POST"], access=READERS),
    route("/intermediaries", intermediaries_page, access=READERS, name="intermediaries"),
    route("/intermediaries", intermediaries_submit, methods=["POST"], access=ADMIN),
    route(AG, intermediary_page, access=READERS),
    route(AG, intermediary_submit, methods=["POST"], access=ADMIN),
    route(AG + "/status", intermediary_status_submit, methods=["POST"], access=ADMIN),
    route(AG + "/credit", intermediary_credit_submit, methods=["POST"], access=READERS),
]
