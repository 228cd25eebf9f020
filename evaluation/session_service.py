"""Remote evaluation sessions: scheduling, who is who, sign-in, rooms and their presence.

The committee's own acts (declarations, the vote, verdicts, scores, clarifications, the report)
are in session_acts.py, the fault rules in session_faults.py. Every act runs the pure checks of
session_rules.py inside one transaction that holds the session row, so two acts never see the
same state.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Mapping

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from evaluation import draw_service
from evaluation import draw_store as ds
from evaluation import session_rules as rules
from evaluation import session_store as ss
from evaluation.draw_rules import DrawRefused
from evaluation.draw_service import Deps
from evaluation.scoring import ScoringError, parse_scheme
from evaluation.session_rules import Participant, SessionRefused
from tenderhall import bus, log
from tenderhall.accounts import CurrentUser
from tenderhall.canonical import b64url, b64url_decode

MAX_ROOMS = 20
MAX_SUPERVISORS = 20
MAX_MEMBERS = 50
SIGN_IN_LEAD = timedelta(hours=1)
VENUE_POLICY_KINDS = ("signed_in", "step", "member_released", "decision", "suspended")

DEFAULT_REVIEW = [{"id": "form", "name": "形式评审", "kind": "form"},
                  {"id": "qualification", "name": "资格评审", "kind": "qualification"},
                  {"id": "responsiveness", "name": "响应性评审", "kind": "responsiveness"}]
DEFAULT_SCHEMES: dict[str, dict[str, Any]] = {
    "comprehensive_scoring": {
        "method": "comprehensive_scoring", "initial_review": DEFAULT_REVIEW,
        "criteria": [
            {"id": "technical_plan", "name": "施工组织设计", "group": "technical", "min_score": "0", "max_score": "30"},
            {"id": "schedule", "name": "工期与进度计划", "group": "technical", "min_score": "0", "max_score": "10"},
            {"id": "credentials", "name": "业绩与信誉", "group": "commercial", "min_score": "0", "max_score": "10"}],
        "price": {"id": "price", "name": "投标报价", "full_marks": "50", "formula": "lowest_base"}},
    "lowest_evaluated_price": {
        "method": "lowest_evaluated_price", "initial_review": DEFAULT_REVIEW,
        "criteria": [{"id": "technical_compliance", "name": "技术响应", "group": "technical",
                      "min_score": "0", "max_score": "10"}]},
    "reasonable_price": {
        "method": "reasonable_price", "initial_review": DEFAULT_REVIEW,
        "criteria": [{"id": "technical_compliance", "name": "技术响应", "group": "technical",
                      "min_score": "0", "max_score": "10"}]},
}


def topic(session_id: uuid.UUID) -> str:
    return f"session:{session_id}"


def media_room(session_id: uuid.UUID, room_id: uuid.UUID) -> str:
    """The hub's name for a session room's media (and its recording directory)."""
    return f"session-{session_id}:{room_id}"


def parse_media_room(name: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    prefix, _, room = name.partition(":")
    if not prefix.startswith("session-"):
        return None
    try:
        return uuid.UUID(prefix[len("session-"):]), uuid.UUID(room)
    except ValueError:
        return None


def invalid_input(message: str, code: str = "invalid_body") -> SessionRefused:
    return SessionRefused(message, code=code, status=422)


def not_found(session_id: uuid.UUID) -> SessionRefused:
    return SessionRefused(f"no evaluation session {session_id} that you take part in", code="session_not_found",
                          status=404)


def uuid_of(value: Any, name: str) -> uuid.UUID:
    """`value` as a UUID, or 422 invalid_body naming the field."""
    try:
        if isinstance(value, str):
            return uuid.UUID(value)
    except ValueError:
        pass
    raise invalid_input(f"{name} must be a UUID")


def text_of(data: Mapping[str, Any], name: str, limit: int, *, required: bool = True) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise invalid_input(f"{name} must be a string")
    value = value.strip()
    if required and not value:
        raise invalid_input(f"{name} is required")
    if len(value) > limit:
        raise invalid_input(f"{name} is longer than {limit} characters")
    return value


async def server_now(conn: asyncpg.Connection) -> datetime:
    return await conn.fetchval("SELECT clock_timestamp()")


async def announce(conn: asyncpg.Connection, deps: Deps, session_id: uuid.UUID, kind: str, body: dict[str, Any],
                   *, logged: bool = True) -> None:
    """Log the act (kind session.<kind>) and tell everyone on the session's topic."""
    body = {"session": str(session_id), **body}
    if logged:
        appended = await log.append_entry(conn, deps.platform_key, f"session.{kind}", body)
        body = {**body, "log_index": appended.index}
    await bus.emit(conn, topic(session_id), f"session.{kind}", body)
    if kind in VENUE_POLICY_KINDS:
        # Who may enter which evaluation room follows the sessions: the venue reloads its policy.
        await bus.emit(conn, "venue", "venue.policy_changed", {"session": str(session_id), "because": kind})


# ---------------------------------------------------------------------------- who is who


@dataclass(frozen=True)
class Who:
    """The caller in one session: the kind the rules judge, the room they sit in, whether on the committee."""

    user_id: uuid.UUID
    kind: rules.Kind
    room: uuid.UUID | None
    member: bool

    @property
    def participant(self) -> Participant:
        return Participant(self.kind, str(self.room) if self.room else None)


async def who(conn: asyncpg.Connection, session: Mapping[str, Any], user: CurrentUser) -> Who:
    """Resolve the caller's part (404 for someone with none: the session's existence is not told)."""
    sid = session["id"]
    member = await conn.fetchrow("SELECT room_id FROM session_members WHERE session_id = $1 AND user_id = $2 "
                                 "AND replaced_at IS NULL", sid, user.id)
    if member is not None:
        kind: rules.Kind = "chair" if session["chair_id"] == user.id else "expert"
        return Who(user.id, kind, member["room_id"], True)
    staffed = await conn.fetchrow("SELECT room_id, is_main FROM session_rooms WHERE session_id = $1 AND staff_id = $2 "
                                  "ORDER BY is_main DESC LIMIT 1", sid, user.id)
    if user.id in (session["created_by"], session["agent_id"]) or (staffed is not None and staffed["is_main"]):
        return Who(user.id, "main_staff", staffed["room_id"] if staffed else None, False)
    if staffed is not None:
        return Who(user.id, "room_staff", staffed["room_id"], False)
    if await conn.fetchval("SELECT true FROM session_supervisors WHERE session_id = $1 AND user_id = $2", sid, user.id) \
            or user.has("admin"):
        return Who(user.id, "supervisor", None, False)
    if user.has("expert"):
        return Who(user.id, "expert", None, False)  # may try to sign in; the draw decides
    raise not_found(sid)


@contextlib.asynccontextmanager
async def session_act(deps: Deps, user: CurrentUser, session_id: uuid.UUID
                      ) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Record, Who, datetime]]:
    """One act: a transaction holding the session row, the caller resolved, the database's clock."""
    async with deps.pool.acquire() as conn, conn.transaction():
        session = await ss.session(conn, session_id, for_update=True)
        if session is None:
            raise not_found(session_id)
        yield conn, session, await who(conn, session, user), await server_now(conn)


@contextlib.asynccontextmanager
async def session_read(deps: Deps, user: CurrentUser, session_id: uuid.UUID
                       ) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Record, Who, datetime]]:
    """A look at the session: one consistent read-only snapshot that takes no lock, so the pages
    refreshing after every act never queue behind the acts."""
    async with deps.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        session = await ss.session(conn, session_id)
        if session is None:
            raise not_found(session_id)
        yield conn, session, await who(conn, session, user), await server_now(conn)


def require_on_committee(caller: Who) -> None:
    if not caller.member:
        raise SessionRefused("you are not on this evaluation committee", code="not_on_committee", status=403)


def require_part(caller: Who) -> None:
    """Anyone with a part in the session: an expert only once signed in on the committee."""
    if caller.kind == "expert" and not caller.member:
        require_on_committee(caller)


async def require_part_or_invited(conn: asyncpg.Connection, deps: Deps, session: Mapping[str, Any],
                                  caller: Who) -> None:
    """require_part, except that a drawn expert who has not signed in yet may see the session
    (to sign in) while sign-in is open."""
    if caller.kind == "expert" and not caller.member and session["step"] in rules.ACTION_STEPS["sign_in"]:
        expert_id = await ss.expert_of_user(conn, caller.user_id)
        released = await conn.fetchval("SELECT true FROM session_members WHERE session_id = $1 AND user_id = $2",
                                       session["id"], caller.user_id)
        if expert_id is not None and not released and \
                expert_id in await confirmed_experts(conn, deps, session["tender_id"]):
            return
    require_part(caller)


# ---------------------------------------------------------------------------- scheduling


def _scheme(raw: Any, method: str) -> dict[str, Any]:
    data = DEFAULT_SCHEMES[method] if raw is None else raw
    try:
        scheme = parse_scheme(data)
    except ScoringError as exc:
        raise SessionRefused(exc.message, code=exc.code, status=422) from None
    if scheme.method != method:
        raise invalid_input(f"the scheme's method {scheme.method!r} is not the tender's {method!r}", "wrong_method")
    return data


def _minutes(data: Mapping[str, Any], name: str, default: int, low: int, high: int) -> timedelta:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid_input(f"{name} must be a whole number of minutes from {low} to {high}")
    return timedelta(minutes=value)


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise invalid_input(f"{name} must be an ISO 8601 time with a zone")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid_input(f"{name} must be an ISO 8601 time with a zone") from None
    if moment.tzinfo is None:
        raise invalid_input(f"{name} needs a time zone (e.g. +08:00)")
    return moment


async def _users_with_role(conn: asyncpg.Connection, ids: list[uuid.UUID], allowed: tuple[str, ...], what: str) -> None:
    rows = await conn.fetch("SELECT id, roles, disabled FROM users WHERE id = ANY($1::uuid[])", ids)
    found = {r["id"]: r for r in rows}
    for user_id in ids:
        row = found.get(user_id)
        if row is None or row["disabled"] or not set(row["roles"]) & set(allowed):
            raise invalid_input(f"user {user_id} is not an active {what} ({' or '.join(allowed)})", "invalid_user")


async def create(deps: Deps, user: CurrentUser, data: Any) -> dict[str, Any]:
    """Schedule a session for a lot whose opening has closed, with its rooms, staff and supervisors.

    Body: tender_id, lot_code (the tender's first lot by default), scheduled_start, rooms
    [{room_id, staff_id}] (the first is the main venue's room), supervisors [user ids], scheme
    (the tender method's default when absent), start_delay_max_minutes (120), rejoin_window_minutes (240).
    """
    if not isinstance(data, dict):
        raise invalid_input("send a JSON object")
    unknown = set(data) - {"tender_id", "lot_code", "scheduled_start", "rooms", "supervisors", "scheme",
                           "start_delay_max_minutes", "rejoin_window_minutes"}
    if unknown:
        raise invalid_input(f"unknown field(s): {', '.join(sorted(unknown))}")
    tender_id = uuid_of(data.get("tender_id"), "tender_id")
    start = _time(data.get("scheduled_start"), "scheduled_start")
    delay = _minutes(data, "start_delay_max_minutes", 120, 1, 24 * 60)
    rejoin = _minutes(data, "rejoin_window_minutes", 240, 1, 24 * 60)
    raw_rooms = data.get("rooms")
    if not isinstance(raw_rooms, list) or not 1 <= len(raw_rooms) <= MAX_ROOMS:
        raise invalid_input(f"rooms must list 1 to {MAX_ROOMS} rooms, the main venue's first")
    rooms: list[tuple[uuid.UUID, uuid.UUID]] = []
    for i, item in enumerate(raw_rooms):
        if not isinstance(item, dict):
            raise invalid_input(f"rooms[{i}] must be an object {{room_id, staff_id}}")
        rooms.append((uuid_of(item.get("room_id"), f"rooms[{i}].room_id"), uuid_of(item.get("staff_id"), f"rooms[{i}].staff_id")))
    if len({r for r, _ in rooms}) != len(rooms):
        raise invalid_input("a room is listed twice")
    raw_supervisors = data.get("supervisors", [])
    if not isinstance(raw_supervisors, list) or len(raw_supervisors) > MAX_SUPERVISORS:
        raise invalid_input(f"supervisors must list at most {MAX_SUPERVISORS} user ids")
    supervisors = list(dict.fromkeys(uuid_of(s, "supervisors[]") for s in raw_supervisors))
    async with deps.pool.acquire() as conn, conn.transaction():
        tender = await conn.fetchrow("SELECT id, agent_id, evaluation_method, name FROM tenders WHERE id = $1 FOR UPDATE",
                                     tender_id)
        if tender is None or not (tender["agent_id"] == user.id or user.has("admin")):
            raise SessionRefused(f"no tender {tender_id} that you manage", code="tender_not_found", status=404)
        lots = [r["code"] for r in await conn.fetch("SELECT code FROM lots WHERE tender_id = $1 ORDER BY position", tender_id)]
        lot_code = data.get("lot_code", lots[0] if lots else None)
        if lot_code not in lots:
            raise invalid_input(f"lot_code must be one of the tender's lots: {', '.join(lots)}", "unknown_lot")
        opening = await conn.fetchval("SELECT step FROM openings WHERE tender_id = $1", tender_id)
        if opening != "closed":
            raise SessionRefused("the opening of this tender has not closed; the evaluation comes after it",
                                 code="opening_not_closed")
        if not await ss.opened_bids(conn, tender_id, lot_code):
            raise SessionRefused(f"lot {lot_code} has no opened bid to evaluate", code="no_bids")
        if await ss.live_session_of_lot(conn, tender_id, lot_code) is not None:
            raise SessionRefused(f"lot {lot_code} already has an evaluation session", code="session_exists")
        draws = [d for d in await ds.evaluation_draws_of(conn, [tender_id])]
        roots = await conn.fetch("SELECT id, status FROM draws WHERE id = ANY($1::uuid[]) AND parent_id IS NULL "
                                 "AND status <> 'cancelled' ORDER BY created_at DESC", draws)
        if not roots:
            raise SessionRefused("the tender has no evaluation draw: draw the committee first", code="no_draw")
        known = {r["id"]: r for r in await ss.rooms_by_id(conn, [r for r, _ in rooms])}
        missing = [str(r) for r, _ in rooms if r not in known]
        if missing:
            raise invalid_input(f"unknown room(s): {', '.join(missing)}", "unknown_room")
        await _users_with_role(conn, [s for _, s in rooms], ("agent", "admin"), "room staff member")
        await _users_with_role(conn, supervisors, ("supervisor",), "supervisor")
        scheme = _scheme(data.get("scheme"), tender["evaluation_method"])
        session_id = uuid.uuid4()
        now = await server_now(conn)
        if start <= now:
            raise invalid_input("scheduled_start must be in the future", "start_in_past")
        await ss.insert_session(conn, session_id=session_id, tender_id=tender_id, lot_code=lot_code,
                                draw_id=roots[0]["id"], main_venue_id=known[rooms[0][0]]["venue_id"], scheme=scheme,
                                scheduled_start=start, start_delay_max=delay, rejoin_window=rejoin,
                                created_by=user.id, now=now)
        for i, (room_id, staff_id) in enumerate(rooms):
            await ss.insert_session_room(conn, session_id, room_id, i == 0, staff_id)
        await ss.insert_supervisors(conn, session_id, supervisors)
        await announce(conn, deps, session_id, "scheduled", {
            "tender": str(tender_id), "lot": lot_code, "scheduled_start": log.iso_utc(start),
            "rooms": [str(r) for r, _ in rooms], "supervisors": [str(s) for s in supervisors]})
    return {"id": str(session_id)}


# ---------------------------------------------------------------------------- sign-in and rooms


async def _committee_draws(conn: asyncpg.Connection, tender_id: uuid.UUID) -> list[asyncpg.Record]:
    """The tender's evaluation draws that form the committee (one per group of specialties, or one
    for all): every root draw not cancelled, extensions reached through their chains."""
    return await conn.fetch("SELECT id, status, requested_by, unsealed_at FROM draws WHERE tender_id = $1 "
                            "AND purpose = 'evaluation' AND parent_id IS NULL AND status <> 'cancelled' "
                            "ORDER BY created_at", tender_id)


async def _unseal(deps: Deps, user: CurrentUser, session: Mapping[str, Any]) -> None:
    """The drawn names of every draw of the committee open at sign-in (the draws' rule: an hour
    before the start)."""
    async with deps.pool.acquire() as conn:
        draws = await _committee_draws(conn, session["tender_id"])
    if not draws:
        raise SessionRefused("the tender has no evaluation draw", code="no_draw")
    pending = [d for d in draws if d["status"] == "scheduled"]
    if pending:
        raise SessionRefused(f"{len(pending)} draw(s) of this committee have not run yet", code="not_drawn")
    if not all(d["requested_by"] == user.id for d in draws) and not user.has("supervisor", "admin"):
        raise SessionRefused("only the agent who requested the draws, a supervisor or an admin may open sign-in "
                             "(it unseals the drawn names)", code="not_allowed", status=403)
    for draw in draws:
        try:
            await draw_service.unseal(deps, user, draw["id"])
        except DrawRefused as exc:
            if exc.code != "already_unsealed":
                raise SessionRefused(exc.message, code=exc.code, status=exc.status) from None


async def open_sign_in(deps: Deps, user: CurrentUser, session_id: uuid.UUID) -> dict[str, Any]:
    """Main venue: open sign-in (scheduled -> sign_in); the draw's names are unsealed for the session."""
    async with deps.pool.acquire() as conn:
        session = await ss.session(conn, session_id)
        if session is None:
            raise not_found(session_id)
        caller = await who(conn, session, user)
    rules.check_action(session["step"], caller.participant, "advance")
    rules.require_step(session["step"], "scheduled", doing="open sign-in")
    await _unseal(deps, user, session)
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.require_step(session["step"], "scheduled", doing="open sign-in")
        await ss.set_step(conn, session_id, "sign_in", now)
        await announce(conn, deps, session_id, "step", {"step": "sign_in", "by": str(user.id)})
    return {"step": "sign_in"}


async def confirmed_experts(conn: asyncpg.Connection, deps: Deps, tender_id: uuid.UUID) -> set[uuid.UUID]:
    """The experts who confirmed a seat of the committee's draws (names open only once unsealed)."""
    drawn: list[uuid.UUID] = []
    for root in await _committee_draws(conn, tender_id):
        if root["unsealed_at"] is not None:
            drawn += [d["id"] for d in await ds.chain(conn, root["id"]) if d["status"] == "drawn"]
    seats = await ds.seats(conn, drawn) if drawn else []
    people = await draw_service.people_of(conn, deps, seats)
    return {people[(s["draw_id"], s["position"])] for s in seats if s["status"] == "confirmed"}


def _public_key(raw: Any) -> bytes:
    if not isinstance(raw, str) or len(raw) > 400:
        raise invalid_input("public_key must be the SPKI of a P-256 key, base64url", "invalid_key")
    try:
        der = b64url_decode(raw)
        key = load_der_public_key(der)
    except ValueError:
        raise invalid_input("public_key must be the SPKI of a P-256 key, base64url", "invalid_key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise invalid_input("public_key must be a P-256 (secp256r1) key", "invalid_key")
    return der


async def sign_in(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """An expert signs in at a room with the public key their browser made for this session."""
    data = data if isinstance(data, dict) else {}
    room_id = uuid_of(data.get("room_id"), "room_id")
    key = _public_key(data.get("public_key"))
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        rules.check_action(session["step"], caller.participant, "sign_in")
        if caller.member:
            raise SessionRefused("you have already signed in", code="already_signed_in")
        expert_id = await ss.expert_of_user(conn, user.id)
        if expert_id is None or expert_id not in await confirmed_experts(conn, deps, session["tender_id"]):
            raise SessionRefused("you are not on this evaluation committee", code="not_on_committee", status=403)
        if await conn.fetchval("SELECT true FROM session_members WHERE session_id = $1 AND expert_id = $2",
                               session_id, expert_id):
            raise SessionRefused("you were replaced on this committee and cannot sign in again", code="replaced",
                                 status=403)
        rooms = {r["room_id"]: r for r in await ss.session_rooms(conn, session_id)}
        room = rooms.get(room_id)
        if room is None or room["left_out"]:
            raise invalid_input("room_id is not one of this session's rooms", "unknown_room")
        seated = await conn.fetchval("SELECT count(*) FROM session_members WHERE session_id = $1 AND room_id = $2 "
                                     "AND replaced_at IS NULL", session_id, room_id)
        if seated >= room["seats"]:
            raise SessionRefused(f"room {room['name']} has no free seat ({room['seats']} seats)", code="room_full")
        await ss.insert_member(conn, session_id, user.id, expert_id, room_id, key, now)
        # The key goes into the log: anyone can check the declarations and report signatures against it.
        await announce(conn, deps, session_id, "signed_in", {"user": str(user.id), "room": str(room_id),
                                                             "public_key": b64url(key)})
    return {"signed_in": True, "room_id": str(room_id)}


async def confirm_room(deps: Deps, user: CurrentUser, session_id: uuid.UUID, data: Any) -> dict[str, Any]:
    """A room's staff confirm the room is ready (the main venue may confirm its own rooms)."""
    data = data if isinstance(data, dict) else {}
    room_id = uuid_of(data.get("room_id"), "room_id")
    async with session_act(deps, user, session_id) as (conn, session, caller, now):
        staff = await conn.fetchval("SELECT staff_id FROM session_rooms WHERE session_id = $1 AND room_id = $2",
                                    session_id, room_id)
        if staff is None:
            raise invalid_input("room_id is not one of this session's rooms", "unknown_room")
        allowed_room = str(room_id) if (staff == user.id or caller.kind == "main_staff") else None
        rules.require_role(Participant(caller.kind, allowed_room), "confirm_room", room=str(room_id))
        rules.require_step(session["step"], *rules.ACTION_STEPS["confirm_room"], doing="confirm a room")
        if not await ss.set_room_ready(conn, session_id, room_id, now):
            raise SessionRefused("this room is already confirmed ready", code="already_ready")
        await ss.room_event(conn, session_id, room_id, "ready", now)
        await announce(conn, deps, session_id, "room_ready", {"room": str(room_id), "by": str(user.id)})
    return {"ready": True}


async def room_presence(deps: Deps, session_id: uuid.UUID, room_id: uuid.UUID, up: bool) -> None:
    """A room's terminal connected (up) or its last connection went away (down), after the start only:
    the room is then down from now and rejoins where it left off."""
    async with deps.pool.acquire() as conn, conn.transaction():
        session = await ss.session(conn, session_id, for_update=True)
        if session is None or session["step"] not in rules.STARTED:
            return
        now = await server_now(conn)
        if await ss.set_room_down(conn, session_id, room_id, None if up else now):
            await ss.room_event(conn, session_id, room_id, "rejoined" if up else "dropped", now)
            await announce(conn, deps, session_id, "room_rejoined" if up else "room_dropped", {"room": str(room_id)})
