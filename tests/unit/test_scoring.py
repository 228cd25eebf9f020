"""Evaluation rules (evaluation/scoring.py, evaluation/price_score.py), checked against hand-computed sheets."""

from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Iterator

import pytest

from evaluation.price_score import (Dissent, base_price, price_scores, rank, recommend, report_json)
from evaluation.scoring import (Scheme, ScoringError, Verdict, check_can_finish, check_score, consolidate,
                                initial_review, median_of_others, parse_scheme, unexplained)
from tenderhall.canonical import canonical_json

D = Decimal
PASS = Verdict(True)


def scheme_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "method": "comprehensive_scoring",
        "initial_review": [
            {"id": "form", "name": "投标函签字盖章", "kind": "form"},
            {"id": "licence", "name": "营业执照", "kind": "qualification"},
        ],
        "criteria": [
            {"id": "tech", "name": "技术方案", "group": "technical", "min_score": "0", "max_score": "40", "step": "0.5"},
            {"id": "service", "name": "售后服务", "group": "commercial", "min_score": "0", "max_score": "30"},
        ],
        "price": {"full_marks": "30", "formula": "lowest_base"},
    }
    data.update(overrides)
    return data


def make_scheme(**overrides: Any) -> Scheme:
    return parse_scheme(scheme_data(**overrides))


@contextmanager
def refused(code: str, match: str | None = None) -> Iterator[None]:
    """Expect a ScoringError with this stable `code` (and a message matching `match`)."""
    with pytest.raises(ScoringError, match=match) as info:
        yield
    assert info.value.code == code, f"{info.value.code}: {info.value}"


def all_pass(bidders: list[str], experts: list[str], fail: dict[tuple[str, str, str], str] | None = None) -> dict:
    fail = fail or {}
    return {e: {b: {c: Verdict(False, fail[(e, b, c)]) if (e, b, c) in fail else PASS for c in ("form", "licence")}
                for b in bidders} for e in experts}


# --- the scheme -------------------------------------------------------------------------------

def test_scheme_defaults_are_two_places_half_up_share_0_2_and_three_candidates() -> None:
    scheme = make_scheme()
    assert (scheme.decimals, scheme.rounding, scheme.price_decimals) == (2, "ROUND_HALF_UP", 2)
    assert scheme.deviation_share == D("0.2") and scheme.recommended == 3
    assert scheme.criterion("tech").step == D("0.5") and scheme.price is not None
    assert scheme.price.full_marks == D(30) and scheme.price.id == "price"


@pytest.mark.parametrize("overrides, match", [
    ({"criteria": [{"id": "form", "name": "x", "group": "technical", "min_score": "0", "max_score": "10"}]},
     "'form' is used twice"),
    ({"criteria": [{"id": "t", "name": "x", "group": "technical", "min_score": "10", "max_score": "10"}]},
     r"criteria\[0\]: need 0 <= min_score < max_score"),
    ({"criteria": [{"id": "t", "name": "x", "group": "technical", "min_score": "0", "max_score": 10.5}]},
     r"criteria\[0\].max_score is a floating-point number"),
    ({"criteria": [{"id": "t", "name": "x", "group": "technical", "min_score": "0", "max_score": "10", "step": "3"}]},
     r"criteria\[0\].step must be > 0 and divide"),
    ({"criteria": [{"id": "t", "name": "x", "group": "legal", "min_score": "0", "max_score": "10"}]},
     r"criteria\[0\].group must be one of technical, commercial"),
    ({"criteria": [{"id": "t", "name": "x", "group": "technical", "min_score": "0", "max_score": "999"}]},
     "add up to 1029; more than 1000 is refused"),
    ({"price": {"full_marks": "0", "formula": "lowest_base"}}, "price.full_marks must be > 0"),
    ({"price": {"full_marks": "30", "formula": "lowest_base", "deduct_per_percent_above": "1"}},
     "price.deduct_per_percent_above applies to formula average_base only"),
    ({"price": None}, "price is required"),
    ({"method": "lowest_evaluated_price"}, "price must be absent"),
    ({"method": "best_value"}, "scheme.method must be one of"),
    ({"initial_review": []}, "initial_review needs at least one criterion"),
    ({"decimals": 2.0}, "decimals must be a whole number"),
    ({"deviation_share": "0"}, "deviation_share must be > 0"),
    ({"rounding": "ROUND_05UP"}, "scheme.rounding must be one of"),
    ({"weights": {}}, "scheme: unknown field 'weights'"),
])
def test_bad_scheme_is_refused_naming_the_field(overrides: dict[str, Any], match: str) -> None:
    with refused("invalid_scheme", match):
        make_scheme(**overrides)


def test_reasonable_price_is_its_own_method_without_a_price_score() -> None:
    scheme = make_scheme(method="reasonable_price", price=None)
    assert scheme.method == "reasonable_price" and scheme.price is None


# --- initial review ---------------------------------------------------------------------------

def test_majority_of_experts_decides_each_criterion() -> None:
    verdicts = all_pass(["A", "B"], ["E1", "E2", "E3"], fail={
        ("E1", "A", "form"): "未盖章",                                    # 2 of 3 pass: passes
        ("E1", "B", "licence"): "执照过期", ("E3", "B", "licence"): "执照已过期",  # 1 of 3: fails
    })
    review = initial_review(make_scheme(), ["A", "B"], verdicts)
    assert review["A"].passed and review["A"].failures == ()
    assert not review["B"].passed
    [failure] = review["B"].failures
    assert (failure.criterion_id, failure.passes, failure.fails) == ("licence", 1, 2)
    assert failure.reasons == {"E1": "执照过期", "E3": "执照已过期"}


def test_a_tie_in_initial_review_fails_the_bidder() -> None:
    verdicts = all_pass(["A"], ["E1", "E2"], fail={("E2", "A", "form"): "签字缺失"})
    review = initial_review(make_scheme(), ["A"], verdicts)
    assert not review["A"].passed and review["A"].failures[0].passes == 1


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_fail_without_a_reason_is_refused(reason: str) -> None:
    verdicts = all_pass(["A"], ["E1"])
    verdicts["E1"]["A"]["form"] = Verdict(False, reason)
    with refused("reason_required", "'E1' failed bidder 'A' on 'form'"):
        initial_review(make_scheme(), ["A"], verdicts)


def test_initial_review_refuses_unknown_bidder_criterion_and_gaps() -> None:
    scheme = make_scheme()
    verdicts = all_pass(["A", "Z"], ["E1"])
    with refused("unknown_bidder", "'Z'"):
        initial_review(scheme, ["A"], verdicts)
    verdicts = all_pass(["A"], ["E1"])
    verdicts["E1"]["A"]["tech"] = PASS          # a scored criterion is not an initial-review one
    with refused("unknown_criterion", "'tech'"):
        initial_review(scheme, ["A"], verdicts)
    verdicts = all_pass(["A"], ["E1", "E2"])
    del verdicts["E2"]["A"]["licence"]
    with refused("missing_verdict", "'E2' has not judged bidder 'A' on 'licence'"):
        initial_review(scheme, ["A"], verdicts)
    with refused("duplicate_bidder"):
        initial_review(scheme, ["A", "A"], all_pass(["A"], ["E1"]))
    with refused("no_experts"):
        initial_review(scheme, ["A"], {})


# --- a single score ---------------------------------------------------------------------------

def test_score_on_the_step_grid_is_accepted_as_decimal() -> None:
    scheme = make_scheme()
    assert check_score(scheme, "tech", "12.5") == D("12.5")
    assert check_score(scheme, "tech", "40") == D(40)
    assert check_score(scheme, "tech", D("12.50")) == D("12.5")
    assert check_score(scheme, "service", "12.34") == D("12.34")   # no step: any 2-place value


def test_score_off_the_step_grid_is_refused_with_its_neighbours() -> None:
    with refused("invalid_score", r"not on its 0.5 step \(nearest allowed: 12.0 or 12.5\)"):
        check_score(make_scheme(), "tech", "12.3")


@pytest.mark.parametrize("value", ["40.5", "-0.5", "30.01"])
def test_score_out_of_range_is_refused(value: str) -> None:
    criterion = "service" if value == "30.01" else "tech"
    with refused("score_out_of_range", "is outside"):
        check_score(make_scheme(), criterion, value)


@pytest.mark.parametrize("value", [12.5, 12.0, True, None, "NaN", "Infinity", "-Infinity", "1e1", "1E+1",
                                   "+12", " 12", "12.", ".5", "12,5", "12.345", D("NaN"), D("1.005")])
def test_float_and_anything_but_a_plain_decimal_is_refused(value: object) -> None:
    with refused("invalid_score"):
        check_score(make_scheme(), "service", value)


def test_float_is_refused_with_a_hint_to_send_a_string() -> None:
    with refused("invalid_score", "floating-point number"):
        check_score(make_scheme(), "tech", 12.5)


def test_score_for_an_unknown_or_price_criterion_is_refused() -> None:
    with refused("unknown_criterion", "'design'"):
        check_score(make_scheme(), "design", "1")
    with refused("unknown_criterion", "'price'"):
        check_score(make_scheme(), "price", "1")


# --- price scores -----------------------------------------------------------------------------

def test_lowest_base_price_scores_by_hand() -> None:
    # base 100: 100/100 × 30 = 30, 100/125 × 30 = 24, 100/200 × 30 = 15
    scores = price_scores(make_scheme(), {"C": D("200"), "A": D("100"), "B": "125"})
    assert scores == {"A": D("30.00"), "B": D("24.00"), "C": D("15.00")}
    assert list(scores) == ["A", "B", "C"] and [str(s) for s in scores.values()] == ["30.00", "24.00", "15.00"]


def test_price_score_rounds_half_up_at_the_boundary() -> None:
    prices = {"A": D(100), "B": D(1600)}          # 100 / 1600 × 10 = 0.625 exactly
    price = {"full_marks": "10", "formula": "lowest_base"}
    assert price_scores(make_scheme(price=price), prices)["B"] == D("0.63")
    assert price_scores(make_scheme(price=price, rounding="ROUND_HALF_EVEN"), prices)["B"] == D("0.62")


def test_price_score_of_a_repeating_ratio_is_rounded_once() -> None:
    # 100 / 300 × 30 = 10; 100 / 700 × 30 = 4.2857… → 4.29
    assert price_scores(make_scheme(), {"A": D(100), "B": D(300), "C": D(700)}) == {
        "A": D("30.00"), "B": D("10.00"), "C": D("4.29")}


AVERAGE = {"full_marks": "30", "formula": "average_base",
           "deduct_per_percent_above": "1", "deduct_per_percent_below": "0.5"}


def test_average_base_deducts_per_percent_above_and_below() -> None:
    scheme = make_scheme(price=AVERAGE)
    # base = 100; 90 is 10 % below: 30 − 10 × 0.5 = 25; 110 is 10 % above: 30 − 10 × 1 = 20
    assert base_price(scheme, {"A": D(90), "B": D(100), "C": D(110)}) == D(100)
    assert price_scores(scheme, {"A": D(90), "B": D(100), "C": D(110)}) == {
        "A": D("25.00"), "B": D("30.00"), "C": D("20.00")}
    # base = 315 / 3 = 105.00; 95: 30 − 10/105 × 100 × 0.5 = 25.238…; 100: 30 − 5/105 × 50 = 27.619…;
    # 120: 30 − 15/105 × 100 = 15.714…
    assert base_price(scheme, {"A": D(95), "B": D(100), "C": D(120)}) == D("105.00")
    assert price_scores(scheme, {"A": D(95), "B": D(100), "C": D(120)}) == {
        "A": D("25.24"), "B": D("27.62"), "C": D("15.71")}


def test_average_base_is_rounded_to_price_places_and_scores_floor_at_zero() -> None:
    scheme = make_scheme(price=AVERAGE)
    assert base_price(scheme, {"A": D(100), "B": D(100), "C": D("100.01")}) == D("100.00")   # 100.00333…
    assert price_scores(scheme, {"A": D(10), "B": D(100), "C": D(190)}) == {
        "A": D("0.00"), "B": D("30.00"), "C": D("0.00")}   # 90 % off either way: deductions of 45 and 90


def test_failed_bidder_is_not_in_the_price_base() -> None:
    scheme = make_scheme()
    prices = {"A": D(125), "B": D(200), "C": D(100), "X": "not read"}   # X failed too: its price is ignored
    # C's 100 would be the base; without it the base is 125: 30, and 125/200 × 30 = 18.75
    assert price_scores(scheme, prices, passed=["A", "B"]) == {"A": D("30.00"), "B": D("18.75")}
    assert base_price(scheme, prices, ["A", "B"]) == D(125)


def test_bad_prices_are_refused() -> None:
    scheme = make_scheme()
    with refused("invalid_price", "floating-point"):
        price_scores(scheme, {"A": 100.0})
    with refused("invalid_price", "must be > 0"):
        price_scores(scheme, {"A": D(0)})
    with refused("invalid_price", "3 decimal places"):
        price_scores(scheme, {"A": D("100.001")})
    with refused("missing_price", "'B'"):
        price_scores(scheme, {"A": D(100)}, passed=["A", "B"])
    with refused("wrong_method"):
        price_scores(make_scheme(method="lowest_evaluated_price", price=None), {"A": D(100)})


# --- consolidation and deviations -------------------------------------------------------------

def sheet(tech: dict[str, str], service: str = "20") -> dict[str, dict[str, dict[str, str]]]:
    """Scores for one bidder "A": each expert's tech score, the same service score for all."""
    return {e: {"A": {"tech": t, "service": service}} for e, t in tech.items()}


def test_scores_side_by_side_with_mean_and_totals() -> None:
    result = consolidate(make_scheme(), {
        "E2": {"A": {"tech": "30", "service": "20"}, "B": {"tech": "20", "service": "10.5"}},
        "E1": {"A": {"tech": "31.5", "service": "21"}, "B": {"tech": "21", "service": "10"}},
        "E3": {"A": {"tech": "32", "service": "22"}, "B": {"tech": "21", "service": "11"}},
    })
    assert result.experts == ("E1", "E2", "E3") and list(result.bidders) == ["A", "B"]
    a = result.bidders["A"]
    tech, service = a.criteria
    assert tech.by_expert == {"E1": D("31.5"), "E2": D(30), "E3": D(32)}
    assert tech.committee == D("31.17")          # 93.5 / 3 = 31.1666…
    assert service.committee == D("21.00")
    assert a.expert_totals == {"E1": D("52.5"), "E2": D(50), "E3": D(54)}
    assert a.committee_total == D("52.17")        # the sum of the rounded committee scores
    assert result.bidders["B"].criteria[1].committee == D("10.50")   # 31.5 / 3
    assert result.flags == ()


def test_committee_mean_rounds_half_up_at_the_boundary() -> None:
    result = consolidate(make_scheme(), {"E1": {"A": {"tech": "10", "service": "1.00"}},
                                         "E2": {"A": {"tech": "10", "service": "1.01"}}})
    assert result.bidders["A"].criteria[1].committee == D("1.01")      # 1.005 → 1.01
    even = consolidate(make_scheme(rounding="ROUND_HALF_EVEN"), {"E1": {"A": {"tech": "10", "service": "1.00"}},
                                                                  "E2": {"A": {"tech": "10", "service": "1.01"}}})
    assert even.bidders["A"].criteria[1].committee == D("1.00")


def test_median_of_others_with_one_two_four_others() -> None:
    assert median_of_others({"E1": D(10)}, "E1") is None
    assert median_of_others({"E1": D(10), "E2": D(20)}, "E1") == D(20)
    assert median_of_others({"E1": D(10), "E2": D(20), "E3": D(30)}, "E1") == D(25)
    five = {"E1": D(10), "E2": D(12), "E3": D(14), "E4": D(30), "E5": D(40)}
    assert median_of_others(five, "E5") == D(13)          # 10, 12, 14, 30
    assert median_of_others(five, "E3") == D(21)          # 10, 12, 30, 40
    assert median_of_others(five, "E1") == D(22)          # 12, 14, 30, 40


def test_deviation_exactly_at_the_limit_is_not_flagged() -> None:
    # tech range 40 × share 0.2 = limit 8; E3 is 28 − 20 = 8 from the others' median
    assert consolidate(make_scheme(), sheet({"E1": "20", "E2": "20", "E3": "28"})).flags == ()


def test_deviation_just_above_the_limit_is_flagged_with_its_numbers() -> None:
    result = consolidate(make_scheme(), sheet({"E1": "20", "E2": "20", "E3": "28.5"}))
    [flag] = result.flags
    assert (flag.expert, flag.bidder, flag.criterion_id) == ("E3", "A", "tech")
    assert (flag.score, flag.others_median, flag.limit) == (D("28.5"), D(20), D(8))


def test_deviation_limit_uses_the_configured_share_and_range() -> None:
    scheme = make_scheme(deviation_share="0.1")       # service: 0.1 × 30 = 3
    result = consolidate(scheme, sheet({"E1": "20", "E2": "20", "E3": "20"}, service="20") |
                         {"E4": {"A": {"tech": "20", "service": "23.01"}}})
    assert [(f.expert, f.criterion_id, f.limit) for f in result.flags] == [("E4", "service", D("3.0"))]


def test_committee_of_two_flags_both_experts_of_a_split() -> None:
    result = consolidate(make_scheme(), sheet({"E1": "0", "E2": "40"}))
    assert [(f.expert, f.others_median) for f in result.flags] == [("E1", D(40)), ("E2", D(0))]


def test_committee_of_one_is_never_flagged() -> None:
    assert consolidate(make_scheme(), sheet({"E1": "0"})).flags == ()


def test_five_experts_one_outlier() -> None:
    result = consolidate(make_scheme(), sheet({"E1": "20", "E2": "21", "E3": "22", "E4": "20.5", "E5": "35"}))
    assert [(f.expert, f.others_median) for f in result.flags] == [("E5", D("20.75"))]


def test_consolidation_refuses_gaps_bad_scores_and_unknown_criteria() -> None:
    scheme = make_scheme()
    with refused("missing_score", "'E2' has not scored bidder 'A' on 'service'"):
        consolidate(scheme, {"E1": {"A": {"tech": "1", "service": "1"}}, "E2": {"A": {"tech": "1"}}})
    with refused("missing_score", "'E2' has not scored bidder 'B'"):
        consolidate(scheme, {"E1": {"A": {"tech": "1", "service": "1"}, "B": {"tech": "1", "service": "1"}},
                             "E2": {"A": {"tech": "1", "service": "1"}}})
    with refused("unknown_criterion", "'design'"):
        consolidate(scheme, {"E1": {"A": {"tech": "1", "service": "1", "design": "1"}}})
    with refused("score_out_of_range"):
        consolidate(scheme, {"E1": {"A": {"tech": "41", "service": "1"}}})
    with refused("invalid_score", "floating-point"):
        consolidate(scheme, {"E1": {"A": {"tech": 1.5, "service": "1"}}})


def test_finishing_needs_a_written_reason_for_every_flag() -> None:
    result = consolidate(make_scheme(), sheet({"E1": "0", "E2": "40"}))
    assert unexplained(result.flags, {}) == result.flags
    reasons = {("E1", "A", "tech"): "方案未覆盖关键指标", ("E2", "A", "tech"): "   "}
    assert [f.expert for f in unexplained(result.flags, reasons)] == ["E2"]
    with pytest.raises(ScoringError, match=r"1 deviating score\(s\).*'E2' on bidder 'A', 'tech': 40 vs others' "
                                           r"median 0 \(limit 8.0\)") as info:
        check_can_finish(result.flags, reasons)
    assert info.value.code == "unexplained_deviation" and info.value.detail == {"flags": [["E2", "A", "tech"]]}
    check_can_finish(result.flags, reasons | {("E2", "A", "tech"): "业绩证明充分"})


# --- ranking ----------------------------------------------------------------------------------

TIE_SCHEME = {"criteria": [{"id": "tech", "name": "技术", "group": "technical", "min_score": "0", "max_score": "70"}]}


def tie_world() -> tuple[Scheme, dict, dict, Any]:
    """A 80 = 50 + 30 and B 80 = 56 + 24 tie on total; C and D tie on total and price."""
    scheme = make_scheme(**TIE_SCHEME)
    bidders = ["D", "C", "B", "A", "F"]
    review = initial_review(scheme, bidders, all_pass(bidders, ["E1"], {("E1", "F", "form"): "未签字"}))
    prices = {"A": D(100), "B": D(125), "C": D(150), "D": D(150), "F": D(50)}
    scores = {"E1": {b: {"tech": t} for b, t in {"A": "50", "B": "56", "C": "40", "D": "40", "F": "70"}.items()}}
    return scheme, review, prices, consolidate(scheme, scores)


def test_comprehensive_ranking_breaks_ties_by_lower_price_then_bidder_id() -> None:
    scheme, review, prices, summary = tie_world()
    ranking = rank(scheme, review, prices, consolidation=summary)
    assert [(r.rank, r.bidder, r.total, r.price_score) for r in ranking] == [
        (1, "A", D("80.00"), D("30.00")), (2, "B", D("80.00"), D("24.00")),
        (3, "C", D("60.00"), D("20.00")), (4, "D", D("60.00"), D("20.00"))]


def test_failed_bidder_is_never_ranked_nor_in_the_price_base() -> None:
    scheme, review, prices, summary = tie_world()
    ranking = rank(scheme, review, prices, consolidation=summary)
    assert "F" not in [r.bidder for r in ranking]         # F's 50 would have been the base
    assert ranking[0].price_score == D("30.00")


def test_recommend_takes_the_top_n_or_fewer() -> None:
    scheme, review, prices, summary = tie_world()
    ranking = rank(scheme, review, prices, consolidation=summary)
    assert [r.bidder for r in recommend(ranking, 3)] == ["A", "B", "C"]
    assert len(recommend(ranking, 10)) == 4
    with refused("invalid_count"):
        recommend(ranking, 0)


def test_comprehensive_ranking_needs_scores_and_refuses_adjustments() -> None:
    scheme, review, prices, _ = tie_world()
    with refused("missing_score", "'A'"):
        rank(scheme, review, prices)
    with refused("wrong_method"):
        rank(scheme, review, prices, consolidation=consolidate(scheme, {"E1": {"A": {"tech": "1"}}}),
             adjustments={"A": "1"})
    with refused("unknown_bidder", "'Q'"):
        rank(scheme, review, prices | {"Q": D(1)})


@pytest.mark.parametrize("method", ["lowest_evaluated_price", "reasonable_price"])
def test_lowest_evaluated_price_ranks_ascending_with_adjustments_and_id_ties(method: str) -> None:
    scheme = make_scheme(method=method, price=None, criteria=[])
    bidders = ["A", "B", "C", "F"]
    review = initial_review(scheme, bidders, all_pass(bidders, ["E1", "E2", "E3"], {
        ("E1", "F", "licence"): "无资质", ("E2", "F", "licence"): "无资质"}))
    prices = {"A": D(100), "B": D(90), "C": D("95.50"), "F": D(1)}
    ranking = rank(scheme, review, prices, adjustments={"B": "10", "C": "-0.50"})
    assert [(r.rank, r.bidder, r.evaluated_price) for r in ranking] == [
        (1, "C", D("95.00")), (2, "A", D(100)), (3, "B", D(100))]
    assert ranking[2].price == D(90) and ranking[0].total is None
    with refused("invalid_price", "floating-point"):
        rank(scheme, review, prices, adjustments={"B": 10.0})
    with refused("invalid_price", "evaluated price of bidder 'B' must be > 0"):
        rank(scheme, review, prices, adjustments={"B": "-90"})


# --- the report -------------------------------------------------------------------------------

def report_world() -> dict[str, Any]:
    scheme = make_scheme()
    bidders = ["A", "B", "C"]
    review = initial_review(scheme, bidders, all_pass(bidders, ["E1", "E2", "E3"], {
        ("E1", "C", "form"): "未盖章", ("E2", "C", "form"): "投标函无签字"}))
    scores = {
        "E1": {"A": {"tech": "30", "service": "20"}, "B": {"tech": "25", "service": "18.5"}},
        "E2": {"A": {"tech": "31", "service": "21"}, "B": {"tech": "26", "service": "19"}},
        "E3": {"A": {"tech": "39.5", "service": "21"}, "B": {"tech": "24", "service": "18"}},
    }
    summary = consolidate(scheme, scores)
    return {"scheme": scheme, "review": review, "prices": {"A": D("1250000.00"), "B": D(1000000), "C": D(900000)},
            "consolidation": summary, "reasons": {("E3", "A", "tech"): "A 的实施方案明显优于其他"},
            "dissent": [Dissent("E2", "对 B 的业绩认定有保留")]}


def floats_in(value: Any, path: str = "$") -> list[str]:
    if isinstance(value, float):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in floats_in(v, f"{path}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in floats_in(v, f"{path}[{i}]")]
    assert value is None or isinstance(value, (str, int, bool)), f"{path}: {type(value).__name__}"
    return []


def test_report_has_no_float_anywhere_and_fixed_decimals() -> None:
    w = report_world()
    report = report_json(w["scheme"], w["review"], w["prices"], consolidation=w["consolidation"],
                         reasons=w["reasons"], dissent=w["dissent"])
    assert floats_in(report) == []
    assert report["base_price"] == "1000000.00"
    # A: tech 100.5/3 = 33.50, service 62/3 = 20.67 → 54.17, + 1,000,000/1,250,000 × 30 = 24.00 → 78.17
    # B: tech 75/3 = 25.00, service 55.5/3 = 18.50 → 43.50, + 30.00 (the base) → 73.50; C failed: not ranked
    assert report["ranking"] == [
        {"rank": 1, "bidder": "A", "price": "1250000.00", "price_score": "24.00", "total": "78.17",
         "evaluated_price": None},
        {"rank": 2, "bidder": "B", "price": "1000000.00", "price_score": "30.00", "total": "73.50",
         "evaluated_price": None}]
    assert report["recommended"] == [{"rank": 1, "bidder": "A"}, {"rank": 2, "bidder": "B"}]
    assert report["deviations"] == [{"expert": "E3", "bidder": "A", "criterion": "tech", "score": "39.50",
                                     "others_median": "30.50", "limit": "8.00", "reason": "A 的实施方案明显优于其他"}]
    assert report["initial_review"][2] == {"bidder": "C", "passed": False, "failures": [
        {"criterion": "form", "passes": 1, "fails": 2,
         "reasons": [{"expert": "E1", "reason": "未盖章"}, {"expert": "E2", "reason": "投标函无签字"}]}]}
    assert report["scores"][0]["criteria"][0] == {"criterion": "tech", "committee": "33.50",
                                                  "experts": {"E1": "30.00", "E2": "31.00", "E3": "39.50"}}
    assert report["price_scores"] == [{"bidder": "A", "price": "1250000.00", "score": "24.00"},
                                      {"bidder": "B", "price": "1000000.00", "score": "30.00"}]
    assert report["scheme"]["criteria"][0]["step"] == "0.50" and report["scheme"]["deviation_share"] == "0.2"
    assert report["dissent"] == [{"expert": "E2", "text": "对 B 的业绩认定有保留"}]


def test_report_is_stable_for_the_same_inputs() -> None:
    first, second = report_world(), report_world()
    a = report_json(first["scheme"], first["review"], first["prices"], consolidation=first["consolidation"],
                    reasons=first["reasons"], dissent=first["dissent"])
    b = report_json(second["scheme"], second["review"], dict(reversed(list(second["prices"].items()))),
                    consolidation=second["consolidation"], reasons=second["reasons"], dissent=second["dissent"])
    assert canonical_json(a) == canonical_json(b)


def test_report_refuses_unexplained_deviations_and_empty_dissent() -> None:
    w = report_world()
    with refused("unexplained_deviation"):
        report_json(w["scheme"], w["review"], w["prices"], consolidation=w["consolidation"])
    with refused("invalid_dissent"):
        report_json(w["scheme"], w["review"], w["prices"], consolidation=w["consolidation"],
                    reasons=w["reasons"], dissent=[Dissent("E2", " ")])
    with refused("invalid_dissent"):
        report_json(w["scheme"], w["review"], w["prices"], consolidation=w["consolidation"],
                    reasons=w["reasons"], dissent=[Dissent("E9", "not on the committee")])


def test_report_for_lowest_evaluated_price_has_no_price_scores() -> None:
    scheme = make_scheme(method="lowest_evaluated_price", price=None, criteria=[])
    review = initial_review(scheme, ["A", "B"], all_pass(["A", "B"], ["E1"]))
    report = report_json(scheme, review, {"A": D("99.5"), "B": D(98)}, adjustments={"B": "2"})
    assert report["base_price"] is None and report["price_scores"] == [] and floats_in(report) == []
    assert [(r["bidder"], r["evaluated_price"], r["total"]) for r in report["ranking"]] == [
        ("A", "99.50", None), ("B", "100.00", None)]
