"""Parsing position batches: every malformed record with its message, the good ones kept,
whole-batch refusals, times in UTC, the batch's identity."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import date, datetime, timedelta, timezone
from typing import Callable

import pytest

from venue import ingest, model
from venue.ingest import (
    MAX_FUTURE, MAX_RECORDS, Batch, BatchInvalid, RecordError, Report, batch_id, errors_from_json, errors_json,
    parse_batch, parse_records,
)
from venue.model import Position, Transform

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)
NOT_BEFORE = NOW - timedelta(days=30)
GOOD = {"tag": "UWB-0001", "t": "2026-05-01T08:59:59.5Z", "x": 12.5, "y": 3, "floor": "F1"}


def parse(items: list) -> tuple[list[Position], list[RecordError]]:
    batch = parse_records(items, now=NOW, not_before=NOT_BEFORE)
    return list(batch.positions), list(batch.errors)


def with_(**changes: object) -> dict:
    record = dict(GOOD, **changes)
    return {k: v for k, v in record.items() if v is not ...}


def test_a_good_record_becomes_a_position_in_utc() -> None:
    positions, errors = parse([GOOD, with_(t="2026-05-01T16:59:59.5+08:00", quality=0.8)])
    assert errors == []
    moment = datetime(2026, 5, 1, 8, 59, 59, 500000, tzinfo=timezone.utc)
    assert positions == [Position("UWB-0001", moment, "F1", 12.5, 3.0), Position("UWB-0001", moment, "F1", 12.5, 3.0, 0.8)]
    assert positions[1].t.tzinfo is timezone.utc
    assert isinstance(positions[0].y, float)


def test_epoch_milliseconds_are_taken() -> None:
    ms = int(NOW.timestamp() * 1000) - 1500
    positions, errors = parse([with_(t=ms), with_(t=ms + 0.5)])
    assert errors == []
    assert positions[0].t == NOW - timedelta(milliseconds=1500)
    assert positions[1].t == NOW - timedelta(milliseconds=1499.5)


MALFORMED = [
    ([1, 2], "not a JSON object"),
    (with_(tag=...), "tag is required"),
    (with_(tag=""), "tag is required"),
    (with_(tag=42), "tag must be 1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"),
    (with_(tag="-lead"), "tag must be 1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"),
    (with_(tag="a\x00b"), "tag must be 1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"),
    (with_(tag="x" * 65), "tag must be 1 to 64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"),
    (with_(t=...), "t is required"),
    (with_(t=None), "t is required"),
    (with_(t="yesterday"), "t must be ISO 8601 with a time zone, or epoch milliseconds"),
    (with_(t="2026-05-01T08:59:59"), "t has no time zone (add Z or an offset such as +08:00)"),
    (with_(t=True), "t must be ISO 8601 with a time zone, or epoch milliseconds"),
    (with_(t="1714553999000"), "t must be ISO 8601 with a time zone, or epoch milliseconds"),
    (with_(t=10**15), "t is out of range for epoch milliseconds"),
    (with_(t="2026-05-01T09:05:01Z"), "t is more than 300 s ahead of the server's clock"),
    (with_(t="2026-03-01T09:00:00Z"), "t is older than the retention period"),
    (with_(x=...), "x is required"),
    (with_(x="12.5"), "x must be a number"),
    (with_(x=False), "x must be a number"),
    (with_(y=float("nan")), "y must be a finite number of metres within ±100000"),
    (with_(y=float("inf")), "y must be a finite number of metres within ±100000"),
    (with_(y=-100001), "y must be a finite number of metres within ±100000"),
    (with_(floor=...), "floor is required"),
    (with_(floor="F 1"), "floor must be a floor code: 1 to 40 letters, digits, '_', '.' or '-'"),
    (with_(floor=1), "floor must be a floor code: 1 to 40 letters, digits, '_', '.' or '-'"),
    (with_(quality="good"), "quality must be a number"),
    (with_(quality=float("nan")), "quality must be a number"),
]


@pytest.mark.parametrize(("record", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_a_malformed_record_is_reported_and_the_good_ones_kept(record: object, message: str) -> None:
    positions, errors = parse([GOOD, record, GOOD])
    assert errors == [RecordError(1, message)]
    assert len(positions) == 2


def test_a_json_array_body() -> None:
    batch = parse_batch(json.dumps([GOOD, {"tag": "x"}]).encode(), ndjson=False, now=NOW, not_before=NOT_BEFORE)
    assert (batch.accepted, batch.rejected, batch.errors[0]) == (1, 1, RecordError(1, "t is required"))


def test_ndjson_reports_an_unreadable_line_by_its_record_index() -> None:
    body = b"\n".join([json.dumps(GOOD).encode(), b"", b"{not json", b"  ", json.dumps(GOOD).encode(), b"\xc3\x28", b""])
    batch = parse_batch(body, ndjson=True, now=NOW, not_before=NOT_BEFORE)
    assert batch.accepted == 2
    assert batch.errors == (RecordError(1, "not valid JSON: Expecting property name enclosed in double quotes"),
                            RecordError(3, "not valid JSON: not UTF-8"))


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"[1, 2", 400, "malformed_json"),
    (b"\xff", 400, "malformed_json"),
    (b'{"tag": "x"}', 400, "not_an_array"),
    (json.dumps([GOOD] * (MAX_RECORDS + 1)).encode(), 413, "too_many_records"),
])
def test_a_batch_that_cannot_be_read_is_refused_whole(body: bytes, status: int, code: str) -> None:
    with pytest.raises(BatchInvalid) as refused:
        parse_batch(body, ndjson=False, now=NOW, not_before=NOT_BEFORE)
    assert (refused.value.status, refused.value.code) == (status, code)


def test_too_many_ndjson_lines_are_refused() -> None:
    body = (json.dumps(GOOD).encode() + b"\n") * (MAX_RECORDS + 1)
    with pytest.raises(BatchInvalid) as refused:
        parse_batch(body, ndjson=True, now=NOW, not_before=NOT_BEFORE)
    assert refused.value.code == "too_many_records"


def test_the_days_a_batch_spans_are_utc_days() -> None:
    batch = parse_batch(json.dumps([with_(t="2026-05-01T07:00:00+08:00"), with_(t="2026-04-29T23:59:59Z"),
                                   with_(t="bad")]).encode(), ndjson=False, now=NOW, not_before=NOT_BEFORE)
    assert batch.days() == [date(2026, 4, 29), date(2026, 4, 30)]
    assert parse_records([], now=NOW, not_before=NOT_BEFORE).days() == []


def test_a_batch_is_named_by_its_key_or_its_digest() -> None:
    assert batch_id(b"[]", "device-7/batch-19") == "key:device-7/batch-19"
    assert batch_id(b"[]", None) == "sha256:" + hashlib.sha256(b"[]").hexdigest()
    for bad in ("", "has space", "x" * 201, "é"):
        with pytest.raises(BatchInvalid) as refused:
            batch_id(b"[]", bad)
        assert refused.value.code == "invalid_idempotency_key"


def test_the_report_and_its_stored_errors_round_trip() -> None:
    errors = (RecordError(3, "t is required"),)
    assert errors_from_json(json.loads(json.dumps(errors_json(errors)))) == errors
    assert Report(1, 1, errors, duplicate=True).as_json() == {
        "accepted": 1, "rejected": 1, "errors": [{"index": 3, "error": "t is required"}], "duplicate": True}


def test_a_batch_keeps_record_indexes_and_its_utc_days() -> None:
    items = [with_(t="2026-04-30T10:00:00Z"), {"tag": "x"}, with_(t="2026-05-01T08:00:00Z"), GOOD]
    whole = parse_records(items, now=NOW, not_before=NOT_BEFORE)
    assert whole.errors == (RecordError(1, "t is required"),)
    assert whole.days() == [date(2026, 4, 30), date(2026, 5, 1)]


def test_a_floor_with_a_transform_gets_plan_metres() -> None:
    # Rotated a quarter turn, doubled and moved: the positioning system's (1, 0) is the plan's (10, 22).
    transforms = {"F2": Transform(scale=2.0, rotation_deg=90.0, dx=10.0, dy=20.0)}
    batch = parse_records([with_(x=1, y=0, floor="F2"), with_(x=1, y=0)], now=NOW, not_before=NOT_BEFORE,
                          transforms=transforms)
    assert [(p.floor, round(p.x, 9), round(p.y, 9)) for p in batch.positions] == [("F2", 10.0, 22.0), ("F1", 1.0, 0.0)]


# ---------------------------------------------------------------------------- parse_batch: msgspec first
# parse_batch reads a whole batch with msgspec and checks it once; only a batch that fails is judged
# record by record. These tests hold it to the promise that a record's outcome is its own: the same
# whether its batch took the fast path or not, and the same as parse_records gave before msgspec,
# except where msgspec reads a time Python reads otherwise (the module docstring).

TRANSFORMS = {"F2": Transform(scale=2.0, rotation_deg=90.0, dx=10.0, dy=20.0)}
ZONES = {"Z": timezone.utc, "z": timezone.utc, "+00:00": timezone.utc, "-00:00": timezone.utc,
         "+08:00": timezone(timedelta(hours=8)), "-05:30": timezone(-timedelta(hours=5, minutes=30))}
# Three ways to push a batch off the fast path, one for each way the record-by-record path reads:
# a record msgspec refuses (the others as msgspec's Raw slices), a NaN (msgspec cannot slice the
# body at all: json's scanner finds the records) and a tag that only the batch's check refuses.
POISONS = {"not an object": ([1, 2], "not a JSON object"), "NaN": (with_(quality=float("nan")), "quality must be a number"),
           "bad tag": (with_(tag="-lead"), "tag must be 1 to 64 letters, digits, '_', '.', ':' or '-', "
                                           "starting with a letter or digit")}


def batch_of(records: list, *, ndjson: bool, transforms: dict | None = None) -> Batch:
    return parse_batch(body_of(records, ndjson=ndjson), ndjson=ndjson, now=NOW, not_before=NOT_BEFORE,
                       transforms=transforms)


def body_of(records: list, *, ndjson: bool) -> bytes:
    if ndjson:
        return b"".join(json.dumps(r).encode() + b"\n" for r in records)
    return json.dumps(records).encode()


def exact(batch: Batch) -> str:
    """The batch to the last bit: repr tells -0.0 from 0.0; UTC must be the timezone.utc singleton."""
    assert all(p.t.tzinfo is timezone.utc for p in batch.positions)
    return repr(batch)


def msgspec_time(rng: random.Random) -> str:
    """A time in the window written as msgspec reads it: any zone, up to nine fractional digits."""
    zone = rng.choice(list(ZONES))
    moment = rng.choice([NOT_BEFORE, NOW + MAX_FUTURE, NOW - timedelta(seconds=rng.uniform(0, 29 * 86400))])
    digits = rng.choice([0, 1, 3, 6, 7, 9])
    fraction = f".{rng.randrange(10**digits):0{digits}d}" if digits else ""
    if moment in (NOT_BEFORE, NOW + MAX_FUTURE):
        fraction = "." + "0" * digits if digits else ""  # at the very edge, which is still inside
    return moment.astimezone(ZONES[zone]).strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


def good_record(rng: random.Random) -> dict:
    """A record msgspec reads and every check passes."""
    record: dict = {"tag": rng.choice(["UWB-0001", "a:b.c_d-e", f"L{rng.randrange(30):05d}"]),
                    "t": msgspec_time(rng),
                    "x": rng.choice([rng.uniform(-500, 500), rng.randint(-500, 500), -0.0, 0, 100000, -100000.0]),
                    "y": rng.choice([rng.uniform(-500, 500), rng.randint(-500, 500)]),
                    "floor": rng.choice(["F1", "F2", "B-1.2"])}
    if rng.random() < 0.5:
        record["quality"] = rng.choice([None, 0.9, 1, 0])
    if rng.random() < 0.3:
        record["battery"] = rng.choice([3.7, "低", {"fw": "1.2", "ids": [1, 2, None]}])
    return record


def python_only_record(rng: random.Random) -> dict:
    """A good record msgspec refuses and the Python checker takes: epoch ms, ISO that only Python reads."""
    moment = NOW - timedelta(seconds=rng.uniform(0, 29 * 86400))
    t = rng.choice([int(moment.timestamp() * 1000), moment.timestamp() * 1000 + 0.5,
                    moment.strftime("%Y-%m-%d %H:%M:%S.%fZ"), moment.strftime("%Y%m%dT%H%M%SZ"),
                    moment.astimezone(ZONES["+08:00"]).strftime("%Y-%m-%dT%H:%M:%S+0800")])
    return dict(good_record(rng), t=t)


def bad_record(rng: random.Random) -> dict | list:
    return rng.choice([record for record, _ in MALFORMED] + [
        with_(t=(NOW + MAX_FUTURE + timedelta(microseconds=1)).isoformat()),
        with_(t=(NOT_BEFORE - timedelta(microseconds=1)).isoformat()),
        with_(t="2026-05-01T09:05:00.0000009Z")])  # rounds up, past the edge


@pytest.mark.parametrize("ndjson", [False, True], ids=["array", "ndjson"])
@pytest.mark.parametrize("seed", range(40))
def test_a_record_is_judged_alone_whatever_else_its_batch_holds(seed: int, ndjson: bool) -> None:
    rng = random.Random(seed)
    makers = [good_record] * 3 + [python_only_record, bad_record]
    records = [rng.choice(makers)(rng) for _ in range(rng.randint(1, 25))]
    transforms = TRANSFORMS if seed % 2 else None
    whole = batch_of(records, ndjson=ndjson, transforms=transforms)
    alone = [batch_of([record], ndjson=ndjson, transforms=transforms) for record in records]
    assert exact(whole) == exact(joined([renumbered(b, i) for i, b in enumerate(alone)]))
    assert whole.accepted + whole.rejected == len(records)


def renumbered(batch: Batch, index: int) -> Batch:
    return Batch(batch.positions, tuple(RecordError(index, e.error) for e in batch.errors), batch.first, batch.last)


def joined(parts: list[Batch]) -> Batch:
    """One batch of consecutive parts, as parsing them together gives it."""
    firsts = [p.first for p in parts if p.first is not None]
    lasts = [p.last for p in parts if p.last is not None]
    return Batch(tuple(x for p in parts for x in p.positions), tuple(e for p in parts for e in p.errors),
                 min(firsts, default=None), max(lasts, default=None))


@pytest.mark.parametrize("ndjson", [False, True], ids=["array", "ndjson"])
@pytest.mark.parametrize("poison", list(POISONS))
@pytest.mark.parametrize("seed", range(15))
def test_the_fast_path_and_the_record_by_record_one_agree(seed: int, poison: str, ndjson: bool) -> None:
    rng = random.Random(seed)
    records = [good_record(rng) for _ in range(rng.randint(1, 40))]
    transforms = TRANSFORMS if seed % 2 else None
    fast = batch_of(records, ndjson=ndjson, transforms=transforms)
    assert fast.rejected == 0
    record, message = POISONS[poison]
    at = rng.randint(0, len(records))
    slow = batch_of(records[:at] + [record] + records[at:], ndjson=ndjson, transforms=transforms)
    assert slow.errors == (RecordError(at, message),)
    assert exact(slow) == exact(Batch(fast.positions, slow.errors, fast.first, fast.last))


@pytest.mark.parametrize("ndjson", [False, True], ids=["array", "ndjson"])
@pytest.mark.parametrize(("record", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_one_bad_record_leaves_the_others_as_the_good_batch_has_them(record: object, message: str,
                                                                    ndjson: bool) -> None:
    rng = random.Random(message)
    good = [good_record(rng) for _ in range(8)] + [python_only_record(rng) for _ in range(2)]
    rng.shuffle(good)
    clean = batch_of(good, ndjson=ndjson, transforms=TRANSFORMS)
    spoilt = batch_of(good[:4] + [record] + good[4:], ndjson=ndjson, transforms=TRANSFORMS)
    assert spoilt.errors == (RecordError(4, message),)
    assert exact(spoilt) == exact(Batch(clean.positions, spoilt.errors, clean.first, clean.last))


def test_parse_batch_reads_as_parse_records_did() -> None:
    ms = int(NOW.timestamp() * 1000) - 1500
    records = [GOOD, with_(t="2026-05-01T16:59:59.5+08:00", quality=0.8), with_(t=ms), with_(t=ms + 0.5),
               with_(t="2026-05-01 08:59:59.5Z"), with_(x=-0.0, y=0, floor="F2", battery=[1, {"a": None}])]
    for ndjson in (False, True):
        batch = batch_of(records, ndjson=ndjson, transforms=TRANSFORMS)
        assert exact(batch) == exact(parse_records(records, now=NOW, not_before=NOT_BEFORE, transforms=TRANSFORMS))
        assert batch.positions[2].t == NOW - timedelta(milliseconds=1500)


def test_every_zero_offset_is_the_utc_singleton() -> None:
    records = [with_(t="2026-04-30T12:00:00.5" + zone) for zone in ZONES]
    for ndjson in (False, True):
        batch = batch_of(records, ndjson=ndjson)
        noon = datetime(2026, 4, 30, 12, 0, 0, 500000, tzinfo=timezone.utc)
        assert [p.t for p in batch.positions] == [noon] * 4 + [noon - timedelta(hours=8),
                                                               noon + timedelta(hours=5, minutes=30)]
        assert all(p.t.tzinfo is timezone.utc for p in batch.positions)


@pytest.mark.parametrize("poison", [None, *POISONS])
@pytest.mark.parametrize("ndjson", [False, True], ids=["array", "ndjson"])
def test_where_msgspec_and_python_read_a_time_apart_msgspec_reading_holds(ndjson: bool, poison: str | None) -> None:
    records = [with_(t="2026-05-01T08:59:59.1234567Z"), with_(t="2026-05-01T08:59:59.5z"),
               with_(t="2026-05-01T09:04:59.9999996Z")]  # rounds to 09:05:00, the last moment taken
    extra = [] if poison is None else [POISONS[poison][0]]
    batch = batch_of(records + extra, ndjson=ndjson)
    assert [p.t for p in batch.positions] == [datetime(2026, 5, 1, 8, 59, 59, 123457, tzinfo=timezone.utc),
                                              datetime(2026, 5, 1, 8, 59, 59, 500000, tzinfo=timezone.utc),
                                              NOW + MAX_FUTURE]
    # parse_records has only Python's reading: it truncates, and refuses the lowercase z.
    python = parse_records(records, now=NOW, not_before=NOT_BEFORE)
    assert [p.t.microsecond for p in python.positions] == [123456, 999999]
    assert python.errors == (RecordError(1, "t must be ISO 8601 with a time zone, or epoch milliseconds"),)


GOOD_JSON = json.dumps(GOOD).encode()


@pytest.mark.parametrize("extra", [b'"\xff"', b'"\xc0\x80"', b"9" * 4301], ids=["not UTF-8", "overlong", "huge int"])
def test_what_msgspec_would_skip_but_json_refuses_is_refused_as_before(extra: bytes) -> None:
    # msgspec does not decode an unknown key's value; json does, and refuses these.
    spoilt = GOOD_JSON[:-1] + b', "firmware": ' + extra + b"}"
    with pytest.raises(BatchInvalid) as refused:
        parse_batch(b"[" + GOOD_JSON + b"," + spoilt + b"]", ndjson=False, now=NOW, not_before=NOT_BEFORE)
    assert (refused.value.status, refused.value.code, refused.value.message) == (
        400, "malformed_json", "the body is not valid JSON: not UTF-8")
    batch = parse_batch(GOOD_JSON + b"\n" + spoilt + b"\n", ndjson=True, now=NOW, not_before=NOT_BEFORE)
    assert (batch.accepted, batch.errors) == (1, (RecordError(1, "not valid JSON: not UTF-8"),))


def test_a_long_number_json_reads_stays_on_the_record_by_record_path() -> None:
    # 4,300 digits is CPython's limit for an int; a float that long is fine to both.
    records = [GOOD_JSON[:-1] + b', "n": ' + digits + b"}" for digits in (b"9" * 4300, b"9" * 5000 + b".5")]
    batch = parse_batch(b"[" + b",".join(records) + b"]", ndjson=False, now=NOW, not_before=NOT_BEFORE)
    assert (batch.accepted, batch.rejected) == (2, 0)


@pytest.mark.parametrize("encode", [lambda text: b"\xef\xbb\xbf" + text.encode(), lambda text: text.encode("utf-16")],
                         ids=["byte order mark", "UTF-16"])
def test_a_body_only_json_can_read_is_judged_record_by_record(encode: Callable[[str], bytes]) -> None:
    # msgspec refuses these bodies whole; json reads them and its scanner finds each record's text.
    records = [GOOD, with_(t="2026-05-01T08:59:59.5z"), with_(tag="-lead")]
    batch = parse_batch(encode(json.dumps(records)), ndjson=False, now=NOW, not_before=NOT_BEFORE)
    assert exact(batch) == exact(batch_of(records, ndjson=False))
    assert batch.accepted == 2


def test_a_raw_surrogate_in_an_unknown_key_is_read_the_same_on_every_path() -> None:
    # Raw UTF-8 bytes of a lone surrogate: json reads them ('surrogatepass'), msgspec skips them.
    odd = GOOD_JSON[:-1].replace(b'.5Z"', b'.5z"') + b', "name": "\xed\xa0\x80"}'
    for others in ([], [json.dumps(with_(quality=float("nan"))).encode()], [b"[1, 2]"]):
        batch = parse_batch(b"[" + b",".join([odd, *others]) + b"]", ndjson=False, now=NOW, not_before=NOT_BEFORE)
        assert batch.positions[0].t.microsecond == 500000


def test_the_coordinate_limit_is_the_models() -> None:
    assert ingest.MAX_COORDINATE == model.MAX_COORDINATE == 100_000
    batch = batch_of([with_(x=100_000), with_(x=100_000.000001)], ndjson=False)
    assert (batch.accepted, batch.errors) == (1, (RecordError(1, "x must be a finite number of metres within ±100000"),))


@pytest.mark.parametrize("ndjson", [False, True])
def test_an_offset_time_at_the_edge_of_the_calendar_is_a_record_error_not_a_crash(ndjson: bool) -> None:
    # 0001-01-01T00:30+01:00 is in year 0 in UTC: astimezone overflows; the record is refused alone.
    records = [GOOD, with_(t="0001-01-01T00:30:00+01:00"), with_(t="9999-12-31T23:30:00-01:00")]
    body = b"\n".join(json.dumps(r).encode() for r in records) if ndjson else json.dumps(records).encode()
    batch = parse_batch(body, ndjson=ndjson, now=NOW, not_before=datetime.min.replace(tzinfo=timezone.utc))
    assert [p.tag for p in batch.positions] == ["UWB-0001"]
    assert [(e.index, e.error) for e in batch.errors] == [(1, "t is out of range"), (2, "t is out of range")]


def test_a_position_is_a_row_of_the_positions_table_in_copy_column_order() -> None:
    # venue/position_store.py COPYs Positions as tuples of their fields: the order is the contract.
    from venue.position_store import COLUMNS
    assert [name.removesuffix("_id").removesuffix("_code") for name in COLUMNS] == list(Position.__struct_fields__)
