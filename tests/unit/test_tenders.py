"""Tender rules: money, thresholds, deadlines, changes, manifest matching, checksums."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest

from trading import tenders
from trading.tenders import SubmissionRefused, TenderInvalid

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)


def _data(**overrides: object) -> dict:
    data = {"code": "ZB-2026-001", "name": "道路工程", "tenderer": "某局", "budget": "1000.00",
            "control_price": "900", "evaluation_method": "reasonable_price",
            "lots": [{"code": "L1", "name": "一标段", "budget": "1000"}],
            "deadline": "2026-12-01T09:30:00+08:00", "decryption_rule": "custodians",
            "custodians": [str(uuid.uuid4()) for _ in range(3)], "threshold": 2}
    data.update(overrides)
    return data


def test_a_valid_tender_parses_with_defaults() -> None:
    draft = tenders.parse_tender(_data())
    assert draft.budget == Decimal("1000.00") and draft.control_price == Decimal("900.00")
    assert draft.deadline == datetime(2026, 12, 1, 1, 30, tzinfo=timezone.utc)
    assert draft.decryption_minutes == 30 and draft.threshold == 2
    assert [f["name"] for f in draft.summary_fields] == ["price", "duration_days", "quality"]


@pytest.mark.parametrize("value", ["0", "-5", "1.234", "abc", "NaN", "Infinity", 12.5, None])
def test_bad_money_is_refused(value: object) -> None:
    with pytest.raises(TenderInvalid) as info:
        tenders.parse_money(value, "budget")
    assert info.value.field == "budget"


def test_control_price_may_not_exceed_budget() -> None:
    with pytest.raises(TenderInvalid, match="control_price"):
        tenders.parse_tender(_data(control_price="1000.01"))


@pytest.mark.parametrize("rule,n,k,ok", [
    ("custodians", 3, 2, True), ("custodians", 3, 3, True), ("custodians", 3, 4, False),
    ("custodians", 3, 1, False), ("custodians", 1, 1, False), ("custodians", 0, 0, False),
    ("void", 0, 0, True), ("void", 2, 0, False), ("void", 0, 1, False),
])
def test_thresholds(rule: str, n: int, k: int, ok: bool) -> None:
    if ok:
        tenders.check_threshold(rule, n, k)
    else:
        with pytest.raises(TenderInvalid):
            tenders.check_threshold(rule, n, k)


def test_naive_deadline_is_refused() -> None:
    with pytest.raises(TenderInvalid, match="offset"):
        tenders.parse_tender(_data(deadline="2026-12-01T09:30:00"))


def test_publication_needs_a_draft_and_a_future_deadline() -> None:
    tenders.check_publishable("draft", NOW + timedelta(seconds=1), NOW)
    with pytest.raises(TenderInvalid) as info:
        tenders.check_publishable("draft", NOW, NOW)
    assert info.value.code == "deadline_in_past"
    with pytest.raises(tenders.StateConflict):
        tenders.check_publishable("published", NOW + timedelta(days=1), NOW)


def test_changes() -> None:
    deadline = NOW + timedelta(days=1)
    kind, detail = tenders.parse_change({"kind": "deadline_extension", "deadline": "2026-11-23T08:00:00Z"}, deadline, NOW)
    assert kind == "deadline_extension" and detail["deadline"] == "2026-11-23T08:00:00Z"
    with pytest.raises(TenderInvalid):
        tenders.parse_change({"kind": "deadline_extension", "deadline": "2026-11-22T07:00:00Z"}, deadline, NOW)
    with pytest.raises(TenderInvalid):
        tenders.parse_change({"kind": "clarification", "text": "  "}, deadline, NOW)
    with pytest.raises(TenderInvalid):
        tenders.parse_change({"kind": "cancel"}, deadline, NOW)


def test_summary_fields_must_keep_a_required_price() -> None:
    with pytest.raises(TenderInvalid, match="price"):
        tenders.parse_summary_fields([{"name": "duration_days", "type": "integer"}])
    fields = tenders.parse_summary_fields([{"name": "price", "type": "money", "label": "报价"},
                                           {"name": "warranty_months", "type": "integer", "required": False}])
    assert tenders.check_summary({"price": "12.5", "warranty_months": ""}, fields) == {"price": "12.50"}


def _manifest(**overrides: object) -> SimpleNamespace:
    m = dict(tender="t", lot="L1", organisation="ORG", signing_key="s", bidder_wrap=SimpleNamespace(key="d"),
             custodian_wraps=[SimpleNamespace(custodian="c1"), SimpleNamespace(custodian="c2")], threshold=2,
             client_time=NOW.strftime("%Y-%m-%dT%H:%M:%SZ"))
    m.update(overrides)
    return SimpleNamespace(**m)


EXPECTED = tenders.ExpectedSubmission("t", "L1", "ORG", "s", "d", ("c1", "c2"), 2)


@pytest.mark.parametrize("override,code", [
    ({"tender": "x"}, "wrong_tender"), ({"lot": "L2"}, "wrong_lot"), ({"organisation": "X"}, "wrong_organisation"),
    ({"signing_key": "x"}, "wrong_signing_key"), ({"bidder_wrap": SimpleNamespace(key="x")}, "wrong_bidder_key"),
    ({"custodian_wraps": [SimpleNamespace(custodian="c2"), SimpleNamespace(custodian="c1")]}, "wrong_custodians"),
    ({"threshold": 1}, "wrong_threshold"),
    ({"client_time": (NOW + timedelta(seconds=901)).strftime("%Y-%m-%dT%H:%M:%SZ")}, "client_clock_skew"),
])
def test_manifest_mismatches_are_named(override: dict, code: str) -> None:
    tenders.match_manifest(_manifest(), EXPECTED, NOW, 900)
    with pytest.raises(SubmissionRefused) as info:
        tenders.match_manifest(_manifest(**override), EXPECTED, NOW, 900)
    assert info.value.code == code


def test_checksum_header() -> None:
    digest = hashlib.sha256(b"abc").digest()
    assert tenders.parse_checksum("sha256 " + base64.b64encode(digest).decode()) == digest
    assert tenders.parse_checksum(None) is None
    for bad in ("md5 xxx", "sha256 !!!", "sha256 " + base64.b64encode(b"short").decode()):
        with pytest.raises(tenders.TradingError):
            tenders.parse_checksum(bad)


def test_needs_confirmation() -> None:
    assert tenders.needs_confirmation("active", 1, 2, [])
    assert not tenders.needs_confirmation("active", 1, 2, [2])
    assert not tenders.needs_confirmation("withdrawn", 1, 2, [])
    assert not tenders.needs_confirmation("active", 2, 2, [])


def test_confirmation_message_is_canonical() -> None:
    assert tenders.confirmation_message("b", "t", 3, "m") == b'{"bid":"b","manifest_sha256":"m","tender":"t","tender_version":3}'


