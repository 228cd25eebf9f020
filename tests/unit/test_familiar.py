"""The familiar-faces metric's pure rules: query parsing and limits, periods, shares, the summary's shape."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from evaluation.familiar import (
    FamiliarQuery, FamiliarQueryError, PeriodCounts, add_months, bars, check_query, counts_json, default_start,
    parse_query, percent, period_start, periods_between, share, share_text, summarise,
)

TODAY = date(2025, 6, 15)


def test_defaults_are_the_last_twelve_whole_months() -> None:
    query = parse_query({}, TODAY)
    assert query == FamiliarQuery(date(2024, 7, 1), TODAY, "month", 180, 10)
    assert len(periods_between(query.start, query.end, query.period)) == 12


def test_weekly_default_is_fifty_two_iso_weeks_from_a_monday() -> None:
    query = parse_query({"period": "week"}, TODAY)  # a Sunday
    assert query.start == date(2024, 6, 17) and query.start.weekday() == 0
    assert len(periods_between(query.start, query.end, "week")) == 52


def test_given_values_are_used() -> None:
    query = parse_query({"period": "week", "from": "2025-01-01", "to": "2025-03-31", "window_days": "30",
                         "top": "5"}, TODAY)
    assert query == FamiliarQuery(date(2025, 1, 1), date(2025, 3, 31), "week", 30, 5)


def test_default_from_follows_a_given_to() -> None:
    assert parse_query({"to": "2024-02-29"}, TODAY).start == date(2023, 3, 1)


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"period": "day"}, "period", "period must be week or month, got 'day'"),
    ({"from": "2025-13-01"}, "from", "from must be a date written YYYY-MM-DD, got '2025-13-01'"),
    ({"to": "15/06/2025"}, "to", "to must be a date written YYYY-MM-DD"),
    ({"from": "2025-03-02", "to": "2025-03-01"}, "from", "from (2025-03-02) is after to (2025-03-01)"),
    ({"from": "2020-01-01", "to": "2025-01-01"}, "to", "longer than 5 years; choose a to date before 2025-01-01"),
    ({"window_days": "0"}, "window_days", "window_days must be from 1 to 730, got 0"),
    ({"window_days": "731"}, "window_days", "window_days must be from 1 to 730, got 731"),
    ({"window_days": "-5"}, "window_days", "window_days must be a whole number from 1 to 730, got '-5'"),
    ({"window_days": "1.5"}, "window_days", "whole number"),
    ({"top": "101"}, "top", "top must be from 1 to 100"),
])
def test_bad_queries_are_refused_with_the_reason(params: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(FamiliarQueryError) as refused:
        parse_query(params, TODAY)
    assert refused.value.field == field
    assert words in refused.value.message


def test_five_years_exactly_is_allowed_and_window_limits_are_inclusive() -> None:
    assert check_query(date(2020, 1, 1), date(2024, 12, 31), "month", 1).end == date(2024, 12, 31)
    assert check_query(date(2020, 1, 1), date(2020, 1, 1), "week", 730).window_days == 730


def test_check_query_refuses_what_parse_query_refuses() -> None:
    with pytest.raises(FamiliarQueryError, match="after to"):
        check_query(date(2025, 2, 1), date(2025, 1, 1), "month", 180)
    with pytest.raises(FamiliarQueryError, match="period must be"):
        check_query(date(2025, 1, 1), date(2025, 2, 1), "year", 180)


def test_add_months_clamps_to_the_month_end() -> None:
    assert add_months(date(2025, 3, 31), -1) == date(2025, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2025, 1, 15), -13) == date(2023, 12, 15)
    assert add_months(date(2020, 2, 29), 60) == date(2025, 2, 28)


def test_period_starts_match_date_trunc() -> None:
    assert period_start(date(2025, 3, 19), "month") == date(2025, 3, 1)
    assert period_start(date(2025, 3, 19), "week") == date(2025, 3, 17)  # Wednesday → Monday
    assert period_start(date(2025, 3, 17), "week") == date(2025, 3, 17)
    assert default_start(date(2025, 1, 31), "month") == date(2024, 2, 1)


def test_periods_cut_at_the_range_edges() -> None:
    assert periods_between(date(2025, 1, 15), date(2025, 3, 10), "month") == [
        (date(2025, 1, 1), date(2025, 1, 15), date(2025, 1, 31)),
        (date(2025, 2, 1), date(2025, 2, 1), date(2025, 2, 28)),
        (date(2025, 3, 1), date(2025, 3, 1), date(2025, 3, 10)),
    ]
    weeks = periods_between(date(2024, 12, 30), date(2025, 1, 12), "week")  # ISO week 1 of 2025 starts 2024-12-30
    assert [w[0] for w in weeks] == [date(2024, 12, 30), date(2025, 1, 6)]


def test_shares_round_half_up_to_four_places_and_none_without_evaluations() -> None:
    assert share(2, 4) == Decimal("0.5000")
    assert share(1, 3) == Decimal("0.3333")
    assert share(2, 3) == Decimal("0.6667")
    assert share(1, 16) == Decimal("0.0625")
    assert share(1, 32) == Decimal("0.0313")  # 0.03125 rounds half up
    assert share(0, 0) is None and share(0, 5) == Decimal("0.0000")
    assert share_text(share(1, 3)) == "0.3333" and share_text(share(4, 4)) == "1.0000" and share_text(None) is None
    with pytest.raises(ValueError):
        share(3, 2)


def test_percent_for_the_page() -> None:
    assert percent("0.5000") == "50.0%"
    assert percent("0.3333") == "33.3%"
    assert percent(None) == "—"


def test_counts_json_has_every_share() -> None:
    body = counts_json(PeriodCounts(evaluations=4, tenderer_repeat_evaluations=2, agent_repeat_evaluations=1,
                                    expert_pairs=12, expert_repeat_pairs=3, experts=9))
    assert body == {"evaluations": 4, "experts": 9, "tenderer_repeat_evaluations": 2, "tenderer_repeat_share": "0.5000",
                    "agent_repeat_evaluations": 1, "agent_repeat_share": "0.2500", "expert_pairs": 12,
                    "expert_repeat_pairs": 3, "expert_repeat_share": "0.2500"}
    empty = counts_json(PeriodCounts())
    assert empty["tenderer_repeat_share"] is None and empty["expert_repeat_share"] is None


def test_summary_lists_every_period_including_empty_ones() -> None:
    query = FamiliarQuery(date(2025, 1, 1), date(2025, 3, 31), "month", 180)
    counts = PeriodCounts(evaluations=2, tenderer_repeat_evaluations=1, experts=5)
    body = summarise(query, "Asia/Shanghai", {date(2025, 2, 1): counts}, counts, {"tenderer": [{"meetings": 2}]})
    assert [p["period_start"] for p in body["periods"]] == ["2025-01-01", "2025-02-01", "2025-03-01"]
    assert body["periods"][0]["evaluations"] == 0 and body["periods"][0]["tenderer_repeat_share"] is None
    assert body["periods"][1]["tenderer_repeat_share"] == "0.5000"
    assert body["periods"][2]["to"] == "2025-03-31"
    assert body["repeated_pairings"] == {"tenderer": [{"meetings": 2}], "agent": []}
    assert (body["from"], body["to"], body["window_days"], body["time_zone"]) == (
        "2025-01-01", "2025-03-31", 180, "Asia/Shanghai")


def test_summary_refuses_counts_for_a_period_outside_the_range() -> None:
    query = FamiliarQuery(date(2025, 1, 1), date(2025, 1, 31), "month", 180)
    with pytest.raises(ValueError, match="2025-02-01"):
        summarise(query, "UTC", {date(2025, 2, 1): PeriodCounts(evaluations=1)}, PeriodCounts(), {})


def test_bars_scale_shares_to_the_height() -> None:
    drawn = bars([{"period_start": "2025-01-01", "s": "0.5000"}, {"period_start": "2025-02-01", "s": None},
                  {"period_start": "2025-03-01", "s": "1.0000"}], "s", width=300, height=100, gap=0)
    assert [(b.x, b.width, b.height, b.y, b.empty) for b in drawn] == [
        (0, 100, 50, 50, False), (100, 100, 0, 100, True), (200, 100, 100, 0, False)]
    assert drawn[0].value == "50.0%" and drawn[1].value == "—"
    assert bars([], "s") == []
