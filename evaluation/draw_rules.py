"""Pure rules of the draw's life: requests, timing, pseudonyms, seats, replacements and notices.

No I/O: times and keys are passed in. The service (draw_service.py) runs these inside its
transactions.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Mapping, Sequence

from evaluation.draw import DrawError, Result, Spec, parse_spec
from tenderhall.credit_code import CreditCodeError
from tenderhall.credit_code import validate as validate_credit_code

Purpose = Literal["evaluation", "intermediary", "inspection"]
PURPOSES: tuple[Purpose, ...] = ("evaluation", "intermediary", "inspection")
POOL_OF: dict[str, str] = {"evaluation": "experts", "intermediary": "intermediaries", "inspection": "experts"}

# DOMAIN.md: drawn half a day to a day before the evaluation, never more than two days.
MAX_LEAD = timedelta(days=2)
# Sign-in opens (and the names are unsealed) this long before the evaluation starts.
SIGN_IN_LEAD = timedelta(hours=1)
MAX_TITLE = 200


class DrawRefused(Exception):
    """A request the draw service refuses; `status` and `code` go to the HTTP answer."""

    def __init__(self, message: str, *, code: str, status: int = 409, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status, self.detail = message, code, status, detail or {}


@dataclass(frozen=True)
class DrawRequest:
    purpose: Purpose
    title: str
    spec: Spec
    needed_at: datetime
    draw_after: datetime
    commitment: str
    reply_minutes: int
    tender_id: uuid.UUID | None
    subject: dict[str, Any]


def _invalid(message: str) -> DrawRefused:
    return DrawRefused(message, code="invalid_draw", status=422)


def _time(body: Mapping[str, Any], name: str) -> datetime:
    raw = body.get(name)
    if not isinstance(raw, str):
        raise _invalid(f"{name} must be an ISO 8601 date and time with a zone, e.g. 2026-11-23T09:00:00+08:00")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(f"{name} is not an ISO 8601 date and time: {raw[:40]!r}") from None
    if value.tzinfo is None:
        raise _invalid(f"{name} needs a time zone (e.g. +08:00)")
    return value


def _uuid(raw: Any, name: str) -> uuid.UUID:
    if isinstance(raw, str) and len(raw) == 36:
        try:
            return uuid.UUID(raw)
        except ValueError:
            pass
    raise _invalid(f"{name} must be an id (UUID)")


def check_commitment(raw: Any) -> str:
    if not isinstance(raw, str) or len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
        raise _invalid("commitment must be the SHA-256 of your secret as 64 lowercase hex digits "
                       "(the page makes it for you)")
    return raw


def parse_request(body: Any, now: datetime, default_reply_minutes: int) -> DrawRequest:
    """A DrawRequest from JSON; DrawRefused(422) naming the first bad field.

    `needed_at` is when the people are needed (the evaluation); `draw_after` when the secret
    may be revealed and the draw run (default now). The draw happens at most two days before
    `needed_at`, and never after it.
    """
    if not isinstance(body, Mapping):
        raise _invalid("the request body must be a JSON object")
    purpose = body.get("purpose", "evaluation")
    if purpose not in PURPOSES:
        raise _invalid("purpose must be evaluation, intermediary or inspection")
    title = body.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
        raise _invalid(f"title must be 1 to {MAX_TITLE} characters")
    try:
        spec = parse_spec(body.get("spec"))
    except DrawError as exc:
        raise _invalid(f"spec: {exc}") from None
    needed_at = _time(body, "needed_at")
    draw_after = _time(body, "draw_after") if body.get("draw_after") is not None else now
    if needed_at <= now:
        raise _invalid("needed_at must be in the future")
    if draw_after >= needed_at:
        raise _invalid("the draw must happen before needed_at")
    if draw_after < now - timedelta(minutes=1):
        raise _invalid("draw_after must not be in the past")
    if needed_at - draw_after > MAX_LEAD:
        raise _invalid("the draw may happen at most two days before needed_at (it would leak for too long)")
    reply = body.get("reply_minutes", default_reply_minutes)
    if not isinstance(reply, int) or isinstance(reply, bool) or not 1 <= reply <= 1440:
        raise _invalid("reply_minutes must be a whole number from 1 to 1440")
    tender_id, subject = _subject(purpose, body)
    return DrawRequest(purpose, title.strip(), spec, needed_at, draw_after, check_commitment(body.get("commitment")),
                       reply, tender_id, subject)


def _subject(purpose: str, body: Mapping[str, Any]) -> tuple[uuid.UUID | None, dict[str, Any]]:
    if purpose == "evaluation":
        tender_id = _uuid(body.get("tender_id"), "tender_id")
        return tender_id, {"tender_id": str(tender_id)}
    if purpose == "inspection":
        raw = body.get("tender_ids")
        if not isinstance(raw, list) or not 1 <= len(raw) <= 200:
            raise _invalid("tender_ids must list the 1 to 200 awarded projects (tender ids) to inspect")
        ids = sorted({_uuid(r, "tender_ids[]") for r in raw})
        return None, {"tender_ids": [str(i) for i in ids]}
    purchaser = body.get("purchaser_name")
    project = body.get("project")
    code = body.get("purchaser_code")
    if not isinstance(purchaser, str) or not purchaser.strip() or len(purchaser) > 200:
        raise _invalid("purchaser_name must be 1 to 200 characters")
    if not isinstance(project, str) or not project.strip() or len(project) > 200:
        raise _invalid("project must be 1 to 200 characters")
    if code is not None:
        try:
            code = validate_credit_code(code if isinstance(code, str) else "")
        except CreditCodeError as exc:
            raise _invalid(f"purchaser_code: {exc}") from None
    return None, {"purchaser_name": purchaser.strip(), "purchaser_code": code, "project": project.strip()}


def check_draw_time(now: datetime, draw_after: datetime, needed_at: datetime) -> None:
    if now < draw_after:
        raise DrawRefused("it is too early: the draw may run from its scheduled time", code="too_early")
    if now >= needed_at:
        raise DrawRefused("too late: the people were needed by now; cancel and schedule a new draw", code="too_late")


def unseal_opens_at(purpose: str, needed_at: datetime) -> datetime | None:
    """When the names may be shown: sign-in of the evaluation or inspection; intermediaries at once (None)."""
    return None if purpose == "intermediary" else needed_at - SIGN_IN_LEAD


# ---------------------------------------------------------------------------- pseudonyms and seats


def pseudonym(draw_key: bytes, draw_id: uuid.UUID, person_id: uuid.UUID) -> str:
    """What the published record calls a person: unlinkable across draws without the data key."""
    # BLAKE2b keyed mode is a MAC in one pass (RFC 7693 §2.5): this runs for every candidate.
    return hashlib.blake2b(draw_id.bytes + person_id.bytes, key=draw_key, digest_size=16).hexdigest()


def seat_context(draw_id: uuid.UUID, position: int) -> bytes:
    return draw_id.bytes + position.to_bytes(4, "big")


@dataclass(frozen=True)
class PlannedSeat:
    position: int
    group_index: int
    specialty: str
    backup_rank: int | None
    pseudonym: str


def planned_seats(result: Result) -> list[PlannedSeat]:
    """Members then backups of each group, numbered in draw order."""
    seats, position = [], 0
    for g_index, group in enumerate(result.groups):
        for seat in group.members:
            seats.append(PlannedSeat(position, g_index, group.specialty, None, seat.candidate))
            position += 1
        for rank, backup in enumerate(group.backups, start=1):
            seats.append(PlannedSeat(position, g_index, group.specialty, rank, backup))
            position += 1
    return seats


def next_backup(seats: Sequence[Mapping[str, Any]], group_index: int) -> Mapping[str, Any] | None:
    """The first backup of the group still on standby, in draw order."""
    waiting = [s for s in seats if s["group_index"] == group_index and s["status"] == "standby"
               and s["backup_rank"] is not None]
    return min(waiting, key=lambda s: s["backup_rank"]) if waiting else None


def missing_seats(root_spec: Mapping[str, Any], seats: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Seats still empty per specialty across a draw and its extensions: the root's count less the
    people confirmed, waiting for an answer, or on standby. [] while the committee can fill itself."""
    missing = []
    for group in root_spec["groups"]:
        covered = sum(1 for s in seats if s["specialty"] == group["specialty"]
                      and s["status"] in ("confirmed", "notified", "standby"))
        if group["count"] > covered:
            missing.append({"specialty": group["specialty"], "missing": group["count"] - covered,
                            "exclude_regions": list(group.get("exclude_regions", []))})
    return missing


def extension_spec(missing: Sequence[Mapping[str, Any]], backups: int) -> dict[str, Any]:
    """The spec of an extension draw: the empty seats, as open seats, with fresh backups."""
    if not missing:
        raise DrawRefused("every seat is filled or still has a backup; nothing to extend", code="nothing_to_extend")
    return {"groups": [{"specialty": m["specialty"], "count": m["missing"], "backups": backups,
                        "quotas": [], "exclude_regions": list(m["exclude_regions"])} for m in missing]}


def seat_counts(seats: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = {k: 0 for k in ("confirmed", "notified", "declined", "expired", "standby", "unused")}
    for s in seats:
        counts[s["status"]] += 1
    return counts


# ---------------------------------------------------------------------------- notices

PURPOSE_WORDS = {"evaluation": "评标", "inspection": "标后履约检查", "intermediary": "中介服务"}


def notice_text(*, purpose: str, name: str, needed_at_local: str, reply_by_local: str, specialty: str,
                link: str) -> tuple[str, str]:
    """Subject and body of a drawn person's notice. It names the time, the specialty and the reply
    deadline, never the project or the parties: the draw stays confidential until sign-in."""
    work = PURPOSE_WORDS.get(purpose, "评审")
    subject = f"{work}抽取通知"
    body = (f"{name}：您已被随机抽取参加{needed_at_local}开始的{work}工作（专业 {specialty}）。"
            f"请于{reply_by_local}前通过以下链接确认是否参加，逾期视为不参加：{link} "
            f"请勿转发此链接，项目信息将在签到时公布。")
    return subject, body
