"""The verifiable draw: deterministic, order-independent, constrained, uniform, and refusing the impossible."""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import pytest

from evaluation.draw import (
    Candidate, DrawError, DrawImpossible, Group, Quota, Spec, candidates_digest, commitment, derive_seed, draw,
    parse_spec, spec_digest,
)

SECRET = bytes(range(32))


def seed_of(n: int) -> bytes:
    return hashlib.sha256(f"seed {n}".encode()).digest()


def pool(n: int, region: str = "350100", specialty: str = "A0101", prefix: str = "e") -> list[Candidate]:
    return [Candidate(f"{prefix}{i:04d}", region, (specialty,)) for i in range(n)]


def members(result, group: int = 0) -> list[str]:
    return [s.candidate for s in result.groups[group].members]


def test_the_same_inputs_give_the_same_result_whatever_the_pool_order() -> None:
    candidates = pool(30)
    spec = Spec((Group("A01", 5, 2),))
    first = draw(spec, candidates, seed_of(1))
    shuffled = candidates[:]
    random.Random(7).shuffle(shuffled)
    assert draw(spec, shuffled, seed_of(1)) == first
    assert draw(spec, candidates, seed_of(2)) != first
    assert len(set(members(first)) | set(first.groups[0].backups)) == 7


def test_quotas_exclusions_specialty_tree_and_one_seat_per_person() -> None:
    candidates = (pool(6, "350100", "A0101", "fz") + pool(6, "350200", "A0102", "xm")
                  + pool(6, "350500", "A0101", "qz") + pool(6, "350100", "B02", "b"))
    spec = parse_spec({"groups": [
        {"specialty": "A01", "count": 4, "backups": 2,
         "quotas": [{"region": "3502", "count": 2}, {"region": "3501", "count": 1}], "exclude_regions": ["3505"]},
        {"specialty": "A0101", "count": 2, "backups": 1},
    ]})
    for n in range(50):
        result = draw(spec, candidates, seed_of(n))
        first, second = result.groups
        seats = {s.candidate: s.quota for s in first.members}
        assert sum(1 for c, q in seats.items() if q == 0 and c.startswith("xm")) == 2
        assert sum(1 for c, q in seats.items() if q == 1 and c.startswith("fz")) == 1
        assert not any(c.startswith(("qz", "b")) for c in [*seats, *first.backups])  # excluded region, other specialty
        everyone = [*seats, *first.backups, *members(result, 1), *second.backups]
        assert len(everyone) == len(set(everyone)) == 9
        assert all(c.startswith(("fz", "qz")) for c in [*members(result, 1), *second.backups])


def test_backups_are_the_next_eligible_in_the_same_order() -> None:
    candidates = pool(3, "350100", prefix="fz") + pool(5, "350200", prefix="xm")
    spec = Spec((Group("A01", 2, 2, (Quota("3501", 2),)),))
    from evaluation.draw import rank
    for n in range(20):
        seed = seed_of(n)
        result = draw(spec, candidates, seed)
        order = [c.id for c in sorted(candidates, key=lambda c: (rank(seed, c.id), c.id))]
        chosen = members(result)
        assert all(c.startswith("fz") for c in chosen)
        assert list(result.groups[0].backups) == [c for c in order if c not in chosen][:2]


def test_every_eligible_candidate_is_drawn_equally_often() -> None:
    candidates = pool(10)
    spec = Spec((Group("A01", 3, 0),))
    draws = 20000
    counts = Counter(c for n in range(draws) for c in members(draw(spec, candidates, seed_of(n))))
    expected = draws * 3 / 10
    chi2 = sum((counts[c.id] - expected) ** 2 / expected for c in candidates)
    assert chi2 < 27.88, (chi2, counts)  # chi-square, 9 degrees of freedom, p = 0.001
    ids = sorted(c.id for c in candidates)
    for edge in (ids[0], ids[-1]):  # a contiguous-window draw favours or starves the ends
        assert abs(counts[edge] - expected) < 0.05 * expected


def test_quota_seats_are_uniform_within_their_region() -> None:
    candidates = pool(4, "350100", prefix="fz") + pool(8, "350200", prefix="xm")
    spec = Spec((Group("A01", 3, 0, (Quota("3501", 2),)),))
    draws = 8000
    counts = Counter(c for n in range(draws) for c in members(draw(spec, candidates, seed_of(n))))
    for c in candidates:
        # fz: 2 of 4 by quota, plus a share of the open seat; xm: the open seat among the rest.
        assert counts[c.id] > 0
    fz = [counts[c.id] for c in candidates if c.id.startswith("fz")]
    xm = [counts[c.id] for c in candidates if c.id.startswith("xm")]
    assert max(fz) - min(fz) < 0.08 * sum(fz) / len(fz)
    assert max(xm) - min(xm) < 0.15 * sum(xm) / len(xm)


def test_a_pool_exactly_as_large_as_needed_is_drawn_whole() -> None:
    candidates = pool(5)
    result = draw(Spec((Group("A01", 3, 2),)), candidates, seed_of(0))
    assert sorted(members(result) + list(result.groups[0].backups)) == sorted(c.id for c in candidates)


def test_impossible_requests_are_refused_with_what_each_constraint_left() -> None:
    candidates = pool(4, "350100") + pool(1, "350200", prefix="xm")
    with pytest.raises(DrawImpossible) as caught:
        draw(Spec((Group("A01", 3, 2, (Quota("3502", 2),)),)), candidates, seed_of(0))
    # enough experts overall (5 for 3 + 2 backups), but not in the quota's region
    assert caught.value.shortfalls == [
        {"specialty": "A01", "region": "3502", "needed": 2, "eligible": 1, "what": "quota of region 3502"}]
    with pytest.raises(DrawImpossible, match="need 7, only 5 eligible"):
        draw(Spec((Group("A01", 5, 2),)), candidates, seed_of(0))
    with pytest.raises(DrawImpossible, match="specialty Z9"):
        draw(Spec((Group("Z9", 1, 0),)), candidates, seed_of(0))
    # two groups competing for the same people
    with pytest.raises(DrawImpossible, match="earlier groups"):
        draw(Spec((Group("A01", 3, 0), Group("A0101", 3, 0))), candidates, seed_of(0))


@pytest.mark.parametrize(("spec", "message"), [
    ({}, "at least one group"),
    ({"groups": [{"specialty": "A01", "count": 0}]}, "count must be"),
    ({"groups": [{"specialty": "A01", "count": 2, "quotas": [{"region": "3501", "count": 3}]}]}, "more than the 2"),
    ({"groups": [{"specialty": "A01", "count": 2, "quotas": [{"region": "x", "count": 1}]}]}, "quotas\\[0\\]"),
    ({"groups": [{"specialty": "A01", "count": 2, "quotas": [{"region": "3501", "count": 1}],
                  "exclude_regions": ["35"]}]}, "overlaps an excluded region"),
    ({"groups": [{"specialty": "", "count": 1}]}, "specialty"),
])
def test_malformed_specs_are_refused_by_field(spec: dict, message: str) -> None:
    with pytest.raises(DrawError, match=message):
        parse_spec(spec)


def test_the_seed_needs_the_committed_secret_and_binds_every_input() -> None:
    published = commitment(SECRET)
    spec_hex, cand_hex = spec_digest(Spec((Group("A01", 1, 0),))), candidates_digest(pool(3))
    seed = derive_seed(SECRET, published, b"\x01" * 32, spec_hex, cand_hex)
    assert len(seed) == 32
    with pytest.raises(DrawError, match="does not match"):
        derive_seed(bytes(32), published, b"\x01" * 32, spec_hex, cand_hex)
    with pytest.raises(DrawError, match="at least 16"):
        commitment(b"short")
    others = {derive_seed(SECRET, published, b"\x02" * 32, spec_hex, cand_hex),
              derive_seed(SECRET, published, b"\x01" * 32, spec_digest(Spec((Group("A01", 2, 0),))), cand_hex),
              derive_seed(SECRET, published, b"\x01" * 32, spec_hex, candidates_digest(pool(4)))}
    assert seed not in others and len(others) == 3
    # the candidate digest does not depend on the order the pool came in
    assert candidates_digest(list(reversed(pool(3)))) == cand_hex


def test_the_candidate_digest_is_canonical_json_on_both_paths() -> None:
    import hashlib as _hashlib

    from tenderhall.canonical import canonical_json

    plain = [Candidate("b2", "350102", ("A0102", "A0101")), Candidate("a1", "350203", ("B01",))]
    expected = _hashlib.sha256(canonical_json([{"id": c.id, "region": c.region, "specialties": sorted(c.specialties)}
                                               for c in sorted(plain, key=lambda c: c.id)])).hexdigest()
    assert candidates_digest(plain) == expected
    # A value outside the plain alphabet takes the general path and still digests canonically.
    quoted = [*plain, Candidate('q"1', "350102", ("A01",))]
    assert candidates_digest(quoted) == _hashlib.sha256(canonical_json([
        {"id": c.id, "region": c.region, "specialties": sorted(c.specialties)}
        for c in sorted(quoted, key=lambda c: c.id)])).hexdigest()
