"""People who carry badges and tags, their credentials and access rules (admins), and the 代理码
of agents' staff (issued by a tender's agent, scanned by the centre's staff at the entrance).

Every change is logged (without badge values or names: the log is public) and announced on the
bus in its transaction, so every instance reloads its policy; this instance reloads at once.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date, datetime
from typing import Any, Mapping

import asyncpg

from tenderhall import formatting, log
from tenderhall.accounts import CurrentUser
from venue import agent_codes
from venue import policy_store as store
from venue.access_service import (
    CREDENTIAL, AccessRefused, Deps, bad, body_object, iso, policy_changed, reload_here, text_field, time_field,
    utc_now, uuid_field,
)
from venue.model import ROLES, ZONE_KINDS, AccessRule


# ---------------------------------------------------------------------------- people and credentials

_PERSON_REFS = {"venue_people_user_id_fkey": ("unknown_user", "no user has this user_id"),
                "venue_people_organisation_id_fkey": ("unknown_organisation", "no organisation has this organisation_id"),
                "venue_people_expert_id_fkey": ("unknown_expert", "no expert has this expert_id")}


def person_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "role": row["role"],
            **{k: str(row[k]) if row[k] else None for k in ("user_id", "organisation_id", "expert_id")}}


def credential_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "person_id": str(row["person_id"]), "kind": row["kind"], "value": row["value"],
            "valid_from": iso(row["valid_from"]), "valid_until": iso(row["valid_until"]),
            "revoked_at": iso(row["revoked_at"])}


async def add_person(deps: Deps, user: CurrentUser, data: Any) -> dict[str, Any]:
    """An admin adds a person who may carry badges and tags (logged; the policy reloads)."""
    body = body_object(data)
    name = text_field(body, "name", 200)
    role = body.get("role")
    if role not in ROLES:
        raise bad(f"role must be one of {', '.join(ROLES)}")
    refs = {k: uuid_field(body, k, required=False) for k in ("user_id", "organisation_id", "expert_id")}
    async with deps.pool.acquire() as conn, conn.transaction():
        try:
            row = await store.insert_person(conn, uuid.uuid4(), name, role, **refs)
        except asyncpg.ForeignKeyViolationError as exc:
            code, message = _PERSON_REFS.get(exc.constraint_name or "", ("unknown_reference", str(exc)))
            raise bad(message, code) from None
        except asyncpg.UniqueViolationError:
            raise AccessRefused("this user is another venue person already", code="user_has_person", status=409) from None
        await log.append_entry(conn, deps.platform_key, "venue.person_added",
                               {"person": str(row["id"]), "role": role, "by": str(user.id)})
        await policy_changed(conn, "person", person=str(row["id"]))
    await reload_here(deps)
    return {"person": person_json(row)}


async def list_people(deps: Deps, role: str | None, limit: int, offset: int) -> dict[str, Any]:
    if role is not None and role not in ROLES:
        raise bad(f"role must be one of {', '.join(ROLES)}")
    async with deps.pool.acquire() as conn:
        rows = await store.people_page(conn, role, limit, offset)
    return {"people": [person_json(r) for r in rows], "total": rows[0]["total"] if rows else 0}


async def get_person(deps: Deps, person_id: uuid.UUID) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        row = await store.person(conn, person_id)
        if row is None:
            raise AccessRefused(f"no venue person has id {person_id}", code="person_not_found", status=404)
        credentials = await store.credentials_of(conn, person_id)
    policy = deps.engine.parts.get("policy")
    here = policy.memory.inside.get(person_id) if policy else None
    return {"person": person_json(row), "credentials": [credential_json(c) for c in credentials],
            "zone": None if here is None else {"floor": here[0][0], "zone_id": here[0][1], "since": iso(here[1])}}


async def add_credential(deps: Deps, user: CurrentUser, person_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Bind a badge or tag value to a person for [valid_from, valid_until); 409 credential_in_use
    when the value is bound to someone else for any part of that period."""
    body = body_object(data)
    kind = body.get("kind")
    if kind not in ("badge", "tag"):
        raise bad("kind must be badge or tag")
    value = text_field(body, "value", 128, pattern=CREDENTIAL)
    now = utc_now()
    valid_from = time_field(body, "valid_from", now)
    valid_until = time_field(body, "valid_until")
    if valid_until is not None and valid_until <= valid_from:
        raise bad("valid_until must come after valid_from")
    async with deps.pool.acquire() as conn, conn.transaction():
        if await store.person(conn, person_id) is None:
            raise AccessRefused(f"no venue person has id {person_id}", code="person_not_found", status=404)
        await store.lock_credential_value(conn, kind, value)
        clash = await store.overlapping_binding(conn, kind, value, person_id, valid_from, valid_until)
        if clash is not None:
            raise AccessRefused(f"this {kind} is bound to another person for part of that period",
                                code="credential_in_use", status=409,
                                detail={"credential": clash["id"], "person_id": str(clash["person_id"])})
        row = await store.insert_credential(conn, person_id, kind, value, valid_from, valid_until)
        await log.append_entry(conn, deps.platform_key, "venue.credential_bound", {
            "credential": row["id"], "person": str(person_id), "kind": kind, "valid_from": iso(valid_from),
            "valid_until": iso(valid_until), "by": str(user.id)})
        await policy_changed(conn, "credential", person=str(person_id))
    await reload_here(deps)
    return {"credential": credential_json(row)}


async def list_credentials(deps: Deps, person_id: uuid.UUID) -> dict[str, Any]:
    got = await get_person(deps, person_id)
    return {"credentials": got["credentials"]}


async def revoke_credential(deps: Deps, user: CurrentUser, credential_id: int) -> dict[str, Any]:
    async with deps.pool.acquire() as conn, conn.transaction():
        row = await store.revoke_credential(conn, credential_id, utc_now())
        if row is None:
            exists = await store.credential(conn, credential_id)
            if exists is None:
                raise AccessRefused(f"no credential has id {credential_id}", code="credential_not_found", status=404)
            raise AccessRefused("this credential is revoked already", code="already_revoked", status=409)
        await log.append_entry(conn, deps.platform_key, "venue.credential_revoked",
                               {"credential": credential_id, "person": str(row["person_id"]), "by": str(user.id)})
        await policy_changed(conn, "credential", person=str(row["person_id"]))
    await reload_here(deps)
    return {"credential": credential_json(row)}


# ---------------------------------------------------------------------------- rules


def rule_json(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": rule["id"], "person_id": str(rule["person_id"]) if rule["person_id"] else None, "role": rule["role"],
            "floor": rule["floor"], "zone_id": rule["zone_id"], "zone_kind": rule["zone_kind"],
            "valid_from": iso(rule["valid_from"]), "valid_until": iso(rule["valid_until"]),
            "enter_within_seconds": rule["enter_within_seconds"], "no_reentry": rule["no_reentry"],
            "session_id": str(rule["session_id"]) if rule["session_id"] else None,
            "revoked_at": iso(rule.get("revoked_at")), "source": "session" if rule["session_id"] else "manual"}


def _derived_json(rule: AccessRule) -> dict[str, Any]:
    fields = {"id": None, "person_id": rule.person, "role": None, "floor": rule.floor, "zone_id": rule.zone_id,
              "zone_kind": None, "valid_from": rule.valid_from, "valid_until": rule.valid_until,
              "enter_within_seconds": rule.enter_within_seconds, "no_reentry": rule.no_reentry,
              "session_id": rule.session_id}
    return rule_json(fields)


async def add_rule(deps: Deps, user: CurrentUser, data: Any) -> dict[str, Any]:
    """A person or a role may enter a zone (by id on a floor, or by kind) in a window (logged)."""
    body = body_object(data)
    person_id = uuid_field(body, "person_id", required=False)
    role = body.get("role")
    if (person_id is None) == (role is None):
        raise bad("name either a person_id or a role")
    if role is not None and role not in ROLES:
        raise bad(f"role must be one of {', '.join(ROLES)}")
    zone_id = text_field(body, "zone_id", 100, required=False)
    zone_kind = body.get("zone_kind")
    if (zone_id is None) == (zone_kind is None):
        raise bad("name either a zone_id (with its floor) or a zone_kind")
    if zone_kind is not None and zone_kind not in ZONE_KINDS:
        raise bad(f"zone_kind must be one of {', '.join(ZONE_KINDS)}")
    floor_code = text_field(body, "floor", 40, required=zone_id is not None)
    valid_from = time_field(body, "valid_from", utc_now())
    valid_until = time_field(body, "valid_until")
    if valid_until is not None and valid_until <= valid_from:
        raise bad("valid_until must come after valid_from")
    within = body.get("enter_within_seconds")
    if within is not None and (isinstance(within, bool) or not isinstance(within, int) or not 1 <= within <= 86_400):
        raise bad("enter_within_seconds must be a whole number from 1 to 86400")
    no_reentry = body.get("no_reentry", False)
    if not isinstance(no_reentry, bool):
        raise bad("no_reentry must be true or false")
    async with deps.pool.acquire() as conn, conn.transaction():
        if person_id is not None and await store.person(conn, person_id) is None:
            raise bad(f"no venue person has id {person_id}", "unknown_person")
        floor = None
        if floor_code is not None:
            floor = await store.floor_id(conn, floor_code)
            if floor is None:
                raise bad(f"no floor has code {floor_code!r}", "unknown_floor")
            if zone_id is not None and not await store.zone_exists(conn, floor, zone_id):
                raise bad(f"floor {floor_code} has no zone {zone_id!r}", "unknown_zone")
        rule_id = await store.insert_rule(conn, person_id=person_id, role=role, floor=floor, zone_id=zone_id,
                                          zone_kind=zone_kind, valid_from=valid_from, valid_until=valid_until,
                                          enter_within_seconds=within, no_reentry=no_reentry, created_by=user.id)
        row = await store.rule(conn, rule_id)
        await log.append_entry(conn, deps.platform_key, "venue.rule_added", {**rule_json(row), "by": str(user.id)})
        await policy_changed(conn, "rule", rule=rule_id)
    await reload_here(deps)
    return {"rule": rule_json(row)}


async def list_rules(deps: Deps, person_id: uuid.UUID | None, with_revoked: bool, limit: int,
                     offset: int) -> dict[str, Any]:
    """Stored rules, and the rules the workflow gives now (from the loaded policy)."""
    async with deps.pool.acquire() as conn:
        rows = await store.rules_page(conn, person_id, with_revoked, limit, offset)
    policy = deps.engine.parts.get("policy")
    derived = [] if policy is None else [
        _derived_json(r) for rules in policy.rules_by_person.values() for r in rules
        if r.session_id is not None and person_id in (None, r.person)]
    return {"rules": [rule_json(r) for r in rows], "total": rows[0]["total"] if rows else 0, "derived": derived}


async def revoke_rule(deps: Deps, user: CurrentUser, rule_id: int) -> dict[str, Any]:
    async with deps.pool.acquire() as conn, conn.transaction():
        if not await store.revoke_rule(conn, rule_id, utc_now()):
            if await store.rule(conn, rule_id) is None:
                raise AccessRefused(f"no access rule has id {rule_id}", code="rule_not_found", status=404)
            raise AccessRefused("this rule is revoked already", code="already_revoked", status=409)
        await log.append_entry(conn, deps.platform_key, "venue.rule_revoked", {"rule": rule_id, "by": str(user.id)})
        await policy_changed(conn, "rule", rule=rule_id)
        row = await store.rule(conn, rule_id)
    await reload_here(deps)
    return {"rule": rule_json(row)}


# ---------------------------------------------------------------------------- 代理码


def _today(deps: Deps, now: datetime) -> date:
    return now.astimezone(formatting.display_zone(deps.settings.display_timezone)).date()


async def _tender_for(conn: asyncpg.Connection, user: CurrentUser, tender_id: uuid.UUID) -> asyncpg.Record:
    tender = await store.tender(conn, tender_id)
    if tender is None:
        raise AccessRefused(f"no tender has id {tender_id}", code="tender_not_found", status=404)
    if "admin" not in user.roles and tender["agent_id"] != user.id:
        raise AccessRefused("only the tender's agent or an admin", code="not_your_tender", status=403)
    return tender


def _own_staff(user: CurrentUser, person: Mapping[str, Any]) -> bool:
    """An agent issues codes for their own agency's staff (or themself); an admin for anyone."""
    if "admin" in user.roles or person["user_id"] == user.id:
        return True
    return user.organisation_id is not None and person["organisation_id"] == user.organisation_id


async def issue_agent_code(deps: Deps, user: CurrentUser, data: Any) -> dict[str, Any]:
    """A per-project code for an agent's staff member on one day; the code and its QR symbol
    (`qr_svg`) are in this answer only (its SHA-256 is stored and logged)."""
    body = body_object(data)
    tender_id = uuid_field(body, "tender_id")
    person_id = uuid_field(body, "person_id")
    raw_day = body.get("valid_on")
    try:
        valid_on = date.fromisoformat(raw_day) if isinstance(raw_day, str) else None
    except ValueError:
        valid_on = None
    if valid_on is None:
        raise bad("valid_on must be a date, YYYY-MM-DD")
    now = utc_now()
    if valid_on < _today(deps, now):
        raise bad("valid_on is a day that has passed")
    code = agent_codes.make_code(secrets.token_bytes(agent_codes.CODE_BYTES))
    code_hash = agent_codes.digest(code)
    code_id = uuid.uuid4()
    async with deps.pool.acquire() as conn, conn.transaction():
        tender = await _tender_for(conn, user, tender_id)
        person = await store.person(conn, person_id)
        if person is None or person["role"] != "agent":
            raise bad("person_id must be a venue person whose role is agent", "not_an_agent")
        if not _own_staff(user, person):
            raise AccessRefused("person_id is not one of your agency's staff (a venue person of your organisation)",
                                code="not_your_staff", status=403)
        await store.insert_agent_code(conn, code_id, tender_id, person_id, code_hash, valid_on, user.id, now)
        await log.append_entry(conn, deps.platform_key, "venue.agent_code_issued", {
            "code": str(code_id), "tender": str(tender_id), "person": str(person_id), "valid_on": valid_on.isoformat(),
            "code_sha256": code_hash.hex(), "by": str(user.id)})
    payload = agent_codes.qr_payload(code)
    return {"id": str(code_id), "code": code, "qr_payload": payload, "qr_svg": agent_codes.qr_svg(payload),
            "valid_on": valid_on.isoformat(), "tender": {"id": str(tender_id), "code": tender["code"],
                                                          "name": tender["name"]},
            "person": {"id": str(person_id), "name": person["name"]}}


PAGE_CHOICES = 500  # tenders and agent staff offered on the page; the API takes any id


async def agent_codes_page(deps: Deps, user: CurrentUser) -> dict[str, Any]:
    """What the /venue/agent-codes page offers: the tenders the user may issue codes for (an
    agent's own; an admin's, every tender), the staff they may issue them to (an agent's own
    agency's venue people of role agent; an admin's, all of them), and today."""
    admin = "admin" in user.roles
    async with deps.pool.acquire() as conn:
        tenders = await store.tenders_for_codes(conn, None if admin else user.id, PAGE_CHOICES)
        staff = (await store.people_page(conn, "agent", PAGE_CHOICES, 0) if admin
                 else await store.agency_staff(conn, user.organisation_id, user.id, PAGE_CHOICES))
    return {"tenders": [{"id": str(t["id"]), "code": t["code"], "name": t["name"]} for t in tenders],
            "staff": [{"id": str(p["id"]), "name": p["name"]} for p in staff],
            "today": _today(deps, utc_now()).isoformat()}


async def list_agent_codes(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        await _tender_for(conn, user, tender_id)
        rows = await store.agent_codes_of_tender(conn, tender_id)
    return {"codes": [{"id": str(r["id"]), "person": {"id": str(r["person_id"]), "name": r["person_name"]},
                       "valid_on": r["valid_on"].isoformat(), "created_at": iso(r["created_at"]),
                       "accepted_scans": r["accepted_scans"]} for r in rows]}


async def scan_agent_code(deps: Deps, user: CurrentUser, data: Any) -> dict[str, Any]:
    """Centre staff scan a code at the entrance: accepted, or refused with a reason
    (agent_codes.SCAN_REASONS); every scan is stored and logged, refused ones too."""
    body = body_object(data)
    text = text_field(body, "code", 100)
    for_tender = uuid_field(body, "tender_id", required=False)
    now = utc_now()
    code = agent_codes.parse(text)
    async with deps.pool.acquire() as conn, conn.transaction():
        if for_tender is not None and await store.tender(conn, for_tender) is None:
            raise AccessRefused(f"no tender has id {for_tender}", code="tender_not_found", status=404)
        found = await store.agent_code_by_hash(conn, agent_codes.digest(code)) if code else None
        if found is None:
            reason = "unknown_code"
        else:
            reason = agent_codes.scan_reason(found["tender_id"], found["valid_on"], _today(deps, now), for_tender)
        accepted = reason == "accepted"
        tender_id = for_tender or (found["tender_id"] if found is not None else None)
        scan_id = await store.insert_scan(conn, found["id"] if found else None, tender_id, user.id, now, accepted, reason)
        await log.append_entry(conn, deps.platform_key, "venue.agent_code_scanned", {
            "scan": scan_id, "code": str(found["id"]) if found else None, "tender": str(tender_id) if tender_id else None,
            "accepted": accepted, "reason": reason, "by": str(user.id)})
    answer: dict[str, Any] = {"accepted": accepted, "reason": reason, "scan_id": scan_id}
    if found is not None:
        answer["tender"] = {"id": str(found["tender_id"]), "code": found["tender_code"], "name": found["tender_name"]}
        answer["person"] = {"id": str(found["person_id"]), "name": found["person_name"]}
        answer["valid_on"] = found["valid_on"].isoformat()
    return answer
