"""Position batches from positioning systems: parsing, validation and the per-record report.

Pure: the clock comes in as arguments. A batch is a JSON array or NDJSON (one record a line)
of `{tag, t, x, y, floor, quality?}`; `t` is ISO 8601 with a zone or epoch milliseconds, x
and y are the positioning system's coordinates on that floor, turned into the plan's local
metres by the floor's transform (model.Transform) when it has one: what is stored, tracked
and shown is always in plan metres. A malformed record is reported by
its index (0-based, blank NDJSON lines not counted) with the first thing wrong with it and
the rest of the batch is kept; only a batch that cannot be read at all is refused whole.

A batch is identified by the device's Idempotency-Key, or else by the SHA-256 of its bytes,
so a re-sent batch is answered from the record of the first one and not stored twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping

from venue.floorplan import to_local
from venue.model import Position, Transform

MAX_BODY_BYTES = 4 * 2**20
MAX_RECORDS = 10_000
# Devices' clocks drift; a position further ahead than this is a broken clock, not the future.
MAX_FUTURE = timedelta(minutes=5)
# Local metres: anything further out is a unit or transform error, not a place on a floor.
MAX_COORDINATE = 100_000.0
MAX_KEY = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_EPOCH_MS = 10**14  # about year 5138: beyond it timedelta overflows long before a real time

# As the schema's checks (migrations/0009: doors_reader_check, floors_code_check).
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
FLOOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_KEY = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_KEY)

NDJSON = "application/x-ndjson"
JSON = "application/json"


class BatchInvalid(ValueError):
    """The whole batch is refused: `status` 400/413/415 with a stable `code`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RecordInvalid(ValueError):
    """One record is malformed; the message says what, for the report."""


@dataclass(frozen=True)
class RecordError:
    index: int
    error: str


@dataclass(frozen=True)
class Batch:
    """A parsed batch: the good positions (times in UTC) and an error for each bad record."""

    positions: tuple[Position, ...]
    errors: tuple[RecordError, ...] = ()
    first: datetime | None = None  # the earliest and latest good position
    last: datetime | None = None

    @property
    def accepted(self) -> int:
        return len(self.positions)

    @property
    def rejected(self) -> int:
        return len(self.errors)

    @classmethod
    def join(cls, parts: list["Batch"]) -> "Batch":
        """One batch from consecutive slices of it."""
        firsts = [p.first for p in parts if p.first is not None]
        lasts = [p.last for p in parts if p.last is not None]
        return cls(tuple(x for p in parts for x in p.positions), tuple(e for p in parts for e in p.errors),
                   min(firsts, default=None), max(lasts, default=None))

    def days(self) -> list[date]:
        """The UTC days the good positions fall on (the partitions they need)."""
        if self.first is None or self.last is None:
            return []
        return [self.first.date() + timedelta(days=n) for n in range((self.last.date() - self.first.date()).days + 1)]


@dataclass(frozen=True)
class Report:
    """What the device is told: how many records were kept and why the others were not."""

    accepted: int
    rejected: int
    errors: tuple[RecordError, ...] = field(default_factory=tuple)
    duplicate: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected, "errors": errors_json(self.errors),
                "duplicate": self.duplicate}


def errors_json(errors: tuple[RecordError, ...]) -> list[dict[str, Any]]:
    return [{"index": e.index, "error": e.error} for e in errors]


def errors_from_json(data: list[dict[str, Any]]) -> tuple[RecordError, ...]:
    return tuple(RecordError(int(e["index"]), str(e["error"])) for e in data)


def batch_id(body: bytes, idempotency_key: str | None) -> str:
    """The batch's identity: the device's key, or the SHA-256 of the body; BatchInvalid for a bad key."""
    if idempotency_key is None:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    if not _KEY.fullmatch(idempotency_key):
        raise BatchInvalid(400, "invalid_idempotency_key",
                           f"Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters")
    return "key:" + idempotency_key


Transforms = Mapping[str, Transform]  # floor code -> its positioning system's transform (identity: absent)


def parse_body(body: bytes, *, ndjson: bool, now: datetime, not_before: datetime,
               transforms: Transforms | None = None) -> Batch:
    """Parse a JSON array (or NDJSON) of position records received at `now`.

    Records older than `not_before` (the retention) or more than MAX_FUTURE after `now` are
    rejected like malformed ones. Raises BatchInvalid as `decode_body` does."""
    return parse_records(decode_body(body, ndjson=ndjson), now=now, not_before=not_before, transforms=transforms)


def decode_body(body: bytes, *, ndjson: bool) -> list[Any]:
    """The body's records, decoded but not checked (an unreadable NDJSON line is a RecordInvalid).

    Raises BatchInvalid when the body is not an array (400, malformed_json / not_an_array) or
    holds more than MAX_RECORDS records (413, too_many_records)."""
    if ndjson:
        lines = [line for line in body.split(b"\n") if line.strip()]
        _check_count(len(lines))
        items: list[Any] = []
        for line in lines:
            try:
                items.append(json.loads(line))
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                items.append(RecordInvalid(f"not valid JSON: {_json_error(exc)}"))
        return items
    try:
        items = json.loads(body)
    except ValueError as exc:
        raise BatchInvalid(400, "malformed_json", f"the body is not valid JSON: {_json_error(exc)}") from None
    if not isinstance(items, list):
        raise BatchInvalid(400, "not_an_array", "send a JSON array of position records, or NDJSON")
    _check_count(len(items))
    return items


def parse_records(items: list[Any], *, now: datetime, not_before: datetime, offset: int = 0,
                  transforms: Transforms | None = None) -> Batch:
    """Validate decoded records (an item may be a RecordInvalid already, for an unreadable line);
    `offset` is the index of the first in the whole batch, for the report; `transforms` bring a
    floor's coordinates to plan metres."""
    latest = now + MAX_FUTURE
    positions: list[Position] = []
    errors: list[RecordError] = []
    first = last = None
    # Tags and floors found good: a batch repeats them, and the pattern check is not free.
    known_tags: set[str] = set()
    known_floors: set[str] = set()
    for index, item in enumerate(items, offset):
        try:
            if isinstance(item, RecordInvalid):
                raise item
            position = _position(item, latest, not_before, transforms, known_tags, known_floors)
        except RecordInvalid as exc:
            errors.append(RecordError(index, str(exc)))
            continue
        positions.append(position)
        t = position.t
        if first is None or t < first:
            first = t
        if last is None or t > last:
            last = t
    return Batch(tuple(positions), tuple(errors), first, last)


def _check_count(count: int) -> None:
    if count > MAX_RECORDS:
        raise BatchInvalid(413, "too_many_records", f"a batch holds at most {MAX_RECORDS} records, this one {count}")


def _json_error(exc: ValueError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"


def _position(item: Any, latest: datetime, not_before: datetime, transforms: Transforms | None,
              known_tags: set[str], known_floors: set[str]) -> Position:
    if type(item) is not dict:
        raise RecordInvalid("not a JSON object")
    tag = _code(item.get("tag"), "tag", TAG, known_tags,
                "1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit")
    t = parse_time(item.get("t"), "t")
    if t > latest:
        raise RecordInvalid(f"t is more than {int(MAX_FUTURE.total_seconds())} s ahead of the server's clock")
    if t < not_before:
        raise RecordInvalid("t is older than the retention period")
    x, y = item.get("x"), item.get("y")
    # The common case inline (a float in range); anything else is checked and named by _coordinate.
    if type(x) is not float or not -MAX_COORDINATE <= x <= MAX_COORDINATE:
        x = _coordinate(x, "x")
    if type(y) is not float or not -MAX_COORDINATE <= y <= MAX_COORDINATE:
        y = _coordinate(y, "y")
    floor = _code(item.get("floor"), "floor", FLOOR, known_floors,
                  "a floor code: 1 to 40 letters, digits, '_', '.' or '-'")
    quality = item.get("quality")
    if quality is not None:
        if type(quality) not in (float, int) or not math.isfinite(quality):
            raise RecordInvalid("quality must be a number")
        quality = float(quality)
    if transforms:
        transform = transforms.get(floor)
        if transform is not None:
            x, y = to_local(transform, x, y)
    return Position(tag, t, floor, x, y, quality)


def _code(value: Any, name: str, pattern: re.Pattern[str], known: set[str], rule: str) -> str:
    """A tag or floor code: `value` if it matches `pattern` (or was found to before, in `known`)."""
    if type(value) is str and value in known:
        return value
    if type(value) is not str or not pattern.fullmatch(value):
        raise RecordInvalid(f"{name} is required" if value is None or value == "" else f"{name} must be {rule}")
    known.add(value)
    return value


def parse_time(value: Any, name: str) -> datetime:
    """ISO 8601 with a zone, or epoch milliseconds, as an aware UTC datetime; RecordInvalid otherwise."""
    kind = type(value)
    if kind is str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise RecordInvalid(f"{name} must be ISO 8601 with a time zone, or epoch milliseconds") from None
        if moment.tzinfo is None:
            raise RecordInvalid(f"{name} has no time zone (add Z or an offset such as +08:00)")
        return moment if moment.tzinfo is timezone.utc else moment.astimezone(timezone.utc)
    if kind is int or (kind is float and math.isfinite(value)):
        if not -_MAX_EPOCH_MS < value < _MAX_EPOCH_MS:
            raise RecordInvalid(f"{name} is out of range for epoch milliseconds")
        return _EPOCH + timedelta(milliseconds=value)
    if value is None:
        raise RecordInvalid(f"{name} is required")
    raise RecordInvalid(f"{name} must be ISO 8601 with a time zone, or epoch milliseconds")


def _coordinate(value: Any, name: str) -> float:
    kind = type(value)
    if kind is not float and kind is not int:
        raise RecordInvalid(f"{name} is required" if value is None else f"{name} must be a number")
    if not -MAX_COORDINATE <= value <= MAX_COORDINATE:  # NaN fails this too (Python's json reads NaN)
        raise RecordInvalid(f"{name} must be a finite number of metres within ±{MAX_COORDINATE:.0f}")
    return float(value)
