"""Opening-hall rules (不见面开标): steps, who may act when, lot outcomes, the opening record.

Pure module: no I/O; the clock is passed in. The steps and their order are documented in
docs/hall.md. Refusals are TradingError subclasses with stable codes, mapped to responses
by trading.routes.mapped like every other trading error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence

from tenderhall.canonical import canonical_json
from tenderhall.formatting import yuan_in_words
from trading.bid_format import KEY_SIZE
from trading.tenders import TradingError, iso

Step = Literal["locked", "waiting", "sign_in", "bidder_list", "decryption", "custodians",
               "reading", "record", "closed", "failed"]
# English step names are message ids: pages show them translated.
STEP_NAMES: dict[str, str] = {
    "locked": "Hall not open yet", "waiting": "Waiting for the deadline", "sign_in": "Sign-in",
    "bidder_list": "Bidder list and deposits", "decryption": "Decryption", "custodians": "Opening by custodians",
    "reading": "Reading out", "record": "Opening record", "closed": "Closed", "failed": "Failed (流标)",
}
SIGN_IN_STEPS = ("waiting", "sign_in")
OBJECTION_STEPS = ("sign_in", "bidder_list", "decryption", "custodians", "reading")
CHAT_STEPS = ("waiting", "sign_in", "bidder_list", "decryption", "custodians", "reading", "record")
DEPOSITS = ("confirmed", "missing")
SHARE_SIZE = KEY_SIZE + 1  # Shamir share: one y byte per key byte, then the x byte
MAX_OBJECTION = 2000
MAX_ANSWER = 2000
MAX_CHAT = 1000
MAX_NOTE = 500
CHAT_INTERVAL = timedelta(seconds=2)
RECORD_FORMAT = "tenderhall-opening-record/1"


class HallRefused(TradingError):
    """An act the hall does not allow now or from this person; `code` says why."""

    code, status = "hall_refused", 409


class NotHost(HallRefused):
    code, status = "not_host", 403


class InvalidInput(HallRefused):
    code, status = "invalid_body", 422


@dataclass(frozen=True)
class Viewer:
    """Who is looking at the hall, as far as the rules care."""

    host: bool
    bidder: bool                 # a member of an organisation with a bid in this opening
    custodian_position: int | None
    signed_in: bool


# ---------------------------------------------------------------------------- time and steps


def hall_opens_at(deadline: datetime, hall_opens_minutes: int) -> datetime:
    return deadline - timedelta(minutes=hall_opens_minutes)


def current_step(stored: str | None, deadline: datetime, hall_opens_minutes: int, now: datetime) -> Step:
    """The stored step, or "locked"/"waiting" for an opening that has no row yet."""
    if stored is not None:
        return stored  # type: ignore[return-value]
    return "waiting" if now >= hall_opens_at(deadline, hall_opens_minutes) else "locked"


def require_step(step: str, allowed: Iterable[str], doing: str) -> None:
    """Raise wrong_step unless `step` is one of `allowed`."""
    allowed = tuple(allowed)
    if step not in allowed:
        wanted = " or ".join(allowed)
        raise HallRefused(f"cannot {doing} now: the opening is at step {step!r}, this needs {wanted!r}",
                          code="wrong_step")


def require_host(viewer: Viewer) -> None:
    if not viewer.host:
        raise NotHost("only the host (the tender's agent) may do this")


def check_deadline_passed(deadline: datetime, now: datetime) -> None:
    if now < deadline:
        raise HallRefused(f"submissions are open until {deadline.isoformat()}; the server clock decides",
                          code="before_deadline")


def check_window_open(window_ends_at: datetime, now: datetime) -> None:
    if now >= window_ends_at:
        raise HallRefused("the decryption window has closed; no more attempts are accepted", code="window_closed")


def check_window_closed(window_ends_at: datetime, now: datetime) -> None:
    if now < window_ends_at:
        raise HallRefused(f"the decryption window is open until {window_ends_at.isoformat()}", code="window_open")


def step_after_window(rule: str, undecrypted: int) -> Step:
    """Where the opening goes when the window closes: custodians for the rest, or straight to reading."""
    return "custodians" if rule == "custodians" and undecrypted > 0 else "reading"


def actions(step: str, viewer: Viewer, *, deadline_passed: bool, window_over: bool,
            confirmed: bool, all_confirmed: bool, confirm_over: bool) -> list[str]:
    """What this viewer may do right now (the page shows exactly these controls)."""
    out: list[str] = []
    if viewer.host:
        out += {
            "waiting": ["start_sign_in"],
            "sign_in": ["close_submissions"] if deadline_passed else [],
            "bidder_list": ["deposits", "publish_bidders"],
            "decryption": ["close_window"] if window_over else [],
            "custodians": ["finish_custodians"],
            "reading": ["read_next", "record"],
            "record": ["close"] if all_confirmed or confirm_over else [],
        }.get(step, [])
        if step in OBJECTION_STEPS:
            out.append("answer_objection")
        if step in CHAT_STEPS:
            out += ["chat", "hide_chat"]
        if step in ("waiting", "sign_in", "bidder_list", "decryption", "custodians", "reading", "record"):
            out.append("video")
    if viewer.bidder:
        if step in SIGN_IN_STEPS and not viewer.signed_in:
            out.append("sign_in")
        if step == "decryption" and not window_over:
            out.append("decrypt")
        if step in OBJECTION_STEPS and viewer.signed_in:
            out.append("object")
        if step in CHAT_STEPS and viewer.signed_in:
            out.append("chat")
        if step == "record" and not confirmed and not confirm_over:
            out.append("confirm")
    if viewer.custodian_position is not None and step == "custodians":
        out.append("release_shares")
    return sorted(set(out), key=out.index)


# ---------------------------------------------------------------------------- input


def text_field(data: Any, name: str, max_len: int, *, required: bool = True) -> str:
    """A trimmed text of 1..max_len characters (0 allowed when not required)."""
    value = data.get(name) if isinstance(data, dict) else None
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"send {{\"{name}\": \"...\"}}")
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{name} must not be empty")
    if len(value) > max_len:
        raise InvalidInput(f"{name} is {len(value)} characters; the limit is {max_len}")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InvalidInput(f"{name} contains control characters")
    return value


def uuid_field(data: Any, name: str) -> uuid.UUID:
    """`data[name]` as a UUID, or InvalidInput naming the field."""
    try:
        return uuid.UUID(str(data.get(name) if isinstance(data, Mapping) else None))
    except ValueError:
        raise InvalidInput(f"{name} must be a UUID") from None


def b64url_bytes(value: Any, size: int, what: str) -> bytes:
    """Decode unpadded base64url of exactly `size` bytes."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what} is not valid base64url") from None
    if len(raw) != size:
        raise InvalidInput(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


# ---------------------------------------------------------------------------- bidder list


def exclusion_reason(deposit: str) -> str | None:
    """Why a bid cannot stay in the opening given its bidder's deposit check, or None."""
    if deposit == "missing":
        return "deposit missing"
    if deposit != "confirmed":
        return "deposit not confirmed"
    return None


def lot_outcomes(lots: Sequence[tuple[str, str]], valid_per_lot: Mapping[str, int],
                 min_bidders: int) -> dict[str, dict[str, str | None]]:
    """Each lot's outcome when the list is published: "open", or "failed" with its reason (流标)."""
    out: dict[str, dict[str, str | None]] = {}
    for code, _name in lots:
        valid = valid_per_lot.get(code, 0)
        if valid < min_bidders:
            out[code] = {"status": "failed",
                         "reason": f"{valid} valid bid(s); the tender needs at least {min_bidders}"}
        else:
            out[code] = {"status": "open", "reason": None}
    return out


def opening_failed(outcomes: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The failure reason when every lot failed, else None."""
    if outcomes and all(o["status"] == "failed" for o in outcomes.values()):
        return "; ".join(f"{code}: {o['reason']}" for code, o in outcomes.items())
    return None


# ---------------------------------------------------------------------------- custodians


def share_subsets(shares: Sequence[bytes], k: int) -> Iterator[tuple[bytes, ...]]:
    """Every k-subset of the released shares, in release order.

    With more than k shares a bad one (a custodian's mistake) need not block the bid: the
    key commitment tells which subset combines to the bid's real key.
    """
    if len(shares) < k:
        return iter(())
    return itertools.combinations(shares, k)


# ---------------------------------------------------------------------------- read-out and record


def iso_or_none(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


def amount(value: Any) -> Decimal | None:
    """A summary money value as Decimal, or None when it is not a plain decimal amount."""
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() and result >= 0 else None


def amounts_in_words(summary: Mapping[str, Any] | None, fields: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The 大写 form of each money field of a read-out summary (values that are not amounts are left out)."""
    out: dict[str, str] = {}
    for f in fields:
        if summary and f.get("type") == "money" and f["name"] in summary:
            value = amount(summary[f["name"]])
            if value is not None:
                out[f["name"]] = yuan_in_words(value)
    return out


def record_document(*, tender: Mapping[str, Any], generated_at: str, opening: Mapping[str, Any],
                    bidders: Sequence[Mapping[str, Any]], bids: Sequence[Mapping[str, Any]],
                    lots: Sequence[Mapping[str, Any]], objections: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The opening record (开标记录) as a canonical-JSON-ready dict; its digest is what bidders sign."""
    return {
        "format": RECORD_FORMAT,
        "tender": dict(tender),
        "generated_at": generated_at,
        "opening": dict(opening),
        "lots": [dict(l) for l in lots],
        "bidders": [dict(b) for b in bidders],
        "bids": [dict(b) for b in bids],
        "objections": [dict(o) for o in objections],
    }


def record_bytes(record: Mapping[str, Any]) -> tuple[bytes, str]:
    """(canonical JSON bytes, lowercase hex SHA-256) of a record."""
    data = canonical_json(dict(record))
    return data, hashlib.sha256(data).hexdigest()


def record_confirmation_message(tender_id: str, record_sha256: str) -> bytes:
    """What a bidder signs to confirm the record (docs/hall.md)."""
    return f"{RECORD_FORMAT}\n{tender_id}\n{record_sha256}".encode("utf-8")


def check_confirmable(step: str, confirm_deadline: datetime | None, now: datetime, already: bool) -> None:
    require_step(step, ("record",), "confirm the record")
    if already:
        raise HallRefused("your organisation has already confirmed this record", code="already_confirmed")
    if confirm_deadline is not None and now > confirm_deadline:
        raise HallRefused("the time to confirm the record is over; non-confirmation is recorded",
                          code="confirm_deadline_passed")


def check_closable(all_confirmed: bool, confirm_deadline: datetime | None, now: datetime,
                   resumption_at: datetime | None) -> None:
    if not all_confirmed and (confirm_deadline is None or now <= confirm_deadline):
        raise HallRefused("some bidders have not confirmed the record and their time is not over",
                          code="confirmations_pending")
    if resumption_at is not None and resumption_at <= now:
        raise InvalidInput("the resumption time must be in the future")
