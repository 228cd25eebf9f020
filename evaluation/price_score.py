"""Price scores, the ranking they decide, and the evaluation report's content (评标报告).

The second half of evaluation/scoring.py (which holds the scheme, the initial review, the
experts' scores and their deviations): pure Decimal arithmetic, no I/O. Prices count only for
bidders that passed the initial review; intermediate results are exact up to scoring.CONTEXT's
50 significant digits and rounded only at the points each docstring names.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Collection, Mapping, Sequence

from evaluation.scoring import (CONTEXT, Consolidation, PriceRule, ReviewResult, Scheme, ScoringError,
                                check_can_finish, parse_decimal, passed_bidders, round_to)

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


def _rule(scheme: Scheme) -> PriceRule:
    if scheme.price is None:
        raise ScoringError("wrong_method", f"{scheme.method} has no price score; rank by evaluated price instead")
    return scheme.price


def valid_prices(scheme: Scheme, prices: Mapping[str, object], passed: Collection[str] | None = None) -> dict[str, Decimal]:
    """The prices that count, sorted by bidder id: those of the `passed` bidders (every bidder when
    None); other bidders' prices are ignored unread. Each must be a plain decimal (no float) with at
    most `price_decimals` places and > 0 ("invalid_price"); a passed bidder without one is
    "missing_price"."""
    if passed is not None:
        missing = sorted(set(passed) - set(prices))
        if missing:
            raise ScoringError("missing_price", f"bidder {missing[0]!r} passed the initial review but has no price")
    valid: dict[str, Decimal] = {}
    for bidder in sorted(prices):
        if passed is None or bidder in passed:
            price = parse_decimal(prices[bidder], f"price of bidder {bidder!r}", "invalid_price", scheme.price_decimals)
            if price <= 0:
                raise ScoringError("invalid_price", f"price of bidder {bidder!r} must be > 0: got {price}")
            valid[bidder] = price
    return valid


def base_price(scheme: Scheme, prices: Mapping[str, object], passed: Collection[str] | None = None) -> Decimal | None:
    """The base price (评标基准价) over the valid prices, None when there are none.

    "lowest_base": the lowest valid price. "average_base": their arithmetic mean, rounded to
    `price_decimals` with the scheme's rounding, so a reader can redo every score from the base
    printed in the report.
    """
    rule, valid = _rule(scheme), valid_prices(scheme, prices, passed)
    if not valid:
        return None
    if rule.formula == "lowest_base":
        return min(valid.values())
    total = _ZERO
    for price in valid.values():
        total = CONTEXT.add(total, price)
    return round_to(CONTEXT.divide(total, Decimal(len(valid))), scheme.price_decimals, scheme.rounding)


def price_scores(scheme: Scheme, prices: Mapping[str, object], passed: Collection[str] | None = None) -> dict[str, Decimal]:
    """Price score per valid bidder (see `valid_prices`), sorted by bidder id.

    "lowest_base": base / price × full marks. "average_base": full marks − |price − base| / base
    × 100 × rate, with rate = deduct_per_percent_above for a price above the base and
    deduct_per_percent_below otherwise, floored at 0. Computed exactly (multiplying before the
    one division, so a result on x.xx5 stays there) and rounded once to `decimals` with the
    scheme's rounding. ScoringError("wrong_method") for the price methods.
    """
    rule, valid = _rule(scheme), valid_prices(scheme, prices, passed)
    base = base_price(scheme, valid)
    scores: dict[str, Decimal] = {}
    for bidder, price in valid.items():
        assert base is not None
        if rule.formula == "lowest_base":
            raw = CONTEXT.divide(CONTEXT.multiply(base, rule.full_marks), price)
        else:
            rate = rule.deduct_above if price > base else rule.deduct_below
            deviation = CONTEXT.multiply(CONTEXT.multiply(CONTEXT.subtract(price, base).copy_abs(), _HUNDRED), rate)
            raw = max(_ZERO, CONTEXT.subtract(rule.full_marks, CONTEXT.divide(deviation, base)))
        scores[bidder] = scheme.round(raw)
    return scores


@dataclass(frozen=True)
class Ranked:
    """A place in the ranking. Comprehensive scoring fills `total` (committee total + price
    score) and `price_score`; the price methods fill `evaluated_price`."""

    rank: int
    bidder: str
    price: Decimal
    total: Decimal | None = None
    price_score: Decimal | None = None
    evaluated_price: Decimal | None = None


def rank(scheme: Scheme, review: Mapping[str, ReviewResult], prices: Mapping[str, object], *,
         consolidation: Consolidation | None = None,
         adjustments: Mapping[str, object] | None = None) -> tuple[Ranked, ...]:
    """Rank the bidders that passed the initial review (the others are never ranked), rank 1 first.

    comprehensive_scoring: total = the committee's total (`consolidation`, required when the
    scheme has scored criteria, "missing_score") + price score, highest first; ties go to the
    lower price, then to the smaller bidder id (plain string order). Adjustments are refused
    ("wrong_method").
    lowest_evaluated_price / reasonable_price: evaluated price = bid price + the bidder's
    adjustment (a signed decimal, default 0; must stay > 0), lowest first; ties go to the smaller
    bidder id. `consolidation` is not used: these methods do not rank by score.
    A price or adjustment for a bidder not in `review` is "unknown_bidder".
    """
    for bidder in sorted(set(prices) | set(adjustments or {})):
        if bidder not in review:
            raise ScoringError("unknown_bidder", f"bidder {bidder!r} has a price or adjustment but is not in the review")
    passed = passed_bidders(review)
    valid = valid_prices(scheme, prices, passed)
    if scheme.method == "comprehensive_scoring":
        if adjustments:
            raise ScoringError("wrong_method", "price adjustments apply to the lowest evaluated price methods only")
        scores = price_scores(scheme, valid)
        totals = {}
        for bidder in valid:
            detail = _ZERO
            if scheme.criteria:
                if consolidation is None or bidder not in consolidation.bidders:
                    raise ScoringError("missing_score", f"bidder {bidder!r} passed the initial review but has no scores")
                detail = consolidation.bidders[bidder].committee_total
            totals[bidder] = detail + scores[bidder]
        order = sorted(valid, key=lambda b: (-totals[b], valid[b], b))
        return tuple(Ranked(i, b, valid[b], total=totals[b], price_score=scores[b]) for i, b in enumerate(order, 1))
    evaluated = {}
    for bidder, price in valid.items():
        raw = (adjustments or {}).get(bidder, 0)
        change = parse_decimal(raw, f"adjustment of bidder {bidder!r}", "invalid_price", scheme.price_decimals)
        evaluated[bidder] = price + change
        if evaluated[bidder] <= 0:
            raise ScoringError("invalid_price", f"evaluated price of bidder {bidder!r} must be > 0: got {evaluated[bidder]}")
    order = sorted(valid, key=lambda b: (evaluated[b], b))
    return tuple(Ranked(i, b, valid[b], evaluated_price=evaluated[b]) for i, b in enumerate(order, 1))


def recommend(ranking: Sequence[Ranked], n: int) -> tuple[Ranked, ...]:
    """The first `n` of the ranking (推荐中标候选人); fewer when fewer were ranked. n >= 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ScoringError("invalid_count", f"the number of recommended candidates must be a whole number >= 1: got {n!r}")
    return tuple(ranking[:n])


@dataclass(frozen=True)
class Dissent:
    """An expert's recorded disagreement with the conclusion, in the expert's words."""

    expert: str
    text: str


def _fixed(value: Decimal, places: int) -> str:
    """`value` with at least `places` decimals: padded, never rounded (a report shows what was used)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return f"{value.quantize(Decimal(1).scaleb(-max(places, -exponent)), context=CONTEXT):f}"


def _scheme_json(scheme: Scheme) -> dict[str, Any]:
    d, rule = scheme.decimals, scheme.price
    return {
        "method": scheme.method, "decimals": d, "rounding": scheme.rounding, "price_decimals": scheme.price_decimals,
        "deviation_share": _fixed(scheme.deviation_share, 0), "recommended": scheme.recommended,
        "initial_review": [{"id": c.id, "name": c.name, "kind": c.kind} for c in scheme.review_criteria],
        "criteria": [{"id": c.id, "name": c.name, "group": c.group, "min_score": _fixed(c.min_score, d),
                      "max_score": _fixed(c.max_score, d), "step": None if c.step is None else _fixed(c.step, d)}
                     for c in scheme.criteria],
        "price": None if rule is None else {
            "id": rule.id, "name": rule.name, "formula": rule.formula, "full_marks": _fixed(rule.full_marks, d),
            "deduct_per_percent_above": _fixed(rule.deduct_above, 0),
            "deduct_per_percent_below": _fixed(rule.deduct_below, 0)},
    }


def report_json(scheme: Scheme, review: Mapping[str, ReviewResult], prices: Mapping[str, object], *,
                consolidation: Consolidation | None = None, adjustments: Mapping[str, object] | None = None,
                reasons: Mapping[tuple[str, str, str], str] | None = None,
                dissent: Sequence[Dissent] = ()) -> dict[str, Any]:
    """The report's content as plain JSON values, for tenderhall.canonical and the HTML page.

    Computed from the same inputs as `rank` (base price, price scores, ranking, the first
    `scheme.recommended` as recommended candidates), so the parts cannot disagree. Every Decimal
    becomes a string with fixed places (scores: `decimals`, prices: `price_decimals`; medians,
    limits and rates keep any further exact places, never rounded); there is no float anywhere
    and the same inputs give the same dict. Refused: a deviation without a written reason
    ("unexplained_deviation"), a dissent with a blank text or from someone not on the committee
    ("invalid_dissent"), and whatever `rank` refuses.
    """
    reasons = reasons or {}
    flags = consolidation.flags if consolidation else ()
    check_can_finish(flags, reasons)
    for item in dissent:
        if not item.text.strip() or (consolidation is not None and item.expert not in consolidation.experts):
            raise ScoringError("invalid_dissent", f"dissent from {item.expert!r} needs a text and a committee member")
    ranking = rank(scheme, review, prices, consolidation=consolidation, adjustments=adjustments)
    passed = passed_bidders(review)
    comprehensive = scheme.method == "comprehensive_scoring"
    base = base_price(scheme, prices, passed) if comprehensive else None
    d, p = scheme.decimals, scheme.price_decimals

    def money(value: Decimal | None) -> str | None:
        return None if value is None else _fixed(value, p)

    def score(value: Decimal | None) -> str | None:
        return None if value is None else _fixed(value, d)

    return {
        "scheme": _scheme_json(scheme),
        "initial_review": [
            {"bidder": r.bidder, "passed": r.passed,
             "failures": [{"criterion": f.criterion_id, "passes": f.passes, "fails": f.fails,
                           "reasons": [{"expert": e, "reason": f.reasons[e]} for e in sorted(f.reasons)]}
                          for f in r.failures]}
            for r in review.values()],
        "experts": list(consolidation.experts) if consolidation else [],
        "scores": [
            {"bidder": b.bidder,
             "criteria": [{"criterion": c.criterion_id, "experts": {e: score(v) for e, v in c.by_expert.items()},
                           "committee": score(c.committee)} for c in b.criteria],
             "expert_totals": {e: score(v) for e, v in b.expert_totals.items()},
             "committee_total": score(b.committee_total)}
            for b in (consolidation.bidders.values() if consolidation else ())],
        "deviations": [
            {"expert": f.expert, "bidder": f.bidder, "criterion": f.criterion_id, "score": score(f.score),
             "others_median": score(f.others_median), "limit": score(f.limit), "reason": reasons[f.key].strip()}
            for f in flags],
        "base_price": money(base),
        "price_scores": [{"bidder": r.bidder, "price": money(r.price), "score": score(r.price_score)}
                         for r in sorted(ranking, key=lambda r: r.bidder)] if comprehensive else [],
        "ranking": [
            {"rank": r.rank, "bidder": r.bidder, "price": money(r.price), "price_score": score(r.price_score),
             "total": score(r.total), "evaluated_price": money(r.evaluated_price)}
            for r in ranking],
        "recommended": [{"rank": r.rank, "bidder": r.bidder} for r in recommend(ranking, scheme.recommended)],
        "dissent": [{"expert": x.expert, "text": x.text.strip()} for x in dissent],
    }
