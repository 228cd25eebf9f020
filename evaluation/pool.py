"""The expert and intermediary pools' rules: field validation, leave days, avoidances, credit.

Pure: no I/O; "today" is passed in. Every refusal is a PoolError with an HTTP status, a
stable code and a message for people; a message never repeats an identity number.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Literal

from evaluation import id_number
from evaluation.specialty_tree import INTERMEDIARY_ROOT
from tenderhall import credit_code

Status = Literal["active", "suspended", "retired"]
STATUSES: tuple[Status, ...] = ("active", "suspended", "retired")
CREDIT_BASE = 100
CREDIT_MIN, CREDIT_MAX = 0, 200
DELTA_LIMIT = 100
MAX_SPECIALTIES = 10
MAX_LEAVE_DAYS = 400
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2100, 12, 31)

PHONE = re.compile(r"^1[3-9][0-9]{9}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
REGION = re.compile(r"^[1-9][0-9]{5}$")
CODE = re.compile(r"^[A-Z]([0-9]{2}){0,4}$")

# Division codes the demo and the pages name; any valid six-digit code is accepted.
REGION_NAMES = {
    "350102": "福州市鼓楼区", "350103": "福州市台江区", "350104": "福州市仓山区", "350111": "福州市晋安区",
    "350203": "厦门市思明区", "350206": "厦门市湖里区", "350502": "泉州市鲤城区", "350503": "泉州市丰泽区",
    "350602": "漳州市芗城区", "350302": "莆田市城厢区", "350702": "南平市延平区", "350404": "三明市三元区",
    "320102": "南京市玄武区", "320104": "南京市秦淮区", "320106": "南京市鼓楼区", "320115": "南京市江宁区",
    "320205": "无锡市锡山区", "320213": "无锡市梁溪区", "320505": "苏州市虎丘区", "320508": "苏州市姑苏区",
    "321002": "扬州市广陵区", "320302": "徐州市鼓楼区", "340104": "合肥市蜀山区", "340103": "合肥市庐阳区",
    "330106": "杭州市西湖区", "310115": "上海市浦东新区",
}

TITLES = ("正高级工程师", "高级工程师", "工程师", "高级经济师", "经济师", "高级会计师", "注册造价工程师",
          "注册建造师", "主任医师", "副主任医师", "教授", "副教授", "律师", "注册会计师")


class PoolError(Exception):
    """A refused request: HTTP `status`, stable `code`, a message; `field` names the input at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class PoolInvalid(PoolError):
    """One or more fields are wrong: `errors` holds (field, message) for each."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        message = "; ".join(f"{f}: {m}" for f, m in errors)
        super().__init__(422, "invalid_field", message, errors[0][0] if errors else None)
        self.errors = errors


class FieldError(ValueError):
    """One field's value is wrong (collected into PoolInvalid or a CSV row error)."""


def not_found(what: str) -> PoolError:
    return PoolError(404, f"{what}_not_found", f"no such {what}")


def sha256_hex(text: str | bytes) -> str:
    """The digest that stands for free text in the public log."""
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


def like_prefix(text: str) -> str:
    """`text` with LIKE's wildcards escaped (backslash is PostgreSQL's default escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def clamp_score(score: int) -> int:
    return max(CREDIT_MIN, min(CREDIT_MAX, score))


# ---------------------------------------------------------------------------- field checks


def _text(value: Any, *, max_len: int, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise FieldError("is required")
        return None
    if not isinstance(value, str):
        raise FieldError("must be text")
    value = " ".join(value.split())
    if len(value) > max_len:
        raise FieldError(f"may have at most {max_len} characters")
    return value


def check_name(value: Any) -> str:
    return _text(value, max_len=50) or ""


def check_org_name(value: Any) -> str:
    return _text(value, max_len=200) or ""


def check_title(value: Any) -> str:
    return _text(value, max_len=50) or ""


def check_phone(value: Any) -> str:
    text = (_text(value, max_len=20) or "").replace(" ", "").replace("-", "")
    if text.startswith("+86"):
        text = text[3:]
    if not PHONE.match(text):
        raise FieldError("is not a mainland mobile number (11 digits starting with 13-19)")
    return text


def check_email(value: Any) -> str | None:
    text = _text(value, max_len=254, required=False)
    if text is not None and not EMAIL.match(text):
        raise FieldError("is not an e-mail address")
    return text


def check_region(value: Any) -> str:
    text = (_text(value, max_len=6) or "")
    if not REGION.match(text):
        raise FieldError("must be a six-digit administrative division code")
    return text


def check_credit_code(value: Any) -> str:
    text = _text(value, max_len=18) or ""
    try:
        return credit_code.validate(text)
    except credit_code.CreditCodeError as exc:
        raise FieldError(str(exc)) from None


def check_status(value: Any) -> Status:
    if value not in STATUSES:
        raise FieldError("must be one of active, suspended, retired")
    return value  # type: ignore[return-value]


def _codes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[;；,，\s]+", value) if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise FieldError("must be a list of specialty codes")
    codes = tuple(sorted({v.strip().upper() for v in value}))
    if not codes:
        raise FieldError("name at least one code")
    if len(codes) > MAX_SPECIALTIES:
        raise FieldError(f"at most {MAX_SPECIALTIES} codes")
    bad = [c for c in codes if not CODE.match(c)]
    if bad:
        raise FieldError(f"{bad[0][:20]!r} is not a specialty code (a letter and pairs of digits)")
    return codes


def check_specialties(value: Any) -> tuple[str, ...]:
    """An expert's specialties: codes of the tree outside the intermediaries' letter."""
    codes = _codes(value)
    reserved = [c for c in codes if c.startswith(INTERMEDIARY_ROOT)]
    if reserved:
        raise FieldError(f"{reserved[0]} is an intermediary service category, not an expert specialty")
    return codes


def check_categories(value: Any) -> tuple[str, ...]:
    """An intermediary's service categories: codes under the reserved letter."""
    codes = _codes(value)
    wrong = [c for c in codes if not c.startswith(INTERMEDIARY_ROOT) or len(c) < 3]
    if wrong:
        raise FieldError(f"{wrong[0]} is not an intermediary service category ({INTERMEDIARY_ROOT}01, {INTERMEDIARY_ROOT}02, …)")
    return codes


def check_user_id(value: Any) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise FieldError("is not a user id") from None


def check_id_number(today: date) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _text(value, max_len=30) or ""
        try:
            return id_number.validate(text, today=today)
        except id_number.IdNumberError as exc:
            raise FieldError(str(exc)) from None
    return check


# ---------------------------------------------------------------------------- experts


@dataclass(frozen=True)
class ExpertInput:
    """A whole expert as entered (the ID number in clear: it is sealed before it is stored)."""

    name: str
    id_number: str = field(repr=False)
    phone: str
    email: str | None
    employer_name: str
    employer_code: str
    region: str
    specialties: tuple[str, ...]
    title: str
    status: Status = "active"
    user_id: uuid.UUID | None = None


def expert_checks(today: date) -> dict[str, Callable[[Any], Any]]:
    """field → its check, in the order forms and the CSV show them."""
    return {
        "name": check_name, "id_number": check_id_number(today), "phone": check_phone, "email": check_email,
        "employer_name": check_org_name, "employer_code": check_credit_code, "region": check_region,
        "specialties": check_specialties, "title": check_title, "status": check_status, "user_id": check_user_id,
    }


EXPERT_OPTIONAL = {"email": None, "status": "active", "user_id": None}


def parse_fields(data: Any, checks: dict[str, Callable[[Any], Any]], *, partial: bool,
                 optional: dict[str, Any]) -> dict[str, Any]:
    """Check every field `data` gives (all of them unless `partial`); PoolInvalid lists every fault."""
    if not isinstance(data, dict):
        raise PoolError(400, "invalid_body", "send a JSON object")
    values: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for name, check in checks.items():
        if name not in data:
            if not partial:
                if name in optional:
                    values[name] = optional[name]
                else:
                    errors.append((name, "is required"))
            continue
        raw = data[name]
        if raw in (None, "") and name in optional and optional[name] is None:
            values[name] = None
            continue
        try:
            values[name] = check(raw)
        except FieldError as exc:
            errors.append((name, str(exc)))
    if errors:
        raise PoolInvalid(errors)
    return values


def parse_expert(data: Any, *, today: date) -> ExpertInput:
    """A new expert from a JSON object or form; PoolInvalid naming every bad field."""
    return ExpertInput(**parse_fields(data, expert_checks(today), partial=False, optional=EXPERT_OPTIONAL))


def parse_expert_changes(data: Any, *, today: date) -> tuple[int, dict[str, Any]]:
    """(version, changed fields) of an edit; `version` is the one the editor saw (required)."""
    if not isinstance(data, dict):
        raise PoolError(400, "invalid_body", "send a JSON object")
    version = parse_version(data.get("version"))
    changes = parse_fields({k: v for k, v in data.items() if k != "version"}, expert_checks(today), partial=True,
                           optional=EXPERT_OPTIONAL)
    unknown = sorted(set(data) - set(expert_checks(today)) - {"version"})
    if unknown:
        raise PoolInvalid([(unknown[0], "is not a field of an expert")])
    return version, changes


def parse_version(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PoolInvalid([("version", "send the version you edited (a positive whole number)")])
    return value


# ---------------------------------------------------------------------------- intermediaries


@dataclass(frozen=True)
class IntermediaryInput:
    name: str
    credit_code: str
    region: str
    contact_name: str
    phone: str
    email: str | None
    categories: tuple[str, ...]
    status: Status = "active"


INTERMEDIARY_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": check_org_name, "credit_code": check_credit_code, "region": check_region, "contact_name": check_name,
    "phone": check_phone, "email": check_email, "categories": check_categories, "status": check_status,
}
INTERMEDIARY_OPTIONAL = {"email": None, "status": "active"}


def parse_intermediary(data: Any) -> IntermediaryInput:
    return IntermediaryInput(**parse_fields(data, INTERMEDIARY_CHECKS, partial=False, optional=INTERMEDIARY_OPTIONAL))


def parse_intermediary_changes(data: Any) -> tuple[int, dict[str, Any]]:
    if not isinstance(data, dict):
        raise PoolError(400, "invalid_body", "send a JSON object")
    version = parse_version(data.get("version"))
    unknown = sorted(set(data) - set(INTERMEDIARY_CHECKS) - {"version"})
    if unknown:
        raise PoolInvalid([(unknown[0], "is not a field of an intermediary")])
    changes = parse_fields({k: v for k, v in data.items() if k != "version"}, INTERMEDIARY_CHECKS, partial=True,
                           optional=INTERMEDIARY_OPTIONAL)
    return version, changes


# ---------------------------------------------------------------------------- status, leave, avoidance


def parse_status_change(data: Any) -> tuple[Status, int | None]:
    """(new status, the version seen or None) from {"status", "version"?}."""
    if not isinstance(data, dict):
        raise PoolError(400, "invalid_body", "send a JSON object")
    try:
        status = check_status(data.get("status"))
    except FieldError as exc:
        raise PoolInvalid([("status", str(exc))]) from None
    version = None if data.get("version") in (None, "") else parse_version(data.get("version"))
    return status, version


def parse_day(value: Any) -> date:
    if not isinstance(value, str):
        raise FieldError("a day is written YYYY-MM-DD")
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise FieldError(f"{value[:20]!r} is not a day (YYYY-MM-DD)") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise FieldError(f"{day} is out of range")
    return day


def parse_days(value: Any) -> tuple[date, ...]:
    """A leave calendar: a list of YYYY-MM-DD days, sorted and without repeats."""
    if not isinstance(value, list):
        raise PoolInvalid([("days", "send a list of days (YYYY-MM-DD)")])
    try:
        days = tuple(sorted({parse_day(v) for v in value}))
    except FieldError as exc:
        raise PoolInvalid([("days", str(exc))]) from None
    if len(days) > MAX_LEAVE_DAYS:
        raise PoolInvalid([("days", f"at most {MAX_LEAVE_DAYS} days")])
    return days


def day_range(first: Any, last: Any) -> tuple[date, ...]:
    """Every day from `first` to `last` (inclusive; `last` empty: one day) for the leave form."""
    try:
        start = parse_day(first)
        end = parse_day(last) if last not in (None, "") else start
    except FieldError as exc:
        raise PoolInvalid([("days", str(exc))]) from None
    if end < start or (end - start).days >= MAX_LEAVE_DAYS:
        raise PoolInvalid([("days", f"the last day must follow the first, at most {MAX_LEAVE_DAYS} days")])
    return tuple(date.fromordinal(n) for n in range(start.toordinal(), end.toordinal() + 1))


@dataclass(frozen=True)
class AvoidanceInput:
    """A declared relation: an organisation (credit code) or a platform user, never both."""

    organisation_code: str | None
    user_id: uuid.UUID | None
    note: str


def parse_avoidance(data: Any) -> AvoidanceInput:
    if not isinstance(data, dict):
        raise PoolError(400, "invalid_body", "send a JSON object")
    code, user = data.get("organisation_code"), data.get("user_id")
    has_code, has_user = code not in (None, ""), user not in (None, "")
    if has_code == has_user:
        raise PoolInvalid([("organisation_code", "give an organisation's credit code or a user id (one of them)")])
    errors: list[tuple[str, str]] = []
    values: dict[str, Any] = {"organisation_code": None, "user_id": None}
    for name, check, given in (("organisation_code", check_credit_code, has_code), ("user_id", check_user_id, has_user)):
        if given:
            try:
                values[name] = check(data[name])
            except FieldError as exc:
                errors.append((name, str(exc)))
    try:
        values["note"] = _text(data.get("note"), max_len=500, required=False) or ""
    except FieldError as exc:
        errors.append(("note", str(exc)))
    if errors:
        raise PoolInvalid(errors)
    return AvoidanceInput(**values)


# ---------------------------------------------------------------------------- credit


@dataclass(frozen=True)
class CreditInput:
    """A deduction (negative delta, 扣分) or commendation (positive) with its reason and evidence."""

    delta: int
    reason: str
    evidence: str


def parse_credit(data: Any) -> CreditInput:
    if not isinstance(data, dict):
        raise PoolError(400, "invalid_body", "send a JSON object")
    errors: list[tuple[str, str]] = []
    delta = data.get("delta")
    if isinstance(delta, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,4}\s*", delta):
        delta = int(delta)
    if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0 or abs(delta) > DELTA_LIMIT:
        errors.append(("delta", f"must be a whole number from -{DELTA_LIMIT} to {DELTA_LIMIT}, not 0"))
    reason = evidence = ""
    try:
        reason = _text(data.get("reason"), max_len=500) or ""
    except FieldError as exc:
        errors.append(("reason", str(exc)))
    raw_evidence = data.get("evidence")
    if raw_evidence not in (None, ""):
        if not isinstance(raw_evidence, str) or len(raw_evidence.strip()) > 2000:
            errors.append(("evidence", "must be text of at most 2000 characters"))
        else:
            evidence = raw_evidence.strip()
    if errors:
        raise PoolInvalid(errors)
    return CreditInput(delta, reason, evidence)  # type: ignore[arg-type]


def apply_credit(score: int, delta: int) -> int:
    """The score after a change, kept within CREDIT_MIN..CREDIT_MAX."""
    return clamp_score(score + delta)


def below_threshold(score: int, threshold: int) -> bool:
    """Whether a score excludes its holder from draws (settings.credit_threshold)."""
    return score < threshold
