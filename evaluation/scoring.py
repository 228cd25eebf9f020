"""Pure rules of a bid evaluation (评标): the scheme, initial review, scores and their deviations.

No I/O and no clock: everything is passed in. Money and scores are Decimal throughout; a float
anywhere in the input is refused rather than converted, because a binary fraction cannot hold
0.1 and a score sheet must add up the same way on paper. Rounding happens only at the points
each docstring names, with the scheme's mode (ROUND_HALF_UP to 2 places unless the tender says
otherwise). Price scores, the ranking and the report's content are in evaluation/price_score.py.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass
from decimal import (ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP,
                     ROUND_UP, Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext)
from typing import Any, Iterable, Literal, Mapping, Sequence

Method = Literal["comprehensive_scoring", "lowest_evaluated_price", "reasonable_price"]
METHODS: tuple[Method, ...] = ("comprehensive_scoring", "lowest_evaluated_price", "reasonable_price")
ReviewKind = Literal["form", "qualification", "responsiveness"]
REVIEW_KINDS: tuple[ReviewKind, ...] = ("form", "qualification", "responsiveness")
Group = Literal["technical", "commercial"]
GROUPS: tuple[Group, ...] = ("technical", "commercial")
Formula = Literal["lowest_base", "average_base"]
FORMULAS: tuple[Formula, ...] = ("lowest_base", "average_base")
ROUNDINGS = (ROUND_HALF_UP, ROUND_HALF_EVEN, ROUND_HALF_DOWN, ROUND_UP, ROUND_DOWN, ROUND_CEILING, ROUND_FLOOR)
ErrorCode = Literal[
    "invalid_scheme", "unknown_criterion", "unknown_bidder", "duplicate_bidder", "no_experts",
    "missing_verdict", "reason_required", "invalid_score", "score_out_of_range", "missing_score",
    "invalid_price", "missing_price", "wrong_method", "unexplained_deviation", "invalid_count",
    "invalid_dissent",
]
MAX_TOTAL = Decimal(1000)
_PLAIN = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?")
_ZERO = Decimal(0)
# Sums and products of scores and prices fit in 50 digits exactly; only a division (a mean, a
# ratio) is cut there, forty-odd places below any rounding point a tender uses.
CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])


def round_to(value: Decimal, places: int, rounding: str) -> Decimal:
    """`value` rounded once to `places` decimals with `rounding` (a decimal.ROUND_* name)."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=rounding, context=CONTEXT)


class ScoringError(ValueError):
    """An evaluation rule refused the input (HTTP 422); `code` is stable, the message names the field."""

    def __init__(self, code: ErrorCode, message: str, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.detail: dict[str, Any] = dict(detail or {})


@dataclass(frozen=True)
class ReviewCriterion:
    """An initial-review (初步评审) criterion, judged pass/fail."""

    id: str
    name: str
    kind: ReviewKind


@dataclass(frozen=True)
class Criterion:
    """A detailed-review (详细评审) criterion scored in [min_score, max_score], on `step` if set."""

    id: str
    name: str
    group: Group
    min_score: Decimal
    max_score: Decimal
    step: Decimal | None = None


@dataclass(frozen=True)
class PriceRule:
    """The price criterion of comprehensive scoring; deductions are per percentage point."""

    id: str
    name: str
    full_marks: Decimal
    formula: Formula
    deduct_above: Decimal = _ZERO
    deduct_below: Decimal = _ZERO


@dataclass(frozen=True)
class Scheme:
    """A tender's scoring scheme, validated by `parse_scheme`."""

    method: Method
    review_criteria: tuple[ReviewCriterion, ...]
    criteria: tuple[Criterion, ...]
    price: PriceRule | None
    decimals: int = 2
    rounding: str = ROUND_HALF_UP
    price_decimals: int = 2
    deviation_share: Decimal = Decimal("0.2")
    recommended: int = 3

    def criterion(self, criterion_id: str) -> Criterion:
        """The detailed criterion `criterion_id`; ScoringError("unknown_criterion") otherwise."""
        for criterion in self.criteria:
            if criterion.id == criterion_id:
                return criterion
        known = ", ".join(c.id for c in self.criteria) or "none"
        raise ScoringError("unknown_criterion", f"no scored criterion {criterion_id!r} in this tender (known: {known})")

    def round(self, value: Decimal) -> Decimal:
        """`value` rounded to the scheme's score places with its rounding mode."""
        return round_to(value, self.decimals, self.rounding)


def parse_decimal(raw: object, where: str, code: ErrorCode, places: int | None = None) -> Decimal:
    """`raw` as an exact Decimal: a plain decimal string ("12.5"), an int or a finite Decimal.

    Floats, bools, NaN, Infinity, exponents ("1e2"), a leading "+", spaces, magnitudes of 10**20
    or more and more than `places` decimals are refused with `code`. "-0" becomes 0.
    """
    if isinstance(raw, float):
        raise ScoringError(code, f"{where} is a floating-point number ({raw!r}); send it as a decimal string such as \"12.5\"")
    if isinstance(raw, str):
        if not _PLAIN.fullmatch(raw):
            raise ScoringError(code, f"{where} must be a plain decimal such as \"12.5\" (no exponent, NaN, "
                                     f"Infinity, '+' or spaces): got {raw[:40]!r}")
        value = Decimal(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = Decimal(raw)
    elif isinstance(raw, Decimal) and raw.is_finite():
        value = raw
    else:
        raise ScoringError(code, f"{where} must be a decimal string such as \"12.5\", not {raw!r:.40}")
    if value and value.adjusted() >= 20:
        raise ScoringError(code, f"{where} is too large: {value:.3e}")
    value = value.copy_abs() if not value else value  # no "-0.00" in a report
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent > 0:  # Decimal("1E+1"): the same number, written out
        value, exponent = value.quantize(Decimal(1), context=CONTEXT), 0
    if places is not None and -exponent > places:
        raise ScoringError(code, f"{where} has {-exponent} decimal places; at most {places} are allowed: {value}")
    return value


# --- the scheme -------------------------------------------------------------------------------

def _bad(message: str) -> ScoringError:
    return ScoringError("invalid_scheme", message)


def _object(raw: object, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise _bad(f"{where} must be an object")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _bad(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return raw


def _text(raw: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise _bad(f"{where}.{key} must be a non-empty string of at most 200 characters")
    return value


def _choice(raw: Mapping[str, Any], key: str, where: str, options: Sequence[str], default: str | None = None) -> Any:
    value = raw.get(key, default)
    if value not in options:
        raise _bad(f"{where}.{key} must be one of {', '.join(options)}: got {value!r:.40}")
    return value


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{key} must be a whole number from {low} to {high}: got {value!r:.40}")
    return value


def _list(raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise _bad(f"{key} must be a list")
    return value


def _review_criterion(raw: object, where: str) -> ReviewCriterion:
    item = _object(raw, where, {"id", "name", "kind"})
    return ReviewCriterion(_text(item, "id", where), _text(item, "name", where), _choice(item, "kind", where, REVIEW_KINDS))


def _criterion(raw: object, where: str, places: int) -> Criterion:
    item = _object(raw, where, {"id", "name", "group", "min_score", "max_score", "step"})
    low = parse_decimal(item.get("min_score"), f"{where}.min_score", "invalid_scheme", places)
    high = parse_decimal(item.get("max_score"), f"{where}.max_score", "invalid_scheme", places)
    if low < 0 or high <= low:
        raise _bad(f"{where}: need 0 <= min_score < max_score, got min_score {low} and max_score {high}")
    step = None
    if item.get("step") is not None:
        step = parse_decimal(item["step"], f"{where}.step", "invalid_scheme", places)
        if step <= 0 or (high - low) % step != 0:
            raise _bad(f"{where}.step must be > 0 and divide max_score − min_score ({high - low}): got {step}")
    return Criterion(_text(item, "id", where), _text(item, "name", where), _choice(item, "group", where, GROUPS),
                     low, high, step)


def _price_rule(raw: object, places: int) -> PriceRule:
    rates = {"deduct_per_percent_above", "deduct_per_percent_below"}
    item = _object(raw, "price", {"id", "name", "full_marks", "formula"} | rates)
    formula = _choice(item, "formula", "price", FORMULAS)
    if formula == "lowest_base":
        if rates & set(item):
            raise _bad(f"price.{sorted(rates & set(item))[0]} applies to formula average_base only")
        rates = set()
    full = parse_decimal(item.get("full_marks"), "price.full_marks", "invalid_scheme", places)
    if full <= 0:
        raise _bad(f"price.full_marks must be > 0: got {full}")
    deduct = {}
    for key in sorted(rates):
        deduct[key] = parse_decimal(item.get(key), f"price.{key}", "invalid_scheme")
        if deduct[key] < 0:
            raise _bad(f"price.{key} must be >= 0: got {deduct[key]}")
    return PriceRule(_text(item, "id", "price", "price"), _text(item, "name", "price", "价格"), full, formula,
                     deduct.get("deduct_per_percent_above", _ZERO), deduct.get("deduct_per_percent_below", _ZERO))


def parse_scheme(data: object) -> Scheme:
    """Validate a scheme decoded from JSON and return it; ScoringError("invalid_scheme") naming the field.

    Numbers are decimal strings or ints ("0.5", 30), never JSON floats. Defaults: decimals 2,
    rounding ROUND_HALF_UP, price_decimals 2, deviation_share "0.2", recommended 3. Ids are
    unique across all criteria; comprehensive_scoring needs a `price`, the price methods
    (lowest_evaluated_price, reasonable_price) must not have one. Max scores plus the price's
    full marks normally total 100; anything up to 1000 is accepted, more is refused.
    """
    keys = {"method", "initial_review", "criteria", "price", "decimals", "rounding", "price_decimals",
            "deviation_share", "recommended"}
    raw = _object(data, "scheme", keys)
    method: Method = _choice(raw, "method", "scheme", METHODS)
    decimals = _int(raw, "decimals", 2, 0, 6)
    review = tuple(_review_criterion(item, f"initial_review[{i}]") for i, item in enumerate(_list(raw, "initial_review")))
    if not review:
        raise _bad("initial_review needs at least one criterion (form, qualification or responsiveness)")
    criteria = tuple(_criterion(item, f"criteria[{i}]", decimals) for i, item in enumerate(_list(raw, "criteria")))
    price = _price_rule(raw["price"], decimals) if raw.get("price") is not None else None
    if method == "comprehensive_scoring" and price is None:
        raise _bad("price is required: comprehensive_scoring adds a price score")
    if method != "comprehensive_scoring" and price is not None:
        raise _bad(f"price must be absent: {method} ranks by evaluated price, not by a price score")
    seen: set[str] = set()
    for item_id in [c.id for c in review] + [c.id for c in criteria] + ([price.id] if price else []):
        if item_id in seen:
            raise _bad(f"criterion id {item_id!r} is used twice; ids must be unique")
        seen.add(item_id)
    total = sum((c.max_score for c in criteria), price.full_marks if price else _ZERO)
    if total > MAX_TOTAL:
        raise _bad(f"the max scores and price full marks add up to {total}; more than {MAX_TOTAL} is refused")
    share = parse_decimal(raw.get("deviation_share", "0.2"), "deviation_share", "invalid_scheme")
    if not 0 < share <= 1:
        raise _bad(f"deviation_share must be > 0 and <= 1: got {share}")
    return Scheme(method, review, criteria, price, decimals, _choice(raw, "rounding", "scheme", ROUNDINGS, ROUND_HALF_UP),
                  _int(raw, "price_decimals", 2, 0, 6), share, _int(raw, "recommended", 3, 1, 100))


# --- initial review (初步评审) ------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """One expert's pass/fail on one bidder for one initial-review criterion; a fail needs a reason."""

    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class Failure:
    """A criterion the committee failed a bidder on, with the vote and each failing expert's reason."""

    criterion_id: str
    passes: int
    fails: int
    reasons: Mapping[str, str]


@dataclass(frozen=True)
class ReviewResult:
    bidder: str
    passed: bool
    failures: tuple[Failure, ...]


def initial_review(scheme: Scheme, bidders: Sequence[str],
                   verdicts: Mapping[str, Mapping[str, Mapping[str, Verdict]]]) -> dict[str, ReviewResult]:
    """The committee's initial review from verdicts[expert][bidder][criterion], in `bidders` order.

    A bidder passes a criterion when more than half of the experts pass it; a tie fails (a
    bidder must convince a majority). It passes the review when it passes every criterion.
    Every expert must judge every bidder on every criterion ("missing_verdict"); a fail without
    a non-blank reason is "reason_required"; an unknown bidder or criterion is refused
    ("unknown_bidder", "unknown_criterion"); no experts at all is "no_experts".
    """
    twice = sorted(b for b, n in Counter(bidders).items() if n > 1)
    if twice:
        raise ScoringError("duplicate_bidder", f"bidder {twice[0]!r} is listed twice")
    if not verdicts:
        raise ScoringError("no_experts", "the initial review needs at least one expert's verdicts")
    known = {c.id for c in scheme.review_criteria}
    for expert in sorted(verdicts):
        for bidder, by_criterion in verdicts[expert].items():
            if bidder not in bidders:
                raise ScoringError("unknown_bidder", f"expert {expert!r} judged bidder {bidder!r}, who is not in this tender")
            for criterion_id, verdict in by_criterion.items():
                if criterion_id not in known:
                    raise ScoringError("unknown_criterion", f"{criterion_id!r} is not an initial-review criterion of this tender")
                if not verdict.passed and not verdict.reason.strip():
                    raise ScoringError("reason_required", f"expert {expert!r} failed bidder {bidder!r} on "
                                                          f"{criterion_id!r} without a reason")
    results: dict[str, ReviewResult] = {}
    for bidder in bidders:
        failures = []
        for criterion in scheme.review_criteria:
            votes: dict[str, Verdict] = {}
            for expert in sorted(verdicts):
                verdict = verdicts[expert].get(bidder, {}).get(criterion.id)
                if verdict is None:
                    raise ScoringError("missing_verdict", f"expert {expert!r} has not judged bidder {bidder!r} on {criterion.id!r}")
                votes[expert] = verdict
            passes = sum(1 for v in votes.values() if v.passed)
            if passes * 2 <= len(votes):
                reasons = {e: v.reason.strip() for e, v in votes.items() if not v.passed}
                failures.append(Failure(criterion.id, passes, len(votes) - passes, reasons))
        results[bidder] = ReviewResult(bidder, not failures, tuple(failures))
    return results


def passed_bidders(review: Mapping[str, ReviewResult]) -> tuple[str, ...]:
    """Ids of the bidders that passed the initial review, in review order."""
    return tuple(b for b, r in review.items() if r.passed)


# --- detailed review: scores, consolidation, deviations ---------------------------------------

def check_score(scheme: Scheme, criterion_id: str, value: object) -> Decimal:
    """`value` as a valid score for `criterion_id`, or ScoringError.

    "unknown_criterion" for an id that is not a scored criterion (initial-review and price
    criteria are not scored by hand); "invalid_score" for anything but a plain decimal string,
    int or Decimal with at most `scheme.decimals` places, and for a score off the step grid
    (min_score + k × step); "score_out_of_range" outside [min_score, max_score] (both included).
    """
    criterion = scheme.criterion(criterion_id)
    score = parse_decimal(value, f"score for {criterion_id!r}", "invalid_score", scheme.decimals)
    low, high, step = criterion.min_score, criterion.max_score, criterion.step
    if not low <= score <= high:
        raise ScoringError("score_out_of_range", f"score {score} for {criterion_id!r} is outside {low}–{high}")
    if step is not None and (score - low) % step != 0:
        below = low + (score - low) // step * step
        raise ScoringError("invalid_score", f"score {score} for {criterion_id!r} is not on its {step} step "
                                            f"(nearest allowed: {below} or {below + step})")
    return score


def median_of_others(scores: Mapping[str, Decimal], expert: str) -> Decimal | None:
    """Median of the scores of every expert but `expert` (exact; the mean of the middle two for an
    even count). With one other expert it is that expert's score; with none it is None."""
    others = [s for e, s in scores.items() if e != expert]
    if not others:
        return None
    with localcontext(CONTEXT):
        return statistics.median(others)


@dataclass(frozen=True)
class Flag:
    """A score further than `limit` from the median of the other experts' scores."""

    expert: str
    bidder: str
    criterion_id: str
    score: Decimal
    others_median: Decimal
    limit: Decimal

    @property
    def key(self) -> tuple[str, str, str]:
        """(expert, bidder, criterion_id): how a written reason is filed against this flag."""
        return (self.expert, self.bidder, self.criterion_id)


@dataclass(frozen=True)
class CriterionScores:
    """One criterion for one bidder: every expert's score side by side and the committee's."""

    criterion_id: str
    by_expert: Mapping[str, Decimal]
    committee: Decimal


@dataclass(frozen=True)
class BidderScores:
    bidder: str
    criteria: tuple[CriterionScores, ...]
    expert_totals: Mapping[str, Decimal]
    committee_total: Decimal


@dataclass(frozen=True)
class Consolidation:
    """The score summary (评分汇总): experts and bidders sorted by id, flags in that order too."""

    experts: tuple[str, ...]
    bidders: Mapping[str, BidderScores]
    flags: tuple[Flag, ...]


def consolidate(scheme: Scheme, scores: Mapping[str, Mapping[str, Mapping[str, object]]]) -> Consolidation:
    """Consolidate scores[expert][bidder][criterion] (each checked with `check_score`).

    Every expert must score every bidder that any expert scored on every criterion
    ("missing_score"). The committee's score per criterion is the mean of the experts', rounded
    once with the scheme's rounding; the committee total is the sum of those rounded scores
    (so the summary adds up on paper). An expert's total is the plain sum of its scores.

    A score is flagged when |score − median of the other experts' scores| is strictly greater
    than deviation_share × (max_score − min_score); the comparison is exact. With two experts
    each one's "others" is the other's score (both are flagged together); a single expert is
    never flagged.
    """
    if not scores:
        raise ScoringError("no_experts", "the score summary needs at least one expert's scores")
    experts = tuple(sorted(scores))
    bidders = sorted({b for by_bidder in scores.values() for b in by_bidder})
    checked: dict[str, dict[str, dict[str, Decimal]]] = {}
    for expert in experts:
        checked[expert] = {}
        for bidder in bidders:
            given = scores[expert].get(bidder, {})
            extra = sorted(set(given) - {c.id for c in scheme.criteria})
            if extra:
                scheme.criterion(extra[0])
            missing = [c.id for c in scheme.criteria if c.id not in given]
            if missing:
                raise ScoringError("missing_score", f"expert {expert!r} has not scored bidder {bidder!r} on {missing[0]!r}")
            checked[expert][bidder] = {c: check_score(scheme, c, v) for c, v in given.items()}
    summary: dict[str, BidderScores] = {}
    flags: list[Flag] = []
    with localcontext(CONTEXT):
        for bidder in bidders:
            rows = []
            for criterion in scheme.criteria:
                side = {e: checked[e][bidder][criterion.id] for e in experts}
                rows.append(CriterionScores(criterion.id, side, scheme.round(sum(side.values(), _ZERO) / len(side))))
                limit = scheme.deviation_share * (criterion.max_score - criterion.min_score)
                for expert, score in side.items():
                    median = median_of_others(side, expert)
                    if median is not None and abs(score - median) > limit:
                        flags.append(Flag(expert, bidder, criterion.id, score, median, limit))
            totals = {e: sum((checked[e][bidder][c.id] for c in scheme.criteria), _ZERO) for e in experts}
            summary[bidder] = BidderScores(bidder, tuple(rows), totals, sum((r.committee for r in rows), _ZERO))
    return Consolidation(experts, summary, tuple(flags))


def unexplained(flags: Iterable[Flag], reasons: Mapping[tuple[str, str, str], str]) -> tuple[Flag, ...]:
    """The flags with no non-blank written reason in `reasons` (keyed by `Flag.key`), in order."""
    return tuple(f for f in flags if not reasons.get(f.key, "").strip())


def check_can_finish(flags: Iterable[Flag], reasons: Mapping[tuple[str, str, str], str]) -> None:
    """Raise ScoringError("unexplained_deviation") listing every flag still without a reason."""
    missing = unexplained(flags, reasons)
    if missing:
        listed = "; ".join(f"expert {f.expert!r} on bidder {f.bidder!r}, {f.criterion_id!r}: {f.score} vs others' "
                           f"median {f.others_median} (limit {f.limit})" for f in missing)
        raise ScoringError("unexplained_deviation", f"{len(missing)} deviating score(s) need a written reason: {listed}",
                           {"flags": [list(f.key) for f in missing]})

