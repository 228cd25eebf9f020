"""A draw's published record recomputes to the same result, and any tampering is named."""

from __future__ import annotations

import copy
import json

import pytest

from evaluation.draw import Candidate, DrawError, commitment
from evaluation.draw_record import build_record, verify_record

SECRET = bytes(range(100, 132))
HEAD = {"tree_size": 42, "root_hash": "ab" * 32, "timestamp": "2026-11-22T03:00:00.000Z",
        "signature": "c2lnbmF0dXJl", "key_id": "k1"}
SPEC = {"groups": [{"specialty": "A01", "count": 3, "backups": 2, "quotas": [{"region": "3502", "count": 1}]}]}


def candidates() -> list[Candidate]:
    return ([Candidate(f"fz-{i}", "350102", ("A0101",)) for i in range(8)]
            + [Candidate(f"xm-{i}", "350203", ("A0102",)) for i in range(4)])


def record() -> dict:
    return build_record(draw_id="d-1", spec_data=SPEC, candidates=candidates(), published_commitment=commitment(SECRET),
                        secret=SECRET, tree_head=HEAD)


def test_a_record_verifies_from_its_json_alone() -> None:
    published = json.loads(json.dumps(record()))
    assert verify_record(published).ok
    members = published["result"]["groups"][0]["members"]
    assert len(members) == 3 and sum(1 for m in members if m["candidate"].startswith("xm")) >= 1


@pytest.mark.parametrize(("change", "problem"), [
    (lambda r: r["result"]["groups"][0]["members"].reverse(), "the result is not"),
    (lambda r: r["candidates"].pop(), "candidate set does not hash"),
    (lambda r: r["spec"]["groups"][0].update(count=2), "spec does not hash"),
    (lambda r: r.update(seed="00" * 32), "the seed does not follow"),
    (lambda r: r["tree_head"].update(root_hash="cd" * 32), "the seed does not follow"),
    (lambda r: r.update(secret="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "does not match the published commitment"),
    (lambda r: r.update(format="other"), "not a tenderhall-draw/1 record"),
    (lambda r: r.pop("candidates"), "cannot be checked"),
])
def test_any_change_to_the_record_is_named(change, problem: str) -> None:
    tampered = copy.deepcopy(record())
    change(tampered)
    verification = verify_record(tampered)
    assert not verification.ok
    assert any(problem in p for p in verification.problems), verification.problems


def test_a_bad_tree_head_is_refused_when_building() -> None:
    with pytest.raises(DrawError, match="root_hash"):
        build_record(draw_id="d", spec_data=SPEC, candidates=candidates(), published_commitment=commitment(SECRET),
                     secret=SECRET, tree_head={"root_hash": "xyz"})
