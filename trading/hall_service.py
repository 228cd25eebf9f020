"""Opening-hall use cases driven by the host and the bidders: the steps, the read-out, the record, objections, chat."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tenderhall import bus, log
from tenderhall.accounts import CurrentUser
from trading import hall_store as hs
from trading import store
from trading.hall import (
    CHAT_INTERVAL, CHAT_STEPS, DEPOSITS, MAX_ANSWER, MAX_CHAT, MAX_NOTE, MAX_OBJECTION, OBJECTION_STEPS,
    SIGN_IN_STEPS, HallRefused, InvalidInput, Viewer, amounts_in_words, check_closable, check_confirmable,
    check_deadline_passed, exclusion_reason, iso_or_none, lot_outcomes, opening_failed, record_bytes,
    record_confirmation_message, record_document, require_host, require_step, text_field, uuid_field,
)
from trading.hall_acts import (
    log_and_announce, host_act, locked_opening, opening_act, require_bidder_org, published_tender, viewer_of,
)
from trading.manifest import verify_raw_p256
from trading.seal_errors import SignatureInvalid
from trading.service import Deps, server_now, topic
from trading.tenders import NotFound, iso, parse_time


# ---------------------------------------------------------------------------- waiting, sign-in, list


async def sign_in(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """A bidder organisation's representative signs in (签到)."""
    async with opening_act(deps, tender_id) as (conn, tender, row, now):
        require_step(row["step"], SIGN_IN_STEPS, "sign in")
        org = require_bidder_org(await viewer_of(conn, tender, user, False), user)
        if not await hs.sign_in(conn, tender_id, org, user.id, now):
            raise HallRefused("your organisation has already signed in", code="already_signed_in")
        count = sum(1 for b in await hs.bidders(conn, tender_id) if b["signed_in_at"] is not None)
        # The log and the event name no bidder: before the list is published nobody may learn who bid.
        # Neither names a bidder; the count is public only where the bid count is (it would tell it).
        shown = {"signed_in": count} if tender["show_bid_count"] else {}
        await log_and_announce(conn, deps, tender_id, "signed_in", shown, shown)
    return {"signed_in": True}


async def start_sign_in(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    return await _host_step(deps, user, tender_id, ("waiting",), "sign_in", "start sign-in")


async def _host_step(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, allowed: tuple[str, ...], to: str,
                     doing: str) -> dict[str, Any]:
    async with opening_act(deps, tender_id) as (conn, tender, row, now):
        require_host(await viewer_of(conn, tender, user, True))
        require_step(row["step"], allowed, doing)
        await hs.set_step(conn, tender_id, to, now)
        await log_and_announce(conn, deps, tender_id, "step", {"step": to}, {"step": to})
    return {"step": to}


async def close_submissions(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """At or after the deadline: freeze the active bids into the opening and list their bidders."""
    async with host_act(deps, user, tender_id, ("sign_in",), "close submissions") as (conn, tender, row, now):
        check_deadline_passed(tender["deadline"], now)
        # Lock the tender row too: a last upload completing at the deadline commits before or after, never beside.
        await store.tender(conn, tender_id, "update")
        orgs = await hs.freeze_bids(conn, tender_id)
        for org in set(orgs):
            await hs.add_bidder(conn, tender_id, org)
        await hs.set_step(conn, tender_id, "bidder_list", now)
        await log_and_announce(conn, deps, tender_id, "step", {"step": "bidder_list", "bids": len(orgs)},
                   {"step": "bidder_list"})
    return {"step": "bidder_list", "bids": len(orgs)}


async def set_deposit(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """The host records a bidder's deposit check (保证金): confirmed or missing, with a note."""
    deposit = data.get("deposit") if isinstance(data, dict) else None
    if deposit not in DEPOSITS:
        raise InvalidInput('deposit must be "confirmed" or "missing"')
    note = text_field(data, "note", MAX_NOTE, required=False)
    org = uuid_field(data, "organisation_id")
    async with host_act(deps, user, tender_id, ("bidder_list",), "record deposits") as (conn, tender, row, now):
        if not await hs.org_has_opening_bid(conn, tender_id, org):
            raise NotFound("this organisation has no bid in this opening", code="bidder_not_found")
        await hs.set_deposit(conn, tender_id, org, deposit, note, now)
        await log_and_announce(conn, deps, tender_id, "deposit", {"organisation": str(org), "deposit": deposit}, {})
    return {"organisation_id": str(org), "deposit": deposit}


async def publish_bidders(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """Publish the bidder list; exclude bids without a confirmed deposit; fail lots below the minimum."""
    async with host_act(deps, user, tender_id, ("bidder_list",), "publish the bidder list") as (conn, tender, row, now):
        by_reason: dict[str, list[uuid.UUID]] = {}
        for b in await hs.bidders(conn, tender_id):
            reason = exclusion_reason(b["deposit"])
            if reason:
                by_reason.setdefault(reason, []).append(b["organisation_id"])
        for reason, orgs in by_reason.items():
            await hs.exclude_bids(conn, tender_id, orgs, reason)
        valid: dict[str, int] = {}
        for b in await hs.bids(conn, tender_id):
            if b["status"] == "listed":
                valid[b["lot_code"]] = valid.get(b["lot_code"], 0) + 1
        lots = [(l["code"], l["name"]) for l in await store.lots(conn, tender_id)]
        outcomes = lot_outcomes(lots, valid, tender["min_bidders"])
        for code, outcome in outcomes.items():
            if outcome["status"] == "failed":
                await hs.exclude_lot(conn, tender_id, code, f"lot failed: {outcome['reason']}")
        failure = opening_failed(outcomes)
        await hs.set_outcomes(conn, tender_id, outcomes, failure)
        if failure:
            await hs.set_step(conn, tender_id, "failed", now)
            await log_and_announce(conn, deps, tender_id, "failed", {"reason": failure}, {"step": "failed", "text": failure})
            return {"step": "failed", "reason": failure}
        ends = now + timedelta(minutes=tender["decryption_minutes"])
        await hs.set_window(conn, tender_id, ends)
        await hs.set_step(conn, tender_id, "decryption", now)
        listed = [{"bidder": b["credit_code"], "lot": b["lot_code"], "status": b["status"]}
                  for b in await hs.bids(conn, tender_id)]
        await log_and_announce(conn, deps, tender_id, "bidders_published",
                   {"bids": listed, "lots": outcomes, "window_ends_at": iso(ends)},
                   {"step": "decryption", "window_ends_at": iso(ends)})
    return {"step": "decryption", "window_ends_at": iso(ends)}


# ---------------------------------------------------------------------------- reading, record, close


async def read_next(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Read out (唱标) the next opened bid, or every remaining one with {"all": true}."""
    read_all = isinstance(data, dict) and data.get("all") is True
    async with host_act(deps, user, tender_id, ("reading",), "read out") as (conn, tender, row, now):
        orders = await hs.read_next(conn, tender_id, 100_000 if read_all else 1, row["next_read_order"], now)
        if not orders:
            raise HallRefused("every opened bid has been read out", code="nothing_to_read")
        read = sorted((b for b in await hs.bids(conn, tender_id) if b["bid_id"] in orders),
                      key=lambda b: orders[b["bid_id"]])
        await log.append_entries(conn, deps.signer, [("opening.read_out", {
            "tender": str(tender_id), "bid": str(b["bid_id"]), "lot": b["lot_code"], "bidder": b["credit_code"],
            "order": orders[b["bid_id"]], "summary": b["summary"]}) for b in read])
        await bus.emit_many(conn, topic(tender_id), [("hall.read_out", {
            "bid": str(b["bid_id"]), "lot": b["lot_code"], "bidder": b["bidder"], "order": orders[b["bid_id"]],
            "summary": b["summary"], "amounts_in_words": amounts_in_words(b["summary"], tender["summary_fields"])})
            for b in read])
    return {"read": [str(b["bid_id"]) for b in read]}


async def generate_record(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """Generate the opening record (开标记录), log its digest and open the confirmation time."""
    async with host_act(deps, user, tender_id, ("reading",), "generate the record") as (conn, tender, row, now):
        if await hs.next_to_read(conn, tender_id) is not None:
            raise HallRefused("read out every opened bid first", code="reading_unfinished")
        if await hs.count_unanswered(conn, tender_id):
            raise HallRefused("answer every objection first; both go into the record", code="objection_unanswered")
        record = await _record(conn, tender, row, now)
        _data, sha256 = record_bytes(record)
        deadline = now + timedelta(minutes=tender["confirm_minutes"])
        await hs.set_record(conn, tender_id, record, sha256, now, deadline)
        await hs.set_step(conn, tender_id, "record", now)
        await log_and_announce(conn, deps, tender_id, "record", {"record_sha256": sha256, "confirm_deadline": iso(deadline)},
                   {"step": "record", "record_sha256": sha256})
    return {"record_sha256": sha256, "confirm_deadline": iso(deadline)}


async def _record(conn: asyncpg.Connection, tender: asyncpg.Record, row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    tender_id = tender["id"]
    bids = await hs.bids(conn, tender_id)
    return record_document(
        tender={"id": str(tender_id), "code": tender["code"], "name": tender["name"], "tenderer": tender["tenderer"],
                "deadline": iso(tender["deadline"]), "evaluation_method": tender["evaluation_method"],
                "decryption_rule": tender["decryption_rule"], "version": tender["version"],
                "summary_fields": tender["summary_fields"]},
        generated_at=iso(now),
        opening={"window_ends_at": iso_or_none(row["window_ends_at"]), "failure_reason": row["failure_reason"]},
        bidders=[{"name": b["name"], "credit_code": b["credit_code"], "signed_in_at": iso_or_none(b["signed_in_at"]),
                  "deposit": b["deposit"], "deposit_note": b["deposit_note"]}
                 for b in await hs.bidders(conn, tender_id)],
        bids=[{"bid": str(b["bid_id"]), "lot": b["lot_code"], "bidder": b["bidder"], "credit_code": b["credit_code"],
               "received_at": iso(b["received_at"]), "ciphertext_sha256": b["ciphertext_sha256"],
               "receipt_log_index": b["log_index"], "status": b["status"], "reason": b["reason"],
               "opened_by": b["opened_by"], "read_order": b["read_order"], "summary": b["summary"],
               "amounts_in_words": amounts_in_words(b["summary"], tender["summary_fields"])} for b in bids],
        lots=[{"code": code, **outcome} for code, outcome in (row["lot_outcomes"] or {}).items()],
        objections=[{"by": o["organisation"], "text": o["text"], "raised_at": iso(o["raised_at"]),
                     "answer": o["answer"], "answered_at": iso_or_none(o["answered_at"])}
                    for o in await hs.objections(conn, tender_id)],
    )


async def record_of(deps: Deps, tender_id: uuid.UUID) -> tuple[dict[str, Any], bytes, str]:
    """The generated record, its canonical bytes and digest; NotFound before it exists."""
    async with deps.pool.acquire() as conn:
        await published_tender(conn, tender_id)
        row = await hs.opening(conn, tender_id)
    if row is None or row["record"] is None:
        raise NotFound("the opening record has not been generated yet", code="record_not_found")
    data, sha256 = record_bytes(row["record"])
    return row["record"], data, sha256


async def confirm_record(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A bidder confirms the record by signing its digest with its organisation's signing key."""
    signature = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(signature, str) or len(signature) > 200:
        raise InvalidInput('send {"signature": "..."}: a raw r||s ECDSA P-256 signature, base64url')
    async with opening_act(deps, tender_id) as (conn, tender, row, now):
        org = require_bidder_org(await viewer_of(conn, tender, user, True), user)
        confirmed = {c["organisation_id"] for c in await hs.confirmations(conn, tender_id)}
        check_confirmable(row["step"], row["confirm_deadline"], now, org in confirmed)
        spki = await hs.org_signing_key(conn, tender_id, org)
        public_key = load_der_public_key(spki)
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        message = record_confirmation_message(str(tender_id), row["record_sha256"])
        try:
            verify_raw_p256(public_key, message, signature)
        except SignatureInvalid as exc:
            raise HallRefused(f"the signature {exc} under the key that signed your bid", code="bad_signature",
                              status=422) from None
        await hs.insert_confirmation(conn, tender_id, org, row["record_sha256"], signature, user.id, now)
        await log_and_announce(conn, deps, tender_id, "record_confirmed",
                   {"organisation": str(org), "record_sha256": row["record_sha256"],
                    "signature": signature}, {})
    return {"confirmed": True, "record_sha256": row["record_sha256"]}


async def close_opening(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Close the opening with an optional resumption time (复会时间); non-confirmations are logged."""
    raw = data.get("resumption_at") if isinstance(data, dict) else None
    resumption = None
    if raw not in (None, ""):
        if not isinstance(raw, str):
            raise InvalidInput("resumption_at must be an ISO 8601 time or null")
        resumption = parse_time(raw, "resumption_at")
    async with host_act(deps, user, tender_id, ("record",), "close the opening") as (conn, tender, row, now):
        orgs = {b["organisation_id"] for b in await hs.bids(conn, tender_id)}
        confirmed = {c["organisation_id"] for c in await hs.confirmations(conn, tender_id)}
        check_closable(orgs <= confirmed, row["confirm_deadline"], now, resumption)
        await hs.set_resumption(conn, tender_id, resumption)
        await hs.set_step(conn, tender_id, "closed", now)
        await log_and_announce(conn, deps, tender_id, "closed", {
            "resumption_at": iso_or_none(resumption), "not_confirmed": sorted(str(o) for o in orgs - confirmed)},
            {"step": "closed", "resumption_at": iso_or_none(resumption)})
    return {"step": "closed", "resumption_at": iso_or_none(resumption)}


# ---------------------------------------------------------------------------- objections and chat


async def raise_objection(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A signed-in bidder raises an objection (异议); it goes into the record with the host's answer."""
    text = text_field(data, "text", MAX_OBJECTION)
    async with opening_act(deps, tender_id) as (conn, tender, row, now):
        require_step(row["step"], OBJECTION_STEPS, "raise an objection")
        viewer = await viewer_of(conn, tender, user, row["step"] != "sign_in")
        org = require_bidder_org(viewer, user)
        if not viewer.signed_in:
            raise HallRefused("sign in before raising an objection", code="not_signed_in")
        objection_id = await hs.insert_objection(conn, tender_id, org, user.id, text, now)
        await log_and_announce(conn, deps, tender_id, "objection",
                   {"objection": objection_id, "text_sha256": hashlib.sha256(text.encode()).hexdigest()},
                   {"objection": objection_id})
    return {"objection": objection_id}


async def answer_objection(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, objection_id: int,
                           data: Any) -> dict[str, Any]:
    answer = text_field(data, "answer", MAX_ANSWER)
    async with host_act(deps, user, tender_id, OBJECTION_STEPS, "answer an objection") as (conn, tender, row, now):
        objection = await hs.objection_for_update(conn, objection_id, tender_id)
        if objection is None:
            raise NotFound(f"no objection {objection_id} in this opening", code="objection_not_found")
        if objection["answer"] is not None:
            raise HallRefused("this objection has already been answered", code="already_answered")
        await hs.answer_objection(conn, objection_id, answer, user.id, now)
        await log_and_announce(conn, deps, tender_id, "objection_answered",
                   {"objection": objection_id, "answer_sha256": hashlib.sha256(answer.encode()).hexdigest()},
                   {"objection": objection_id})
    return {"objection": objection_id, "answered": True}


async def send_chat(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    text = text_field(data, "text", MAX_CHAT)
    async with opening_act(deps, tender_id) as (conn, tender, row, now):
        require_step(row["step"], CHAT_STEPS, "chat")
        viewer = await viewer_of(conn, tender, user, row["step"] not in ("waiting", "sign_in"))
        if not viewer.host:
            require_bidder_org(viewer, user)
            if not viewer.signed_in:
                raise HallRefused("sign in before writing in the hall chat", code="not_signed_in")
        last = await hs.last_chat_at(conn, tender_id, user.id)
        if last is not None and now - last < CHAT_INTERVAL:
            raise HallRefused("you are writing too fast; wait a moment", code="chat_too_fast", status=429)
        org = None if viewer.host else user.organisation_id
        message_id = await hs.insert_chat(conn, tender_id, user.id, org, viewer.host, text, now)
        await bus.emit(conn, topic(tender_id), "hall.chat", {"message": message_id})
    return {"message": message_id}


async def hide_chat(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, message_id: int) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, _row = await locked_opening(conn, tender_id, now)
            require_host(await viewer_of(conn, tender, user, True))
            if not await hs.hide_chat(conn, message_id, tender_id, now, user.id):
                raise NotFound(f"no visible message {message_id} in this hall", code="message_not_found")
            await log_and_announce(conn, deps, tender_id, "chat_hidden", {"message": message_id}, {"message": message_id})
    return {"message": message_id, "hidden": True}


# ---------------------------------------------------------------------------- access for media and pages


async def hall_role(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> Viewer:
    """Who the user is in this hall (host, bidder, custodian); NotFound for an unpublished tender."""
    async with deps.pool.acquire() as conn:
        tender = await published_tender(conn, tender_id)
        row = await hs.opening(conn, tender_id)
        frozen = row is not None and row["step"] not in ("waiting", "sign_in")
        return await viewer_of(conn, tender, user, frozen)


async def announce_video(deps: Deps, tender_id: uuid.UUID, live: bool) -> None:
    """Tell the hall the host's video started or stopped, so viewers connect without a reload."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            await bus.emit(conn, topic(tender_id), "hall.video", {"live": live})


async def signing_key_id(deps: Deps, user: CurrentUser) -> str | None:
    """The key id of the user's organisation's active signing key (the page checks the browser holds it)."""
    if user.organisation_id is None:
        return None
    async with deps.pool.acquire() as conn:
        keys = await store.org_active_keys(conn, user.organisation_id)
    return keys["sign_key_id"] if keys and keys["id"] else None
