"""Opening-hall use cases: each opens its transaction, checks the rules, writes, logs and emits.

Every act locks the tender's opening row first, so acts on one opening are serialised across
all server instances, and each commits its state change, its transparency-log entry and its
bus event together. Opening a bid (minutes of AES-GCM for a large one) runs on a worker
thread between two short transactions and never holds a lock; a second attempt racing it
loses cleanly at the second transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tenderhall import bus, formatting, log
from tenderhall.accounts import CurrentUser
from tenderhall.canonical import canonical_json
from trading import hall_store as hs
from trading import ocds, store, uploads
from trading.hall import (
    CHAT_INTERVAL, CHAT_STEPS, DEPOSITS, MAX_ANSWER, MAX_CHAT, MAX_NOTE, MAX_OBJECTION, OBJECTION_STEPS,
    SHARE_SIZE, SIGN_IN_STEPS, STEP_NAMES, HallRefused, InvalidInput, Viewer, actions, amount, b64url_bytes,
    check_closable, check_confirmable, check_deadline_passed, check_window_closed, check_window_open,
    current_step, exclusion_reason, hall_opens_at, lot_outcomes, opening_failed, record_bytes,
    record_confirmation_message, record_document, require_host, require_step, share_subsets, step_after_window,
    text_field,
)
from trading.manifest import Manifest, validate_manifest, verify_raw_p256
from trading.seal_errors import KeyCommitmentMismatch, SealError, SignatureInvalid, WrapInvalid
from trading.sealing import check_content_key, content_key_from_shares, open_bid
from trading.service import Deps, get_tender, server_now, topic
from trading.tenders import NotFound, iso, parse_time

CHAT_SHOWN = 200
TIMELINE_SHOWN = 300


# ---------------------------------------------------------------------------- common


async def _tender(conn: asyncpg.Connection, tender_id: uuid.UUID) -> asyncpg.Record:
    row = await store.tender(conn, tender_id)
    if row is None or row["status"] == "draft":
        raise NotFound(f"no published tender has id {tender_id}", code="tender_not_found")
    return row


async def _locked(conn: asyncpg.Connection, tender_id: uuid.UUID, now: datetime) -> tuple[asyncpg.Record, asyncpg.Record]:
    """The tender and its opening row, locked for this transaction; the row is made when the hall opens."""
    tender = await _tender(conn, tender_id)
    if tender["status"] == "cancelled":
        raise HallRefused("this tender was cancelled; there is no opening", code="tender_cancelled")
    if now < hall_opens_at(tender["deadline"], tender["hall_opens_minutes"]):
        raise HallRefused("the hall is not open yet", code="hall_locked")
    await hs.ensure_opening(conn, tender_id, now)
    return tender, await hs.opening(conn, tender_id, for_update=True)


async def _viewer(conn: asyncpg.Connection, tender: asyncpg.Record, user: CurrentUser | None, frozen: bool) -> Viewer:
    if user is None:  # the public (open data): sees what an observer in the hall sees
        return Viewer(host=False, bidder=False, custodian_position=None, signed_in=False)
    tender_id = tender["id"]
    bidder = False
    signed_in = False
    if user.organisation_id is not None and user.has("bidder"):
        has_bid = (hs.org_has_opening_bid if frozen else hs.org_has_active_bid)
        bidder = await has_bid(conn, tender_id, user.organisation_id)
        row = await hs.bidder(conn, tender_id, user.organisation_id)
        signed_in = row is not None and row["signed_in_at"] is not None
    position = await hs.custodian_position(conn, tender_id, user.id)
    return Viewer(host=user.id == tender["agent_id"], bidder=bidder, custodian_position=position, signed_in=signed_in)


async def _act(conn: asyncpg.Connection, deps: Deps, tender_id: uuid.UUID, kind: str, body: dict[str, Any],
               event: dict[str, Any] | None = None) -> int:
    """Log the act as "opening.<kind>" and announce it as "hall.<kind>", in the caller's transaction."""
    appended = await log.append_entry(conn, deps.signer, f"opening.{kind}", {"tender": str(tender_id), **body})
    await bus.emit(conn, topic(tender_id), f"hall.{kind}", {"log_index": appended.index, **(event or {})})
    return appended.index


def _require_bidder(viewer: Viewer, user: CurrentUser) -> uuid.UUID:
    if not viewer.bidder or user.organisation_id is None:
        raise HallRefused("only a bidder with a bid in this opening may do this", code="not_a_bidder", status=403)
    return user.organisation_id


# ---------------------------------------------------------------------------- snapshot


async def snapshot(deps: Deps, user: CurrentUser | None, tender_id: uuid.UUID, *,
                   video_live: bool = False) -> dict[str, Any]:
    """The hall as this user (None: the public) may see it (docs/hall.md)."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            tender = await _tender(conn, tender_id)
            now = await server_now(conn)
            row = await hs.opening(conn, tender_id)
            step = current_step(row["step"] if row else None, tender["deadline"], tender["hall_opens_minutes"], now)
            frozen = step not in ("locked", "waiting", "sign_in")
            viewer = await _viewer(conn, tender, user, frozen)
            listed = frozen and step != "bidder_list"
            bidders = await hs.bidders(conn, tender_id) if row else []
            bids = await hs.bids(conn, tender_id) if frozen else []
            objections = await hs.objections(conn, tender_id) if row else []
            chat = await hs.chat(conn, tender_id, CHAT_SHOWN) if row else []
            confirmations = await hs.confirmations(conn, tender_id) if row else []
            timeline = await hs.timeline(conn, topic(tender_id), TIMELINE_SHOWN)
            last_event = await hs.last_event_id(conn, topic(tender_id))
            lots = await store.lots(conn, tender_id)
            manifests = {}
            for b in bids:
                mine = viewer.bidder and b["organisation_id"] == user.organisation_id
                share_wanted = viewer.custodian_position is not None and b["status"] == "awaiting_custodians"
                if mine or share_wanted:
                    manifests[b["bid_id"]] = (await hs.bid(conn, b["bid_id"]))["manifest"]
    me_org = user.organisation_id if user is not None else None
    confirmed_orgs = {c["organisation_id"] for c in confirmations}
    window_over = row is not None and row["window_ends_at"] is not None and now >= row["window_ends_at"]
    confirm_over = row is not None and row["confirm_deadline"] is not None and now > row["confirm_deadline"]
    bidder_orgs = {b["organisation_id"] for b in bids}
    show_bidders = viewer.host or listed
    progress = {"decrypted": 0, "failed": 0, "waiting": 0, "void": 0, "excluded": 0, "awaiting_custodians": 0,
                "bytes_opened": 0, "bytes_total": 0}
    bid_views = []
    for b in bids:
        status = b["status"]
        if status == "opened":
            progress["decrypted"] += 1
            progress["bytes_opened"] += b["size"]
        elif status in ("listed", "awaiting_custodians"):
            progress["failed" if b["attempts"] else "waiting"] += 1
            if status == "awaiting_custodians":
                progress["awaiting_custodians"] += 1
        else:
            progress[status] += 1
        if status != "excluded":
            progress["bytes_total"] += b["size"]
        read = b["read_order"] is not None
        mine = viewer.bidder and b["organisation_id"] == me_org
        manifest = manifests.get(b["bid_id"])
        share_enc = None
        if manifest and viewer.custodian_position is not None and status == "awaiting_custodians":
            wraps = manifest.get("custodian_wraps") or []
            if 0 < viewer.custodian_position <= len(wraps):
                share_enc = wraps[viewer.custodian_position - 1].get("enc")
        summary = b["summary"] if read else None
        bid_views.append({
            "bid_id": str(b["bid_id"]), "lot": b["lot_code"], "organisation_id": str(b["organisation_id"]),
            "bidder": b["bidder"], "credit_code": b["credit_code"], "received_at": iso(b["received_at"]),
            "status": status, "reason": b["reason"], "attempts": b["attempts"], "last_failure": b["last_failure"],
            "size": b["size"], "opened_by": b["opened_by"], "read_order": b["read_order"],
            "summary": summary, "amounts_in_words": _in_words(summary, tender["summary_fields"]),
            "shares_released": b["shares_released"], "mine": mine,
            "manifest": manifest if mine else None, "share_enc": share_enc,
        })
    hall = {
        "tender": {
            "id": str(tender_id), "code": tender["code"], "name": tender["name"], "tenderer": tender["tenderer"],
            "deadline": iso(tender["deadline"]), "decryption_minutes": tender["decryption_minutes"],
            "decryption_rule": tender["decryption_rule"], "threshold": tender["threshold"],
            "min_bidders": tender["min_bidders"], "show_bid_count": tender["show_bid_count"],
            "summary_fields": tender["summary_fields"],
            "lots": [{"code": l["code"], "name": l["name"], "budget": store.money(l["budget"])} for l in lots],
        },
        "server_time": iso(now), "step": step, "step_name": STEP_NAMES[step],
        "hall_opens_at": iso(hall_opens_at(tender["deadline"], tender["hall_opens_minutes"])),
        "deadline": iso(tender["deadline"]),
        "window_ends_at": _iso(row["window_ends_at"]) if row else None,
        "confirm_deadline": _iso(row["confirm_deadline"]) if row else None,
        "resumption_at": _iso(row["resumption_at"]) if row else None,
        "failure_reason": row["failure_reason"] if row else None,
        "me": {"host": viewer.host, "bidder": viewer.bidder, "organisation_id": str(me_org) if me_org else None,
               "signed_in": viewer.signed_in, "custodian_position": viewer.custodian_position},
        "bids_received": None,
        "signed_in_count": sum(1 for b in bidders if b["signed_in_at"] is not None),
        "bidders": [{
            "organisation_id": str(b["organisation_id"]), "name": b["name"], "credit_code": b["credit_code"],
            "signed_in_at": _iso(b["signed_in_at"]), "deposit": b["deposit"], "deposit_note": b["deposit_note"],
            "has_bid": b["organisation_id"] in bidder_orgs, "confirmed": b["organisation_id"] in confirmed_orgs,
        } for b in bidders] if show_bidders else [],
        "bids": bid_views if (listed or viewer.host) else [],
        "progress": progress,
        "lots": [{"code": l["code"], "name": l["name"],
                  **((row["lot_outcomes"] or {}).get(l["code"], {"status": "open", "reason": None}) if row else
                     {"status": "open", "reason": None})} for l in lots],
        "objections": [{
            "id": o["id"], "by": o["organisation"] if (listed or viewer.host or o["organisation_id"] == me_org) else None,
            "text": o["text"], "raised_at": iso(o["raised_at"]), "answer": o["answer"],
            "answered_at": _iso(o["answered_at"]), "mine": o["organisation_id"] == me_org,
        } for o in objections],
        "chat": [_chat_view(c, listed or viewer.host, me_org) for c in chat],
        "record": None,
        "timeline": [{"id": t["id"], "at": iso(t["created_at"]), "kind": t["kind"], "step": t["payload"].get("step"),
                      "text": t["payload"].get("text")} for t in timeline],
        "video": {"live": video_live},
        "last_event_id": last_event,
    }
    if tender["show_bid_count"] or viewer.host:
        async with deps.pool.acquire() as conn:
            hall["bids_received"] = await store.count_active_bids(conn, tender_id)
    if row is not None and row["record_sha256"]:
        hall["record"] = {
            "sha256": row["record_sha256"], "generated_at": iso(row["record_at"]),
            "confirm_deadline": _iso(row["confirm_deadline"]),
            "confirmations": [{"organisation_id": str(c["organisation_id"]), "name": c["name"],
                               "confirmed_at": iso(c["confirmed_at"])} for c in confirmations],
            "html": f"/tenders/{tender_id}/hall/record", "json": f"/api/tenders/{tender_id}/hall/record.json",
        }
    hall["actions"] = actions(
        step, viewer, deadline_passed=now >= tender["deadline"], window_over=window_over,
        confirmed=me_org in confirmed_orgs, all_confirmed=bool(bidder_orgs) and bidder_orgs <= confirmed_orgs,
        confirm_over=confirm_over)
    return hall


def _iso(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _chat_view(c: asyncpg.Record, named: bool, me_org: uuid.UUID | None) -> dict[str, Any]:
    if c["from_host"]:
        by = "host"
    elif named or c["organisation_id"] == me_org:
        by = c["organisation"]
    else:
        by = None  # before the bidder list, other bidders stay anonymous (投标人)
    return {"id": c["id"], "by": by, "from_host": c["from_host"], "text": None if c["hidden_at"] else c["text"],
            "sent_at": iso(c["sent_at"]), "hidden": c["hidden_at"] is not None}


def _in_words(summary: dict[str, Any] | None, fields: list[dict[str, Any]]) -> dict[str, str]:
    """The 大写 form of each money field of a read-out summary."""
    out: dict[str, str] = {}
    if not summary:
        return out
    for f in fields:
        if f.get("type") == "money" and f["name"] in summary:
            value = amount(summary[f["name"]])
            if value is not None:
                out[f["name"]] = formatting.yuan_in_words(value)
    return out


# ---------------------------------------------------------------------------- waiting, sign-in, list


async def sign_in(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """A bidder organisation's representative signs in (签到)."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_step(row["step"], SIGN_IN_STEPS, "sign in")
            org = _require_bidder(await _viewer(conn, tender, user, False), user)
            if not await hs.sign_in(conn, tender_id, org, user.id, now):
                raise HallRefused("your organisation has already signed in", code="already_signed_in")
            count = sum(1 for b in await hs.bidders(conn, tender_id) if b["signed_in_at"] is not None)
            # The log and the event name no bidder: before the list is published nobody may learn who bid.
            await _act(conn, deps, tender_id, "signed_in", {"signed_in": count}, {"signed_in": count})
    return {"signed_in": True}


async def start_sign_in(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    return await _host_step(deps, user, tender_id, ("waiting",), "sign_in", "start sign-in")


async def _host_step(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, allowed: tuple[str, ...], to: str,
                     doing: str) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            require_step(row["step"], allowed, doing)
            await hs.set_step(conn, tender_id, to, now)
            await _act(conn, deps, tender_id, "step", {"step": to}, {"step": to})
    return {"step": to}


async def close_submissions(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """At or after the deadline: freeze the active bids into the opening and list their bidders."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            require_step(row["step"], ("sign_in",), "close submissions")
            check_deadline_passed(tender["deadline"], now)
            # Lock the tender row too: a last upload completing at the deadline commits before or after, never beside.
            await store.tender(conn, tender_id, "update")
            orgs = await hs.freeze_bids(conn, tender_id)
            for org in set(orgs):
                await hs.add_bidder(conn, tender_id, org)
            await hs.set_step(conn, tender_id, "bidder_list", now)
            await _act(conn, deps, tender_id, "step", {"step": "bidder_list", "bids": len(orgs)},
                       {"step": "bidder_list"})
    return {"step": "bidder_list", "bids": len(orgs)}


async def set_deposit(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """The host records a bidder's deposit check (保证金): confirmed or missing, with a note."""
    deposit = data.get("deposit") if isinstance(data, dict) else None
    if deposit not in DEPOSITS:
        raise InvalidInput('deposit must be "confirmed" or "missing"')
    note = text_field(data, "note", MAX_NOTE, required=False)
    try:
        org = uuid.UUID(str(data.get("organisation_id")))
    except ValueError:
        raise InvalidInput("organisation_id must be a UUID") from None
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            require_step(row["step"], ("bidder_list",), "record deposits")
            if not await hs.org_has_opening_bid(conn, tender_id, org):
                raise NotFound("this organisation has no bid in this opening", code="bidder_not_found")
            await hs.set_deposit(conn, tender_id, org, deposit, note, now)
            await _act(conn, deps, tender_id, "deposit", {"organisation": str(org), "deposit": deposit}, {})
    return {"organisation_id": str(org), "deposit": deposit}


async def publish_bidders(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """Publish the bidder list; exclude bids without a confirmed deposit; fail lots below the minimum."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            require_step(row["step"], ("bidder_list",), "publish the bidder list")
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
                await _act(conn, deps, tender_id, "failed", {"reason": failure}, {"step": "failed", "text": failure})
                return {"step": "failed", "reason": failure}
            ends = now + timedelta(minutes=tender["decryption_minutes"])
            await hs.set_window(conn, tender_id, ends)
            await hs.set_step(conn, tender_id, "decryption", now)
            listed = [{"bidder": b["credit_code"], "lot": b["lot_code"], "status": b["status"]}
                      for b in await hs.bids(conn, tender_id)]
            await _act(conn, deps, tender_id, "bidders_published",
                       {"bids": listed, "lots": outcomes, "window_ends_at": iso(ends)},
                       {"step": "decryption", "window_ends_at": iso(ends)})
    return {"step": "decryption", "window_ends_at": iso(ends)}


# ---------------------------------------------------------------------------- decryption


async def _failed_attempt(deps: Deps, tender_id: uuid.UUID, bid_id: uuid.UUID, failure: str) -> None:
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            await hs.opening(conn, tender_id, for_update=True)
            await hs.record_failure(conn, bid_id, failure)
            await _act(conn, deps, tender_id, "decrypt_failed", {"bid": str(bid_id), "failure": failure}, {})


@dataclass(frozen=True)
class _Verified:
    """A bid whose stored ciphertext opened and verified under `key`, waiting to be recorded."""

    bid: Mapping[str, Any]
    key: bytes
    summary: dict[str, Any]
    files: list[dict[str, Any]]
    by: str
    from_status: str


class _OpenFailed(Exception):
    """The bid did not open; the message is recorded against it."""


def _open_stored(path: Path, bid: Mapping[str, Any], manifest: Manifest, key: bytes) -> tuple[dict[str, Any], list]:
    """Check the receipt, then decrypt and authenticate every chunk, writing no plaintext (_OpenFailed).

    The files' header digests are checked when the evaluation extracts them (docs/sealing.md §7).
    """
    # The stored ciphertext must be exactly what the receipt acknowledged: its digest is checked
    # against the manifest by open_bid, and the manifest's against the receipt's here.
    if not (bid["ciphertext_sha256"] == manifest.ciphertext.sha256 == bid["receipt"].get("ciphertext_sha256")):
        raise _OpenFailed("the stored ciphertext does not match the receipt")
    try:
        with path.open("rb") as stream:
            opened = open_bid(stream, key, manifest, None, check_file_digests=False)
    except (SealError, OSError) as exc:
        raise _OpenFailed(f"the stored ciphertext does not open: {exc}") from None
    return dict(opened.summary), [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in opened.files]


def _open_with_shares(path: Path, bid: Mapping[str, Any], k: int) -> tuple[bytes, dict[str, Any], list]:
    """Combine k of the released shares into the committed key and open the bid with it (_OpenFailed)."""
    manifest = validate_manifest(bid["manifest"])
    for subset in share_subsets([bytes(s) for s in bid["shares"]], k):
        try:
            key = content_key_from_shares(manifest, list(subset))
        except (KeyCommitmentMismatch, WrapInvalid, SealError, ValueError):
            continue
        return (key, *_open_stored(path, bid, manifest, key))
    raise _OpenFailed("the released shares do not combine to the bid's key")


async def _record_opened(deps: Deps, tender_id: uuid.UUID, batch: list[_Verified]) -> set[uuid.UUID]:
    """Record verified bids as opened in one transaction; the ids recorded (another attempt may have won)."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            row = await hs.opening(conn, tender_id, for_update=True)
            recorded = await hs.mark_opened(conn, now, [{
                "bid_id": v.bid["bid_id"], "by": v.by, "summary": v.summary, "key": v.key, "files": v.files,
                "from_status": v.from_status} for v in batch])
            done = [v for v in batch if v.bid["bid_id"] in recorded]
            if not done:
                return recorded
            await log.append_entries(conn, deps.signer, [("opening.bid_opened", {
                "tender": str(tender_id), "bid": str(v.bid["bid_id"]), "lot": v.bid["lot_code"], "by": v.by,
                "ciphertext_sha256": v.bid["ciphertext_sha256"],
                "summary_sha256": hashlib.sha256(canonical_json(v.summary)).hexdigest(), "declared_files": v.files})
                for v in done])
            await bus.emit(conn, topic(tender_id), "hall.bids_opened", {"bids": [str(v.bid["bid_id"]) for v in done]})
            if row["step"] == "custodians" and await hs.count_status(conn, tender_id, "awaiting_custodians") == 0:
                await hs.set_step(conn, tender_id, "reading", now)
                await _act(conn, deps, tender_id, "step", {"step": "reading"}, {"step": "reading"})
    return recorded


async def decrypt(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A bidder sends its bid's content key; the server opens and verifies the stored ciphertext."""
    if not isinstance(data, dict):
        raise InvalidInput('send {"bid_id": "...", "content_key": "..."}')
    try:
        bid_id = uuid.UUID(str(data.get("bid_id")))
    except ValueError:
        raise InvalidInput("bid_id must be a UUID") from None
    key = b64url_bytes(data.get("content_key"), 32, "content_key")
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_step(row["step"], ("decryption",), "decrypt")
            check_window_open(row["window_ends_at"], now)
            org = _require_bidder(await _viewer(conn, tender, user, True), user)
            bid = await hs.bid(conn, bid_id)
            if bid is None or bid["tender_id"] != tender_id:
                raise NotFound("no bid with this id is in this opening", code="bid_not_found")
            if bid["organisation_id"] != org:
                raise HallRefused("this bid belongs to another bidder", code="not_your_bid", status=403)
            if bid["status"] != "listed":
                raise HallRefused(f"this bid is {bid['status']}; there is nothing to decrypt", code="already_opened")
    manifest = validate_manifest(bid["manifest"])
    try:
        check_content_key(manifest, key)
    except KeyCommitmentMismatch:
        await _failed_attempt(deps, tender_id, bid_id, "the key does not open this bid")
        raise HallRefused("this key is not the bid's content key (its commitment does not match); "
                          "check the key file and retry", code="key_mismatch", status=422) from None
    # An attempt that began inside the window is recorded even if its verification ends after it.
    path = uploads.bid_path(deps.settings.storage_dir, tender_id, bid["upload_id"])
    try:
        summary, files = await asyncio.to_thread(_open_stored, path, bid, manifest, key)
    except _OpenFailed as exc:
        await _failed_attempt(deps, tender_id, bid_id, str(exc))
        raise HallRefused(f"{exc}; nothing was opened", code="ciphertext_invalid", status=422) from None
    verified = _Verified(bid, key, summary, files, "bidder", "listed")
    if bid_id not in await _record_opened(deps, tender_id, [verified]):
        raise HallRefused("this bid was opened by another attempt meanwhile", code="already_opened")
    return {"bid_id": str(bid_id), "status": "opened"}


async def close_window(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """After the window: bids not decrypted go to the custodians, or become void, per the tender's rule."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            require_step(row["step"], ("decryption",), "close the decryption window")
            check_window_closed(row["window_ends_at"], now)
            pending = await hs.count_status(conn, tender_id, "listed")
            to = step_after_window(tender["decryption_rule"], pending)
            if to == "custodians":
                moved = await hs.await_custodians(conn, tender_id)
                body = {"step": to, "to_custodians": [str(b) for b in moved]}
            else:
                voided = await hs.void_rest(conn, tender_id, ["listed"], "not decrypted within the window")
                body = {"step": to, "void": [str(b) for b in voided]}
            await hs.set_step(conn, tender_id, to, now)
            await _act(conn, deps, tender_id, "step", body, {"step": to})
    return {"step": to}


async def release_shares(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A custodian releases its decrypted shares of the bids waiting for custodians; k of them open a bid."""
    items = data.get("shares") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items or len(items) > 10000:
        raise InvalidInput('send {"shares": [{"bid_id": "...", "share": "..."}, ...]} (1 to 10000 items)')
    parsed: dict[uuid.UUID, bytes] = {}
    for item in items:
        if not isinstance(item, dict):
            raise InvalidInput("each share is an object with bid_id and share")
        try:
            bid_id = uuid.UUID(str(item.get("bid_id")))
        except ValueError:
            raise InvalidInput("bid_id must be a UUID") from None
        if bid_id in parsed:
            raise InvalidInput(f"bid {bid_id} is named twice")
        parsed[bid_id] = b64url_bytes(item.get("share"), SHARE_SIZE, f"the share for bid {bid_id}")
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_step(row["step"], ("custodians",), "release shares")
            viewer = await _viewer(conn, tender, user, True)
            if viewer.custodian_position is None:
                raise HallRefused("only this tender's key custodians may release shares", code="not_custodian",
                                  status=403)
            statuses = await hs.bid_statuses(conn, list(parsed))
            for bid_id in parsed:
                bid = statuses.get(bid_id)
                if bid is None or bid["tender_id"] != tender_id:
                    raise NotFound(f"bid {bid_id} is not in this opening", code="bid_not_found")
                if bid["status"] != "awaiting_custodians":
                    raise HallRefused(f"bid {bid_id} is {bid['status']}, not waiting for custodians",
                                      code="bid_not_waiting")
            already = await hs.released_by(conn, list(parsed), viewer.custodian_position)
            if already:
                raise HallRefused(f"you already released your share of bid {already[0]}",
                                  code="share_already_released")
            await hs.insert_shares(conn, parsed, viewer.custodian_position, user.id, now)
            await _act(conn, deps, tender_id, "shares_released",
                       {"position": viewer.custodian_position, "bids": sorted(str(b) for b in parsed)},
                       {"position": viewer.custodian_position, "count": len(parsed)})
    opened = await open_ready_bids(deps, tender_id)
    return {"released": len(parsed), "opened": opened}


RECORD_BATCH = 200
RECORD_GATHER_SECONDS = 0.2


async def open_ready_bids(deps: Deps, tender_id: uuid.UUID) -> int:
    """Combine shares and open every waiting bid that has k of them; safe to repeat (a restart resumes here).

    What the bids need is read in one query; combining and verifying run on as many worker
    threads as there are CPUs, while one recorder writes whatever has finished in batches, so
    the database work overlaps the decryption and costs one transaction per batch, not per bid.
    """
    async with deps.pool.acquire() as conn:
        tender = await _tender(conn, tender_id)
        k = tender["threshold"]
        ready = await hs.bids_with_shares(conn, await hs.ready_for_custodians(conn, tender_id, k))
    if not ready:
        return 0
    limit = asyncio.Semaphore(max(1, os.cpu_count() or 1))
    finished: asyncio.Queue[_Verified | None] = asyncio.Queue()

    async def open_one(bid: asyncpg.Record) -> None:
        result = None
        try:
            path = uploads.bid_path(deps.settings.storage_dir, tender_id, bid["upload_id"])
            async with limit:
                key, summary, files = await asyncio.to_thread(_open_with_shares, path, bid, k)
            result = _Verified(bid, key, summary, files, "custodians", "awaiting_custodians")
        except _OpenFailed as exc:
            await _failed_attempt(deps, tender_id, bid["bid_id"], str(exc))
        finally:
            finished.put_nowait(result)

    workers = [asyncio.create_task(open_one(b)) for b in ready]
    recorded = 0
    try:
        outstanding = len(ready)
        loop = asyncio.get_running_loop()
        while outstanding:
            batch = [await finished.get()]
            # Gather what finishes within a short while: a transaction per handful of bids would
            # spend the CPU the decryption needs.
            until = loop.time() + RECORD_GATHER_SECONDS
            while len(batch) < min(RECORD_BATCH, outstanding):
                try:
                    batch.append(await asyncio.wait_for(finished.get(), max(0.0, until - loop.time())))
                except TimeoutError:
                    break
            outstanding -= len(batch)
            verified = [v for v in batch if v is not None]
            if verified:
                recorded += len(await _record_opened(deps, tender_id, verified))
    finally:
        results = await asyncio.gather(*workers, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return recorded


async def finish_custodians(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """The host ends the custodian step: bids still not opened become void, with the reason."""
    await open_ready_bids(deps, tender_id)
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            require_step(row["step"], ("custodians",), "finish the custodian step")
            voided = await hs.void_rest(conn, tender_id, ["awaiting_custodians"], "not opened by the custodians")
            await hs.set_step(conn, tender_id, "reading", now)
            await _act(conn, deps, tender_id, "step", {"step": "reading", "void": [str(b) for b in voided]},
                       {"step": "reading"})
    return {"step": "reading", "void": len(voided)}


# ---------------------------------------------------------------------------- reading, record, close


async def read_next(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Read out (唱标) the next opened bid, or every remaining one with {"all": true}."""
    read_all = isinstance(data, dict) and data.get("all") is True
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            require_step(row["step"], ("reading",), "read out")
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
                "summary": b["summary"], "amounts_in_words": _in_words(b["summary"], tender["summary_fields"])})
                for b in read])
    return {"read": [str(b["bid_id"]) for b in read]}


async def generate_record(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> dict[str, Any]:
    """Generate the opening record (开标记录), log its digest and open the confirmation time."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            require_step(row["step"], ("reading",), "generate the record")
            if await hs.next_to_read(conn, tender_id) is not None:
                raise HallRefused("read out every opened bid first", code="reading_unfinished")
            if await hs.count_unanswered(conn, tender_id):
                raise HallRefused("answer every objection first; both go into the record", code="objection_unanswered")
            record = await _record(conn, tender, row, now)
            _data, sha256 = record_bytes(record)
            deadline = now + timedelta(minutes=tender["confirm_minutes"])
            await hs.set_record(conn, tender_id, record, sha256, now, deadline)
            await hs.set_step(conn, tender_id, "record", now)
            await _act(conn, deps, tender_id, "record", {"record_sha256": sha256, "confirm_deadline": iso(deadline)},
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
        opening={"window_ends_at": _iso(row["window_ends_at"]), "failure_reason": row["failure_reason"]},
        bidders=[{"name": b["name"], "credit_code": b["credit_code"], "signed_in_at": _iso(b["signed_in_at"]),
                  "deposit": b["deposit"], "deposit_note": b["deposit_note"]}
                 for b in await hs.bidders(conn, tender_id)],
        bids=[{"bid": str(b["bid_id"]), "lot": b["lot_code"], "bidder": b["bidder"], "credit_code": b["credit_code"],
               "received_at": iso(b["received_at"]), "ciphertext_sha256": b["ciphertext_sha256"],
               "receipt_log_index": b["log_index"], "status": b["status"], "reason": b["reason"],
               "opened_by": b["opened_by"], "read_order": b["read_order"], "summary": b["summary"],
               "amounts_in_words": _in_words(b["summary"], tender["summary_fields"])} for b in bids],
        lots=[{"code": code, **outcome} for code, outcome in (row["lot_outcomes"] or {}).items()],
        objections=[{"by": o["organisation"], "text": o["text"], "raised_at": iso(o["raised_at"]),
                     "answer": o["answer"], "answered_at": _iso(o["answered_at"])}
                    for o in await hs.objections(conn, tender_id)],
    )


async def record_of(deps: Deps, tender_id: uuid.UUID) -> tuple[dict[str, Any], bytes, str]:
    """The generated record, its canonical bytes and digest; NotFound before it exists."""
    async with deps.pool.acquire() as conn:
        await _tender(conn, tender_id)
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
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            org = _require_bidder(await _viewer(conn, tender, user, True), user)
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
            await _act(conn, deps, tender_id, "record_confirmed",
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
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            require_step(row["step"], ("record",), "close the opening")
            orgs = {b["organisation_id"] for b in await hs.bids(conn, tender_id)}
            confirmed = {c["organisation_id"] for c in await hs.confirmations(conn, tender_id)}
            check_closable(orgs <= confirmed, row["confirm_deadline"], now, resumption)
            await hs.set_resumption(conn, tender_id, resumption)
            await hs.set_step(conn, tender_id, "closed", now)
            await _act(conn, deps, tender_id, "closed", {
                "resumption_at": _iso(resumption), "not_confirmed": sorted(str(o) for o in orgs - confirmed)},
                {"step": "closed", "resumption_at": _iso(resumption)})
    return {"step": "closed", "resumption_at": _iso(resumption)}


# ---------------------------------------------------------------------------- objections and chat


async def raise_objection(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A signed-in bidder raises an objection (异议); it goes into the record with the host's answer."""
    text = text_field(data, "text", MAX_OBJECTION)
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_step(row["step"], OBJECTION_STEPS, "raise an objection")
            viewer = await _viewer(conn, tender, user, row["step"] != "sign_in")
            org = _require_bidder(viewer, user)
            if not viewer.signed_in:
                raise HallRefused("sign in before raising an objection", code="not_signed_in")
            objection_id = await hs.insert_objection(conn, tender_id, org, user.id, text, now)
            await _act(conn, deps, tender_id, "objection",
                       {"objection": objection_id, "text_sha256": hashlib.sha256(text.encode()).hexdigest()},
                       {"objection": objection_id})
    return {"objection": objection_id}


async def answer_objection(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, objection_id: int,
                           data: Any) -> dict[str, Any]:
    answer = text_field(data, "answer", MAX_ANSWER)
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            require_step(row["step"], OBJECTION_STEPS, "answer an objection")
            objection = await hs.objection_for_update(conn, objection_id, tender_id)
            if objection is None:
                raise NotFound(f"no objection {objection_id} in this opening", code="objection_not_found")
            if objection["answer"] is not None:
                raise HallRefused("this objection has already been answered", code="already_answered")
            await hs.answer_objection(conn, objection_id, answer, user.id, now)
            await _act(conn, deps, tender_id, "objection_answered",
                       {"objection": objection_id, "answer_sha256": hashlib.sha256(answer.encode()).hexdigest()},
                       {"objection": objection_id})
    return {"objection": objection_id, "answered": True}


async def send_chat(deps: Deps, user: CurrentUser, tender_id: uuid.UUID, data: Any) -> dict[str, Any]:
    text = text_field(data, "text", MAX_CHAT)
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            now = await server_now(conn)
            tender, row = await _locked(conn, tender_id, now)
            require_step(row["step"], CHAT_STEPS, "chat")
            viewer = await _viewer(conn, tender, user, row["step"] not in ("waiting", "sign_in"))
            if not viewer.host:
                _require_bidder(viewer, user)
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
            tender, _row = await _locked(conn, tender_id, now)
            require_host(await _viewer(conn, tender, user, True))
            if not await hs.hide_chat(conn, message_id, tender_id, now, user.id):
                raise NotFound(f"no visible message {message_id} in this hall", code="message_not_found")
            await _act(conn, deps, tender_id, "chat_hidden", {"message": message_id}, {"message": message_id})
    return {"message": message_id, "hidden": True}


# ---------------------------------------------------------------------------- access for media and pages


async def hall_role(deps: Deps, user: CurrentUser, tender_id: uuid.UUID) -> Viewer:
    """Who the user is in this hall (host, bidder, custodian); NotFound for an unpublished tender."""
    async with deps.pool.acquire() as conn:
        tender = await _tender(conn, tender_id)
        row = await hs.opening(conn, tender_id)
        frozen = row is not None and row["step"] not in ("waiting", "sign_in")
        return await _viewer(conn, tender, user, frozen)


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


async def ocds_package(deps: Deps, tender_id: uuid.UUID, uri: str) -> dict[str, Any]:
    """The tender (and its opening, as the public sees it) as an OCDS 1.1 release package."""
    tender = await get_tender(deps, None, tender_id)
    if tender["status"] == "draft":
        raise NotFound(f"no published tender has id {tender_id}", code="tender_not_found")
    async with deps.pool.acquire() as conn:
        has_opening = await hs.opening(conn, tender_id) is not None
        agent = await store.agent_organisation(conn, tender_id)
        now = await server_now(conn)
    opening = await snapshot(deps, None, tender_id) if has_opening else None
    return ocds.release_package(tender, opening, uri=uri, published_date=now, publisher_name=deps.settings.publisher_name,
                                agent={"name": agent["name"], "credit_code": agent["credit_code"]} if agent else None)


async def open_pending_everywhere(deps: Deps) -> int:
    """Periodic job: finish bids whose shares arrived but whose opening was cut off (e.g. by a restart)."""
    async with deps.pool.acquire() as conn:
        tenders = await hs.openings_at_custodians(conn)
    return sum([await open_ready_bids(deps, t) for t in tenders])

