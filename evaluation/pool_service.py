"""Expert pool use cases: add, edit, status, leave, avoidances, credit, and what the draw may ask.

Each use case opens its transaction, applies evaluation.pool's rules, writes through
pool_store, appends to the public transparency log (ids, counts, scores and SHA-256 digests
only: never a name, ID number, phone or free-text reason) and records the internal audit
(which may hold details) in that same transaction. ID numbers are sealed with the platform
data key; the pool keeps a blind index for uniqueness and a masked form for display.
The bulk CSV import is evaluation.pool_import; intermediaries are evaluation.pool_intermediaries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Sequence

import asyncpg

from evaluation import id_number, pool_store
from evaluation.pool import (
    REGION_NAMES, AvoidanceInput, ExpertInput, PoolError, apply_credit, below_threshold, like_prefix,
    not_found, parse_avoidance, parse_credit, parse_days, parse_expert, parse_expert_changes, parse_status_change,
    sha256_hex,
)
from evaluation.specialty_tree import TREE, parent_of
from tenderhall import accounts, log
from tenderhall.accounts import CurrentUser
from tenderhall.data_key import DataKey
from tenderhall.platform_key import PlatformKey
from tenderhall.settings import Settings

ID_PURPOSE = "expert-id-number"
MAX_AVOIDANCES = 200


@dataclass(frozen=True)
class Deps:
    """What the pool's use cases need from the lifespan state."""

    pool: asyncpg.Pool
    settings: Settings
    signer: PlatformKey
    data_key: DataKey


@dataclass(frozen=True)
class Actor:
    """Who acts, and from where (for the audit)."""

    user: CurrentUser
    ip: str


@dataclass(frozen=True)
class ExpertContact:
    """How to reach a drawn expert (for notifications; never in the public record)."""

    expert_id: uuid.UUID
    name: str
    phone: str
    email: str | None
    user_id: uuid.UUID | None


def today() -> date:
    return datetime.now(timezone.utc).date()


def iso(moment: datetime | date | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# ---------------------------------------------------------------------------- specialty tree


async def ensure_specialty_tree(conn: asyncpg.Connection) -> None:
    """Insert the default tree (evaluation.specialty_tree) where codes are missing; idempotent.

    Keeps any code already there (with its name), so a centre's own names and additions stay.
    """
    await pool_store.insert_specialties(conn, [(code, name, parent_of(code)) for code, name in TREE])


async def specialty_tree(deps: Deps) -> list[dict[str, Any]]:
    """Every code of the tree, sorted: {"code", "name", "parent"}."""
    async with deps.pool.acquire() as conn:
        rows = await pool_store.specialties(conn)
    return [{"code": r["code"], "name": r["name"], "parent": r["parent"]} for r in rows]


async def check_specialties_exist(conn: asyncpg.Connection, codes: Sequence[str], field: str = "specialties") -> None:
    """PoolError 422 (unknown_specialty) naming the codes the tree does not hold."""
    unknown = await pool_store.unknown_specialties(conn, codes)
    if unknown:
        raise PoolError(422, "unknown_specialty", f"unknown specialty code(s): {', '.join(unknown)}", field)


# ---------------------------------------------------------------------------- errors


CONFLICTS = {
    "experts_id_number_key": (409, "duplicate_id_number", "an expert with this ID number is already in the pool"),
    "experts_user_key": (409, "user_already_linked", "this login is already linked to another expert"),
    "intermediaries_credit_code_key": (409, "duplicate_credit_code",
                                       "an intermediary with this credit code is already in the pool"),
    "expert_specialties_pkey": (422, "invalid_field", "a specialty is named twice"),
    "expert_avoidances_user_id_fkey": (422, "unknown_user", "no user has this id"),
    "experts_user_id_fkey": (422, "unknown_user", "no user has this id"),
}


def constraint_error(exc: asyncpg.IntegrityConstraintViolationError) -> PoolError:
    """A named constraint violation as the domain error people understand."""
    name = getattr(exc, "constraint_name", None) or ""
    if name in CONFLICTS:
        status, code, message = CONFLICTS[name]
        return PoolError(status, code, message)
    if isinstance(exc, asyncpg.CheckViolationError):
        return PoolError(422, "invalid_field", f"a value is out of range ({name})")
    raise exc


async def audit(conn: asyncpg.Connection, actor: Actor, action: str, subject: str, detail: dict[str, Any]) -> None:
    await accounts.record_audit(conn, action, actor_id=actor.user.id, subject=subject, detail=detail, ip=actor.ip)


# ---------------------------------------------------------------------------- views


def expert_json(row: asyncpg.Record, names: dict[str, str], threshold: int) -> dict[str, Any]:
    """An expert as the API and pages show it: the ID number masked, never in clear."""
    return {
        "id": str(row["id"]), "name": row["name"], "id_number_masked": row["id_number_masked"],
        "phone": row["phone"], "email": row["email"], "employer_name": row["employer_name"],
        "employer_code": row["employer_code"], "region": row["region"],
        "region_name": REGION_NAMES.get(row["region"]), "title": row["title"],
        "specialties": list(row["specialties"]), "specialty_names": {c: names.get(c, c) for c in row["specialties"]},
        "status": row["status"], "credit_score": row["credit_score"],
        "below_threshold": below_threshold(row["credit_score"], threshold),
        "user_id": str(row["user_id"]) if row["user_id"] else None, "username": row["username"],
        "version": row["version"], "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
    }


def avoidance_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": str(row["id"]), "organisation_code": row["organisation_code"],
            "organisation_name": row["organisation_name"],
            "user_id": str(row["user_id"]) if row["user_id"] else None, "username": row["username"],
            "display_name": row["display_name"], "note": row["note"], "declared_at": iso(row["declared_at"])}


async def _expert_view(conn: asyncpg.Connection, deps: Deps, row: asyncpg.Record, *, full: bool) -> dict[str, Any]:
    names = await pool_store.specialty_names(conn, row["specialties"])
    view = expert_json(row, names, deps.settings.credit_threshold)
    if full:
        view["leave"] = [d.isoformat() for d in await pool_store.leave(conn, row["id"])]
        view["avoidances"] = [avoidance_json(a) for a in await pool_store.avoidances(conn, row["id"])]
    return view


async def get_expert(deps: Deps, expert_id: uuid.UUID) -> dict[str, Any]:
    """One expert with leave days and avoidances; PoolError 404 (expert_not_found)."""
    async with deps.pool.acquire() as conn:
        row = await pool_store.expert(conn, expert_id)
        if row is None:
            raise not_found("expert")
        return await _expert_view(conn, deps, row, full=True)


async def own_expert_id(deps: Deps, user: CurrentUser) -> uuid.UUID:
    """The expert record linked to an expert's login; PoolError 404 when an admin has not linked one."""
    async with deps.pool.acquire() as conn:
        row = await pool_store.expert_of_user(conn, user.id)
    if row is None:
        raise PoolError(404, "expert_not_found", "your login is not linked to an expert record; ask the centre")
    return row["id"]


def search_filters(params: dict[str, str]) -> tuple[str | None, ...]:
    """(q, region prefix, specialty prefix, status) from query parameters, LIKE-escaped; 400 when malformed."""
    q = (params.get("q") or "").strip()[:50] or None
    region = (params.get("region") or "").strip() or None
    specialty = (params.get("specialty") or "").strip().upper() or None
    status = (params.get("status") or "").strip() or None
    if region is not None and not (region.isascii() and region.isdigit() and len(region) <= 6):
        raise PoolError(400, "invalid_query", "region is a prefix of a six-digit division code")
    if specialty is not None and not (specialty.isascii() and specialty.isalnum() and len(specialty) <= 9):
        raise PoolError(400, "invalid_query", "specialty is a prefix of a specialty code")
    if status is not None and status not in ("active", "suspended", "retired"):
        raise PoolError(400, "invalid_query", "status is active, suspended or retired")
    return (like_prefix(q) if q else None, region, specialty, status)


async def list_experts(deps: Deps, params: dict[str, str], page: int, per_page: int) -> dict[str, Any]:
    """A page of experts matching ?q= (name or employer), ?region=, ?specialty= (prefixes), ?status=."""
    filters = search_filters(params)
    async with deps.pool.acquire() as conn:
        rows = await pool_store.list_experts(conn, filters, per_page, (page - 1) * per_page)
        total = await pool_store.count_experts(conn, filters)
        names = await pool_store.specialty_names(conn, {c for r in rows for c in r["specialties"]})
    threshold = deps.settings.credit_threshold
    return {"experts": [expert_json(r, names, threshold) for r in rows], "page": page, "per_page": per_page,
            "total": total, "pages": max(1, -(-total // per_page))}


# ---------------------------------------------------------------------------- add and edit


def seal_id_number(data_key: DataKey, expert_id: uuid.UUID, number: str) -> tuple[bytes, bytes, str]:
    """(sealed, blind index, masked) of a validated ID number, bound to the expert's id."""
    raw = number.encode()
    return (data_key.seal(ID_PURPOSE, expert_id.bytes, raw), data_key.blind_index(ID_PURPOSE, raw),
            id_number.masked(number))


async def check_login(conn: asyncpg.Connection, user_id: uuid.UUID | None) -> None:
    """A linked login must exist and hold the expert role; PoolError 422 otherwise."""
    if user_id is None:
        return
    roles = await pool_store.user_roles(conn, user_id)
    if roles is None:
        raise PoolError(422, "unknown_user", "no user has this id", "user_id")
    if "expert" not in roles:
        raise PoolError(422, "user_not_expert", "only a login with the expert role can be linked", "user_id")


async def user_id_for(deps: Deps, username: str | None) -> uuid.UUID | None:
    """The id of the login named `username` (forms name logins); PoolError 422 when there is none."""
    if not username:
        return None
    async with deps.pool.acquire() as conn:
        user_id = await pool_store.user_id_by_name(conn, username.strip())
    if user_id is None:
        raise PoolError(422, "unknown_user", "no login has this username", "user_id")
    return user_id


async def add_expert(deps: Deps, actor: Actor, data: Any) -> dict[str, Any]:
    """Add one expert. PoolInvalid (422) naming bad fields; 422 unknown_specialty / unknown_user /
    user_not_expert; 409 duplicate_id_number or user_already_linked."""
    expert = parse_expert(data, today=today())
    expert_id = uuid.uuid4()
    sealed, index, masked = seal_id_number(deps.data_key, expert_id, expert.id_number)
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            await check_specialties_exist(conn, expert.specialties)
            await check_login(conn, expert.user_id)
            if await pool_store.existing_indexes(conn, [index]):
                raise constraint_error_named("experts_id_number_key")
            try:
                await pool_store.insert_expert(conn, expert_values(expert_id, expert, sealed, index, masked),
                                               expert.specialties)
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise constraint_error(exc) from None
            await log.append_entry(conn, deps.signer, "expert.added", {"expert_id": str(expert_id), "version": 1})
            await audit(conn, actor, "expert.added", f"expert:{expert_id}",
                         {"name": expert.name, "region": expert.region, "specialties": list(expert.specialties)})
            return await _expert_view(conn, deps, await pool_store.expert(conn, expert_id), full=True)


def constraint_error_named(name: str) -> PoolError:
    status, code, message = CONFLICTS[name]
    return PoolError(status, code, message)


def expert_values(expert_id: uuid.UUID, e: ExpertInput, sealed: bytes, index: bytes, masked: str) -> tuple:
    """A row in pool_store.EXPERT_COLUMNS order."""
    return (expert_id, e.name, sealed, index, masked, e.phone, e.email, e.employer_name, e.employer_code, e.region,
            e.title, e.status, e.user_id)


EDITABLE = ("name", "phone", "email", "employer_name", "employer_code", "region", "title", "status", "user_id")


async def edit_expert(deps: Deps, actor: Actor, expert_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Change fields of an expert seen at `data["version"]`; 409 stale_version if someone changed it since.

    The same refusals as add_expert; a new ID number is validated, resealed and re-indexed.
    """
    version, changes = parse_expert_changes(data, today=today())
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            if await pool_store.lock_expert(conn, expert_id) is None:
                raise not_found("expert")
            current = await pool_store.expert(conn, expert_id)
            if current["version"] != version:
                raise PoolError(409, "stale_version", "someone changed this expert since you loaded it; reload and "
                                "edit again", "version")
            if "specialties" in changes:
                await check_specialties_exist(conn, changes["specialties"])
            if "user_id" in changes and changes["user_id"] != current["user_id"]:
                await check_login(conn, changes["user_id"])
            row = {name: changes.get(name, current[name]) for name in EDITABLE}
            changed = sorted(n for n in changes if n not in ("specialties", "id_number") and changes[n] != current[n])
            try:
                if "id_number" in changes:
                    sealed, index, masked = seal_id_number(deps.data_key, expert_id, changes["id_number"])
                    holder = await pool_store.expert_id_by_index(conn, index)
                    if holder is not None and holder != expert_id:
                        raise constraint_error_named("experts_id_number_key")
                    if holder is None:
                        await pool_store.update_id_number(conn, expert_id, sealed, index, masked)
                        changed.append("id_number")
                if "specialties" in changes and tuple(changes["specialties"]) != tuple(current["specialties"]):
                    await pool_store.replace_specialties(conn, expert_id, changes["specialties"])
                    changed.append("specialties")
                if not changed:  # nothing differs: no new version, nothing to log
                    return await _expert_view(conn, deps, current, full=True)
                new_version = await pool_store.update_expert(conn, expert_id, version, row)
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise constraint_error(exc) from None
            await log.append_entry(conn, deps.signer, "expert.updated",
                                   {"expert_id": str(expert_id), "version": new_version, "fields": sorted(changed)})
            await audit(conn, actor, "expert.updated", f"expert:{expert_id}",
                         {"fields": sorted(changed), "version": new_version})
            return await _expert_view(conn, deps, await pool_store.expert(conn, expert_id), full=True)


async def change_status(deps: Deps, actor: Actor, expert_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Suspend, reactivate or retire: {"status", "version"?}; 409 stale_version when a version is given and old."""
    status, version = parse_status_change(data)
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            locked = await pool_store.lock_expert(conn, expert_id)
            if locked is None:
                raise not_found("expert")
            if version is not None and locked["version"] != version:
                raise PoolError(409, "stale_version", "someone changed this expert since you loaded it; reload")
            if locked["status"] != status:
                new_version = await pool_store.set_status(conn, expert_id, status)
                await log.append_entry(conn, deps.signer, "expert.status",
                                       {"expert_id": str(expert_id), "status": status, "version": new_version})
                await audit(conn, actor, "expert.status", f"expert:{expert_id}",
                             {"from": locked["status"], "to": status})
            return await _expert_view(conn, deps, await pool_store.expert(conn, expert_id), full=True)


# ---------------------------------------------------------------------------- leave and avoidances


async def set_leave(deps: Deps, actor: Actor, expert_id: uuid.UUID, *, replace: Any = None,
                    add: Sequence[date] = (), remove: Sequence[date] = (), self_service: bool = False) -> list[str]:
    """Replace the leave calendar with the list `replace` (JSON days), or add/remove days; the days after.

    PoolInvalid (422) for a malformed list; 404 for an unknown expert.
    """
    days = parse_days(replace) if replace is not None else None
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            if await pool_store.lock_expert(conn, expert_id) is None:
                raise not_found("expert")
            before = await pool_store.leave(conn, expert_id)
            if days is not None:
                await pool_store.clear_leave(conn, expert_id)
                await pool_store.add_leave(conn, expert_id, days)
            else:
                await pool_store.add_leave(conn, expert_id, list(add))
                await pool_store.remove_leave(conn, expert_id, list(remove))
            after = await pool_store.leave(conn, expert_id)
            if after != before:
                # The calendar decides eligibility, so its change is public; which days, only the audit keeps.
                await log.append_entry(conn, deps.signer, "expert.leave",
                                       {"expert_id": str(expert_id), "days": len(after),
                                        "self_service": self_service})
                await audit(conn, actor, "expert.leave", f"expert:{expert_id}",
                             {"self_service": self_service, "added": sorted(str(d) for d in set(after) - set(before)),
                              "removed": sorted(str(d) for d in set(before) - set(after))})
    return [d.isoformat() for d in after]


async def add_avoidance(deps: Deps, actor: Actor, expert_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Declare a relation to avoid; PoolInvalid (422), 422 unknown_user, 409 too_many_avoidances, 404."""
    avoidance: AvoidanceInput = parse_avoidance(data)
    avoidance_id = uuid.uuid4()
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            if await pool_store.lock_expert(conn, expert_id) is None:
                raise not_found("expert")
            if avoidance.user_id is not None and await pool_store.user_roles(conn, avoidance.user_id) is None:
                raise PoolError(422, "unknown_user", "no user has this id", "user_id")
            if await pool_store.count_avoidances(conn, expert_id) >= MAX_AVOIDANCES:
                raise PoolError(409, "too_many_avoidances", f"at most {MAX_AVOIDANCES} declared relations")
            await pool_store.insert_avoidance(conn, avoidance_id, expert_id, avoidance.organisation_code,
                                              avoidance.user_id, avoidance.note)
            await log.append_entry(conn, deps.signer, "expert.avoidance",
                                   {"expert_id": str(expert_id), "avoidance_id": str(avoidance_id), "action": "added"})
            await audit(conn, actor, "expert.avoidance.added", f"expert:{expert_id}",
                         {"avoidance_id": str(avoidance_id), "organisation_code": avoidance.organisation_code,
                          "user_id": str(avoidance.user_id) if avoidance.user_id else None, "note": avoidance.note})
            rows = await pool_store.avoidances(conn, expert_id)
    return next(avoidance_json(r) for r in rows if r["id"] == avoidance_id)


async def remove_avoidance(deps: Deps, actor: Actor, expert_id: uuid.UUID, avoidance_id: uuid.UUID) -> None:
    """Withdraw a declared relation; PoolError 404 (avoidance_not_found) when the expert has no such one."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            if not await pool_store.delete_avoidance(conn, avoidance_id, expert_id):
                raise not_found("avoidance")
            await log.append_entry(conn, deps.signer, "expert.avoidance",
                                   {"expert_id": str(expert_id), "avoidance_id": str(avoidance_id),
                                    "action": "removed"})
            await audit(conn, actor, "expert.avoidance.removed", f"expert:{expert_id}",
                         {"avoidance_id": str(avoidance_id)})


# ---------------------------------------------------------------------------- credit


def credit_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "delta": row["delta"], "score_after": row["score_after"], "reason": row["reason"],
            "evidence": row["evidence"], "recorded_by": str(row["recorded_by"]),
            "recorded_by_name": row["recorded_by_name"], "recorded_at": iso(row["recorded_at"]),
            "log_index": row["log_index"]}


async def record_credit(deps: Deps, actor: Actor, subject: str, subject_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A deduction or commendation of an expert or intermediary (`subject`); the score is clamped to 0..200.

    Logged publicly as `<subject>.credit` with the delta, the score after and digests of the
    reason and evidence; audited with the text. PoolInvalid (422) or 404.
    """
    credit = parse_credit(data)
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            lock = pool_store.lock_expert if subject == "expert" else pool_store.lock_intermediary
            locked = await lock(conn, subject_id)
            if locked is None:
                raise not_found(subject)
            score = apply_credit(locked["credit_score"], credit.delta)
            await pool_store.set_score(conn, subject, subject_id, score)
            appended = await log.append_entry(conn, deps.signer, f"{subject}.credit", {
                f"{subject}_id": str(subject_id), "delta": credit.delta, "score_after": score,
                "reason_sha256": sha256_hex(credit.reason), "evidence_sha256": sha256_hex(credit.evidence)})
            event = await pool_store.insert_credit(conn, subject, subject_id, credit.delta, score, credit.reason,
                                                   credit.evidence, actor.user.id, appended.index)
            await audit(conn, actor, f"{subject}.credit", f"{subject}:{subject_id}",
                         {"event_id": event["id"], "delta": credit.delta, "score_before": locked["credit_score"],
                          "score_after": score, "reason": credit.reason, "evidence": credit.evidence})
    return {"id": event["id"], "delta": credit.delta, "score_after": score, "reason": credit.reason,
            "evidence": credit.evidence, "recorded_at": iso(event["recorded_at"]), "log_index": appended.index,
            "below_threshold": below_threshold(score, deps.settings.credit_threshold)}


async def credit_history(deps: Deps, subject: str, subject_id: uuid.UUID, page: int, per_page: int) -> dict[str, Any]:
    """The newest-first credit events of an expert or intermediary, a page at a time; 404 when unknown."""
    async with deps.pool.acquire() as conn:
        row = await (pool_store.expert(conn, subject_id) if subject == "expert"
                     else pool_store.intermediary(conn, subject_id))
        if row is None:
            raise not_found(subject)
        events = await pool_store.credit_events(conn, subject, subject_id, per_page, (page - 1) * per_page)
        total = await pool_store.count_credit_events(conn, subject, subject_id)
    return {"subject": subject, "id": str(subject_id), "name": row["name"], "credit_score": row["credit_score"],
            "threshold": deps.settings.credit_threshold,
            "below_threshold": below_threshold(row["credit_score"], deps.settings.credit_threshold),
            "events": [credit_json(e) for e in events], "page": page, "per_page": per_page, "total": total,
            "pages": max(1, -(-total // per_page))}


# ---------------------------------------------------------------------------- for the draw


async def get_expert_contacts(conn: asyncpg.Connection, expert_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ExpertContact]:
    """Name, phone, e-mail and linked login of each known expert among `expert_ids` (unknown ids are absent)."""
    return {r["id"]: ExpertContact(r["id"], r["name"], r["phone"], r["email"], r["user_id"])
            for r in await pool_store.contacts(conn, expert_ids)}


async def get_expert_contact(conn: asyncpg.Connection, expert_id: uuid.UUID) -> ExpertContact:
    """One expert's contact; PoolError 404 (expert_not_found) when there is no such expert."""
    found = await get_expert_contacts(conn, [expert_id])
    if expert_id not in found:
        raise not_found("expert")
    return found[expert_id]

