"""Parsing position batches: every malformed record with its message, the good ones kept,
whole-batch refusals, times in UTC, the batch's identity."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from venue.ingest import (
    MAX_RECORDS, Batch, BatchInvalid, RecordError, Report, batch_id, errors_from_json, errors_json, parse_body,
    parse_records,
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
    batch = parse_body(json.dumps([GOOD, {"tag": "x"}]).encode(), ndjson=False, now=NOW, not_before=NOT_BEFORE)
    assert (batch.accepted, batch.rejected, batch.errors[0]) == (1, 1, RecordError(1, "t is required"))


def test_ndjson_reports_an_unreadable_line_by_its_record_index() -> None:
    body = b"\n".join([json.dumps(GOOD).encode(), b"", b"{not json", b"  ", json.dumps(GOOD).encode(), b"\xc3\x28", b""])
    batch = parse_body(body, ndjson=True, now=NOW, not_before=NOT_BEFORE)
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
        parse_body(body, ndjson=False, now=NOW, not_before=NOT_BEFORE)
    assert (refused.value.status, refused.value.code) == (status, code)


def test_too_many_ndjson_lines_are_refused() -> None:
    body = (json.dumps(GOOD).encode() + b"\n") * (MAX_RECORDS + 1)
    with pytest.raises(BatchInvalid) as refused:
        parse_body(body, ndjson=True, now=NOW, not_before=NOT_BEFORE)
    assert refused.value.code == "too_many_records"


def test_the_days_a_batch_spans_are_utc_days() -> None:
    batch = parse_body(json.dumps([with_(t="2026-05-01T07:00:00+08:00"), with_(t="2026-04-29T23:59:59Z"),
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


def test_a_batch_joined_from_slices_keeps_indexes_and_bounds() -> None:
    items = [with_(t="2026-04-30T10:00:00Z"), {"tag": "x"}, with_(t="2026-05-01T08:00:00Z"), GOOD]
    whole = parse_records(items, now=NOW, not_before=NOT_BEFORE)
    sliced = Batch.join([parse_records(items[i:i + 2], now=NOW, not_before=NOT_BEFORE, offset=i) for i in (0, 2)])
    assert sliced == whole
    assert whole.errors == (RecordError(1, "t is required"),)
    assert whole.days() == [date(2026, 4, 30), date(2026, 5, 1)]


def test_a_floor_with_a_transform_gets_plan_metres() -> None:
    # Rotated a quarter turn, doubled and moved: the positioning system's (1, 0) is the plan's (10, 22).
    transforms = {"F2": Transform(scale=2.0, rotation_deg=90.0, dx=10.0, dy=20.0)}
    batch = parse_records([with_(x=1, y=0, floor="F2"), with_(x=1, y=0)], now=NOW, not_before=NOT_BEFORE,
                          transforms=transforms)
    assert [(p.floor, round(p.x, 9), round(p.y, 9)) for p in batch.positions] == [("F2", 10.0, 22.0), ("F1", 1.0, 0.0)]
