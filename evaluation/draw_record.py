"""The published record of a draw ("tenderhall-draw/1") and its re-verification from the record alone.

The record holds everything the result depends on: the spec, the candidate set the database
query produced (ids, regions, specialties; never names), the commitment published when the
draw was scheduled, the secret revealed at draw time, the signed tree head the seed was mixed
with, and the result. `verify_record` recomputes the digests, the seed and the draw and says
exactly what differs; the tree head's own signature is checked by the caller with the
platform's public key (tenderhall.log), since this module does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from evaluation.draw import (
    Candidate, DrawError, Result, candidates_digest, derive_seed, draw, parse_spec, spec_digest, spec_json,
)
from tenderhall.canonical import b64url, b64url_decode

RECORD_FORMAT = "tenderhall-draw/1"


@dataclass(frozen=True)
class Verification:
    ok: bool
    problems: tuple[str, ...]


def build_record(*, draw_id: str, spec_data: Any, candidates: list[Candidate], published_commitment: str,
                 secret: bytes, tree_head: Mapping[str, Any]) -> dict[str, Any]:
    """Run the draw and return its record; DrawError / DrawImpossible as the draw raises them.

    `tree_head` is the signed head (TreeHead.as_json()) current when the secret was revealed;
    its root_hash (hex) enters the seed.
    """
    spec = parse_spec(spec_data)
    root = _root(tree_head)
    spec_hex, cand_hex = spec_digest(spec), candidates_digest(candidates)
    seed = derive_seed(secret, published_commitment, root, spec_hex, cand_hex)
    result = draw(spec, candidates, seed)
    return {
        "format": RECORD_FORMAT, "draw": draw_id, "spec": spec_json(spec), "spec_sha256": spec_hex,
        "candidates": [{"id": c.id, "region": c.region, "specialties": sorted(c.specialties)}
                       for c in sorted(candidates, key=lambda c: c.id)],
        "candidates_sha256": cand_hex, "commitment": published_commitment, "secret": b64url(secret),
        "tree_head": dict(tree_head), "seed": seed.hex(), "result": result.as_json(),
    }


def _root(tree_head: Mapping[str, Any]) -> bytes:
    root = tree_head.get("root_hash") if isinstance(tree_head, Mapping) else None
    try:
        value = bytes.fromhex(root) if isinstance(root, str) else b""
    except ValueError:
        value = b""
    if len(value) != 32:
        raise DrawError("the tree head's root_hash must be 64 hex digits")
    return value


def verify_record(record: Any) -> Verification:
    """Recompute a published draw from its record alone; every mismatch is named."""
    problems: list[str] = []
    try:
        if not isinstance(record, Mapping) or record.get("format") != RECORD_FORMAT:
            raise DrawError(f"not a {RECORD_FORMAT} record")
        spec = parse_spec(record["spec"])
        candidates = [Candidate(c["id"], c["region"], tuple(c["specialties"])) for c in record["candidates"]]
        spec_hex, cand_hex = spec_digest(spec), candidates_digest(candidates)
        if spec_hex != record["spec_sha256"]:
            problems.append("the spec does not hash to spec_sha256")
        if cand_hex != record["candidates_sha256"]:
            problems.append("the candidate set does not hash to candidates_sha256")
        seed = derive_seed(b64url_decode(record["secret"]), record["commitment"], _root(record["tree_head"]),
                           spec_hex, cand_hex)
        if seed.hex() != record["seed"]:
            problems.append("the seed does not follow from the secret, the tree head and the digests")
        recomputed: Result = draw(spec, candidates, seed)
        if recomputed.as_json() != record["result"]:
            problems.append("the result is not what the draw gives for this spec, candidate set and seed")
    except (DrawError, KeyError, TypeError, ValueError) as exc:
        problems.append(f"the record cannot be checked: {exc}")
    return Verification(not problems, tuple(problems))
