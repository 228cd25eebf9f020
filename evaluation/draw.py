"""Verifiable random draws (专家抽取): a pure function of (spec, candidates, seed), nothing else.

The order is HMAC-SHA256(seed, candidate id): every candidate's place is uniform and
independent of how the pool is sorted, unlike the contiguous-window draws in use today
(experts next to each other in a sorted list are drawn together). Quotas are filled in that
order, backups are the next ones in the same order, so anyone holding the published spec,
the candidate set and the seed inputs recomputes exactly the same result.

The seed is derived only after the spec and the candidate set are committed: from a secret
committed in advance and revealed at draw time, the transparency log's signed tree head at
that moment, and the two digests (../shared/DESIGN.md, "Verifiable draws").
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

from tenderhall.canonical import canonical_json

SEED_LABEL = b"tenderhall-draw-seed/1"
COMMITMENT_LABEL = b"tenderhall-draw-commitment/1"
MIN_SECRET_BYTES = 16


class DrawError(ValueError):
    """A spec or seed input the draw cannot use; the message says which and why."""


class DrawImpossible(DrawError):
    """Fewer eligible candidates than a group or quota needs; `shortfalls` says where and how many were left."""

    def __init__(self, message: str, shortfalls: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.shortfalls = shortfalls


@dataclass(frozen=True)
class Quota:
    """`count` of a group's seats go to candidates whose region code starts with `region`."""

    region: str
    count: int


@dataclass(frozen=True)
class Group:
    """One specialty's seats: `count` members and `backups` ordered replacements."""

    specialty: str
    count: int
    backups: int = 2
    quotas: tuple[Quota, ...] = ()
    exclude_regions: tuple[str, ...] = ()   # e.g. the tender's own region: none from there


@dataclass(frozen=True)
class Spec:
    groups: tuple[Group, ...]


class Candidate(NamedTuple):
    """An eligible candidate as the draw sees it: avoidance has already been applied.

    A NamedTuple rather than a dataclass: draws make thousands of them at a time.
    """

    id: str
    region: str
    specialties: tuple[str, ...]


@dataclass(frozen=True)
class Seat:
    candidate: str
    quota: int | None   # index into the group's quotas; None: an open seat (any allowed region)


@dataclass(frozen=True)
class GroupResult:
    specialty: str
    members: tuple[Seat, ...]
    backups: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    groups: tuple[GroupResult, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return {"groups": [{
            "specialty": g.specialty,
            "members": [{"candidate": s.candidate, "quota": s.quota} for s in g.members],
            "backups": list(g.backups)} for g in self.groups]}


# ---------------------------------------------------------------------------- inputs


def parse_spec(data: Any) -> Spec:
    """A Spec from its JSON form; DrawError naming the offending field."""
    if not isinstance(data, Mapping) or not isinstance(data.get("groups"), list) or not data["groups"]:
        raise DrawError('a draw spec is {"groups": [...]} with at least one group')
    groups = []
    for i, g in enumerate(data["groups"]):
        where = f"groups[{i}]"
        if not isinstance(g, Mapping):
            raise DrawError(f"{where} must be an object")
        specialty = g.get("specialty")
        if not isinstance(specialty, str) or not specialty:
            raise DrawError(f"{where}.specialty must be a specialty code")
        count = _count(g.get("count"), f"{where}.count", minimum=1)
        backups = _count(g.get("backups", 2), f"{where}.backups", minimum=0)
        quotas = []
        for j, q in enumerate(g.get("quotas") or []):
            if not isinstance(q, Mapping) or not isinstance(q.get("region"), str) or not q["region"].isdigit():
                raise DrawError(f"{where}.quotas[{j}] must be {{\"region\": \"<division code prefix>\", \"count\": n}}")
            quotas.append(Quota(q["region"], _count(q.get("count"), f"{where}.quotas[{j}].count", minimum=1)))
        if sum(q.count for q in quotas) > count:
            raise DrawError(f"{where}: the quotas ask for {sum(q.count for q in quotas)} seats, "
                            f"more than the {count} the group has")
        excluded = g.get("exclude_regions") or []
        if not isinstance(excluded, list) or not all(isinstance(r, str) and r.isdigit() for r in excluded):
            raise DrawError(f"{where}.exclude_regions must be a list of division code prefixes")
        for q in quotas:
            if any(q.region.startswith(r) or r.startswith(q.region) for r in excluded):
                raise DrawError(f"{where}: quota region {q.region} overlaps an excluded region")
        groups.append(Group(specialty, count, backups, tuple(quotas), tuple(excluded)))
    return Spec(tuple(groups))


def _count(value: Any, where: str, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= 1000:
        raise DrawError(f"{where} must be a whole number from {minimum} to 1000")
    return value


def spec_json(spec: Spec) -> dict[str, Any]:
    return {"groups": [{
        "specialty": g.specialty, "count": g.count, "backups": g.backups,
        "quotas": [{"region": q.region, "count": q.count} for q in g.quotas],
        "exclude_regions": list(g.exclude_regions)} for g in spec.groups]}


def spec_digest(spec: Spec) -> str:
    return hashlib.sha256(canonical_json(spec_json(spec))).hexdigest()


_PLAIN = re.compile(r"[0-9A-Za-z_-]*")


def candidates_digest(candidates: Iterable[Candidate]) -> str:
    """SHA-256 of the candidate set in id order: what the draw saw, committed before the seed exists.

    The bytes are canonical_json of [{"id", "region", "specialties" (sorted)}, ...]. This digest
    covers thousands of candidates on every draw, so when every value is plain ([0-9A-Za-z_-],
    as ids, division codes and specialty codes are) the same bytes are written directly.
    """
    ordered = sorted(candidates, key=lambda c: c.id)
    try:
        plain = _PLAIN.fullmatch("".join(itertools.chain.from_iterable((c.id, c.region, *c.specialties) for c in ordered)))
    except TypeError:  # a value that is no string: canonical_json below says what it makes of it
        plain = None
    if plain:
        text = "[" + ",".join('{"id":"%s","region":"%s","specialties":[%s]}' % (
            c.id, c.region, ",".join('"%s"' % s for s in sorted(c.specialties))) for c in ordered) + "]"
        return hashlib.sha256(text.encode("ascii")).hexdigest()
    return hashlib.sha256(canonical_json([{"id": c.id, "region": c.region, "specialties": sorted(c.specialties)}
                                          for c in ordered])).hexdigest()


def commitment(secret: bytes) -> str:
    """What is published when the draw is scheduled: the hash of the secret revealed at draw time."""
    if len(secret) < MIN_SECRET_BYTES:
        raise DrawError(f"the committed secret must be at least {MIN_SECRET_BYTES} random bytes")
    return hashlib.sha256(COMMITMENT_LABEL + secret).hexdigest()


def derive_seed(secret: bytes, published_commitment: str, tree_head_root: bytes, spec_hex: str,
                candidates_hex: str) -> bytes:
    """The draw's seed; DrawError when the revealed secret does not match its commitment.

    Neither the requester (who fixed the secret before the tree head existed) nor the platform
    (which cannot know the secret) controls the result alone; each part is length-prefixed so
    no two different inputs give the same message.
    """
    if not hmac.compare_digest(commitment(secret), published_commitment):
        raise DrawError("the revealed secret does not match the published commitment")
    h = hashlib.sha256(SEED_LABEL)
    for part in (secret, tree_head_root, bytes.fromhex(spec_hex), bytes.fromhex(candidates_hex)):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


# ---------------------------------------------------------------------------- the draw


def rank(seed: bytes, candidate_id: str) -> bytes:
    return hmac.digest(seed, candidate_id.encode("utf-8"), "sha256")


def _qualifies(c: Candidate, group: Group) -> bool:
    # Specialty codes are hierarchical: asking for "A01" takes anyone under it ("A0102", ...).
    # (Plain loops and str.startswith(tuple): this runs for every candidate of every draw.)
    for s in c.specialties:
        if s.startswith(group.specialty):
            return not (group.exclude_regions and c.region.startswith(group.exclude_regions))
    return False


def check_feasible(spec: Spec, candidates: Sequence[Candidate]) -> None:
    """DrawImpossible, before anything is drawn, naming every group and quota that cannot be filled."""
    shortfalls = []
    for g in spec.groups:
        eligible = [c for c in candidates if _qualifies(c, g)]
        if len(eligible) < g.count + g.backups:
            shortfalls.append({"specialty": g.specialty, "needed": g.count + g.backups, "eligible": len(eligible),
                               "what": f"{g.count} member(s) and {g.backups} backup(s)"})
        for q in g.quotas:
            in_region = sum(1 for c in eligible if c.region.startswith(q.region))
            if in_region < q.count:
                shortfalls.append({"specialty": g.specialty, "region": q.region, "needed": q.count,
                                   "eligible": in_region, "what": f"quota of region {q.region}"})
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise DrawError("a candidate appears twice in the candidate set")
    if shortfalls:
        first = shortfalls[0]
        raise DrawImpossible(
            f"specialty {first['specialty']}: {first['what']} need {first['needed']}, "
            f"only {first['eligible']} eligible after avoidance", shortfalls)


def _rank_order(seed: bytes, candidates: Sequence[Candidate]) -> Callable[[], Iterator[Candidate]]:
    """Iterators over the candidates by (rank, id), each from the start.

    A heap popped only as far as the draw reads: a committee is filled long before the last of
    thousands of candidates, so the full sort is never paid for.
    """
    heap = [(hmac.digest(seed, c.id.encode("utf-8"), "sha256"), c.id, i) for i, c in enumerate(candidates)]
    heapq.heapify(heap)
    popped: list[Candidate] = []

    def iterate() -> Iterator[Candidate]:
        i = 0
        while True:
            if i == len(popped):
                if not heap:
                    return
                popped.append(candidates[heapq.heappop(heap)[2]])
            yield popped[i]
            i += 1

    return iterate


def draw(spec: Spec, candidates: Sequence[Candidate], seed: bytes) -> Result:
    """The draw itself: deterministic in its three inputs, uniform over the eligible candidates.

    Groups are filled in spec order and nobody sits in two groups. Within a group candidates
    are taken in HMAC order: each takes the first quota its region still needs, else an open
    seat while any is left. Backups are the next eligible ones in that same order. Raises
    DrawImpossible (check_feasible) rather than returning a short committee; a later group
    can still fall short because an earlier one took shared candidates, which is reported
    the same way.
    """
    if len(seed) != 32:
        raise DrawError("the seed is 32 bytes")
    check_feasible(spec, candidates)
    ordered = _rank_order(seed, candidates)
    taken: set[str] = set()
    results = []
    for g in spec.groups:
        need = [q.count for q in g.quotas]
        open_seats = g.count - sum(need)
        members: list[Seat] = []
        for c in ordered():
            if c.id in taken or not _qualifies(c, g):
                continue
            slot = next((i for i, q in enumerate(g.quotas) if need[i] and c.region.startswith(q.region)), None)
            if slot is not None:
                need[slot] -= 1
                members.append(Seat(c.id, slot))
            elif open_seats:
                open_seats -= 1
                members.append(Seat(c.id, None))
            else:
                continue  # its region's quota is full and no open seat is left
            if len(members) == g.count:
                break
        if len(members) < g.count:
            raise DrawImpossible(f"specialty {g.specialty}: only {len(members)} of {g.count} seats could be filled "
                                 "once earlier groups took their members",
                                 [{"specialty": g.specialty, "needed": g.count, "eligible": len(members)}])
        taken.update(s.candidate for s in members)
        # Backups: the first eligible candidates left in the same order, including any passed
        # over while their region's quota was already full.
        backups = tuple(itertools.islice((c.id for c in ordered() if c.id not in taken and _qualifies(c, g)), g.backups))
        if len(backups) < g.backups:
            raise DrawImpossible(f"specialty {g.specialty}: only {len(backups)} of {g.backups} backups are left "
                                 "once earlier groups took theirs",
                                 [{"specialty": g.specialty, "needed": g.backups, "eligible": len(backups)}])
        taken.update(backups)
        results.append(GroupResult(g.specialty, tuple(members), backups))
    return Result(tuple(results))
