"""OCDS release packages: validated against the real OCDS 1.1.5 schemas with the bids and lots extensions."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft4Validator

from tenderhall import credit_code
from tests.ocds_schema import RELEASE_URI, errors, load_schema, package_validator
from trading import ocds

PUBLISHED = datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)
TENDER_ID = "0b6f1f9e-6d6a-4c55-9d59-1f0c8e4e2a10"


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    return package_validator()


# ---------------------------------------------------------------------------- inputs


def make_tender(**overrides: Any) -> dict[str, Any]:
    """A tender as GET /api/tenders/{id} gives it."""
    tender: dict[str, Any] = {
        "id": TENDER_ID, "code": "ZB-2026-017", "name": "城区道路改造工程", "tenderer": "某市住房和城乡建设局",
        "status": "published", "deadline": "2026-12-01T01:30:00Z", "budget": "1500000.00",
        "control_price": "1450000.00", "evaluation_method": "lowest_evaluated_price", "version": 2,
        "published_at": "2026-11-10T02:00:00Z", "created_at": "2026-11-09T08:00:00Z",
        "lots": [{"code": "L1", "name": "一标段", "budget": "1500000.00"}],
        "summary_fields": [{"name": "price", "label": "投标报价（元）", "type": "money", "required": True}],
        "changes": [{"version": 2, "kind": "deadline", "detail": {}, "changed_at": "2026-11-12T03:00:00Z"}],
    }
    tender.update(overrides)
    return tender


# Valid unified social credit codes (GB 32100 check character); the fifth is the agent's.
CODES = [credit_code.make(f"91350100MA{i:07d}") for i in range(1, 6)]


def make_bidder(i: int, deposit: str = "confirmed") -> dict[str, Any]:
    return {"organisation_id": f"00000000-0000-4000-8000-00000000000{i}", "name": f"投标人{i}有限公司",
            "credit_code": CODES[i - 1], "signed_in_at": "2026-12-01T01:20:00Z", "deposit": deposit,
            "deposit_note": None}


def make_bid(i: int, status: str, *, price: str | None = None, lot: str = "L1") -> dict[str, Any]:
    """A bid as the host's snapshot shows it, with received_at and credit_code."""
    bidder = make_bidder(i)
    read = price is not None
    return {"bid_id": f"10000000-0000-4000-8000-00000000000{i}", "lot": lot,
            "organisation_id": bidder["organisation_id"], "bidder": bidder["name"],
            "credit_code": bidder["credit_code"], "received_at": f"2026-12-01T01:0{i}:00Z", "status": status,
            "attempts": 1 if status == "opened" else 0, "last_failure": None, "size": 1024,
            "opened_by": "bidder" if status == "opened" else None, "read_order": i if read else None,
            "summary": {"price": price, "duration_days": 180} if read else None, "shares_released": 0}


def make_opening(step: str, bidders: list[dict[str, Any]], bids: list[dict[str, Any]],
                 lots: list[dict[str, Any]] | None = None, failure: str | None = None) -> dict[str, Any]:
    return {"step": step, "bidders": bidders, "bids": bids, "failure_reason": failure, "last_event_id": 42,
            "lots": lots or [{"code": "L1", "name": "一标段", "status": "open", "reason": None}],
            "timeline": [{"id": 40, "at": "2026-12-01T02:10:00Z", "kind": "hall.step", "text": None},
                         {"id": 42, "at": "2026-12-01T02:40:00.250Z", "kind": "hall.step", "text": None}]}


def package(tender: dict[str, Any], opening: dict[str, Any] | None, **kwargs: Any) -> dict[str, Any]:
    return ocds.release_package(tender, opening, uri=f"https://tenderhall.example/ocds/{TENDER_ID}.json",
                                published_date=PUBLISHED, publisher_name="某市公共资源交易中心", **kwargs)


def closed_opening() -> dict[str, Any]:
    bidders = [make_bidder(1), make_bidder(2), make_bidder(3), make_bidder(4, deposit="missing")]
    bids = [make_bid(1, "opened", price="1398000.00"), make_bid(2, "opened", price="1412345.67"),
            make_bid(3, "opened", price="1405000.5"), make_bid(4, "excluded")]
    return make_opening("closed", bidders, bids)


# ---------------------------------------------------------------------------- (a) (b) (c)


def test_a_published_tender_before_its_opening_is_a_valid_package(validator: Draft4Validator) -> None:
    out = package(make_tender(), None)
    assert errors(validator, out) == []
    release = out["releases"][0]
    assert release["ocid"] == f"ocds-th0000-{TENDER_ID}"
    assert release["id"] == f"ocds-th0000-{TENDER_ID}-tender-v2"
    assert release["tag"] == ["tender"] and release["initiationType"] == "tender"
    assert release["date"] == "2026-11-12T03:00:00Z"  # the latest change, not the package's time
    tender = release["tender"]
    assert tender["status"] == "active" and tender["procurementMethod"] == "open"
    assert tender["value"] == {"amount": 1500000, "currency": "CNY"}
    assert tender["tenderPeriod"] == {"startDate": "2026-11-10T02:00:00Z", "endDate": "2026-12-01T01:30:00Z"}
    assert tender["awardCriteria"] == "priceOnly" and tender["submissionMethod"] == ["electronicSubmission"]
    assert tender["lots"] == [{"id": "L1", "title": "一标段", "status": "active",
                               "value": {"amount": 1500000, "currency": "CNY"}}]
    assert "bids" not in release and "tenderers" not in tender
    assert release["parties"] == [{"id": "tenderer", "name": "某市住房和城乡建设局", "roles": ["buyer"]}]
    assert out["publishedDate"] == "2026-12-02T03:00:00Z" and out["version"] == "1.1"


def test_a_closed_opening_lists_every_bid_and_prices_only_the_opened_ones(validator: Draft4Validator) -> None:
    out = package(make_tender(), closed_opening(), agent={"name": "某招标代理有限公司", "credit_code": CODES[4]})
    assert errors(validator, out) == []
    release = out["releases"][0]
    assert release["tag"] == ["tenderUpdate"]
    assert release["id"] == f"ocds-th0000-{TENDER_ID}-opening-closed-42"
    assert release["date"] == "2026-12-01T02:40:00.250000Z"
    assert release["tender"]["status"] == "complete"
    assert release["tender"]["procuringEntity"] == {"id": f"CN-USCC-{CODES[4]}", "name": "某招标代理有限公司"}
    details = {d["id"][-1]: d for d in release["bids"]["details"]}
    assert [details[k]["status"] for k in "1234"] == ["valid", "valid", "valid", "disqualified"]
    assert details["2"]["value"] == {"amount": 1412345.67, "currency": "CNY"}
    assert details["3"]["value"] == {"amount": 1405000.5, "currency": "CNY"}
    assert "value" not in details["4"]
    assert details["1"]["tenderers"] == [{"id": f"CN-USCC-{CODES[0]}", "name": "投标人1有限公司"}]
    assert details["1"]["relatedLots"] == ["L1"] and details["1"]["date"] == "2026-12-01T01:01:00Z"
    stats = {s["measure"]: s for s in release["bids"]["statistics"]}
    assert {m: s["value"] for m, s in stats.items()} == {"bids": 4, "validBids": 3, "electronicBids": 4, "bidders": 4}
    assert all(s["relatedLot"] == "L1" for s in stats.values())
    roles = {p["id"]: p["roles"] for p in release["parties"]}
    assert roles[f"CN-USCC-{CODES[3]}"] == ["tenderer"]
    assert roles[f"CN-USCC-{CODES[4]}"] == ["procuringEntity"] and roles["tenderer"] == ["buyer"]
    assert release["tender"]["numberOfTenderers"] == 4
    assert json.loads(json.dumps(out)) == out  # plain JSON types only: no Decimal, no datetime


def test_a_failed_opening_is_unsuccessful_with_its_reason(validator: Draft4Validator) -> None:
    reason = "L1: 2 valid bid(s); the tender needs at least 3"
    bidders = [make_bidder(1), make_bidder(2), make_bidder(3, deposit="missing")]
    bids = [make_bid(1, "excluded"), make_bid(2, "excluded"), make_bid(3, "excluded")]
    opening = make_opening("failed", bidders, bids, lots=[{"code": "L1", "name": "一标段", "status": "failed",
                                                          "reason": "2 valid bid(s); the tender needs at least 3"}],
                           failure=reason)
    out = package(make_tender(), opening)
    assert errors(validator, out) == []
    tender = out["releases"][0]["tender"]
    assert tender["status"] == "unsuccessful" and tender["statusDetails"] == reason
    assert tender["lots"][0]["status"] == "unsuccessful"
    details = out["releases"][0]["bids"]["details"]
    # Two bids counted as valid towards the minimum; the one without a deposit was disqualified.
    assert [d["status"] for d in details] == ["valid", "valid", "disqualified"]
    assert all("value" not in d for d in details)
    stats = {s["measure"]: s["value"] for s in out["releases"][0]["bids"]["statistics"]}
    assert stats["validBids"] == 2 and stats["bids"] == 3


# ---------------------------------------------------------------------------- other stages


def test_before_the_bidder_list_is_published_nothing_about_bidders_leaks(validator: Draft4Validator) -> None:
    opening = make_opening("bidder_list", [make_bidder(1)], [make_bid(1, "listed")])
    out = package(make_tender(), opening)
    assert errors(validator, out) == []
    text = json.dumps(out, ensure_ascii=False)
    assert "投标人1" not in text and CODES[0] not in text
    assert out["releases"][0]["tag"] == ["tender"]


def test_a_bid_shows_its_price_only_once_read_out(validator: Draft4Validator) -> None:
    bidders = [make_bidder(i) for i in (1, 2, 3)]
    bids = [make_bid(1, "opened", price="100.10"), make_bid(2, "opened"), make_bid(3, "listed")]
    out = package(make_tender(), make_opening("reading", bidders, bids))
    assert errors(validator, out) == []
    details = out["releases"][0]["bids"]["details"]
    assert [("value" in d, d["status"]) for d in details] == [(True, "valid"), (False, "valid"), (False, "pending")]
    assert out["releases"][0]["tender"]["status"] == "active"


def test_void_bids_count_as_withdrawn(validator: Draft4Validator) -> None:
    bidders = [make_bidder(i) for i in (1, 2, 3, 4)]
    bids = [make_bid(1, "opened"), make_bid(2, "opened"), make_bid(3, "opened"), make_bid(4, "void")]
    out = package(make_tender(), make_opening("record", bidders, bids))
    assert errors(validator, out) == []
    assert out["releases"][0]["bids"]["details"][3]["status"] == "withdrawn"


def test_a_cancelled_tender_is_a_cancellation(validator: Draft4Validator) -> None:
    out = package(make_tender(status="cancelled"), None)
    assert errors(validator, out) == []
    release = out["releases"][0]
    assert release["tag"] == ["tenderCancellation"] and release["tender"]["status"] == "cancelled"
    assert release["tender"]["lots"][0]["status"] == "cancelled"


def test_two_lots_get_statistics_each_and_for_the_whole_tender(validator: Draft4Validator) -> None:
    tender = make_tender(lots=[{"code": "L1", "name": "一标段", "budget": "900000.00"},
                               {"code": "L2", "name": "二标段", "budget": "600000.00"}],
                         evaluation_method="comprehensive_scoring")
    bidders = [make_bidder(i) for i in (1, 2, 3)]
    bids = [make_bid(1, "opened", price="1"), make_bid(2, "opened", price="2"),
            make_bid(3, "opened", price="3", lot="L2")]
    lots = [{"code": "L1", "name": "一标段", "status": "open", "reason": None},
            {"code": "L2", "name": "二标段", "status": "failed", "reason": "1 valid bid(s)"}]
    out = package(tender, make_opening("closed", bidders, bids, lots=lots))
    assert errors(validator, out) == []
    release = out["releases"][0]
    assert [l["status"] for l in release["tender"]["lots"]] == ["complete", "unsuccessful"]
    assert release["tender"]["awardCriteria"] == "ratedCriteria"
    ids = [s["id"] for s in release["bids"]["statistics"]]
    assert "bids" in ids and "bids-L1" in ids and "bids-L2" in ids


def test_a_draft_or_a_naive_time_is_refused() -> None:
    with pytest.raises(ocds.OcdsError):
        package(make_tender(status="draft"), None)
    with pytest.raises(ocds.OcdsError):
        ocds.release_package(make_tender(), None, uri="https://x.example/p.json",
                             published_date=datetime(2026, 12, 2), publisher_name="x")


@pytest.mark.parametrize(("amount", "number"), [
    (Decimal("1500000.00"), 1500000), ("1412345.67", 1412345.67), ("0.01", 0.01),
    ("9999999999999.99", 9999999999999.99), ("9007199254740992", 2**53),
])
def test_amounts_become_json_numbers_that_read_back_exactly(amount: Any, number: int | float) -> None:
    value = ocds.json_amount(amount)
    assert value == number and type(value) is type(number)
    assert Decimal(json.dumps(value)) == Decimal(str(amount))


@pytest.mark.parametrize("amount", ["9999999999999999.99", "9007199254740993", "-1", "NaN", "1e400", "abc"])
def test_amounts_a_double_cannot_hold_exactly_are_refused(amount: str) -> None:
    with pytest.raises(ocds.OcdsError):
        ocds.json_amount(amount)


# ---------------------------------------------------------------------------- the validator bites


def test_dropping_a_required_field_fails_validation(validator: Draft4Validator) -> None:
    out = package(make_tender(), closed_opening())
    del out["releases"][0]["ocid"]
    assert any("'ocid' is a required property" in e for e in errors(validator, out))


@pytest.mark.parametrize(("path", "bad"), [
    (("releases", 0, "tag"), ["opening"]),                                   # closed releaseTag codelist
    (("releases", 0, "tender", "value", "currency"), "RMB"),                 # closed currency codelist
    (("releases", 0, "tender", "status"), "open"),                           # closed tenderStatus codelist
    (("releases", 0, "bids", "details", 0, "status"), "invalid"),            # closed bidStatus (extension)
    (("releases", 0, "bids", "details", 0, "value", "amount"), "1398000.00"),  # amounts are numbers
    (("releases", 0, "bids", "statistics", 0, "value"), None),               # BidsStatistic.value required number
    (("releases", 0, "tender", "lots", 0, "status"), "failed"),              # lots extension: tenderStatus
    (("releases", 0, "date"), "1 December 2026"),                            # date-time format
    (("version",), "1.1.5"),                                                 # major.minor only
])
def test_the_validator_rejects_bad_output(validator: Draft4Validator, path: tuple[Any, ...], bad: Any) -> None:
    out = package(make_tender(), closed_opening())
    assert errors(validator, out) == []
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(out)


def test_the_schemas_are_the_ocds_1_1_5_ones() -> None:
    assert load_schema("release-schema.json")["id"] == RELEASE_URI
    package_schema = load_schema("release-package-schema.json")
    assert package_schema["properties"]["releases"]["items"]["$ref"] == RELEASE_URI
    assert "BidsStatistic" in load_schema("bid-extension-release-schema.json")["definitions"]
