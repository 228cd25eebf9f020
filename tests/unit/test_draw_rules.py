"""The draw's life as pure rules: requests and timing, seats, backups in order, empty seats, and
the record's ties to the transparency log."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evaluation.draw import Candidate, commitment
from evaluation.draw_record import build_record
from evaluation.draw_rules import (
    DrawRefused, check_draw_time, extension_spec, missing_seats, next_backup, notice_text, parse_request,
    planned_seats, pseudonym, unseal_opens_at,
)
from evaluation.draw_verify import check_published
from evaluation.draw import Result, GroupResult, Seat
from tenderhall.log import TreeHead, tree_head_message
from tenderhall.platform_key import PlatformKey

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc)
TENDER = str(uuid.uuid4())


def request(**changes) -> dict:
    body = {"purpose": "evaluation", "tender_id": TENDER, "title": "评标专家抽取",
            "spec": {"groups": [{"specialty": "A0101", "count": 5, "backups": 2}]},
            "needed_at": (NOW + timedelta(hours=20)).isoformat(), "commitment": "ab" * 32}
    body.update(changes)
    return body


def test_a_valid_request_parses_with_defaults() -> None:
    parsed = parse_request(request(), NOW, 15)
    assert parsed.draw_after == NOW and parsed.reply_minutes == 15 and parsed.subject == {"tender_id": TENDER}


@pytest.mark.parametrize(("changes", "message"), [
    ({"purpose": "lottery"}, "purpose must be"),
    ({"title": ""}, "title must be"),
    ({"spec": {"groups": []}}, "spec:"),
    ({"needed_at": "tomorrow"}, "not an ISO 8601"),
    ({"needed_at": "2026-11-23T09:00:00"}, "needs a time zone"),
    ({"needed_at": (NOW - timedelta(hours=1)).isoformat()}, "must be in the future"),
    ({"needed_at": (NOW + timedelta(days=3)).isoformat()}, "at most two days"),
    ({"draw_after": (NOW + timedelta(hours=21)).isoformat()}, "before needed_at"),
    ({"draw_after": (NOW - timedelta(hours=1)).isoformat()}, "not be in the past"),
    ({"commitment": "AB" * 32}, "64 lowercase hex"),
    ({"reply_minutes": 0}, "reply_minutes"),
    ({"tender_id": "not-an-id"}, "tender_id must be an id"),
    ({"purpose": "inspection"}, "tender_ids must list"),
    ({"purpose": "intermediary", "purchaser_name": "某局", "project": "p", "purchaser_code": "123"}, "purchaser_code"),
])
def test_bad_requests_name_the_field(changes, message: str) -> None:
    with pytest.raises(DrawRefused, match=message) as refused:
        parse_request(request(**changes), NOW, 15)
    assert refused.value.status == 422


def test_draw_time_window() -> None:
    with pytest.raises(DrawRefused, match="too early"):
        check_draw_time(NOW, NOW + timedelta(minutes=1), NOW + timedelta(hours=1))
    with pytest.raises(DrawRefused, match="too late"):
        check_draw_time(NOW, NOW - timedelta(hours=2), NOW)
    check_draw_time(NOW, NOW, NOW + timedelta(hours=1))


def test_names_open_an_hour_before_evaluations_and_at_once_for_intermediaries() -> None:
    assert unseal_opens_at("evaluation", NOW) == NOW - timedelta(hours=1)
    assert unseal_opens_at("intermediary", NOW) is None


def test_pseudonyms_differ_per_draw_and_person() -> None:
    key, person = b"k" * 32, uuid.uuid4()
    first, second = uuid.uuid4(), uuid.uuid4()
    assert pseudonym(key, first, person) == pseudonym(key, first, person)
    assert pseudonym(key, first, person) != pseudonym(key, second, person)
    assert len(pseudonym(key, first, person)) == 32


def _seats():
    result = Result((GroupResult("A01", (Seat("a", 0), Seat("b", None)), ("c", "d")),
                     GroupResult("B01", (Seat("e", None),), ("f",))))
    return planned_seats(result)


def test_seats_are_members_then_backups_in_draw_order() -> None:
    seats = _seats()
    assert [(s.position, s.group_index, s.backup_rank, s.pseudonym) for s in seats] == [
        (0, 0, None, "a"), (1, 0, None, "b"), (2, 0, 1, "c"), (3, 0, 2, "d"), (4, 1, None, "e"), (5, 1, 1, "f")]


def test_the_next_backup_is_the_first_on_standby_of_the_group() -> None:
    rows = [{"group_index": s.group_index, "backup_rank": s.backup_rank, "position": s.position,
             "status": "standby" if s.backup_rank else "notified"} for s in _seats()]
    assert next_backup(rows, 0)["position"] == 2
    rows[2]["status"] = "notified"
    assert next_backup(rows, 0)["position"] == 3
    rows[3]["status"] = "notified"
    assert next_backup(rows, 0) is None


def test_missing_seats_count_confirmed_waiting_and_standby() -> None:
    spec = {"groups": [{"specialty": "A01", "count": 3, "exclude_regions": ["3501"]}]}
    rows = [{"specialty": "A01", "status": s} for s in ("confirmed", "declined", "expired", "notified")]
    assert missing_seats(spec, rows) == [{"specialty": "A01", "missing": 1, "exclude_regions": ["3501"]}]
    assert missing_seats(spec, [*rows, {"specialty": "A01", "status": "standby"}]) == []
    extension = extension_spec(missing_seats(spec, rows), backups=2)
    assert extension["groups"][0] == {"specialty": "A01", "count": 1, "backups": 2, "quotas": [],
                                      "exclude_regions": ["3501"]}
    with pytest.raises(DrawRefused, match="nothing to extend"):
        extension_spec([], 2)


def test_the_notice_keeps_the_project_confidential() -> None:
    subject, body = notice_text(purpose="evaluation", name="张三", needed_at_local="2026-11-23 09:00",
                                reply_by_local="2026-11-22 09:15", specialty="A0101", link="https://x/draws/reply/t")
    assert subject == "评标抽取通知" and "https://x/draws/reply/t" in body and "A0101" in body


# ---------------------------------------------------------------------------- ties to the log

SIGNER = PlatformKey(Ed25519PrivateKey.generate())
SECRET = bytes(range(32))


def _published():
    root = bytes(32)
    stamp = "2026-11-22T01:00:00.000Z"
    head = TreeHead(8, root, stamp, SIGNER.sign(tree_head_message(8, root, stamp, SIGNER.key_id)), SIGNER.key_id)
    candidates = [Candidate(f"p{i}", "350102", ("A0101",)) for i in range(6)]
    record = build_record(draw_id="d1", spec_data={"groups": [{"specialty": "A01", "count": 2, "backups": 1}]},
                          candidates=candidates, published_commitment=commitment(SECRET), secret=SECRET,
                          tree_head=head.as_json())
    scheduled = {"kind": "draw.scheduled", "index": 5,
                 "body": {"draw": "d1", "commitment": record["commitment"], "spec_sha256": record["spec_sha256"]}}
    drawn = {"kind": "draw.drawn", "index": 8, "body": {k: record[k] for k in (
        "draw", "spec_sha256", "candidates_sha256", "commitment", "secret", "seed", "result", "tree_head")}}
    return record, scheduled, drawn


def test_a_published_draw_checks_against_its_log_entries() -> None:
    record, scheduled, drawn = _published()
    assert check_published(record, scheduled, drawn, SIGNER.public).ok


@pytest.mark.parametrize(("change", "problem"), [
    (lambda r, s, d: s.update(index=9), "does not include the commitment"),
    (lambda r, s, d: d.update(index=9), "does not immediately follow"),
    (lambda r, s, d: s["body"].update(commitment="00" * 32), "commitment published when the draw was scheduled"),
    (lambda r, s, d: d["body"].update(seed="00" * 32), "logged seed differs"),
    (lambda r, s, d: s.update(kind="bid.received"), "no draw.scheduled entry"),
    (lambda r, s, d: r["tree_head"].update(signature="AAAA"), "not signed by the platform"),
])
def test_every_broken_tie_is_named(change, problem: str) -> None:
    record, scheduled, drawn = (copy.deepcopy(x) for x in _published())
    change(record, scheduled, drawn)
    result = check_published(record, scheduled, drawn, SIGNER.public)
    assert not result.ok and any(problem in p for p in result.problems), result.problems


def test_without_a_key_the_signature_is_reported_unchecked() -> None:
    record, scheduled, drawn = _published()
    result = check_published(record, scheduled, drawn, None)
    assert not result.ok and "not checked" in result.problems[0]
