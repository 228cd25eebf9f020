"""Trading use cases for tenders (create, publish, change, read), and what every use case shares.

Each use case opens its transaction, applies the rules of trading.tenders, writes through
trading.store, appends to the transparency log and emits its events in that same
transaction. The server clock is the database's (`clock_timestamp()`), one clock for every
instance. Bid submission is trading.submission, which uses Deps, server_now, topic and
constraint_error from here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from tenderhall import accounts, bus, log
from tenderhall.accounts import CurrentUser
from tenderhall.canonical import b64url
from tenderhall.platform_key import PlatformKey
from tenderhall.settings import Settings
from trading import store, uploads
from trading.tenders import (
    EVALUATION_METHODS, NotFound, StateConflict, TenderInvalid, TradingError, check_before_deadline,
    check_publishable, iso, parse_change, parse_tender,
)


@dataclass(frozen=True)
class Deps:
    """What the use cases need from the app's lifespan state."""

    pool: asyncpg.Pool
    settings: Settings
    signer: PlatformKey
    registry: uploads.UploadRegistry


async def server_now(conn: asyncpg.Connection) -> datetime:
    # clock_timestamp(), not now(): now() is frozen at the start of the transaction.
    return await conn.fetchval("SELECT clock_timestamp()")


def topic(tender_id: uuid.UUID) -> str:
    """The bus topic a tender's events go to."""
    return f"tender:{tender_id}"


_CHECK_MESSAGES = {
    "tenders_budget_check": ("budget", "budget must be greater than 0"),
    "tenders_control_price_check": ("control_price", "control_price must be > 0 and not above the budget"),
    "tenders_decryption_minutes_check": ("decryption_minutes", "decryption_minutes must be between 5 and 240"),
    "tenders_rule_threshold_check": ("threshold", "threshold does not fit the decryption rule"),
    "tenders_evaluation_method_check": ("evaluation_method", "unknown evaluation method"),
    "lots_code_check": ("lots", "a lot code is 1 to 32 letters, digits, '_' or '-'"),
    "lots_budget_check": ("lots", "a lot budget must be greater than 0"),
}


def constraint_error(exc: asyncpg.IntegrityConstraintViolationError) -> TradingError:
    """Turn a named constraint violation into the domain error people understand."""
    name = getattr(exc, "constraint_name", None) or ""
    if name in _CHECK_MESSAGES:
        field_name, message = _CHECK_MESSAGES[name]
        return TenderInvalid(message, field=field_name)
    conflicts = {
        "tenders_code_key": ("duplicate_code", "a tender with this code already exists"),
        "uploads_upload_id_key": ("duplicate_upload", "an upload with this upload_id already exists"),
        "uploads_manifest_sha256_key": ("replayed_manifest", "this manifest was already submitted"),
        "bids_one_active_key": ("concurrent_bid", "another bid for this lot completed at the same moment; retry"),
        "tender_custodians_unique_key": ("duplicate_custodian", "a custodian is named twice"),
    }
    if name in conflicts:
        code, message = conflicts[name]
        return StateConflict(message, code=code)
    raise exc


# ---------------------------------------------------------------------------- tenders


def _tender_summary(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "code": row["code"], "name": row["name"], "tenderer": row["tenderer"],
        "status": row["status"], "deadline": iso(row["deadline"]), "budget": store.money(row["budget"]),
        "evaluation_method": row["evaluation_method"],
        "evaluation_method_name": EVALUATION_METHODS.get(row["evaluation_method"], row["evaluation_method"]),
        "version": row["version"],
    }


async def _tender_view(conn: asyncpg.Connection, row: asyncpg.Record, user: CurrentUser | None) -> dict[str, Any]:
    lots = await store.lots(conn, row["id"])
    custodians = await store.custodians(conn, row["id"])
    changes = await store.changes(conn, row["id"])
    view = _tender_summary(row)
    view.update({
        "control_price": store.money(row["control_price"]),
        "decryption_minutes": row["decryption_minutes"],
        "decryption_rule": row["decryption_rule"],
        "threshold": row["threshold"],
        "min_bidders": row["min_bidders"], "show_bid_count": row["show_bid_count"],
        "hall_opens_minutes": row["hall_opens_minutes"], "confirm_minutes": row["confirm_minutes"],
        "summary_fields": row["summary_fields"],
        "published_at": iso(row["published_at"]) if row["published_at"] else None,
        "created_at": iso(row["created_at"]),
        "is_agent": user is not None and user.id == row["agent_id"],
        "lots": [{"code": l["code"], "name": l["name"], "budget": store.money(l["budget"])} for l in lots],
        # Everything a client needs to seal: the pinned decryption keys, in share order.
        "custodians": [{
            "position": c["position"], "user_id": str(c["custodian_id"]), "display_name": c["display_name"],
            "key_set_id": str(c["key_set_id"]) if c["key_set_id"] else None,
            "decrypt_key_id": c["decrypt_key_id"],
            "decrypt_spki": b64url(bytes(c["decrypt_spki"])) if c["decrypt_spki"] is not None else None,
        } for c in custodians],
        "changes": [{"version": c["version"], "kind": c["kind"], "detail": c["detail"],
                     "changed_at": iso(c["changed_at"])} for c in changes],
        # Only the count, and only when the tender shows it: who bid stays secret until the opening.
        "bids_received": (await store.count_active_bids(conn, row["id"])
                          if row["show_bid_count"] or (user is not None and user.id == row["agent_id"]) else None),
    })
    return view


async def _own_tender(conn: asyncpg.Connection, user: CurrentUser, tender_id: uuid.UUID, lock: str | None) -> asyncpg.Record:
    row = await store.tender(conn, tender_id, lock)
    if row is None or row["agent_id"] != user.id:
        raise NotFound("no such tender among yours", code="tender_not_found")
    return row


async def create_tender(deps: Deps, user: CurrentUser, data: Any) -> dict[str, Any]:
    """Create a draft; TenderInvalid (422) naming the field, StateConflict (409) for a taken code."""
    draft = parse_tender(data)
    tender_id = uuid.uuid4()
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            roles = await store.users_roles(conn, list(draft.custodians))
            for custodian in draft.custodians:
                if "custodian" not in roles.get(custodian, []):
                    raise TenderInvalid(f"user {custodian} is not a custodian", field="custodians",
                                        code="not_a_custodian")
            try:
                await store.insert_tender(conn, tender_id, user.id, draft)
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise constraint_error(exc) from None
            await accounts.record_audit(conn, "tender.created", actor_id=user.id, subject=f"tender:{tender_id}",
                                        detail={"code": draft.code})
            return await _tender_view(conn, await store.tender(conn, tender_id), user)


async def publish_tender(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """Publish a draft: pin the custodians' active key sets, log the frozen terms, announce it.

    NotFound (not the caller's), StateConflict not_draft, TenderInvalid deadline_in_past or
    custodian_without_keys (each custodian needs an active key set now).
    """
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            row = await _own_tender(conn, user, tender_id, "update")
            now = await server_now(conn)
            check_publishable(row["status"], row["deadline"], now)
            for c in await store.custodian_active_keys(conn, tender_id):
                if "custodian" not in c["roles"] or c["disabled"]:
                    raise TenderInvalid(f"custodian {c['custodian_id']} is no longer an active custodian",
                                        field="custodians", code="not_a_custodian")
                if c["key_set_id"] is None:
                    raise TenderInvalid(f"custodian {c['custodian_id']} has no active key set; they must register "
                                        "keys before publication", field="custodians", code="custodian_without_keys")
                await store.pin_custodian_key(conn, tender_id, c["position"], c["key_set_id"])
            await store.publish(conn, tender_id, now)
            view = await _tender_view(conn, await store.tender(conn, tender_id), user)
            terms = {k: view[k] for k in ("id", "code", "name", "tenderer", "budget", "control_price",
                                          "evaluation_method", "deadline", "decryption_minutes", "decryption_rule",
                                          "threshold", "summary_fields", "lots", "version")}
            terms["custodians"] = [{"position": c["position"], "user_id": c["user_id"], "key_set_id": c["key_set_id"],
                                    "decrypt_key_id": c["decrypt_key_id"]} for c in view["custodians"]]
            terms["agent"] = str(user.id)
            appended = await log.append_entry(conn, deps.signer, "tender.published", {"tender": terms})
            await bus.emit(conn, topic(tender_id), "tender.published",
                           {"tender": str(tender_id), "log_index": appended.index})
            await accounts.record_audit(conn, "tender.published", actor_id=user.id, subject=f"tender:{tender_id}")
            view["log_index"] = appended.index
            return view


async def add_change(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A clarification or a deadline extension of a published tender, before its deadline.

    Increments the version; every active bid then needs its bidder's re-confirmation.
    """
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            row = await _own_tender(conn, user, tender_id, "update")
            if row["status"] != "published":
                raise StateConflict("only a published tender can be changed; edit the draft instead",
                                    code="not_published")
            now = await server_now(conn)
            check_before_deadline(row["deadline"], now)
            kind, detail = parse_change(data, row["deadline"], now)
            new_deadline = datetime.fromisoformat(detail["deadline"].replace("Z", "+00:00")) if kind == "deadline_extension" else None
            version = await store.bump_version(conn, tender_id, new_deadline)
            change = await store.add_change(conn, tender_id, version, kind, detail, user.id)
            appended = await log.append_entry(conn, deps.signer, "tender.changed",
                                              {"tender": str(tender_id), "version": version, "kind": kind,
                                               "detail": detail})
            await bus.emit(conn, topic(tender_id), "tender.changed",
                           {"tender": str(tender_id), "version": version, "kind": kind})
            for org in await store.active_bid_orgs(conn, tender_id):
                await bus.emit(conn, f"org:{org}", "bid.reconfirm_needed",
                               {"tender": str(tender_id), "version": version})
            await accounts.record_audit(conn, "tender.changed", actor_id=user.id, subject=f"tender:{tender_id}",
                                        detail={"version": version, "kind": kind})
            return {"tender": str(tender_id), "version": version, "kind": kind, "detail": detail,
                    "changed_at": iso(change["changed_at"]), "log_index": appended.index}


async def get_tender(deps: Deps, user: CurrentUser | None, tender_id: uuid.UUID) -> dict[str, Any]:
    """A published tender for anyone, a draft only for its agent; NotFound otherwise."""
    async with deps.pool.acquire() as conn:
        row = await store.tender(conn, tender_id)
        if row is None or (row["status"] == "draft" and (user is None or row["agent_id"] != user.id)):
            raise NotFound("no such tender", code="tender_not_found")
        return await _tender_view(conn, row, user)


async def list_tenders(deps: Deps, user: CurrentUser | None, page: int, per_page: int) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        rows = await store.list_tenders(conn, user.id if user else None, per_page, (page - 1) * per_page)
        if not rows and page > 1:
            total = await store.count_tenders(conn, user.id if user else None)
        else:
            total = rows[0]["total"] if rows else 0
    return {"tenders": [_tender_summary(r) for r in rows], "page": page, "per_page": per_page, "total": total}


async def custodian_choices(deps: Deps) -> list[dict[str, Any]]:
    """Custodians an agent may name, and whether each has keys yet (needed at publication)."""
    async with deps.pool.acquire() as conn:
        rows = await store.custodian_choices(conn)
    return [{"id": str(r["id"]), "display_name": r["display_name"], "username": r["username"],
             "has_keys": r["has_keys"]} for r in rows]
