"""What one participant sees of a session: the page's snapshot, the recordings' manifest,
document reading, and the list of sessions."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, AsyncIterator

from evaluation import session_rules as rules
from evaluation import session_store as ss
from evaluation.draw_service import Deps
from evaluation.session_rules import SessionRefused
from evaluation.session_service import (
    DEFAULT_SCHEMES, confirmed_experts, media_room, not_found, require_part, require_part_or_invited, server_now,
    session_act, session_read, who,
)
from evaluation.session_faults import fault_outcome
from evaluation.session_state import State, load
from tenderhall import log
from tenderhall.canonical import b64url
from tenderhall.accounts import CurrentUser
from tenderhall.media_recorder import room_directory
from trading import uploads
from trading.documents import stream_document
from trading.manifest import validate_manifest

# Documents open to the committee once the session is open (the main venue started it).
DOCUMENT_STEPS = rules.STARTED + ("closed",)


def files_of(value: Any) -> list[dict[str, Any]]:
    """A bid's opened files; openings recorded before hall_store passed them as JSON text hold a
    one-file bid's entry as a bare object."""
    return [value] if isinstance(value, dict) else list(value or [])


def _iso(moment: Any) -> str | None:
    return log.iso_utc(moment) if moment is not None else None


def _consolidation_json(state: State) -> dict[str, Any] | None:
    summary = state.consolidation()
    if summary is None:
        return None
    return {
        "bidders": [{"bidder": b.bidder, "committee_total": str(b.committee_total),
                     "expert_totals": {e: str(v) for e, v in b.expert_totals.items()},
                     "criteria": [{"criterion": c.criterion_id, "committee": str(c.committee),
                                   "experts": {e: str(v) for e, v in c.by_expert.items()}} for c in b.criteria]}
                    for b in summary.bidders.values()],
        "flags": [{"expert": f.expert, "bidder": f.bidder, "criterion": f.criterion_id, "score": str(f.score),
                   "others_median": str(f.others_median), "limit": str(f.limit),
                   "reason": state.reasons.get(f.key)} for f in summary.flags],
    }


async def snapshot(deps: Deps, user: CurrentUser, session_id: uuid.UUID) -> dict[str, Any]:
    async with session_read(deps, user, session_id) as (conn, session, caller, now):
        await require_part_or_invited(conn, deps, session, caller)
        state = await load(conn, session)
        step = session["step"]
        me = str(user.id)
        staff = caller.kind in ("main_staff", "room_staff", "supervisor")
        outcome = await fault_outcome(conn, session, now)
        review = state.review() if step not in ("scheduled", "sign_in", "declarations", "chair_election") else None
        see_documents = step in DOCUMENT_STEPS and (caller.member or caller.kind == "supervisor")
        result: dict[str, Any] = {
            "id": str(session_id), "tender": {"id": str(session["tender_id"]), "title": session["tender_title"],
                                              "lot": session["lot_code"]},
            "step": step, "step_at": _iso(session["step_at"]), "scheduled_start": _iso(session["scheduled_start"]),
            "opened_at": _iso(session["opened_at"]), "now": _iso(now),
            "chair": str(session["chair_id"]) if session["chair_id"] else None,
            "me": {"id": me, "kind": caller.kind, "room": str(caller.room) if caller.room else None,
                   "member": caller.member, "media_role": rules.media_role(caller.participant)},
            "scheme": session["scheme"],
            "fault": None if outcome is None else {"outcome": outcome.outcome, "rooms": list(outcome.rooms),
                                                   "deadlines": {r: _iso(d) for r, d in outcome.deadlines.items()}},
            "decision": None if session["decision"] is None else {
                "choice": session["decision"], "rooms": [str(r) for r in session["decision_rooms"] or []],
                "at": _iso(session["decided_at"])},
            "rooms": [{"id": str(r["room_id"]), "name": r["name"], "venue": r["venue_name"], "region": r["region_code"],
                       "main": r["is_main"], "seats": r["seats"], "ready": r["ready_at"] is not None,
                       "down_since": _iso(r["down_since"]), "left_out": r["left_out"],
                       "media": media_room(session_id, r["room_id"]), "staff": str(r["staff_id"])}
                      for r in state.rooms],
            "committee": [{"id": str(m["user_id"]), "name": m["display_name"], "room": str(m["room_id"]),
                           "declared": str(m["user_id"]) in state.declarations,
                           "conflict": bool(state.declarations.get(str(m["user_id"]), {}) and
                                            state.declarations[str(m["user_id"])]["conflict"]),
                           "signed": str(m["user_id"]) in state.signatures,
                           "public_key": b64url(bytes(m["public_key"]))} for m in state.members],
            "bidders": [{"id": str(b["organisation_id"]), "name": b["organisation_name"],
                         "price": (b["summary"] or {}).get("price"), "bid": str(b["bid_id"]),
                         "documents": [f["name"] for f in files_of(b["files"])] if see_documents else []}
                        for b in state.bids],
            "election": {"round": session["election_round"], "votes": len(state.ballots),
                         "my_vote": next((c for v, c in state.ballots if v == me), None)},
            "my_verdicts": [{"bidder": b, "criterion": c, "passed": v.passed, "reason": v.reason}
                            for b, by_c in state.verdicts.get(me, {}).items() for c, v in by_c.items()],
            "my_scores": [{"bidder": b, "criterion": c, "score": str(v)}
                          for b, by_c in state.scores.get(me, {}).items() for c, v in by_c.items()],
            "review": None if review is None else [
                {"bidder": r.bidder, "passed": r.passed,
                 "failures": [{"criterion": f.criterion_id, "passes": f.passes, "fails": f.fails,
                               "reasons": dict(f.reasons)} for f in r.failures]} for r in review.values()],
            "consolidation": _consolidation_json(state) if step in ("consolidation", "report", "closed") else None,
            "report_sha256": session["report_sha256"],
            "signatures": [{"user": u, "dissent": s["dissent"], "at": _iso(s["signed_at"])}
                           for u, s in state.signatures.items()],
            "clarifications": [
                {"id": c["id"], "bidder": str(c["organisation_id"]), "bidder_name": c["organisation_name"],
                 "question": c["question"], "status": c["status"], "asked_by": str(c["asked_by"]),
                 "deadline": _iso(c["deadline"]), "answer": c["answer"], "answered_at": _iso(c["answered_at"])}
                for c in await ss.clarifications(conn, session_id)] if (caller.member or staff) else [],
            "marks": [{"id": m["id"], "label": m["label"], "by": m["display_name"], "at": _iso(m["marked_at"])}
                      for m in await ss.marks(conn, session_id)],
            "segments": [_segment_json(s) for s in await ss.segments(conn, session_id)],
        }
    return result


def _segment_json(s: Any) -> dict[str, Any]:
    return {"id": s["id"], "room": str(s["room_id"]), "file": s["file_name"], "sha256": s["sha256"], "bytes": s["bytes"],
            "tracks": list(s["tracks"]), "started_at": _iso(s["started_at"]), "ended_at": _iso(s["ended_at"]),
            "log_index": s["log_index"]}


async def report(deps: Deps, user: CurrentUser, session_id: uuid.UUID) -> dict[str, Any]:
    """The generated report with its digest and the signatures (and dissents) on it."""
    async with session_read(deps, user, session_id) as (conn, session, caller, _now):
        require_part(caller)
        if session["report"] is None:
            raise SessionRefused("the report has not been generated yet", code="report_not_ready", status=404)
        signatures = await ss.signatures(conn, session_id)
        members = {m["user_id"]: m for m in await ss.members(conn, session_id)}
    return {"report": session["report"], "sha256": session["report_sha256"], "step": session["step"],
            "signatures": [{"user": str(s["user_id"]), "name": members[s["user_id"]]["display_name"],
                            "public_key": b64url(bytes(members[s["user_id"]]["public_key"])), "signature": s["signature"],
                            "dissent": s["dissent"], "signed_at": _iso(s["signed_at"])} for s in signatures]}


async def manifest(deps: Deps, user: CurrentUser, session_id: uuid.UUID) -> dict[str, Any]:
    """The session's recordings: every segment of every room, its times, digest and log entry, and the marks."""
    async with session_read(deps, user, session_id) as (conn, session, caller, _now):
        if caller.kind not in ("supervisor", "main_staff"):
            raise SessionRefused("recordings are for supervisors and the main venue", code="not_allowed", status=403)
        rooms = {r["room_id"]: r for r in await ss.session_rooms(conn, session_id)}
        segments = await ss.segments(conn, session_id)
        marks = await ss.marks(conn, session_id)
    return {"session": str(session_id), "step": session["step"],
            "rooms": [{"id": str(k), "name": r["name"], "venue": r["venue_name"]} for k, r in rooms.items()],
            "segments": [_segment_json(s) for s in segments],
            "marks": [{"label": m["label"], "by": m["display_name"], "at": _iso(m["marked_at"]),
                       "room": str(m["room_id"]) if m["room_id"] else None} for m in marks]}


async def segment_file(deps: Deps, user: CurrentUser, session_id: uuid.UUID, segment_id: int,
                       timing: bool = False) -> Path:
    """A recorded segment's file (or its timing file) for playback; supervisors and the main venue."""
    async with deps.pool.acquire() as conn:
        session = await ss.session(conn, session_id)
        if session is None:
            raise not_found(session_id)
        caller = await who(conn, session, user)
        if caller.kind not in ("supervisor", "main_staff"):
            raise SessionRefused("recordings are for supervisors and the main venue", code="not_allowed", status=403)
        row = await ss.segment(conn, session_id, segment_id)
    if row is None:
        raise SessionRefused(f"no segment {segment_id} in this session", code="segment_not_found", status=404)
    directory = room_directory(deps.settings.data_dir / "recordings", media_room(session_id, row["room_id"]))
    path = directory / (row["timing_name"] if timing else row["file_name"])
    if not path.is_file():
        raise SessionRefused("the segment's file is missing on this server", code="segment_missing", status=410)
    return path


async def open_document(deps: Deps, user: CurrentUser, session_id: uuid.UUID, bid_id: uuid.UUID,
                        name: str) -> tuple[AsyncIterator[bytes], int | None]:
    """One document of an opened bid for a committee member or supervisor, from the opening of the
    session on; the view is recorded and logged before a byte is sent."""
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        if not (caller.member or caller.kind == "supervisor"):
            raise SessionRefused("bid documents are for the committee and the supervisors", code="not_on_committee",
                                 status=403)
        if session["step"] not in DOCUMENT_STEPS:
            raise SessionRefused("the bid documents open when the session opens", code="documents_closed")
        bid = await ss.opened_bid(conn, session["tender_id"], session["lot_code"], bid_id)
        if bid is None:
            raise SessionRefused(f"no opened bid {bid_id} in this session", code="bid_not_found", status=404)
        listed = {f["name"]: f for f in files_of(bid["files"])}
        if name not in listed:
            raise SessionRefused(f"the bid has no document {name!r}", code="document_not_found", status=404)
        await ss.insert_document_view(conn, session_id, user.id, bid_id, name, now)
        await log.append_entry(conn, deps.platform_key, "session.document_viewed", {
            "session": str(session_id), "user": str(user.id), "bid": str(bid_id), "document": name,
            "at": log.iso_utc(now)})
    path = uploads.bid_path(deps.settings.storage_dir, session["tender_id"], bid["upload_id"])
    stream = stream_document(path, validate_manifest(bid["manifest"]), bytes(bid["content_key"]), name)
    return stream, listed[name].get("size")


async def list_sessions(deps: Deps, user: CurrentUser, page: int, per_page: int) -> dict[str, Any]:
    """The caller's sessions; a drawn expert also sees, above them, the sessions waiting for their sign-in."""
    async with deps.pool.acquire() as conn:
        rows = await ss.sessions_for(conn, user.id, user.has("admin"), per_page, (page - 1) * per_page)
        now = await server_now(conn)
        waiting = await _waiting_for_sign_in(conn, deps, user) if page == 1 else []

    def item(r: Any, to_sign_in: bool = False) -> dict[str, Any]:
        return {"id": str(r["id"]), "tender": str(r["tender_id"]), "title": r["tender_title"], "lot": r["lot_code"],
                "step": r["step"], "scheduled_start": _iso(r["scheduled_start"]), "main_venue": r["main_venue"],
                "sign_in": to_sign_in}

    return {"sessions": [item(r, True) for r in waiting] + [item(r) for r in rows],
            "total": (rows[0]["total"] if rows else 0) + len(waiting), "page": page, "per_page": per_page,
            "now": _iso(now)}


async def _waiting_for_sign_in(conn: Any, deps: Deps, user: CurrentUser) -> list[Any]:
    """Sessions open for sign-in whose unsealed committee names this expert (names are sealed per
    seat with the data key, so each open session's draw is read; few are open at a time)."""
    if not user.has("expert"):
        return []
    expert_id = await ss.expert_of_user(conn, user.id)
    if expert_id is None:
        return []
    found = []
    for row in await ss.sessions_open_for_sign_in(conn, user.id):
        if expert_id in await confirmed_experts(conn, deps, row["tender_id"]):
            found.append(row)
    return found


async def clarifications_of_bidder(deps: Deps, user: CurrentUser) -> list[dict[str, Any]]:
    """Approved or answered questions to the caller's organisation, newest first."""
    async with deps.pool.acquire() as conn:
        rows = await ss.clarifications_of_org(conn, user.organisation_id)
        now = await server_now(conn)
    return [{"id": r["id"], "session": str(r["session_id"]), "tender": r["tender_title"], "question": r["question"],
             "status": r["status"], "deadline": _iso(r["deadline"]), "deadline_at": r["deadline"],
             "overdue": r["status"] == "approved" and r["deadline"] is not None and r["deadline"] < now,
             "answer": r["answer"]} for r in rows]


async def form_choices(deps: Deps, user: CurrentUser) -> dict[str, Any]:
    """What the scheduling form offers: the caller's lots ready for evaluation, rooms, staff, supervisors."""
    async with deps.pool.acquire() as conn:
        lots = await ss.schedulable_lots(conn, None if user.has("admin") else user.id)
        rooms = await ss.rooms_of_venues(conn)
        staff = await ss.users_with_roles(conn, ["agent", "admin"])
        supervisors = await ss.users_with_roles(conn, ["supervisor"])
    return {
        "lots": [{"tender_id": str(r["tender_id"]), "code": r["code"], "name": r["name"], "lot_code": r["lot_code"],
                  "lot_name": r["lot_name"], "needed_at": _iso(r["needed_at"])} for r in lots],
        "rooms": [{"id": str(r["id"]), "name": r["name"], "seats": r["seats"], "venue": r["venue_name"],
                   "region_code": r["region_code"]} for r in rooms],
        "staff": [{"id": str(u["id"]), "name": u["display_name"], "username": u["username"]} for u in staff],
        "supervisors": [{"id": str(u["id"]), "name": u["display_name"], "username": u["username"]} for u in supervisors],
        "default_schemes": DEFAULT_SCHEMES,
    }
