"""The familiar-faces metric (熟面孔指标): query rules, periods, shares and the summary's shape.

Pure: plain values in, plain values out. The set work (who met whom before, within the
window) is done by PostgreSQL in `familiar_store`; this module validates what is asked,
lays out the periods and turns counts into shares.

A share is a `Decimal` rounded half up to 4 places and written as text ("0.5000") in the
summary, like money elsewhere in the API; with nothing to divide by it is None (JSON null),
never a division error.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Literal, Mapping, Sequence

Period = Literal["week", "month"]
PERIODS: tuple[Period, ...] = ("week", "month")
DEFAULT_PERIOD: Period = "month"
DEFAULT_WINDOW_DAYS = 180
MIN_WINDOW_DAYS, MAX_WINDOW_DAYS = 1, 730
MAX_RANGE_YEARS = 5
DEFAULT_TOP, MAX_TOP = 10, 100
SHARE_PLACES = Decimal("0.0001")
# Counterpart kinds in `pairings.counterpart` ('tenderer:<name>', 'agent:<id>', 'expert:<id>').
COUNTERPART_KINDS = ("tenderer", "agent", "expert")


class FamiliarQueryError(ValueError):
    """A metric request that cannot be answered; `field` names the parameter, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class FamiliarQuery:
    """What to measure: local dates `start`..`end` (both inclusive), cut into periods."""

    start: date
    end: date
    period: Period
    window_days: int
    top: int = DEFAULT_TOP


@dataclass(frozen=True)
class PeriodCounts:
    """The counts PostgreSQL returns for one period (or for the whole range)."""

    evaluations: int = 0
    tenderer_repeat_evaluations: int = 0
    agent_repeat_evaluations: int = 0
    expert_pairs: int = 0
    expert_repeat_pairs: int = 0
    experts: int = 0


# ---------------------------------------------------------------------------- dates and periods


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months, the day clamped to the target month's length (31 Mar - 1 → 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def period_start(day: date, period: Period) -> date:
    """The first day of the period holding `day`: the 1st of its month, or its ISO week's Monday
    (what PostgreSQL's date_trunc('week' | 'month', …) gives)."""
    if period == "month":
        return day.replace(day=1)
    return day - timedelta(days=day.weekday())


def next_period_start(start: date, period: Period) -> date:
    """The first day of the period after the one beginning on `start`."""
    return add_months(start, 1) if period == "month" else start + timedelta(days=7)


def periods_between(start: date, end: date, period: Period) -> list[tuple[date, date, date]]:
    """Every period touching start..end, in order, as (period start, first day, last day in range).

    The first and last period may be cut short by the range; the period start is still the
    calendar one, the key the database groups by.
    """
    out: list[tuple[date, date, date]] = []
    key = period_start(start, period)
    while key <= end:
        following = next_period_start(key, period)
        out.append((key, max(key, start), min(following - timedelta(days=1), end)))
        key = following
    return out


def default_start(end: date, period: Period) -> date:
    """The last 12 months up to `end`, as whole periods: 12 calendar months, or 52 ISO weeks."""
    if period == "month":
        return add_months(end.replace(day=1), -11)
    return period_start(end, "week") - timedelta(weeks=51)


# ---------------------------------------------------------------------------- validation


def check_query(start: date, end: date, period: str, window_days: int, top: int = DEFAULT_TOP) -> FamiliarQuery:
    """The query if it can be answered; FamiliarQueryError naming the parameter otherwise.

    Refused: a period other than week or month, `start` after `end`, a range longer than
    5 years (start + 5 years must come after `end`), window_days outside 1..730, top outside 1..100.
    """
    if period not in PERIODS:
        raise FamiliarQueryError("period", f"period must be week or month, got {period[:20]!r}")
    if start > end:
        raise FamiliarQueryError("from", f"from ({start.isoformat()}) is after to ({end.isoformat()})")
    if end >= add_months(start, 12 * MAX_RANGE_YEARS):
        raise FamiliarQueryError(
            "to", f"the range {start.isoformat()} to {end.isoformat()} is longer than {MAX_RANGE_YEARS} years; "
                  f"choose a to date before {add_months(start, 12 * MAX_RANGE_YEARS).isoformat()}")
    if isinstance(window_days, bool) or not MIN_WINDOW_DAYS <= window_days <= MAX_WINDOW_DAYS:
        raise FamiliarQueryError(
            "window_days", f"window_days must be from {MIN_WINDOW_DAYS} to {MAX_WINDOW_DAYS}, got {window_days}")
    if isinstance(top, bool) or not 1 <= top <= MAX_TOP:
        raise FamiliarQueryError("top", f"top must be from 1 to {MAX_TOP}, got {top}")
    return FamiliarQuery(start, end, period, window_days, top)  # type: ignore[arg-type]


def _date_param(params: Mapping[str, str], name: str) -> date | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        if len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise FamiliarQueryError(name, f"{name} must be a date written YYYY-MM-DD, got {raw[:40]!r}") from None


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        raise FamiliarQueryError(name, f"{name} must be a whole number from {low} to {high}, got {raw[:40]!r}")
    return int(raw)


def parse_query(params: Mapping[str, str], today: date) -> FamiliarQuery:
    """The query from request parameters `period`, `from`, `to`, `window_days`, `top` (all optional).

    Defaults: period month; to = `today` (the centre's local date); from = the start of the last
    12 months of whole periods up to `to`; window_days 180; top 10. FamiliarQueryError as in
    `check_query`, or for a value that is no date or number.
    """
    period = (params.get("period") or "").strip() or DEFAULT_PERIOD
    if period not in PERIODS:
        raise FamiliarQueryError("period", f"period must be week or month, got {period[:20]!r}")
    end = _date_param(params, "to") or today
    start = _date_param(params, "from") or default_start(end, period)  # type: ignore[arg-type]
    window_days = _int_param(params, "window_days", DEFAULT_WINDOW_DAYS, MIN_WINDOW_DAYS, MAX_WINDOW_DAYS)
    top = _int_param(params, "top", DEFAULT_TOP, 1, MAX_TOP)
    return check_query(start, end, period, window_days, top)


# ---------------------------------------------------------------------------- shares and the summary


def share(part: int, whole: int) -> Decimal | None:
    """part / whole rounded half up to 4 places; None when whole is 0. ValueError if part is outside 0..whole."""
    if whole < 0 or not 0 <= part <= max(whole, 0):
        raise ValueError(f"a share needs 0 <= part <= whole, got {part} of {whole}")
    if whole == 0:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(SHARE_PLACES, rounding=ROUND_HALF_UP)


def share_text(value: Decimal | None) -> str | None:
    """'0.5000' for Decimal('0.5'); None stays None."""
    return None if value is None else f"{value.quantize(SHARE_PLACES, rounding=ROUND_HALF_UP):.4f}"


def percent(text: str | None) -> str:
    """'50.0%' for '0.5000'; an em dash when there is no share."""
    if text is None:
        return "—"
    return f"{(Decimal(text) * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def counts_json(counts: PeriodCounts) -> dict[str, Any]:
    """The counts of one period with their three shares (text, or None when there is nothing to share)."""
    return {
        "evaluations": counts.evaluations,
        "experts": counts.experts,
        "tenderer_repeat_evaluations": counts.tenderer_repeat_evaluations,
        "tenderer_repeat_share": share_text(share(counts.tenderer_repeat_evaluations, counts.evaluations)),
        "agent_repeat_evaluations": counts.agent_repeat_evaluations,
        "agent_repeat_share": share_text(share(counts.agent_repeat_evaluations, counts.evaluations)),
        "expert_pairs": counts.expert_pairs,
        "expert_repeat_pairs": counts.expert_repeat_pairs,
        "expert_repeat_share": share_text(share(counts.expert_repeat_pairs, counts.expert_pairs)),
    }


def summarise(query: FamiliarQuery, zone: str, by_period: Mapping[date, PeriodCounts], totals: PeriodCounts,
              repeated: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The summary (the API body): every period of the range, empty ones included, the totals
    over the range and the most repeated pairings. Counts keyed by a date that is no period
    start of the range raise ValueError (the database and this module must agree on periods)."""
    layout = periods_between(query.start, query.end, query.period)
    known = {key for key, _, _ in layout}
    stray = sorted(set(by_period) - known)
    if stray:
        raise ValueError(f"counts for periods outside the range: {[d.isoformat() for d in stray]}")
    return {
        "period": query.period,
        "from": query.start.isoformat(),
        "to": query.end.isoformat(),
        "window_days": query.window_days,
        "time_zone": zone,
        "periods": [{"period_start": key.isoformat(), "from": first.isoformat(), "to": last.isoformat(),
                     **counts_json(by_period.get(key, PeriodCounts()))} for key, first, last in layout],
        "totals": counts_json(totals),
        "repeated_pairings": {kind: [dict(row) for row in repeated.get(kind, ())] for kind in ("tenderer", "agent")},
    }


# ---------------------------------------------------------------------------- the page's chart


@dataclass(frozen=True)
class Bar:
    """One bar of the chart, in SVG user units; `height` 0 and `empty` for a period with no evaluations."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: str
    empty: bool


def bars(periods: Iterable[Mapping[str, Any]], key: str, *, width: float = 720, height: float = 160,
         gap: float = 2) -> list[Bar]:
    """Bars for the share under `key` of each period, scaled so 100% fills `height`."""
    rows = list(periods)
    if not rows:
        return []
    step = width / len(rows)
    out = []
    for i, row in enumerate(rows):
        text = row.get(key)
        h = 0.0 if text is None else float(Decimal(text) * Decimal(str(height)))
        out.append(Bar(x=round(i * step + gap / 2, 2), y=round(height - h, 2), width=round(max(step - gap, 1), 2),
                       height=round(h, 2), label=str(row["period_start"]), value=percent(text), empty=text is None))
    return out
