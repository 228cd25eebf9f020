"""Draw use cases: schedule with a commitment, run on the revealed secret, notify, replace, extend, unseal.

Each act is one transaction that writes its state, its transparency-log entries (never names:
the public record speaks of per-draw pseudonyms) and its bus events together. Messages to
drawn people leave after commit, from a sealed outbox (`deliver_pending`).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

import asyncpg

from evaluation import draw_store as ds
from evaluation.draw import DrawError, DrawImpossible, check_feasible, spec_digest, spec_json
from evaluation.draw_record import build_record
from evaluation.draw_rules import (
    POOL_OF, DrawRefused, check_commitment, check_draw_time, extension_spec, missing_seats, next_backup,
    notice_text, parse_request, planned_seats, pseudonym, seat_context, seat_counts, unseal_opens_at,
)
from evaluation.notifier import Notice, NotifyError, make_notifier
from tenderhall import bus, db, formatting, log
from tenderhall.accounts import CurrentUser
from tenderhall.canonical import b64url_decode
from tenderhall.data_key import DataKey
from tenderhall.platform_key import PlatformKey
from tenderhall.settings import Settings

MAX_SEND_ATTEMPTS = 5
SEND_BATCH = 50
DEFAULT_EXTENSION_BACKUPS = 2


@dataclass(frozen=True)
class Deps:
    pool: asyncpg.Pool
    settings: Settings
    platform_key: PlatformKey
    data_key: DataKey


def _topics(draw: asyncpg.Record) -> list[str]:
    topics = [f"user:{draw['requested_by']}"]
    if draw["tender_id"] is not None:
        topics.append(f"tender:{draw['tender_id']}")
    return topics


async def _announce(conn: asyncpg.Connection, deps: Deps, draw: asyncpg.Record, entries: list[tuple[str, dict]],
                    event: str, payload: dict[str, Any]) -> list[log.AppendResult]:
    results = await log.append_entries(conn, deps.platform_key, entries) if entries else []
    for topic in _topics(draw):
        await bus.emit(conn, topic, event, {"draw": str(draw["id"]), **payload})
    return results


def _may_manage(user: CurrentUser, draw: asyncpg.Record) -> bool:
    return draw["requested_by"] == user.id or user.has("supervisor", "admin")


async def _draw_for(conn: asyncpg.Connection, user: CurrentUser, draw_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record:
    draw = await ds.draw(conn, draw_id, for_update=lock)
    if draw is None or not _may_manage(user, draw):
        raise DrawRefused(f"no draw {draw_id} that you may see", code="draw_not_found", status=404)
    return draw


# ---------------------------------------------------------------------------- avoidance


def _local_day(settings: Settings, moment: datetime) -> Any:
    return moment.astimezone(formatting.display_zone(settings.display_timezone)).date()


def _agent_key(party: asyncpg.Record) -> str:
    return f"agent:{party['agent_org'] or party['agent_id']}"


async def _avoidance(conn: asyncpg.Connection, deps: Deps, purpose: str, subject: dict[str, Any], spec: dict[str, Any],
                     needed_at: datetime, excluded: Sequence[uuid.UUID]) -> ds.Avoidance:
    s = deps.settings
    prefixes = tuple(sorted({g["specialty"] for g in spec["groups"]}))
    common = dict(prefixes=prefixes, day=_local_day(s, needed_at), threshold=s.credit_threshold,
                  pair_cap=s.pairing_cap, pair_since=needed_at - timedelta(days=s.pairing_days), excluded=tuple(excluded))
    if purpose == "intermediary":
        code = subject.get("purchaser_code")
        return ds.Avoidance(**common, employer_codes=(code,) if code else (), employer_names=(subject["purchaser_name"],),
                            pair_keys=(subject["purchaser_name"],))
    tender_ids = [uuid.UUID(t) for t in (subject.get("tender_ids") or [subject["tender_id"]])]
    parties = await ds.tender_parties(conn, tender_ids)
    if len(parties) != len(tender_ids):
        raise DrawRefused("a tender of this draw does not exist", code="tender_not_found", status=404)
    codes, names, users, keys = set(), set(), set(), set()
    for p in parties:
        codes.update(c for c in [p["agent_code"], *(p["tenderer_codes"] or []), *(p["bidder_codes"] or [])] if c)
        names.add(p["tenderer"])
        users.update([p["agent_id"], *(p["bidder_users"] or [])])
        keys.update([f"tenderer:{p['tenderer']}", _agent_key(p)])
    served = await ds.evaluation_draws_of(conn, tender_ids) if purpose == "inspection" else []
    return ds.Avoidance(**common, employer_codes=tuple(sorted(codes)), employer_names=tuple(sorted(names)),
                        user_ids=tuple(sorted(users)), pair_keys=tuple(sorted(keys)), served_on_draws=tuple(served))


async def _unknown_specialties(conn: asyncpg.Connection, spec: dict[str, Any]) -> list[str]:
    codes = sorted({g["specialty"] for g in spec["groups"]})
    known = {r["code"] for r in await conn.fetch("SELECT code FROM specialties WHERE code = ANY ($1::text[])", codes)}
    return [c for c in codes if c not in known]


async def _eligible(conn: asyncpg.Connection, deps: Deps, draw_id: uuid.UUID, purpose: str, subject: dict[str, Any],
                    spec: dict[str, Any], needed_at: datetime, excluded: Sequence[uuid.UUID], *, check: bool = True):
    """The pseudonymous candidate set, the pseudonym → person map and the rules applied;
    DrawRefused(422) when impossible (`check`: the draw itself checks again, so run skips it here)."""
    from evaluation.draw import Candidate, parse_spec

    unknown = await _unknown_specialties(conn, spec)
    if unknown:
        raise DrawRefused(f"unknown specialty code(s): {', '.join(unknown)}", code="unknown_specialty", status=422,
                          detail={"unknown": unknown})
    avoidance = await _avoidance(conn, deps, purpose, subject, spec, needed_at, excluded)
    pool = POOL_OF[purpose]
    found = await ds.candidates(conn, pool, avoidance)
    key = deps.data_key.subkey("draw-pseudonym")
    people: dict[str, uuid.UUID] = {}
    candidates = []
    for person, region, specialties in found:
        alias = pseudonym(key, draw_id, person)
        people[alias] = person
        candidates.append(Candidate(alias, region, tuple(specialties)))
    if check:
        try:
            check_feasible(parse_spec(spec), candidates)
        except DrawImpossible as exc:
            raise await _impossible(conn, purpose, avoidance, spec, exc) from None
    return candidates, people, avoidance


async def _impossible(conn: asyncpg.Connection, purpose: str, avoidance: ds.Avoidance, spec: dict[str, Any],
                      exc: DrawImpossible) -> DrawRefused:
    """The refusal of an impossible draw, with how many candidates each rule left per specialty."""
    funnels = {g["specialty"]: await ds.funnel(conn, POOL_OF[purpose], avoidance, g["specialty"]) for g in spec["groups"]}
    return DrawRefused(f"impossible draw: {exc}", code="draw_impossible", status=422,
                       detail={"shortfalls": exc.shortfalls, "funnel": funnels})


# ---------------------------------------------------------------------------- schedule


async def schedule(deps: Deps, user: CurrentUser, body: Any, *, parent: asyncpg.Record | None = None) -> dict[str, Any]:
    """Schedule a draw: the requester publishes the commitment; the pool is checked before anything is drawn."""
    async with deps.pool.acquire() as conn, conn.transaction():
        now = await conn.fetchval("SELECT now()")
        request = parse_request(body, now, deps.settings.draw_reply_minutes)
        if request.purpose == "evaluation":
            tender = await conn.fetchrow("SELECT id, agent_id, status FROM tenders WHERE id = $1", request.tender_id)
            if tender is None or tender["status"] != "published":
                raise DrawRefused("no published tender has this id", code="tender_not_found", status=404)
            if tender["agent_id"] != user.id and not user.has("supervisor"):
                raise DrawRefused("only the tender's agent or a supervisor may request its expert draw",
                                  code="not_your_tender", status=403)
        elif request.purpose == "inspection" and not user.has("supervisor", "admin"):
            raise DrawRefused("inspection teams are drawn by supervisors", code="role_forbidden", status=403)
        draw_id = uuid.uuid4()
        spec = spec_json(request.spec)
        excluded = await _asked_in_chain(conn, deps, parent["id"]) if parent else []
        await _eligible(conn, deps, draw_id, request.purpose, request.subject, spec, request.needed_at, excluded)
        body_out = {"draw": str(draw_id), "purpose": request.purpose, "title_sha256": _sha(request.title),
                    "spec": spec, "spec_sha256": spec_digest(request.spec), "commitment": request.commitment,
                    "draw_after": log.iso_utc(request.draw_after), "needed_at": log.iso_utc(request.needed_at),
                    "parent": str(parent["id"]) if parent else None, "requested_by": str(user.id)}
        if request.tender_id:
            body_out["tender"] = str(request.tender_id)
        placeholder = {"id": draw_id, "requested_by": user.id, "tender_id": request.tender_id}
        [entry] = await _announce(conn, deps, placeholder, [("draw.scheduled", body_out)], "draw.scheduled",
                                  {"status": "scheduled"})
        await ds.insert_draw(conn, draw_id, request.purpose, request.tender_id, request.subject, request.title, spec,
                             request.needed_at, request.draw_after, request.commitment, user.id,
                             parent["id"] if parent else None, request.reply_minutes, entry.index)
        return await _view(conn, deps, await ds.draw(conn, draw_id))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def cancel(deps: Deps, user: CurrentUser, draw_id: uuid.UUID) -> dict[str, Any]:
    async with deps.pool.acquire() as conn, conn.transaction():
        draw = await _draw_for(conn, user, draw_id, lock=True)
        if draw["status"] != "scheduled":
            raise DrawRefused("only a draw that has not run can be cancelled", code="not_scheduled")
        await ds.set_status(conn, draw_id, "cancelled")
        await _announce(conn, deps, draw, [("draw.cancelled", {"draw": str(draw_id), "by": str(user.id)})],
                        "draw.cancelled", {"status": "cancelled"})
        return await _view(conn, deps, await ds.draw(conn, draw_id))


# ---------------------------------------------------------------------------- run


async def run(deps: Deps, user: CurrentUser, draw_id: uuid.UUID, secret_text: Any) -> dict[str, Any]:
    """Reveal the secret and draw: candidates, seed, result, seats, notices, log — one transaction."""
    if not isinstance(secret_text, str) or not 16 <= len(secret_text) <= 200:
        raise DrawRefused("secret must be the base64url text the page gave you when the draw was scheduled",
                          code="invalid_secret", status=422)
    try:
        secret = b64url_decode(secret_text.strip())
    except ValueError:
        raise DrawRefused("secret is not base64url text", code="invalid_secret", status=422) from None
    async with deps.pool.acquire() as conn, conn.transaction():
        draw = await _draw_for(conn, user, draw_id, lock=True)
        if draw["status"] != "scheduled":
            raise DrawRefused(f"this draw is {draw['status']}, not waiting to be drawn", code="not_scheduled")
        check_draw_time(await conn.fetchval("SELECT now()"), draw["draw_after"], draw["needed_at"])
        spec = draw["spec"]
        excluded = await _asked_in_chain(conn, deps, draw["parent_id"]) if draw["parent_id"] else []
        candidates, people, avoidance = await _eligible(conn, deps, draw_id, draw["purpose"], draw["subject"], spec,
                                                        draw["needed_at"], excluded, check=False)
        # The head is read under the log's order lock and the draw's entry is the very next one,
        # so nothing can be appended in between to try another head (verify checks the indexes).
        await db.take_order_lock(conn)
        head = await log.latest_tree_head(conn)
        try:
            record = build_record(draw_id=str(draw_id), spec_data=spec, candidates=candidates,
                                  published_commitment=draw["commitment"], secret=secret, tree_head=head.as_json())
        except DrawImpossible as exc:
            raise await _impossible(conn, draw["purpose"], avoidance, spec, exc) from None
        except DrawError as exc:
            raise DrawRefused(str(exc), code="secret_mismatch", status=422) from None
        seats, notices = _seat_rows(deps, draw, record, people)
        drawn_body = {k: record[k] for k in ("draw", "spec_sha256", "candidates_sha256", "commitment", "secret", "seed",
                                              "result")}
        # The members asked at once are in the draw's own entry; later steps get a draw.seat entry each.
        drawn_body.update(tree_head=record["tree_head"], candidate_count=len(candidates), rules=avoidance.as_json(),
                          notified=[row[1] for row in seats if row[7] == "notified"])
        results = await _announce(conn, deps, draw, [("draw.drawn", drawn_body)], "draw.drawn", {"status": "drawn"})
        await ds.insert_seats(conn, seats)
        for position, message in notices:
            await _queue_notice(conn, deps, draw_id, position, message)
        await ds.mark_drawn(conn, draw_id, record, avoidance.as_json(), results[0].index)
        return await _view(conn, deps, await ds.draw(conn, draw_id))


def _seat_rows(deps: Deps, draw: asyncpg.Record, record: dict[str, Any], people: dict[str, uuid.UUID]):
    rows, notices = [], []
    now = datetime.now().astimezone()
    reply_by = now + timedelta(minutes=draw["reply_minutes"])
    from evaluation.draw import Result, GroupResult, Seat
    result = Result(tuple(GroupResult(g["specialty"], tuple(Seat(m["candidate"], m["quota"]) for m in g["members"]),
                                      tuple(g["backups"])) for g in record["result"]["groups"]))
    for seat in planned_seats(result):
        person = people[seat.pseudonym]
        sealed = deps.data_key.seal("draw-seat", seat_context(draw["id"], seat.position), person.bytes)
        member = seat.backup_rank is None
        token_hash = None
        if member:
            token = secrets.token_urlsafe(32)
            token_hash = hashlib.sha256(token.encode()).digest()
            notices.append((seat.position, {"person": str(person), "token": token, "specialty": seat.specialty}))
        rows.append((draw["id"], seat.position, seat.group_index, seat.specialty, seat.backup_rank, seat.pseudonym,
                     sealed, "notified" if member else "standby", now if member else None,
                     reply_by if member else None, token_hash))
    return rows, notices


async def _queue_notice(conn: asyncpg.Connection, deps: Deps, draw_id: uuid.UUID, position: int,
                        message: dict[str, Any]) -> None:
    from tenderhall.canonical import canonical_json
    sealed = deps.data_key.seal("draw-notice", seat_context(draw_id, position), canonical_json(message))
    await ds.insert_notification(conn, draw_id, position, sealed, deps.settings.notifier)


async def _people_of(conn: asyncpg.Connection, deps: Deps, seats: Sequence[asyncpg.Record]) -> dict[int, uuid.UUID]:
    return {(s["draw_id"], s["position"]): uuid.UUID(bytes=deps.data_key.open(
        "draw-seat", seat_context(s["draw_id"], s["position"]), s["person_sealed"])) for s in seats}


async def _asked_in_chain(conn: asyncpg.Connection, deps: Deps, draw_id: uuid.UUID) -> list[uuid.UUID]:
    root = await ds.root_of(conn, draw_id)
    chain = await ds.chain(conn, root)
    seats = await ds.seats(conn, [d["id"] for d in chain])
    return sorted(set((await _people_of(conn, deps, seats)).values()))


# ---------------------------------------------------------------------------- notices out


async def deliver_pending(deps: Deps, limit: int = SEND_BATCH) -> int:
    """Send queued notices through the configured notifier; a failure is retried by the next run,
    up to MAX_SEND_ATTEMPTS. Returns how many were sent."""
    notifier = make_notifier(deps.settings)
    sent = 0
    async with deps.pool.acquire() as conn, conn.transaction():
        for row in await ds.pending_notifications(conn, limit):
            context = seat_context(row["draw_id"], row["position"])
            import json
            message = json.loads(deps.data_key.open("draw-notice", context, row["message_sealed"]))
            try:
                notice = await _notice(conn, deps, row["draw_id"], row["position"], message)
                await notifier.send(notice)
            except NotifyError as exc:
                await ds.notification_failed(conn, row["id"], str(exc), row["attempts"] + 1 >= MAX_SEND_ATTEMPTS)
                continue
            await ds.notification_sent(conn, row["id"])
            sent += 1
    return sent


async def _notice(conn: asyncpg.Connection, deps: Deps, draw_id: uuid.UUID, position: int,
                  message: dict[str, Any]) -> Notice:
    draw = await ds.draw(conn, draw_id)
    seat = await conn.fetchrow("SELECT reply_by FROM draw_seats WHERE draw_id = $1 AND position = $2", draw_id, position)
    person = uuid.UUID(message["person"])
    contacts = (ds.intermediary_contacts if draw["purpose"] == "intermediary" else ds.expert_contacts)
    contact = (await contacts(conn, [person])).get(person)
    if contact is None:
        raise NotifyError("the drawn person is no longer in the pool")
    zone = formatting.display_zone(deps.settings.display_timezone)
    link = f"{deps.settings.base_url()}/draws/reply/{message['token']}"
    subject, body = notice_text(purpose=draw["purpose"], name=contact["name"],
                                needed_at_local=formatting.when(draw["needed_at"], zone, seconds=False),
                                reply_by_local=formatting.when(seat["reply_by"], zone, seconds=False),
                                specialty=message["specialty"], link=link)
    return Notice(recipient_name=contact["name"], phone=contact["phone"], email=contact["email"], subject=subject,
                  body=body, link=link, reference=f"{draw_id}/{position}")


# ---------------------------------------------------------------------------- answers and replacements


async def _after_seat_change(conn: asyncpg.Connection, deps: Deps, draw: asyncpg.Record, seat: asyncpg.Record,
                             status: str) -> list[tuple[str, dict]]:
    """Log the seat's new status; on decline or silence notify the group's next backup, or say the draw ran short."""
    entries: list[tuple[str, dict]] = [("draw.seat", {"draw": str(draw["id"]), "position": seat["position"], "status": status})]
    if status in ("declined", "expired"):
        seats = await ds.seats(conn, [draw["id"]])
        backup = next_backup(seats, seat["group_index"])
        if backup is not None:
            token = secrets.token_urlsafe(32)
            await ds.notify_seat(conn, draw["id"], backup["position"], hashlib.sha256(token.encode()).digest(),
                                 draw["reply_minutes"])
            person = (await _people_of(conn, deps, [backup]))[(draw["id"], backup["position"])]
            await _queue_notice(conn, deps, draw["id"], backup["position"],
                                {"person": str(person), "token": token, "specialty": backup["specialty"]})
            entries.append(("draw.seat", {"draw": str(draw["id"]), "position": backup["position"], "status": "notified"}))
        else:
            chain = await ds.chain(conn, await ds.root_of(conn, draw["id"]))
            seats = await ds.seats(conn, [d["id"] for d in chain])
            missing = missing_seats(chain[0]["spec"], [dict(s) for s in seats])
            if missing:
                entries.append(("draw.short", {"draw": str(draw["id"]), "missing": missing}))
    if status == "confirmed" and draw["purpose"] == "intermediary":
        person = (await _people_of(conn, deps, [seat]))[(draw["id"], seat["position"])]
        await ds.insert_intermediary_service(conn, draw["id"], person, draw["subject"]["purchaser_name"], draw["needed_at"])
    return entries


async def _locked(conn: asyncpg.Connection, draw_id: uuid.UUID, position: int) -> tuple[asyncpg.Record, asyncpg.Record]:
    """The draw, then its seat, locked in that order: every act takes them so, and none waits on another in reverse."""
    draw = await ds.draw(conn, draw_id, for_update=True)
    return draw, await ds.seat(conn, draw_id, position, for_update=True)


async def _answer(conn: asyncpg.Connection, deps: Deps, found: asyncpg.Record, answer: Any, reason: Any) -> dict[str, Any]:
    if answer not in ("accept", "decline"):
        raise DrawRefused('answer must be "accept" or "decline"', code="invalid_answer", status=422)
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise DrawRefused("reason must be text of at most 500 characters", code="invalid_answer", status=422)
    draw, seat = await _locked(conn, found["draw_id"], found["position"])
    if draw["unsealed_at"] is not None or (draw["parent_id"] and await _root_unsealed(conn, draw["id"])):
        raise DrawRefused("the sign-in has opened: this committee is closed", code="committee_closed")
    if seat["status"] != "notified":
        raise DrawRefused(f"this invitation was already answered or closed ({seat['status']})", code="already_answered")
    if await conn.fetchval("SELECT now()") >= seat["reply_by"]:
        raise DrawRefused("the reply window has closed; the next backup is asked instead", code="reply_window_closed",
                          status=410)
    status = "confirmed" if answer == "accept" else "declined"
    await ds.answer_seat(conn, seat["draw_id"], seat["position"], status, (reason or None) if status == "declined" else None)
    entries = await _after_seat_change(conn, deps, draw, seat, status)
    await _announce(conn, deps, draw, entries, "draw.seat", {"counts": seat_counts(await ds.seats(conn, [draw["id"]]))})
    return {"draw": str(draw["id"]), "position": seat["position"], "status": status}


async def reply_by_token(deps: Deps, token: str, answer: Any, reason: Any) -> dict[str, Any]:
    """The one-time link's answer; 404 for an unknown link."""
    async with deps.pool.acquire() as conn, conn.transaction():
        seat = await ds.seat_by_token(conn, hashlib.sha256(token.encode()).digest()) if 20 <= len(token) <= 100 else None
        if seat is None:
            raise DrawRefused("this confirmation link is not valid", code="link_not_found", status=404)
        return await _answer(conn, deps, seat, answer, reason)


async def invitation_by_token(deps: Deps, token: str) -> dict[str, Any]:
    """What the link's page shows: time, specialty, deadline and state; never the project."""
    async with deps.pool.acquire() as conn:
        row = None
        if 20 <= len(token) <= 100:
            row = await conn.fetchrow("""SELECT s.status, s.reply_by, s.specialty, d.needed_at, d.purpose
                                         FROM draw_seats s JOIN draws d ON d.id = s.draw_id WHERE s.token_hash = $1""",
                                      hashlib.sha256(token.encode()).digest())
        if row is None:
            raise DrawRefused("this confirmation link is not valid", code="link_not_found", status=404)
        return dict(row)


async def invitations(deps: Deps, user: CurrentUser) -> list[dict[str, Any]]:
    """The logged-in expert's invitations waiting for an answer (the in-app prompt)."""
    async with deps.pool.acquire() as conn:
        expert_id = await ds.expert_of_user(conn, user.id)
        if expert_id is None:
            return []
        waiting = [s for s in await ds.notified_seats(conn) if await _is_draw_purpose(conn, s["draw_id"], "intermediary") is False]
        people = await _people_of(conn, deps, waiting)
        out = []
        for s in waiting:
            if people[(s["draw_id"], s["position"])] == expert_id:
                draw = await ds.draw(conn, s["draw_id"])
                out.append({"draw": str(s["draw_id"]), "position": s["position"], "specialty": s["specialty"],
                            "purpose": draw["purpose"], "needed_at": log.iso_utc(draw["needed_at"]),
                            "reply_by": log.iso_utc(s["reply_by"])})
        return out


async def _is_draw_purpose(conn: asyncpg.Connection, draw_id: uuid.UUID, purpose: str) -> bool:
    return await conn.fetchval("SELECT purpose = $2 FROM draws WHERE id = $1", draw_id, purpose)


async def reply_in_app(deps: Deps, user: CurrentUser, draw_id: uuid.UUID, position: int, answer: Any,
                       reason: Any) -> dict[str, Any]:
    async with deps.pool.acquire() as conn, conn.transaction():
        seat = await ds.seat(conn, draw_id, position)
        expert_id = await ds.expert_of_user(conn, user.id)
        if seat is None or expert_id is None or (await _people_of(conn, deps, [seat]))[(draw_id, position)] != expert_id:
            raise DrawRefused("no invitation of yours has this id", code="invitation_not_found", status=404)
        return await _answer(conn, deps, seat, answer, reason)


async def _root_unsealed(conn: asyncpg.Connection, draw_id: uuid.UUID) -> bool:
    root = await ds.draw(conn, await ds.root_of(conn, draw_id))
    return root["unsealed_at"] is not None


async def expire_overdue(deps: Deps) -> int:
    """Seats whose reply window passed in silence: expired, and their group's next backup asked.

    Each seat is re-read under its draw's lock: another instance, or the expert's own late
    answer, may have settled it since it was listed."""
    done = 0
    async with deps.pool.acquire() as conn, conn.transaction():
        for listed in await ds.overdue_seats(conn):
            draw, seat = await _locked(conn, listed["draw_id"], listed["position"])
            if seat["status"] != "notified" or seat["reply_by"] > await conn.fetchval("SELECT now()"):
                continue
            await ds.answer_seat(conn, seat["draw_id"], seat["position"], "expired", None)
            entries = await _after_seat_change(conn, deps, draw, seat, "expired")
            await _announce(conn, deps, draw, entries, "draw.seat",
                            {"counts": seat_counts(await ds.seats(conn, [draw["id"]]))})
            done += 1
    return done


# ---------------------------------------------------------------------------- extend, unseal, names


async def extend(deps: Deps, user: CurrentUser, draw_id: uuid.UUID, body: Any) -> dict[str, Any]:
    """A new verifiable draw for the seats left empty once backups ran out, excluding everyone already asked."""
    if not isinstance(body, dict):
        raise DrawRefused("the request body must be a JSON object", code="invalid_draw", status=422)
    async with deps.pool.acquire() as conn:
        root = await _draw_for(conn, user, await ds.root_of(conn, draw_id) or draw_id)
        chain = await ds.chain(conn, root["id"])
        if any(d["status"] == "scheduled" for d in chain):
            raise DrawRefused("an extension of this draw is already scheduled; run or cancel it first",
                              code="extension_pending")
        if root["unsealed_at"] is not None:
            raise DrawRefused("the names are unsealed; the committee is closed", code="unsealed")
        seats = [dict(s) for s in await ds.seats(conn, [d["id"] for d in chain if d["status"] == "drawn"])]
        missing = missing_seats(chain[0]["spec"], seats)
        backups = body.get("backups", DEFAULT_EXTENSION_BACKUPS)
        if not isinstance(backups, int) or isinstance(backups, bool) or not 0 <= backups <= 20:
            raise DrawRefused("backups must be a whole number from 0 to 20", code="invalid_draw", status=422)
        spec = extension_spec(missing, backups)
    request = {"purpose": root["purpose"], "title": root["title"], "spec": spec,
               "needed_at": root["needed_at"].isoformat(), "draw_after": body.get("draw_after"),
               "commitment": check_commitment(body.get("commitment")), "reply_minutes": root["reply_minutes"],
               **_subject_fields(root)}
    last = chain[-1]
    return await schedule(deps, user, request, parent=last)


def _subject_fields(draw: asyncpg.Record) -> dict[str, Any]:
    return dict(draw["subject"])


async def unseal(deps: Deps, user: CurrentUser, draw_id: uuid.UUID) -> dict[str, Any]:
    """Open the names at the evaluation's sign-in (at once for intermediaries); record who met whom."""
    async with deps.pool.acquire() as conn, conn.transaction():
        root = await _draw_for(conn, user, await ds.root_of(conn, draw_id) or draw_id, lock=True)
        chain = await ds.chain(conn, root["id"])
        if root["unsealed_at"] is not None:
            raise DrawRefused("the names are already unsealed", code="already_unsealed")
        if any(d["status"] == "scheduled" for d in chain):
            raise DrawRefused("a draw of this committee has not run yet", code="not_drawn")
        opens = unseal_opens_at(root["purpose"], root["needed_at"])
        if opens is not None and await conn.fetchval("SELECT now()") < opens:
            raise DrawRefused("the names stay sealed until the sign-in opens, an hour before the start",
                              code="names_sealed")
        drawn = [d["id"] for d in chain if d["status"] == "drawn"]
        seats = await ds.seats(conn, drawn)
        if opens is None and any(s["status"] == "notified" for s in seats):
            # An intermediary is open at once, but not while a drawn agency may still answer:
            # unsealing closes the list and its backups.
            raise DrawRefused("answers are still awaited; unseal when every asked agency has answered",
                              code="answers_pending")
        people = await _people_of(conn, deps, seats)
        confirmed = [people[(s["draw_id"], s["position"])] for s in seats if s["status"] == "confirmed"]
        if root["purpose"] == "evaluation":
            await ds.insert_pairings(conn, _pairings(root, await ds.tender_parties(conn, [root["tender_id"]]), confirmed))
        await ds.close_seats(conn, drawn)
        await ds.mark_unsealed(conn, [d["id"] for d in chain], user.id)
        await _announce(conn, deps, root, [("draw.unsealed", {"draw": str(root["id"]), "by": str(user.id),
                                                              "confirmed": len(confirmed)})],
                        "draw.unsealed", {"status": "unsealed"})
        return await _view(conn, deps, await ds.draw(conn, root["id"]))


def _pairings(root: asyncpg.Record, parties: Sequence[asyncpg.Record], experts: Sequence[uuid.UUID]):
    party = parties[0]
    rows = []
    for e in experts:
        rows.append((root["id"], e, f"tenderer:{party['tenderer']}", root["needed_at"]))
        rows.append((root["id"], e, _agent_key(party), root["needed_at"]))
        rows += [(root["id"], e, f"expert:{other}", root["needed_at"]) for other in experts if other != e]
    return rows


async def names(deps: Deps, user: CurrentUser, draw_id: uuid.UUID, ip: str) -> dict[str, Any]:
    """Who was drawn, once unsealed; every reading is recorded and logged."""
    async with deps.pool.acquire() as conn, conn.transaction():
        root = await _draw_for(conn, user, await ds.root_of(conn, draw_id) or draw_id)
        if root["unsealed_at"] is None:
            raise DrawRefused("the names are sealed until the sign-in opens", code="names_sealed", status=403)
        chain = await ds.chain(conn, root["id"])
        seats = await ds.seats(conn, [d["id"] for d in chain])
        people = await _people_of(conn, deps, seats)
        contacts = ds.intermediary_contacts if root["purpose"] == "intermediary" else ds.expert_contacts
        found = await contacts(conn, list(set(people.values())))
        await ds.record_name_access(conn, root["id"], user.id, ip)
        await log.append_entry(conn, deps.platform_key, "draw.names_viewed", {"draw": str(root["id"]), "by": str(user.id)})
        out = []
        for s in seats:
            person = people[(s["draw_id"], s["position"])]
            c = found.get(person)
            out.append({"draw": str(s["draw_id"]), "position": s["position"], "specialty": s["specialty"],
                        "backup_rank": s["backup_rank"], "status": s["status"], "pseudonym": s["pseudonym"],
                        "id": str(person), "name": c["name"] if c else None, "region": c["region"] if c else None,
                        "phone": c["phone"] if c else None})
        accesses = [{**dict(a), "at": log.iso_utc(a["at"])} for a in await ds.name_accesses(conn, root["id"])]
        return {"draw": str(root["id"]), "people": out, "accesses": accesses}


# ---------------------------------------------------------------------------- reading


async def _view(conn: asyncpg.Connection, deps: Deps, draw: asyncpg.Record) -> dict[str, Any]:
    """A draw as its requester and supervisors see it: terms, status and counts; never names."""
    root_id = await ds.root_of(conn, draw["id"])
    chain = await ds.chain(conn, root_id)
    seats = [dict(s) for s in await ds.seats(conn, [d["id"] for d in chain])]
    groups = []
    for g in chain[0]["spec"]["groups"]:
        mine = [s for s in seats if s["specialty"] == g["specialty"]]
        groups.append({"specialty": g["specialty"], "count": g["count"], **seat_counts(mine)})
    root = chain[0]
    drawn_any = any(d["status"] == "drawn" for d in chain)
    return {
        "id": str(root["id"]), "purpose": root["purpose"], "title": root["title"],
        "tender_id": str(root["tender_id"]) if root["tender_id"] else None, "subject": root["subject"],
        "needed_at": log.iso_utc(root["needed_at"]), "reply_minutes": root["reply_minutes"],
        "unsealed_at": log.iso_utc(root["unsealed_at"]) if root["unsealed_at"] else None,
        "unseal_opens_at": (lambda t: log.iso_utc(t) if t else None)(unseal_opens_at(root["purpose"], root["needed_at"])),
        "groups": groups, "counts": seat_counts(seats),
        "missing": missing_seats(root["spec"], seats) if drawn_any else [],
        "draws": [{"id": str(d["id"]), "status": d["status"], "spec": d["spec"], "commitment": d["commitment"],
                   "draw_after": log.iso_utc(d["draw_after"]), "drawn_at": log.iso_utc(d["drawn_at"]) if d["drawn_at"] else None,
                   "scheduled_log_index": d["scheduled_log_index"], "drawn_log_index": d["drawn_log_index"]}
                  for d in chain],
    }


async def view(deps: Deps, user: CurrentUser, draw_id: uuid.UUID) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        return await _view(conn, deps, await _draw_for(conn, user, draw_id))


async def list_draws(deps: Deps, user: CurrentUser, page: int, per_page: int) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        mine = None if user.has("supervisor", "admin") else user.id
        rows = await ds.list_draws(conn, mine, per_page, (page - 1) * per_page)
        return {"draws": [{"id": str(r["id"]), "purpose": r["purpose"], "title": r["title"], "status": r["status"],
                           "needed_at": log.iso_utc(r["needed_at"]), "unsealed": r["unsealed_at"] is not None}
                          for r in rows],
                "total": rows[0]["total"] if rows else 0, "page": page, "per_page": per_page}


async def published_record(conn: asyncpg.Connection, draw_id: uuid.UUID) -> dict[str, Any]:
    """The public record of a run draw with the log indexes it refers to; 404 before it has run."""
    record = await ds.draw_record(conn, draw_id)
    if record is None:
        raise DrawRefused("no draw with a published result has this id", code="draw_not_found", status=404)
    return record
