"""The committee's acts in a session: steps, declarations, the chair vote, verdicts, scores,
deviation reasons, clarifications, the report and its signatures, marks on the timeline."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from evaluation import session_rules as rules
from evaluation import session_store as ss
from evaluation.draw_service import Deps
from evaluation.scoring import ScoringError, check_score
from evaluation.session_rules import SessionRefused
from evaluation.session_service import (
    announce, confirmed_experts, invalid_input, require_on_committee, require_part, session_act, text_of, uuid_of,
)
from evaluation.session_state import declaration_message, load, report_bytes, report_signature_message
from tenderhall import bus, log
from tenderhall.accounts import CurrentUser
from trading.manifest import verify_raw_p256
from trading.seal_errors import SignatureInvalid

MAX_STATEMENT = 2000
MAX_REASON = 1000
MAX_QUESTION = 2000
MAX_ANSWER = 10000
MAX_LABEL = 200
MAX_CELLS = 2000
CLARIFICATION_HOURS = (1, 72)


def _object(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise invalid_input("send a JSON object")
    return data


def _verify(public_key: bytes, message: bytes, signature: Any) -> str:
    key = load_der_public_key(bytes(public_key))
    assert isinstance(key, ec.EllipticCurvePublicKey)
    try:
        verify_raw_p256(key, message, signature)
    except SignatureInvalid as exc:
        raise SessionRefused(f"the signature {exc} under the key you signed in with", code="bad_signature",
                             status=422) from None
    return str(signature)


# ---------------------------------------------------------------------------- steps


async def advance(deps: Deps, user: CurrentUser, session_id: uuid.UUID) -> dict[str, Any]:
    """The chair (or the main venue before a chair exists) moves the session to its next step.
    scheduled -> sign_in is open_sign_in; consolidation -> report generates the report."""
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        step = session["step"]
        if step == "scheduled":
            raise SessionRefused("open sign-in with the sign-in act: it unseals the drawn names",
                                 code="use_open_sign_in")
        if caller.kind == "main_staff" and step not in ("sign_in", "declarations", "chair_election"):
            raise SessionRefused("after the chair is elected only the chair moves the session on", code="not_allowed",
                                 status=403)
        rules.check_action(step, caller.participant, "advance")
        state = await load(conn, session)
        if step == "sign_in":
            await _require_everyone_signed_in(conn, deps, session)
        target = rules.next_step(step, state.facts())
        body: dict[str, Any] = {"step": target, "from": step, "by": str(user.id)}
        if step == "chair_election":
            chair = rules.election_result(state.ballots, state.member_ids).winner
            assert chair is not None
            await ss.set_chair(conn, session_id, uuid.UUID(chair))
            body["chair"] = chair
        if target == "report":
            report = state.report(log.iso_utc(now))
            _data, sha256 = report_bytes(report)
            await ss.set_report(conn, session_id, report, sha256)
            body["report_sha256"] = sha256
        await ss.set_step(conn, session_id, target, now)
        await announce(conn, deps, session_id, "step", body)
    return {"step": target}


async def _require_everyone_signed_in(conn: Any, deps: Deps, session: Any) -> None:
    """Every expert who confirmed a seat of the committee's draws has signed in (a member released
    for a conflict counts as accounted for)."""
    confirmed = await confirmed_experts(conn, deps, session["tender_id"])
    if not confirmed:
        raise SessionRefused("no drawn expert has confirmed: the committee is empty", code="not_signed_in")
    seated = {m["expert_id"] for m in await ss.members(conn, session["id"])}
    missing = confirmed - seated
    if missing:
        raise SessionRefused(f"{len(missing)} of the {len(confirmed)} drawn experts have not signed in yet",
                             code="not_signed_in", detail={"missing": len(missing), "drawn": len(confirmed)})


async def release_member(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Main venue: release a member who declared a conflict of interest (回避); the seat is filled
    by a replacement who signs in while declarations are open."""
    member = uuid_of(_object(data).get("user_id"), "user_id")
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        if caller.kind != "main_staff":
            raise SessionRefused("only the main venue releases a member", code="not_allowed", status=403)
        rules.require_step(session["step"], "declarations", doing="release a member")
        state = await load(conn, session)
        declared = state.declarations.get(str(member))
        if str(member) not in state.member_ids or declared is None or not declared["conflict"]:
            raise SessionRefused("only a member who declared a conflict of interest is released",
                                 code="no_conflict_declared")
        await ss.replace_member(conn, session_id, member, now)
        await announce(conn, deps, session_id, "member_released", {"user": str(member), "by": str(user.id)})
    return {"released": str(member)}


# ---------------------------------------------------------------------------- declarations and the vote


async def declare(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """The conflict-of-interest declaration (回避声明), signed in the browser with the session key."""
    data = _object(data)
    conflict = data.get("conflict")
    if not isinstance(conflict, bool):
        raise invalid_input("conflict must be true or false")
    statement = text_of(data, "statement", MAX_STATEMENT)
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.check_action(session["step"], caller.participant, "declare")
        require_on_committee(caller)
        state = await load(conn, session)
        facts = state.facts()
        rules.check_declaration(str(user.id), facts.members, facts.declared, facts.conflicts)
        member = next(m for m in state.members if m["user_id"] == user.id)
        signature = _verify(member["public_key"], declaration_message(session_id, conflict, statement),
                            data.get("signature"))
        await ss.insert_declaration(conn, session_id, user.id, conflict, statement, signature, now)
        await announce(conn, deps, session_id, "declared", {"user": str(user.id), "conflict": conflict,
                                                            "signature": signature})
    return {"declared": True, "conflict": conflict}


async def vote(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A vote for the chair (推选组长); a round without a majority starts again with no ballots."""
    candidate = uuid_of(_object(data).get("candidate"), "candidate")
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.check_action(session["step"], caller.participant, "vote")
        require_on_committee(caller)
        state = await load(conn, session)
        rules.check_vote(state.ballots, str(user.id), str(candidate), state.member_ids)
        round_no = session["election_round"]
        await ss.insert_ballot(conn, session_id, round_no, user.id, candidate, now)
        result = rules.election_result(state.ballots + [(str(user.id), str(candidate))], state.member_ids)
        body = {"round": round_no, "votes": len(state.ballots) + 1, "winner": result.winner, "message": result.message}
        if result.winner is None and result.message.endswith("vote again"):
            body["next_round"] = await ss.next_election_round(conn, session_id)
        await announce(conn, deps, session_id, "voted", {**body, "voter": str(user.id), "tally": result.tally})
    return body


# ---------------------------------------------------------------------------- reviews and scores


def _bidder(state_bidders: tuple[str, ...], raw: Any, where: str) -> uuid.UUID:
    bidder = uuid_of(raw, where)
    if str(bidder) not in state_bidders:
        raise invalid_input(f"{where}: {bidder} is not a bidder of this session", "unknown_bidder")
    return bidder


def _cells(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    cells = data.get(key)
    if not isinstance(cells, list) or not 1 <= len(cells) <= MAX_CELLS or not all(isinstance(c, dict) for c in cells):
        raise invalid_input(f"{key} must be a list of 1 to {MAX_CELLS} objects")
    return cells


async def review(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Initial review (初步评审) verdicts: [{bidder, criterion, passed, reason}], a reason for every fail."""
    cells = _cells(_object(data), "verdicts")
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.check_action(session["step"], caller.participant, "review")
        require_on_committee(caller)
        state = await load(conn, session)
        known = {c.id for c in state.scheme.review_criteria}
        rows = []
        for i, cell in enumerate(cells):
            bidder = _bidder(state.bidders, cell.get("bidder"), f"verdicts[{i}].bidder")
            criterion = cell.get("criterion")
            if criterion not in known:
                raise invalid_input(f"verdicts[{i}].criterion {criterion!r} is not an initial-review criterion", "unknown_criterion")
            passed = cell.get("passed")
            if not isinstance(passed, bool):
                raise invalid_input(f"verdicts[{i}].passed must be true or false")
            reason = text_of(cell, "reason", MAX_REASON, required=not passed)
            rows.append((session_id, user.id, bidder, criterion, passed, reason, now))
        await ss.upsert_verdicts(conn, rows)
        await announce(conn, deps, session_id, "reviewed", {"user": str(user.id), "verdicts": len(rows)}, logged=False)
        await log.append_entry(conn, deps.platform_key, "session.verdicts", {
            "session": str(session_id), "user": str(user.id),
            "verdicts": [{"bidder": str(r[2]), "criterion": r[3], "passed": r[4], "reason": r[5]} for r in rows]})
    return {"saved": len(rows)}


async def score(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Detailed review (详细评审) scores: [{bidder, criterion, score}], each within its criterion's range."""
    cells = _cells(_object(data), "scores")
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.check_action(session["step"], caller.participant, "score")
        require_on_committee(caller)
        state = await load(conn, session)
        passed = state.passed()
        rows = []
        for i, cell in enumerate(cells):
            bidder = _bidder(state.bidders, cell.get("bidder"), f"scores[{i}].bidder")
            if str(bidder) not in passed:
                raise invalid_input(f"scores[{i}]: bidder {bidder} did not pass the initial review", "bidder_not_passed")
            try:
                value = check_score(state.scheme, str(cell.get("criterion")), cell.get("score"))
            except ScoringError as exc:
                raise SessionRefused(f"scores[{i}]: {exc.message}", code=exc.code, status=422) from None
            rows.append((session_id, user.id, bidder, str(cell["criterion"]), value, now))
        await ss.upsert_scores(conn, rows)
        await announce(conn, deps, session_id, "scored", {"user": str(user.id), "scores": len(rows)}, logged=False)
        await log.append_entry(conn, deps.platform_key, "session.scores", {
            "session": str(session_id), "user": str(user.id),
            "scores": [{"bidder": str(r[2]), "criterion": r[3], "score": str(r[4])} for r in rows]})
    return {"saved": len(rows)}


async def explain_deviation(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """The written reason for one of the caller's flagged scores (偏离说明)."""
    data = _object(data)
    reason = text_of(data, "reason", MAX_REASON)
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.check_action(session["step"], caller.participant, "explain_deviation")
        require_on_committee(caller)
        state = await load(conn, session)
        bidder = _bidder(state.bidders, data.get("bidder"), "bidder")
        summary = state.consolidation()
        key = (str(user.id), str(bidder), str(data.get("criterion")))
        if summary is None or key not in {f.key for f in summary.flags}:
            raise SessionRefused("that score of yours is not flagged as a deviation", code="not_flagged", status=422)
        await ss.upsert_deviation_reason(conn, session_id, user.id, bidder, key[2], reason, now)
        await announce(conn, deps, session_id, "deviation_explained", {
            "user": key[0], "bidder": key[1], "criterion": key[2], "reason": reason})
    return {"explained": True}


# ---------------------------------------------------------------------------- clarifications (澄清)


async def ask_clarification(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """An expert drafts a question to a bidder; a supervisor approves it before the bidder sees it."""
    data = _object(data)
    question = text_of(data, "question", MAX_QUESTION)
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.check_action(session["step"], caller.participant, "ask_clarification")
        require_on_committee(caller)
        state = await load(conn, session)
        bidder = _bidder(state.bidders, data.get("bidder"), "bidder")
        clarification_id = await ss.insert_clarification(conn, session_id, bidder, user.id, question, now)
        await announce(conn, deps, session_id, "clarification_drafted", {
            "clarification": clarification_id, "bidder": str(bidder), "by": str(user.id), "question": question})
    return {"id": clarification_id, "status": "draft"}


async def review_clarification(deps: Deps, user: CurrentUser, session_id: uuid.UUID, clarification_id: int,
                               data: Any) -> dict[str, Any]:
    """A supervisor approves (with a deadline of 1 to 72 hours for the answer) or rejects a draft."""
    data = _object(data)
    decision = data.get("decision")
    if decision not in ("approve", "reject"):
        raise invalid_input("decision must be approve or reject")
    hours = data.get("hours", 24)
    if decision == "approve" and (isinstance(hours, bool) or not isinstance(hours, int)
                                  or not CLARIFICATION_HOURS[0] <= hours <= CLARIFICATION_HOURS[1]):
        raise invalid_input(f"hours must be a whole number from {CLARIFICATION_HOURS[0]} to {CLARIFICATION_HOURS[1]}")
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.check_action(session["step"], caller.participant, "approve_clarification")
        row = await ss.clarification(conn, clarification_id, for_update=True)
        if row is None or row["session_id"] != session_id:
            raise SessionRefused(f"no clarification {clarification_id} in this session", code="clarification_not_found",
                                 status=404)
        if row["status"] != "draft":
            raise SessionRefused(f"the clarification is already {row['status']}", code="already_reviewed")
        status = "approved" if decision == "approve" else "rejected"
        deadline = now + timedelta(hours=hours) if status == "approved" else None
        await ss.review_clarification(conn, clarification_id, status, user.id, now, deadline)
        body = {"clarification": clarification_id, "status": status, "by": str(user.id),
                "deadline": log.iso_utc(deadline) if deadline else None}
        await announce(conn, deps, session_id, "clarification_reviewed", body)
        if status == "approved":
            await bus.emit(conn, f"org:{row['organisation_id']}", "clarification.requested",
                           {"clarification": clarification_id, "deadline": body["deadline"]})
    return {"id": clarification_id, "status": status, "deadline": body["deadline"]}


async def answer_clarification(deps: Deps, user: CurrentUser, clarification_id: int, data: Any) -> dict[str, Any]:
    """The bidder answers an approved question before its deadline, on its own page."""
    answer = text_of(_object(data), "answer", MAX_ANSWER)
    async with deps.pool.acquire() as conn, conn.transaction():
        row = await ss.clarification(conn, clarification_id, for_update=True)
        if row is None or user.organisation_id != row["organisation_id"] or row["status"] not in ("approved", "answered"):
            raise SessionRefused(f"no clarification {clarification_id} for your organisation",
                                 code="clarification_not_found", status=404)
        if row["status"] == "answered":
            raise SessionRefused("this clarification is already answered", code="already_answered")
        session = await ss.session(conn, row["session_id"], for_update=True)
        if session["step"] in rules.FINAL or session["step"] == "suspended":
            raise SessionRefused(f"the evaluation is {session['step']}: answers are no longer taken",
                                 code="session_ended")
        now = await conn.fetchval("SELECT clock_timestamp()")
        if now > row["deadline"]:
            raise SessionRefused("the deadline for this answer has passed", code="deadline_passed")
        await ss.answer_clarification(conn, clarification_id, answer, user.id, now)
        await announce(conn, deps, row["session_id"], "clarification_answered", {
            "clarification": clarification_id, "bidder": str(row["organisation_id"]), "answer": answer})
    return {"id": clarification_id, "status": "answered"}


# ---------------------------------------------------------------------------- the report, marks


async def sign_report(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """Sign the report's digest in the browser (ECDSA P-256); a dissent is recorded with its reason."""
    data = _object(data)
    dissent_raw = data.get("dissent")
    if dissent_raw is not None and not isinstance(dissent_raw, str):
        raise invalid_input("dissent must be a string or null")
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.check_action(session["step"], caller.participant, "sign_report")
        require_on_committee(caller)
        state = await load(conn, session)
        dissent = rules.check_report_signature(str(user.id), state.member_ids, set(state.signatures),
                                               dissent_raw or None)
        member = next(m for m in state.members if m["user_id"] == user.id)
        sha256 = session["report_sha256"]
        signature = _verify(member["public_key"], report_signature_message(session_id, sha256), data.get("signature"))
        await ss.insert_signature(conn, session_id, user.id, sha256, signature, dissent, now)
        await announce(conn, deps, session_id, "report_signed", {"user": str(user.id), "report_sha256": sha256,
                                                                 "signature": signature, "dissent": dissent})
    return {"signed": True, "report_sha256": sha256}


async def mark(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A mark on the recording timeline ("deviation flagged", "clarification sent")."""
    label = text_of(_object(data), "label", MAX_LABEL)
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        require_part(caller)
        if session["step"] in rules.FINAL:
            raise SessionRefused("the session has ended", code="wrong_step")
        mark_id = await ss.insert_mark(conn, session_id, user.id, caller.room, label, now)
        await announce(conn, deps, session_id, "mark", {"mark": mark_id, "label": label, "by": str(user.id),
                                                        "room": str(caller.room) if caller.room else None,
                                                        "at": log.iso_utc(now)})
    return {"id": mark_id, "at": log.iso_utc(now)}
