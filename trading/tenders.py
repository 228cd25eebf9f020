"""Tender and submission rules: validation of terms, publication, changes, manifest matching.

Pure module: no I/O; the clock (`now`) is always passed in. Every refusal is a
`TradingError` subclass carrying a stable `code`, an HTTP-ish `status` and a message for
people, mapped to responses in one place (trading.routes).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Sequence

from tenderhall.canonical import canonical_json

# English names are message ids: pages show them translated (经评审的最低投标价法, 综合评估法, 合理低价法).
EVALUATION_METHODS: dict[str, str] = {
    "lowest_evaluated_price": "Lowest evaluated price",
    "comprehensive_scoring": "Comprehensive scoring",
    "reasonable_price": "Reasonable low price",
}
DECRYPTION_RULES = ("custodians", "void")
SUMMARY_TYPES = ("money", "integer", "text")
DEFAULT_SUMMARY_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "price", "label": "投标报价（元）", "type": "money", "required": True},
    {"name": "duration_days", "label": "工期（日历天）", "type": "integer", "required": True},
    {"name": "quality", "label": "质量承诺", "type": "text", "required": True},
)
MAX_LOTS = 100
# name: (default, lowest, highest), as the tenders_*_check constraints say.
HALL_TERMS: dict[str, tuple[int, int, int]] = {
    "min_bidders": (3, 1, 1000), "hall_opens_minutes": (30, 5, 1440), "confirm_minutes": (30, 5, 1440),
}
MAX_MONEY = Decimal("9999999999999999.99")  # numeric(18, 2)
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_LOT_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_TENDER_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,63}$")


# ---------------------------------------------------------------------------- errors


class TradingError(Exception):
    """A refused trading operation; `code` is stable, the message is for people."""

    code = "trading_error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code
        if status:
            self.status = status


class TenderInvalid(TradingError):
    """The tender's terms break a rule; `field` names the offending input."""

    code, status = "invalid_tender", 422


class NotFound(TradingError):
    code, status = "not_found", 404


class StateConflict(TradingError):
    """The operation does not fit the current state (draft/published, deadline, status)."""

    code, status = "conflict", 409


class SubmissionRefused(TradingError):
    """A bid or upload was refused; the code says precisely why."""

    code, status = "submission_refused", 422


class TooLarge(TradingError):
    code, status = "too_large", 413


class ChecksumMismatch(TradingError):
    # tus checksum extension: 460 Checksum Mismatch.
    code, status = "checksum_mismatch", 460


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Lot:
    code: str
    name: str
    budget: Decimal


@dataclass(frozen=True)
class TenderDraft:
    """Validated terms of a tender as the agent entered them."""

    code: str
    name: str
    tenderer: str
    lots: tuple[Lot, ...]
    budget: Decimal
    control_price: Decimal | None
    evaluation_method: str
    deadline: datetime
    decryption_minutes: int
    decryption_rule: str
    custodians: tuple[uuid.UUID, ...]
    threshold: int
    summary_fields: tuple[dict[str, Any], ...] = field(default_factory=lambda: DEFAULT_SUMMARY_FIELDS)
    # The opening hall's terms (docs/hall.md): fewer valid bids than min_bidders fail a lot (流标).
    min_bidders: int = 3
    show_bid_count: bool = True
    hall_opens_minutes: int = 30
    confirm_minutes: int = 30


@dataclass(frozen=True)
class ExpectedSubmission:
    """What a manifest must say for this tender, lot and bidder."""

    tender: str
    lot: str
    organisation: str
    signing_key: str
    bidder_key: str
    custodian_keys: tuple[str, ...]
    threshold: int


# ---------------------------------------------------------------------------- parsing


def _text(data: Mapping[str, Any], name: str, *, max_len: int = 200, required: bool = True) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise TenderInvalid(f"{name} is required and must be text", field=name)
    value = value.strip()
    if len(value) > max_len:
        raise TenderInvalid(f"{name} must be at most {max_len} characters", field=name)
    return value


def parse_money(value: object, name: str) -> Decimal:
    """A positive amount with at most 2 decimals, given as a decimal string (never a float)."""
    if not isinstance(value, str):
        raise TenderInvalid(f"{name} must be a decimal string such as \"1234.50\"", field=name)
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise TenderInvalid(f"{name} {value!r} is not a decimal number", field=name) from None
    if not amount.is_finite():
        raise TenderInvalid(f"{name} must be a finite number", field=name)
    if amount <= 0:
        raise TenderInvalid(f"{name} must be greater than 0", field=name)
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise TenderInvalid(f"{name} may have at most 2 decimal places", field=name)
    if amount > MAX_MONEY:
        raise TenderInvalid(f"{name} is too large", field=name)
    return amount.quantize(Decimal("0.01"))


def parse_time(value: object, name: str) -> datetime:
    """An ISO 8601 time with a UTC offset (a naive time is ambiguous and refused)."""
    if not isinstance(value, str):
        raise TenderInvalid(f"{name} must be an ISO 8601 time with offset", field=name)
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise TenderInvalid(f"{name} {value!r} is not an ISO 8601 time", field=name) from None
    if moment.tzinfo is None:
        raise TenderInvalid(f"{name} must carry a UTC offset, e.g. 2026-05-01T09:30:00+08:00", field=name)
    return moment.astimezone(timezone.utc)


def _int(data: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TenderInvalid(f"{name} must be an integer", field=name)
    return value


def parse_summary_fields(value: object) -> tuple[dict[str, Any], ...]:
    """The opening summary's fields: the defaults unless given; price must stay a required money field."""
    if value is None:
        return DEFAULT_SUMMARY_FIELDS
    if not isinstance(value, list) or not value or len(value) > 30:
        raise TenderInvalid("summary_fields must be a list of 1 to 30 fields", field="summary_fields")
    seen: set[str] = set()
    fields: list[dict[str, Any]] = []
    for i, raw in enumerate(value):
        where = f"summary_fields[{i}]"
        if not isinstance(raw, dict):
            raise TenderInvalid(f"{where} must be an object", field="summary_fields")
        name, kind = raw.get("name"), raw.get("type")
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise TenderInvalid(f"{where}.name must be lower-case letters, digits or '_' (max 40)", field="summary_fields")
        if name in seen:
            raise TenderInvalid(f"{where}.name {name!r} is used twice", field="summary_fields")
        if kind not in SUMMARY_TYPES:
            raise TenderInvalid(f"{where}.type must be one of {', '.join(SUMMARY_TYPES)}", field="summary_fields")
        label = raw.get("label", name)
        if not isinstance(label, str) or not label.strip() or len(label) > 100:
            raise TenderInvalid(f"{where}.label must be 1 to 100 characters", field="summary_fields")
        required = raw.get("required", True)
        if not isinstance(required, bool):
            raise TenderInvalid(f"{where}.required must be true or false", field="summary_fields")
        seen.add(name)
        fields.append({"name": name, "label": label.strip(), "type": kind, "required": required})
    price = next((f for f in fields if f["name"] == "price"), None)
    if price is None or price["type"] != "money" or not price["required"]:
        raise TenderInvalid("summary_fields must include a required money field named 'price'", field="summary_fields")
    return tuple(fields)


def parse_tender(data: object) -> TenderDraft:
    """Validate a tender as submitted by an agent; TenderInvalid names the first fault.

    The deadline is checked against the clock only at publication (check_publishable).
    """
    if not isinstance(data, dict):
        raise TenderInvalid("the tender must be a JSON object")
    code = _text(data, "code", max_len=64)
    if not _TENDER_CODE.match(code):
        raise TenderInvalid("code may hold letters, digits and _ . - / (max 64)", field="code")
    budget = parse_money(data.get("budget"), "budget")
    control = data.get("control_price")
    control_price = None if control in (None, "") else parse_money(control, "control_price")
    if control_price is not None and control_price > budget:
        raise TenderInvalid("control_price must not exceed the budget", field="control_price")
    method = data.get("evaluation_method")
    if method not in EVALUATION_METHODS:
        raise TenderInvalid(f"evaluation_method must be one of {', '.join(EVALUATION_METHODS)}", field="evaluation_method")
    raw_lots = data.get("lots")
    if not isinstance(raw_lots, list) or not raw_lots:
        raise TenderInvalid("lots must hold at least one lot", field="lots")
    if len(raw_lots) > MAX_LOTS:
        raise TenderInvalid(f"lots may hold at most {MAX_LOTS} lots", field="lots")
    lots: list[Lot] = []
    for i, raw in enumerate(raw_lots):
        if not isinstance(raw, dict):
            raise TenderInvalid(f"lots[{i}] must be an object", field="lots")
        lot_code = raw.get("code")
        if not isinstance(lot_code, str) or not _LOT_CODE.match(lot_code):
            raise TenderInvalid(f"lots[{i}].code must be 1 to 32 letters, digits, '_' or '-'", field="lots")
        if any(l.code == lot_code for l in lots):
            raise TenderInvalid(f"lot code {lot_code!r} is used twice", field="lots")
        lot_name = _text(raw, "name")
        lots.append(Lot(lot_code, lot_name, parse_money(raw.get("budget"), f"lots[{i}].budget")))
    minutes = _int(data, "decryption_minutes", 30)
    if not 5 <= minutes <= 240:
        raise TenderInvalid("decryption_minutes must be between 5 and 240", field="decryption_minutes")
    rule = data.get("decryption_rule", "custodians")
    if rule not in DECRYPTION_RULES:
        raise TenderInvalid("decryption_rule must be 'custodians' or 'void'", field="decryption_rule")
    raw_custodians = data.get("custodians", [])
    if not isinstance(raw_custodians, list):
        raise TenderInvalid("custodians must be a list of user ids", field="custodians")
    custodians: list[uuid.UUID] = []
    for value in raw_custodians:
        try:
            custodian = uuid.UUID(str(value))
        except ValueError:
            raise TenderInvalid(f"custodian {value!r} is not a user id", field="custodians") from None
        if custodian in custodians:
            raise TenderInvalid(f"custodian {custodian} is named twice", field="custodians")
        custodians.append(custodian)
    threshold = _int(data, "threshold", 0)
    check_threshold(rule, len(custodians), threshold)
    hall = {name: _bounded(data, name, default, low, high) for name, (default, low, high) in HALL_TERMS.items()}
    show_count = data.get("show_bid_count", True)
    if not isinstance(show_count, bool):
        raise TenderInvalid("show_bid_count must be true or false", field="show_bid_count")
    return TenderDraft(
        code=code, name=_text(data, "name"), tenderer=_text(data, "tenderer"), lots=tuple(lots),
        budget=budget, control_price=control_price, evaluation_method=method,
        deadline=parse_time(data.get("deadline"), "deadline"), decryption_minutes=minutes,
        decryption_rule=rule, custodians=tuple(custodians), threshold=threshold,
        summary_fields=parse_summary_fields(data.get("summary_fields")),
        show_bid_count=show_count, **hall,
    )


def _bounded(data: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = _int(data, name, default)
    if not low <= value <= high:
        raise TenderInvalid(f"{name} must be between {low} and {high}", field=name)
    return value


def check_threshold(rule: str, n: int, k: int) -> None:
    """k of n custodians. Rule "void" takes no custodians and k = 0. Rule "custodians" needs
    2 <= k <= n: K is Shamir-split, and the sealed-bid format (docs/sealing.md) has no k = 1
    split, which would hand each custodian K itself."""
    if rule == "void":
        if n != 0 or k != 0:
            raise TenderInvalid("with decryption rule 'void' name no custodians and threshold 0", field="threshold")
        return
    if n < 2:
        raise TenderInvalid("decryption rule 'custodians' needs at least 2 custodians", field="custodians")
    if not 2 <= k <= n:
        raise TenderInvalid(f"threshold must be between 2 and the {n} custodians", field="threshold")


def check_publishable(status: str, deadline: datetime, now: datetime) -> None:
    if status != "draft":
        raise StateConflict("only a draft can be published", code="not_draft")
    if deadline <= now:
        raise TenderInvalid("the deadline must be in the future at publication", field="deadline", code="deadline_in_past")


def parse_change(data: object, current_deadline: datetime, now: datetime) -> tuple[str, dict[str, Any]]:
    """A clarification {"kind": "clarification", "text"} or {"kind": "deadline_extension", "deadline"}."""
    if not isinstance(data, dict):
        raise TenderInvalid("the change must be a JSON object")
    kind = data.get("kind")
    if kind == "clarification":
        return kind, {"text": _text(data, "text", max_len=20_000)}
    if kind == "deadline_extension":
        new = parse_time(data.get("deadline"), "deadline")
        if new <= current_deadline:
            raise TenderInvalid("the new deadline must be later than the current one", field="deadline")
        if new <= now:
            raise TenderInvalid("the new deadline must be in the future", field="deadline")
        return kind, {"deadline": iso(new), "previous_deadline": iso(current_deadline)}
    raise TenderInvalid("kind must be 'clarification' or 'deadline_extension'", field="kind")


def check_before_deadline(deadline: datetime, now: datetime) -> None:
    if now >= deadline:
        raise StateConflict(f"the deadline {iso(deadline)} has passed (server time {iso(now)})", code="deadline_passed")


# ---------------------------------------------------------------------------- submission


def match_manifest(manifest: Any, expected: ExpectedSubmission, now: datetime, skew_seconds: int) -> None:
    """Check a validated trading.manifest.Manifest against the tender, lot and bidder; SubmissionRefused names the field."""
    checks = (
        (manifest.tender == expected.tender, "wrong_tender", "manifest.tender is not this tender"),
        (manifest.lot == expected.lot, "wrong_lot", "manifest.lot is not this lot"),
        (manifest.organisation == expected.organisation, "wrong_organisation",
         "manifest.organisation is not your organisation's credit code"),
        (manifest.signing_key == expected.signing_key, "wrong_signing_key",
         "manifest.signing_key is not your organisation's active signing key"),
        (manifest.bidder_wrap.key == expected.bidder_key, "wrong_bidder_key",
         "manifest.bidder_wrap.key is not your organisation's active decryption key"),
        (tuple(w.custodian for w in manifest.custodian_wraps) == expected.custodian_keys, "wrong_custodians",
         "manifest.custodian_wraps do not match the tender's custodian keys, in order"),
        (manifest.threshold == expected.threshold, "wrong_threshold",
         f"manifest.threshold must be the tender's threshold {expected.threshold}"),
    )
    for ok, code, message in checks:
        if not ok:
            raise SubmissionRefused(message, code=code)
    client = datetime.strptime(manifest.client_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    if abs(client - now) > timedelta(seconds=skew_seconds):
        raise SubmissionRefused(
            f"manifest.client_time {manifest.client_time} differs from the server time {iso(now)} "
            f"by more than {skew_seconds} seconds; check your computer's clock", code="client_clock_skew")


def check_summary(summary: Mapping[str, Any], fields: Sequence[Mapping[str, Any]]) -> dict[str, str | int]:
    """Check a bid's opening summary against the tender's fields (client side, before sealing)."""
    out: dict[str, str | int] = {}
    for f in fields:
        value = summary.get(f["name"])
        if value in (None, ""):
            if f["required"]:
                raise TenderInvalid(f"{f['label']} is required", field=f["name"])
            continue
        if f["type"] == "money":
            out[f["name"]] = str(parse_money(str(value), f["name"]))
        elif f["type"] == "integer":
            try:
                out[f["name"]] = int(str(value))
            except ValueError:
                raise TenderInvalid(f"{f['label']} must be a whole number", field=f["name"]) from None
        else:
            out[f["name"]] = str(value)
    return out


def confirmation_message(bid: str, tender: str, tender_version: int, manifest_sha256: str) -> bytes:
    """The bytes a bidder signs to re-confirm its bid after a change of the tender (version v)."""
    return canonical_json({"bid": bid, "tender": tender, "tender_version": tender_version,
                           "manifest_sha256": manifest_sha256})


def needs_confirmation(status: str, bid_version: int, tender_version: int, confirmed_versions: Sequence[int]) -> bool:
    """An active bid made under an older version of the tender must be confirmed for the current one."""
    return status == "active" and bid_version < tender_version and tender_version not in confirmed_versions


def parse_checksum(header: str | None) -> bytes | None:
    """tus checksum extension: "sha256 <base64 digest>"; other algorithms are refused (400)."""
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm.lower() != "sha256":
        raise TradingError("Upload-Checksum supports only sha256", code="checksum_algorithm_unsupported")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise TradingError("Upload-Checksum value is not base64", code="bad_checksum_header") from None
    if len(digest) != 32:
        raise TradingError("Upload-Checksum sha256 must be 32 bytes", code="bad_checksum_header")
    return digest


def iso(moment: datetime) -> str:
    """UTC time as YYYY-MM-DDTHH:MM:SS[.ffffff]Z."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
