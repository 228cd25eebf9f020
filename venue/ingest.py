"""Position batches from positioning systems: parsing, validation and the per-record report.

Pure: the clock comes in as arguments. A batch is a JSON array or NDJSON (one record a line)
of `{tag, t, x, y, floor, quality?}`; `t` is ISO 8601 with a zone or epoch milliseconds, x
and y are the positioning system's coordinates on that floor, turned into the plan's local
metres by the floor's transform (model.Transform) when it has one: what is stored, tracked
and shown is always in plan metres. A malformed record is reported by
its index (0-based, blank NDJSON lines not counted) with the first thing wrong with it and
the rest of the batch is kept; only a batch that cannot be read at all is refused whole.

Speed: msgspec decodes the whole batch straight into model.Position (types, time zones and
coordinate ranges checked in C) and the rest is checked once per batch, over its distinct tags
and floors and its earliest and latest time. Only when that fails is the batch judged record by
record, each on its own JSON text, so a record's outcome never depends on the others: a record
msgspec reads is msgspec's reading; one it refuses (epoch milliseconds, ISO forms it does not
take, a wrong type) goes to the Python checker, which accepts it or names what is wrong. The two
readings differ only where both take a time but read it differently: msgspec rounds more than
six fractional digits of a second to the microsecond where Python truncates, and takes a
lowercase 'z' that Python refuses. parse_records, for records already decoded, has only the
Python reading.

A batch is identified by the device's Idempotency-Key, or else by the SHA-256 of its bytes,
so a re-sent batch is answered from the record of the first one and not stored twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Mapping

import msgspec

from venue.floorplan import to_local
from venue.model import MAX_COORDINATE, Position, Transform

MAX_BODY_BYTES = 4 * 2**20
MAX_RECORDS = 10_000
# Devices' clocks drift; a position further ahead than this is a broken clock, not the future.
MAX_FUTURE = timedelta(minutes=5)
MAX_KEY = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_EPOCH_MS = 10**14  # about year 5138: beyond it timedelta overflows long before a real time

# As the schema's checks (migrations/0009: doors_reader_check, floors_code_check).
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
FLOOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_KEY = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_KEY)
_TAG_RULE = "1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
_FLOOR_RULE = "a floor code: 1 to 40 letters, digits, '_', '.' or '-'"

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

# Decoders are immutable once built, like the compiled patterns above, and building one is the
# costly part: made once here.
_POSITIONS = msgspec.json.Decoder(list[Position])
_POSITION = msgspec.json.Decoder(Position)
_RAWS = msgspec.json.Decoder(list[msgspec.Raw])
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))  # digits to '0', the rest to ' '
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's (RFC 8259 section 2)


def parse_batch(body: bytes, *, ndjson: bool, now: datetime, not_before: datetime,
                transforms: Transforms | None = None) -> Batch:
    """Parse a JSON array (or NDJSON) of position records received at `now`.

    Records older than `not_before` (the retention) or more than MAX_FUTURE after `now` are
    rejected like malformed ones; `transforms` bring a floor's coordinates to plan metres. Each
    record is judged on its own JSON text (see the module docstring). Raises BatchInvalid as
    `decode_body` does."""
    latest = now + MAX_FUTURE
    positions = _decode_whole(body, ndjson)
    if positions is None:
        return _parse_each(body, ndjson, latest, not_before, transforms)
    batch = _checked_whole(positions, latest, not_before, transforms)
    if batch is None:  # msgspec read every record but some fail a check: say which, and why
        batch = _judged(len(positions), lambda i: _accepted(positions[i], latest, not_before, transforms))
    return batch


def decode_body(body: bytes, *, ndjson: bool) -> list[Any]:
    """The body's records, decoded but not checked (an unreadable NDJSON line is a RecordInvalid).

    Raises BatchInvalid when the body is not an array (400, malformed_json / not_an_array) or
    holds more than MAX_RECORDS records (413, too_many_records)."""
    if ndjson:
        lines = _lines(body)
        _check_count(len(lines))
        return _decode_lines(lines)
    try:
        items = json.loads(body)
    except ValueError as exc:
        raise BatchInvalid(400, "malformed_json", f"the body is not valid JSON: {_json_error(exc)}") from None
    if not isinstance(items, list):
        raise BatchInvalid(400, "not_an_array", "send a JSON array of position records, or NDJSON")
    _check_count(len(items))
    return items


def parse_records(items: list[Any], *, now: datetime, not_before: datetime,
                  transforms: Transforms | None = None) -> Batch:
    """Validate decoded records (an item may be a RecordInvalid already, for an unreadable line);
    `transforms` bring a
    floor's coordinates to plan metres.

    The Python reading only: a decoded record no longer has the JSON text that parse_batch gives
    msgspec, so a time with more than six fractional digits is truncated here and a lowercase
    'z' refused (see the module docstring)."""
    latest = now + MAX_FUTURE
    # Tags and floors found good: a batch repeats them, and the pattern check is not free.
    known_tags: set[str] = set()
    known_floors: set[str] = set()

    def judge(index: int) -> Position:
        item = items[index]
        if isinstance(item, RecordInvalid):
            raise item
        return _position(item, latest, not_before, transforms, known_tags, known_floors)
    return _judged(len(items), judge)


def _lines(body: bytes) -> list[bytes]:
    """NDJSON's records: its non-blank lines."""
    return [line for line in body.split(b"\n") if line.strip()]


def _decode_lines(lines: list[bytes]) -> list[Any]:
    items: list[Any] = []
    for line in lines:
        try:
            items.append(json.loads(line))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            items.append(RecordInvalid(f"not valid JSON: {_json_error(exc)}"))
    return items


def _check_count(count: int) -> None:
    if count > MAX_RECORDS:
        raise BatchInvalid(413, "too_many_records", f"a batch holds at most {MAX_RECORDS} records, this one {count}")


def _json_error(exc: ValueError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"


# ---------------------------------------------------------------------------- the fast path


def _decode_whole(body: bytes, ndjson: bool) -> list[Position] | None:
    """Every record as msgspec reads it, or None when it refuses one or Python's json would
    refuse what it read. Raises BatchInvalid for too many records, as decode_body does."""
    lines = _lines(body) if ndjson else []
    _check_count(len(lines))  # NDJSON's first, as decode_body: too many lines are refused unread
    try:
        positions = list(map(_POSITION.decode, lines)) if ndjson else _POSITIONS.decode(body)
    except (ValueError, RecursionError):  # msgspec's DecodeError (and ValidationError) is a ValueError
        return None
    if not _json_reads(body):
        return None
    _check_count(len(positions))
    return positions


def _json_reads(body: bytes) -> bool:
    """Whether Python's json.loads reads a body (or each line of one) that msgspec has read.

    msgspec skips the values of keys it does not know without decoding them, so two things it
    passes are errors to json: bytes that are not UTF-8 (json.loads decodes the whole body with
    'surrogatepass') and an integer of more digits than sys.get_int_max_str_digits() (CPython's
    guard against quadratic int parsing). Everything else msgspec reads, json reads too."""
    if not body.isascii():
        try:
            body.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return False
    limit = sys.get_int_max_str_digits()
    # A run of digits that long is rare enough that one inside a string may go the slow way too.
    return not limit or len(body) <= limit or b"0" * (limit + 1) not in body.translate(_DIGITS)


def _checked_whole(positions: list[Position], latest: datetime, not_before: datetime,
                   transforms: Transforms | None) -> Batch | None:
    """The batch, when every record passes the checks msgspec did not make; None otherwise.

    Once per distinct tag and floor, and over the earliest and latest time, not once a record."""
    if not positions:
        return Batch(())
    if not all(map(TAG.fullmatch, {p.tag for p in positions})):
        return None
    floors = {p.floor for p in positions}
    if not all(map(FLOOR.fullmatch, floors)):
        return None
    # msgspec gives every zero offset ('Z', '+00:00', '-00:00') the timezone.utc singleton, so
    # any other zone here is a real offset, and an equal-but-not-identical UTC cannot hide.
    if {p.t.tzinfo for p in positions} != {timezone.utc}:
        try:
            positions = [p if p.t.tzinfo is timezone.utc else msgspec.structs.replace(p, t=p.t.astimezone(timezone.utc))
                         for p in positions]
        except OverflowError:  # an offset time at the edge of year 1 or 9999: _accepted names it
            return None
    times = [p.t for p in positions]
    first, last = min(times), max(times)
    if first < not_before or last > latest:
        return None
    if transforms and not floors.isdisjoint(transforms):
        positions = [_to_plan(p, transforms[p.floor]) if p.floor in transforms else p for p in positions]
    return Batch(tuple(positions), (), first, last)


# ---------------------------------------------------------------------------- record by record


def _parse_each(body: bytes, ndjson: bool, latest: datetime, not_before: datetime,
                transforms: Transforms | None) -> Batch:
    """The batch judged record by record: msgspec's reading of a record's own text when it has
    one, the Python checker's otherwise. decode_body first, for its refusals and for Python's
    reading of each record."""
    texts: list[Any]
    if ndjson:  # decode_body's way, keeping the lines: they are the records' texts
        texts = _lines(body)
        _check_count(len(texts))
        items = _decode_lines(texts)
    else:
        items = decode_body(body, ndjson=False)
        texts = _array_texts(body, len(items))
    known_tags: set[str] = set()
    known_floors: set[str] = set()

    def judge(index: int) -> Position:
        item = items[index]
        if isinstance(item, RecordInvalid):  # json cannot read the line, whatever msgspec makes of it
            raise item
        # msgspec takes a time only as a string and a record only as an object: when json read
        # either otherwise, its refusal is certain and not worth the exception (epoch ms devices).
        if type(item) is dict and type(item.get("t")) is str:
            try:
                position = _POSITION.decode(texts[index])
            except (ValueError, RecursionError):  # DecodeError, or UnicodeDecodeError for a surrogate
                pass
            else:
                return _accepted(position, latest, not_before, transforms)
        return _position(item, latest, not_before, transforms, known_tags, known_floors)
    return _judged(len(items), judge)


def _array_texts(body: bytes, count: int) -> list[Any]:
    """The JSON text of each element of an array that json.loads has read (`count` of them).

    msgspec's Raw slices of the body where it can read them; otherwise (a NaN, a lone surrogate
    escape, a byte order mark, UTF-16: json takes these, msgspec does not) each element's text
    found by json's own scanner, re-encoded as UTF-8, which for a UTF-8 body gives its bytes."""
    try:
        raws = _RAWS.decode(body)
    except (ValueError, RecursionError):
        pass
    else:
        if len(raws) == count:
            return raws
    text = body.decode(json.detect_encoding(body), "surrogatepass")  # as json.loads does
    scan = json.JSONDecoder().raw_decode
    texts: list[Any] = []
    at = _WHITESPACE.match(text, _WHITESPACE.match(text).end() + 1).end()  # past '['
    while text[at] != "]":
        _, end = scan(text, at)
        texts.append(text[at:end].encode("utf-8", "surrogatepass"))
        at = _WHITESPACE.match(text, end).end()
        if text[at] == ",":
            at = _WHITESPACE.match(text, at + 1).end()
    return texts


def _judged(count: int, judge: Callable[[int], Position]) -> Batch:
    """A batch from `judge`, which turns record `index` into its Position or raises RecordInvalid."""
    positions: list[Position] = []
    errors: list[RecordError] = []
    for index in range(count):
        try:
            positions.append(judge(index))
        except RecordInvalid as exc:
            errors.append(RecordError(index, str(exc)))
    times = [p.t for p in positions]
    return Batch(tuple(positions), tuple(errors), min(times, default=None), max(times, default=None))


def _accepted(position: Position, latest: datetime, not_before: datetime, transforms: Transforms | None) -> Position:
    """A record msgspec read, put to the checks it does not make, in _position's order and words
    (its types and x and y are already good, so only the tag, the time's window and the floor can fail)."""
    tag, t, floor = position.tag, position.t, position.floor
    if not TAG.fullmatch(tag):
        raise RecordInvalid(_code_error("tag", tag, _TAG_RULE))
    if t.tzinfo is not timezone.utc:
        t = _in_utc(t, "t")
    _check_window(t, latest, not_before)
    if not FLOOR.fullmatch(floor):
        raise RecordInvalid(_code_error("floor", floor, _FLOOR_RULE))
    if t is not position.t:
        position = msgspec.structs.replace(position, t=t)
    transform = transforms.get(floor) if transforms else None
    return position if transform is None else _to_plan(position, transform)


def _to_plan(position: Position, transform: Transform) -> Position:
    x, y = to_local(transform, position.x, position.y)
    return msgspec.structs.replace(position, x=x, y=y)


# ---------------------------------------------------------------------------- the Python checker


def _position(item: Any, latest: datetime, not_before: datetime, transforms: Transforms | None,
              known_tags: set[str], known_floors: set[str]) -> Position:
    if type(item) is not dict:
        raise RecordInvalid("not a JSON object")
    tag = _code(item.get("tag"), "tag", TAG, known_tags, _TAG_RULE)
    t = parse_time(item.get("t"), "t")
    _check_window(t, latest, not_before)
    x, y = item.get("x"), item.get("y")
    # The common case inline (a float in range); anything else is checked and named by _coordinate.
    if type(x) is not float or not -MAX_COORDINATE <= x <= MAX_COORDINATE:
        x = _coordinate(x, "x")
    if type(y) is not float or not -MAX_COORDINATE <= y <= MAX_COORDINATE:
        y = _coordinate(y, "y")
    floor = _code(item.get("floor"), "floor", FLOOR, known_floors, _FLOOR_RULE)
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


def _check_window(t: datetime, latest: datetime, not_before: datetime) -> None:
    if t > latest:
        raise RecordInvalid(f"t is more than {int(MAX_FUTURE.total_seconds())} s ahead of the server's clock")
    if t < not_before:
        raise RecordInvalid("t is older than the retention period")


def _code(value: Any, name: str, pattern: re.Pattern[str], known: set[str], rule: str) -> str:
    """A tag or floor code: `value` if it matches `pattern` (or was found to before, in `known`)."""
    if type(value) is str and value in known:
        return value
    if type(value) is not str or not pattern.fullmatch(value):
        raise RecordInvalid(_code_error(name, value, rule))
    known.add(value)
    return value


def _code_error(name: str, value: Any, rule: str) -> str:
    return f"{name} is required" if value is None or value == "" else f"{name} must be {rule}"


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
        return moment if moment.tzinfo is timezone.utc else _in_utc(moment, name)
    if kind is int or (kind is float and math.isfinite(value)):
        if not -_MAX_EPOCH_MS < value < _MAX_EPOCH_MS:
            raise RecordInvalid(f"{name} is out of range for epoch milliseconds")
        return _EPOCH + timedelta(milliseconds=value)
    if value is None:
        raise RecordInvalid(f"{name} is required")
    raise RecordInvalid(f"{name} must be ISO 8601 with a time zone, or epoch milliseconds")


def _in_utc(moment: datetime, name: str) -> datetime:
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: a year-0 time in UTC
        raise RecordInvalid(f"{name} is out of range") from None


def _coordinate(value: Any, name: str) -> float:
    kind = type(value)
    if kind is not float and kind is not int:
        raise RecordInvalid(f"{name} is required" if value is None else f"{name} must be a number")
    if not -MAX_COORDINATE <= value <= MAX_COORDINATE:  # NaN fails this too (Python's json reads NaN)
        raise RecordInvalid(f"{name} must be a finite number of metres within ±{MAX_COORDINATE:.0f}")
    return float(value)
