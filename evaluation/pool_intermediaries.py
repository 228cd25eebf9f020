"""Intermediary pool (中介超市) use cases: add, edit, status, list, and contacts for the draw.

The same pattern as the expert pool (evaluation.pool_service), smaller: agencies with service
categories from the specialty tree's intermediary letter. Credit is pool_service.record_credit
with subject "intermediary".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Sequence

import asyncpg

from evaluation import pool_store
from evaluation.pool import (
    REGION_NAMES, PoolError, below_threshold, not_found, parse_intermediary, parse_intermediary_changes,
    parse_status_change,
)
from evaluation.pool_service import Actor, Deps, audit, check_specialties_exist, constraint_error, iso, search_filters
from tenderhall import log

EDITABLE = ("name", "credit_code", "region", "contact_name", "phone", "email", "status")


@dataclass(frozen=True)
class IntermediaryContact:
    """How to reach a drawn intermediary."""

    intermediary_id: uuid.UUID
    name: str
    contact_name: str
    phone: str
    email: str | None


def intermediary_json(row: asyncpg.Record, names: dict[str, str], threshold: int) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "name": row["name"], "credit_code": row["credit_code"], "region": row["region"],
        "region_name": REGION_NAMES.get(row["region"]), "contact_name": row["contact_name"], "phone": row["phone"],
        "email": row["email"], "categories": list(row["categories"]),
        "category_names": {c: names.get(c, c) for c in row["categories"]}, "status": row["status"],
        "credit_score": row["credit_score"], "below_threshold": below_threshold(row["credit_score"], threshold),
        "version": row["version"], "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
    }


async def _view(conn: asyncpg.Connection, deps: Deps, intermediary_id: uuid.UUID) -> dict[str, Any]:
    row = await pool_store.intermediary(conn, intermediary_id)
    if row is None:
        raise not_found("intermediary")
    names = await pool_store.specialty_names(conn, row["categories"])
    return intermediary_json(row, names, deps.settings.credit_threshold)


async def get_intermediary(deps: Deps, intermediary_id: uuid.UUID) -> dict[str, Any]:
    """One intermediary; PoolError 404 (intermediary_not_found)."""
    async with deps.pool.acquire() as conn:
        return await _view(conn, deps, intermediary_id)


async def list_intermediaries(deps: Deps, params: dict[str, str], page: int, per_page: int) -> dict[str, Any]:
    """A page matching ?q= (name, or an exact credit code), ?region=, ?category= (prefixes), ?status=."""
    filters = search_filters({**params, "specialty": params.get("category", "")})
    async with deps.pool.acquire() as conn:
        rows = await pool_store.list_intermediaries(conn, filters, per_page, (page - 1) * per_page)
        total = await pool_store.count_intermediaries(conn, filters)
        names = await pool_store.specialty_names(conn, {c for r in rows for c in r["categories"]})
    threshold = deps.settings.credit_threshold
    return {"intermediaries": [intermediary_json(r, names, threshold) for r in rows], "page": page,
            "per_page": per_page, "total": total, "pages": max(1, -(-total // per_page))}


async def add_intermediary(deps: Deps, actor: Actor, data: Any) -> dict[str, Any]:
    """Add an agency. PoolInvalid (422), 422 unknown_specialty, 409 duplicate_credit_code."""
    agency = parse_intermediary(data)
    intermediary_id = uuid.uuid4()
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            await check_specialties_exist(conn, agency.categories, "categories")
            values = (intermediary_id, agency.name, agency.credit_code, agency.region, agency.contact_name,
                      agency.phone, agency.email, agency.status)
            try:
                await pool_store.insert_intermediary(conn, values, agency.categories)
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise constraint_error(exc) from None
            await log.append_entry(conn, deps.signer, "intermediary.added",
                                   {"intermediary_id": str(intermediary_id), "credit_code": agency.credit_code,
                                    "categories": list(agency.categories), "version": 1})
            await audit(conn, actor, "intermediary.added", f"intermediary:{intermediary_id}",
                        {"name": agency.name, "credit_code": agency.credit_code})
            return await _view(conn, deps, intermediary_id)


async def edit_intermediary(deps: Deps, actor: Actor, intermediary_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Change fields seen at `data["version"]`; 409 stale_version, the refusals of add_intermediary, 404."""
    version, changes = parse_intermediary_changes(data)
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            locked = await pool_store.lock_intermediary(conn, intermediary_id)
            if locked is None:
                raise not_found("intermediary")
            if locked["version"] != version:
                raise PoolError(409, "stale_version", "someone changed this intermediary since you loaded it; "
                                "reload and edit again", "version")
            current = await pool_store.intermediary(conn, intermediary_id)
            if "categories" in changes:
                await check_specialties_exist(conn, changes["categories"], "categories")
            row = {name: changes.get(name, current[name]) for name in EDITABLE}
            changed = sorted(n for n in EDITABLE if row[n] != current[n])
            try:
                if "categories" in changes and tuple(changes["categories"]) != tuple(current["categories"]):
                    await pool_store.replace_categories(conn, intermediary_id, changes["categories"])
                    changed.append("categories")
                if not changed:
                    return await _view(conn, deps, intermediary_id)
                new_version = await pool_store.update_intermediary(conn, intermediary_id, version, row)
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise constraint_error(exc) from None
            await log.append_entry(conn, deps.signer, "intermediary.updated",
                                   {"intermediary_id": str(intermediary_id), "version": new_version,
                                    "fields": sorted(changed)})
            await audit(conn, actor, "intermediary.updated", f"intermediary:{intermediary_id}",
                        {"fields": sorted(changed), "version": new_version})
            return await _view(conn, deps, intermediary_id)


async def change_status(deps: Deps, actor: Actor, intermediary_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Suspend, reactivate or retire an agency: {"status", "version"?}."""
    status, version = parse_status_change(data)
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            locked = await pool_store.lock_intermediary(conn, intermediary_id)
            if locked is None:
                raise not_found("intermediary")
            if version is not None and locked["version"] != version:
                raise PoolError(409, "stale_version", "someone changed this intermediary since you loaded it; reload")
            if locked["status"] != status:
                current = dict(await pool_store.intermediary(conn, intermediary_id))
                new_version = await pool_store.update_intermediary(conn, intermediary_id, locked["version"],
                                                                   {**current, "status": status})
                await log.append_entry(conn, deps.signer, "intermediary.status",
                                       {"intermediary_id": str(intermediary_id), "status": status,
                                        "version": new_version})
                await audit(conn, actor, "intermediary.status", f"intermediary:{intermediary_id}",
                            {"from": locked["status"], "to": status})
            return await _view(conn, deps, intermediary_id)


async def get_intermediary_contacts(conn: asyncpg.Connection,
                                    ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, IntermediaryContact]:
    """Name, contact person, phone and e-mail of each known intermediary among `ids`."""
    return {r["id"]: IntermediaryContact(r["id"], r["name"], r["contact_name"], r["phone"], r["email"])
            for r in await pool_store.intermediary_contacts(conn, ids)}


async def get_intermediary_contact(conn: asyncpg.Connection, intermediary_id: uuid.UUID) -> IntermediaryContact:
    """One agency's contact; PoolError 404 (intermediary_not_found)."""
    found = await get_intermediary_contacts(conn, [intermediary_id])
    if intermediary_id not in found:
        raise not_found("intermediary")
    return found[intermediary_id]
