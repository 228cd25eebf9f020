"""What the opening hall looks like to each person (docs/hall.md), and to the public as open data."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from tenderhall.accounts import CurrentUser
from trading import hall_store as hs
from trading import ocds, store
from trading.hall import STEP_NAMES, actions, amounts_in_words, current_step, hall_opens_at, iso_or_none
from trading.hall_acts import published_tender, viewer_of
from trading.service import Deps, get_tender, server_now, topic
from trading.tenders import NotFound, iso

CHAT_SHOWN = 200
TIMELINE_SHOWN = 300


# ---------------------------------------------------------------------------- snapshot


async def snapshot(deps: Deps, user: CurrentUser | None, tender_id: uuid.UUID, *,
                   video_live: bool = False) -> dict[str, Any]:
    """The hall as this user (None: the public) may see it (docs/hall.md)."""
    async with deps.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            tender = await published_tender(conn, tender_id)
            now = await server_now(conn)
            row = await hs.opening(conn, tender_id)
            step = current_step(row["step"] if row else None, tender["deadline"], tender["hall_opens_minutes"], now)
            frozen = step not in ("locked", "waiting", "sign_in")
            viewer = await viewer_of(conn, tender, user, frozen)
            listed = frozen and step != "bidder_list"
            bidders = await hs.bidders(conn, tender_id) if row else []
            bids = await hs.bids(conn, tender_id) if frozen else []
            objections = await hs.objections(conn, tender_id) if row else []
            chat = await hs.chat(conn, tender_id, CHAT_SHOWN) if row else []
            confirmations = await hs.confirmations(conn, tender_id) if row else []
            timeline = await hs.timeline(conn, topic(tender_id), TIMELINE_SHOWN)
            last_event = await hs.last_event_id(conn, topic(tender_id))
            lots = await store.lots(conn, tender_id)
            shows_count = tender["show_bid_count"] or viewer.host
            bids_received = await store.count_active_bids(conn, tender_id) if shows_count else None
            # Manifests only where this viewer acts on them: its own bids, or the custodian's waiting ones.
            manifests = await hs.manifests(conn, [
                b["bid_id"] for b in bids
                if (viewer.bidder and b["organisation_id"] == user.organisation_id)
                or (viewer.custodian_position is not None and b["status"] == "awaiting_custodians")])
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
            "summary": summary, "amounts_in_words": amounts_in_words(summary, tender["summary_fields"]),
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
        "window_ends_at": iso_or_none(row["window_ends_at"]) if row else None,
        "confirm_deadline": iso_or_none(row["confirm_deadline"]) if row else None,
        "resumption_at": iso_or_none(row["resumption_at"]) if row else None,
        "failure_reason": row["failure_reason"] if row else None,
        "me": {"host": viewer.host, "bidder": viewer.bidder, "organisation_id": str(me_org) if me_org else None,
               "signed_in": viewer.signed_in, "custodian_position": viewer.custodian_position},
        "bids_received": bids_received,
        # Before the list the count of signed-in bidders tells the bid count: shown where that is.
        "signed_in_count": (sum(1 for b in bidders if b["signed_in_at"] is not None)
                            if shows_count or listed else None),
        "bidders": [{
            "organisation_id": str(b["organisation_id"]), "name": b["name"], "credit_code": b["credit_code"],
            "signed_in_at": iso_or_none(b["signed_in_at"]), "deposit": b["deposit"], "deposit_note": b["deposit_note"],
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
            "answered_at": iso_or_none(o["answered_at"]), "mine": o["organisation_id"] == me_org,
        } for o in objections],
        "chat": [_chat_view(c, listed or viewer.host, me_org) for c in chat],
        "record": None,
        "timeline": [{"id": t["id"], "at": iso(t["created_at"]), "kind": t["kind"], "step": t["payload"].get("step"),
                      "text": t["payload"].get("text")} for t in timeline],
        "video": {"live": video_live},
        "last_event_id": last_event,
    }
    if row is not None and row["record_sha256"]:
        hall["record"] = {
            "sha256": row["record_sha256"], "generated_at": iso(row["record_at"]),
            "confirm_deadline": iso_or_none(row["confirm_deadline"]),
            "confirmations": [{"organisation_id": str(c["organisation_id"]), "name": c["name"],
                               "confirmed_at": iso(c["confirmed_at"])} for c in confirmations],
            "html": f"/tenders/{tender_id}/hall/record", "json": f"/api/tenders/{tender_id}/hall/record.json",
        }
    hall["actions"] = actions(
        step, viewer, deadline_passed=now >= tender["deadline"], window_over=window_over,
        confirmed=me_org in confirmed_orgs, all_confirmed=bool(bidder_orgs) and bidder_orgs <= confirmed_orgs,
        confirm_over=confirm_over)
    return hall


def _chat_view(c: asyncpg.Record, named: bool, me_org: uuid.UUID | None) -> dict[str, Any]:
    if c["from_host"]:
        by = "host"
    elif named or c["organisation_id"] == me_org:
        by = c["organisation"]
    else:
        by = None  # before the bidder list, other bidders stay anonymous (投标人)
    return {"id": c["id"], "by": by, "from_host": c["from_host"], "text": None if c["hidden_at"] else c["text"],
            "sent_at": iso(c["sent_at"]), "hidden": c["hidden_at"] is not None}




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
