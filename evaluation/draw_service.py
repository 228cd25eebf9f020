"""Draw use cases: schedule with a commitment, run on the revealed secret, extend, unseal, read.

Each act is one transaction that writes its state, its transparency-log entries (never names:
the public record speaks of per-draw pseudonyms) and its bus events together. Messages to
drawn people wait sealed in an outbox; draw_replies.py sends them and takes the answers.
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
from evaluation.draw import (
    Candidate, DrawError, DrawImpossible, GroupResult, Result, Seat, check_feasible, parse_spec, spec_digest, spec_json,
)
from evaluation.draw_record import build_record
from evaluation.draw_rules import (
    POOL_OF, DrawRefused, check_commitment, check_draw_time, extension_spec, missing_seats, parse_request,
    planned_seats, pseudonym, seat_context, seat_counts, unseal_opens_at,
)
from tenderhall import bus, db, formatting, log
from tenderhall.accounts import CurrentUser
from tenderhall.canonical import b64url_decode, canonical_json
from tenderhall.data_key import DataKey
from tenderhall.platform_key import PlatformKey
from tenderhall.settings import Settings

DEFAULT_EXTENSION_BACKUPS = 2
# Each scheduled draw runs the candidate query; a requester has no use for more waiting at once.
MAX_SCHEDULED = 20


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


async def announce(conn: asyncpg.Connection, deps: Deps, draw: asyncpg.Record, entries: list[tuple[str, dict]],
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
    if purpose == "inspection":
        unfinished = sorted(p["code"] for p in parties if p["opening_step"] != "closed")
        if unfinished:
            raise DrawRefused(f"only projects whose opening has closed can be inspected; not yet: {', '.join(unfinished)}",
                              code="not_awarded", status=422)
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
        waiting = await conn.fetchval("SELECT count(*) FROM draws WHERE requested_by = $1 AND status = 'scheduled'",
                                      user.id)
        if waiting >= MAX_SCHEDULED:
            raise DrawRefused(f"you already have {waiting} draws waiting to be run; run or cancel some first",
                              code="too_many_scheduled", status=429)
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
        [entry] = await announce(conn, deps, placeholder, [("draw.scheduled", body_out)], "draw.scheduled",
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
        await announce(conn, deps, draw, [("draw.cancelled", {"draw": str(draw_id), "by": str(user.id)})],
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
        now = await conn.fetchval("SELECT now()")  # the database's clock decides, as for every reply window
        check_draw_time(now, draw["draw_after"], draw["needed_at"])
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
        seats, notices = _seat_rows(deps, draw, record, people, now)
        drawn_body = {k: record[k] for k in ("draw", "spec_sha256", "candidates_sha256", "commitment", "secret", "seed",
                                              "result")}
        # The members asked at once are in the draw's own entry; later steps get a draw.seat entry each.
        drawn_body.update(tree_head=record["tree_head"], candidate_count=len(candidates), rules=avoidance.as_json(),
                          notified=[row[1] for row in seats if row[7] == "notified"])
        results = await announce(conn, deps, draw, [("draw.drawn", drawn_body)], "draw.drawn", {"status": "drawn"})
        await ds.insert_seats(conn, seats)
        for position, message in notices:
            await queue_notice(conn, deps, draw_id, position, message)
        await ds.mark_drawn(conn, draw_id, record, avoidance.as_json(), results[0].index)
        return await _view(conn, deps, await ds.draw(conn, draw_id))


def _seat_rows(deps: Deps, draw: asyncpg.Record, record: dict[str, Any], people: dict[str, uuid.UUID], now: datetime):
    rows, notices = [], []
    reply_by = now + timedelta(minutes=draw["reply_minutes"])
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


async def queue_notice(conn: asyncpg.Connection, deps: Deps, draw_id: uuid.UUID, position: int,
                        message: dict[str, Any]) -> None:
    sealed = deps.data_key.seal("draw-notice", seat_context(draw_id, position), canonical_json(message))
    await ds.insert_notification(conn, draw_id, position, sealed, deps.settings.notifier)


async def people_of(conn: asyncpg.Connection, deps: Deps, seats: Sequence[asyncpg.Record]) -> dict[int, uuid.UUID]:
    return {(s["draw_id"], s["position"]): uuid.UUID(bytes=deps.data_key.open(
        "draw-seat", seat_context(s["draw_id"], s["position"]), s["person_sealed"])) for s in seats}


async def _asked_in_chain(conn: asyncpg.Connection, deps: Deps, draw_id: uuid.UUID) -> list[uuid.UUID]:
    root = await ds.root_of(conn, draw_id)
    chain = await ds.chain(conn, root)
    seats = await ds.seats(conn, [d["id"] for d in chain])
    return sorted(set((await people_of(conn, deps, seats)).values()))


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
        people = await people_of(conn, deps, seats)
        confirmed = [people[(s["draw_id"], s["position"])] for s in seats if s["status"] == "confirmed"]
        if root["purpose"] == "evaluation":
            await ds.insert_pairings(conn, _pairings(root, await ds.tender_parties(conn, [root["tender_id"]]), confirmed))
        await ds.close_seats(conn, drawn)
        await ds.mark_unsealed(conn, [d["id"] for d in chain], user.id)
        await announce(conn, deps, root, [("draw.unsealed", {"draw": str(root["id"]), "by": str(user.id),
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
        people = await people_of(conn, deps, seats)
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
    root = chain[0]
    names = await ds.specialty_names(conn, [g["specialty"] for g in root["spec"]["groups"]])
    groups = []
    for g in root["spec"]["groups"]:
        mine = [s for s in seats if s["specialty"] == g["specialty"]]
        groups.append({"specialty": g["specialty"], "specialty_name": names.get(g["specialty"], ""),
                       "count": g["count"], **seat_counts(mine)})
    tender = await ds.tender_label(conn, root["tender_id"]) if root["tender_id"] else None
    drawn_any = any(d["status"] == "drawn" for d in chain)
    return {
        "id": str(root["id"]), "purpose": root["purpose"], "title": root["title"],
        "tender_id": str(root["tender_id"]) if root["tender_id"] else None, "subject": root["subject"],
        "tender": {"code": tender["code"], "name": tender["name"]} if tender else None,
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


async def form_choices(deps: Deps, user: CurrentUser) -> dict[str, Any]:
    """What the request form offers: the tenders this user may draw for and the specialty tree."""
    async with deps.pool.acquire() as conn:
        mine = None if user.has("supervisor", "admin") else user.id
        return {"tenders": [dict(r) for r in await ds.tender_choices(conn, mine)],
                "specialties": await ds.specialty_names(conn)}


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
