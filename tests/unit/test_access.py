"""Door decisions from memory (venue/access.py) and the 代理码 rules (venue/agent_codes.py): every
reason code, the order they are checked in, window boundaries, anti-passback and re-entry."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta, timezone

import pytest
import segno

from venue import access, agent_codes
from venue.access import Memory, Passage, Policy, Reader, allowed_in, decide
from venue.model import AccessRule, Credential, Person

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
F = "F3"
ANNA, BO = uuid.UUID(int=1), uuid.UUID(int=2)
# corridor C; room R1 (in through r1-in, out through r1-out); room R2; the floor's entrance E.
READERS = [Reader("e-in", F, "d0", "C", None), Reader("r1-in", F, "d1", "R1", "C"), Reader("r1-out", F, "d1", "C", "R1"),
           Reader("r2-in", F, "d2", "R2", "C")]
KINDS = {(F, "C"): "corridor", (F, "R1"): "evaluation_room", (F, "R2"): "evaluation_room"}


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def policy(*rules: AccessRule, credentials: list[Credential] | None = None, memory: Memory | None = None) -> Policy:
    creds = credentials if credentials is not None else [
        Credential(ANNA, "badge", "B-ANNA", T0 - timedelta(days=1)), Credential(BO, "badge", "B-BO", T0 - timedelta(days=1))]
    people = [Person(ANNA, "安娜", "expert"), Person(BO, "博", "staff")]
    return Policy.build(readers=READERS, zone_kinds=KINDS, credentials=creds, people=people, rules=rules, memory=memory)


def room(**kw) -> AccessRule:
    base = dict(id=1, valid_from=T0, person=ANNA, floor=F, zone_id="R1")
    return AccessRule(**{**base, **kw})


def corridor_for_everyone() -> AccessRule:
    return AccessRule(2, T0 - timedelta(days=1), role="expert", zone_kind="corridor")


def reason(p: Policy, reader: str, badge: str, at: datetime) -> str:
    return decide(p, reader, badge, at)[0].reason


def passed(p: Policy, reader: str, badge: str, at: datetime) -> None:
    decision, passage = decide(p, reader, badge, at)
    assert decision.granted, decision
    p.memory.apply(passage)


def test_a_rule_for_the_zone_grants_with_the_passage_to_remember() -> None:
    p = policy(room())
    decision, passage = decide(p, "r1-in", "B-ANNA", s(10))
    assert (decision.granted, decision.reason, decision.person, decision.zone) == (True, "allowed", ANNA, "R1")
    assert passage == Passage(ANNA, "r1-in", (F, "C"), (F, "R1"), s(10))
    assert p.memory.zone_of(ANNA) is None  # the caller applies it


def test_unknown_reader_comes_first() -> None:
    assert decide(policy(room()), "nowhere", "nobody", s(1)) == (access.Decision(False, "unknown_reader"), None)


def test_unknown_credential() -> None:
    decision, passage = decide(policy(room()), "r1-in", "B-NOBODY", s(1))
    assert (decision.reason, decision.person, passage) == ("unknown_credential", None, None)


def test_tags_do_not_open_doors() -> None:
    p = policy(room(), credentials=[Credential(ANNA, "tag", "T-ANNA", T0 - timedelta(days=1))])
    assert reason(p, "r1-in", "T-ANNA", s(1)) == "unknown_credential"


def test_credential_period_is_from_inclusive_until_exclusive() -> None:
    p = policy(room(valid_from=T0 - timedelta(days=1)),
               credentials=[Credential(ANNA, "badge", "B", T0, T0 + timedelta(hours=1))])
    assert reason(p, "r1-in", "B", T0 - timedelta(microseconds=1)) == "credential_expired"
    assert reason(p, "r1-in", "B", T0) == "allowed"
    assert reason(p, "r1-in", "B", T0 + timedelta(hours=1) - timedelta(microseconds=1)) == "allowed"
    decision, _ = decide(p, "r1-in", "B", T0 + timedelta(hours=1))
    assert (decision.reason, decision.person) == ("credential_expired", ANNA)


def test_a_badge_passed_on_names_its_holder_of_the_moment() -> None:
    p = policy(room(valid_from=T0 - timedelta(days=1)), AccessRule(3, T0, person=BO, floor=F, zone_id="R2"),
               credentials=[Credential(ANNA, "badge", "B", T0 - timedelta(days=1), T0),
                            Credential(BO, "badge", "B", T0 + timedelta(hours=1))])
    assert decide(p, "r1-in", "B", T0 - timedelta(seconds=1))[0].person == ANNA
    gap = decide(p, "r1-in", "B", T0 + timedelta(minutes=30))[0]
    assert (gap.reason, gap.person) == ("credential_expired", ANNA)
    later = decide(p, "r2-in", "B", T0 + timedelta(hours=2))[0]
    assert (later.reason, later.person) == ("allowed", BO)


def test_not_allowed_without_a_rule_for_that_zone() -> None:
    p = policy(room())
    assert reason(p, "r2-in", "B-ANNA", s(1)) == "not_allowed"
    assert reason(p, "r1-in", "B-BO", s(1)) == "not_allowed"


def test_rule_window_is_from_inclusive_until_exclusive() -> None:
    p = policy(room(valid_until=s(3600)))
    assert reason(p, "r1-in", "B-ANNA", s(-0.000001)) == "outside_window"
    assert reason(p, "r1-in", "B-ANNA", s(0)) == "allowed"
    assert reason(p, "r1-in", "B-ANNA", s(3600)) == "outside_window"


def test_role_rule_by_zone_kind_on_any_floor_or_one_floor() -> None:
    assert reason(policy(corridor_for_everyone()), "e-in", "B-ANNA", s(1)) == "allowed"
    other_floor = AccessRule(2, T0, role="expert", zone_kind="corridor", floor="F9")
    assert reason(policy(other_floor), "e-in", "B-ANNA", s(1)) == "not_allowed"
    assert reason(policy(corridor_for_everyone()), "e-in", "B-BO", s(1)) == "not_allowed"  # Bo is staff


def test_entry_window_closes_after_its_last_second() -> None:
    p = policy(room(enter_within_seconds=300))
    assert reason(p, "r1-in", "B-ANNA", s(300)) == "allowed"  # within 5 minutes includes the 300th second
    assert reason(p, "r1-in", "B-ANNA", s(300.000001)) == "entry_window_passed"


def test_entry_window_binds_only_the_first_entry() -> None:
    p = policy(room(enter_within_seconds=300), corridor_for_everyone())
    passed(p, "r1-in", "B-ANNA", s(200))
    passed(p, "r1-out", "B-ANNA", s(900))
    assert reason(p, "r1-in", "B-ANNA", s(1000)) == "allowed"  # re-entry is allowed by this rule


def test_no_reentry_after_leaving() -> None:
    p = policy(room(no_reentry=True), corridor_for_everyone())
    passed(p, "r1-in", "B-ANNA", s(10))
    passed(p, "r1-out", "B-ANNA", s(60))
    assert reason(p, "r1-in", "B-ANNA", s(70)) == "no_reentry"


def test_a_leave_before_the_rule_began_does_not_count() -> None:
    yesterday = room(id=5, valid_from=T0 - timedelta(days=1), valid_until=T0 - timedelta(hours=12))
    p = policy(yesterday, corridor_for_everyone())
    passed(p, "r1-in", "B-ANNA", T0 - timedelta(hours=20))
    passed(p, "r1-out", "B-ANNA", T0 - timedelta(hours=19))
    p2 = policy(room(no_reentry=True, enter_within_seconds=300), corridor_for_everyone(), memory=p.memory)
    assert reason(p2, "r1-in", "B-ANNA", s(60)) == "allowed"


def test_leaving_by_an_unbadged_exit_still_counts_as_leaving() -> None:
    p = policy(room(no_reentry=True), corridor_for_everyone(), AccessRule(3, T0, person=ANNA, floor=F, zone_id="R2"))
    passed(p, "r1-in", "B-ANNA", s(10))
    passed(p, "r2-in", "B-ANNA", s(60))  # out of R1 through the push bar, into R2 with the badge
    assert p.memory.zone_of(ANNA) == (F, "R2")
    assert reason(p, "r1-in", "B-ANNA", s(70)) == "no_reentry"


def test_anti_passback_refuses_entering_a_zone_one_is_inside() -> None:
    p = policy(room(), corridor_for_everyone())
    passed(p, "r1-in", "B-ANNA", s(10))
    decision, passage = decide(p, "r1-in", "B-ANNA", s(20))
    assert (decision.granted, decision.reason, decision.person, passage) == (False, "anti_passback", ANNA, None)
    passed(p, "r1-out", "B-ANNA", s(30))
    assert reason(p, "r1-in", "B-ANNA", s(40)) == "allowed"


def test_rules_are_checked_before_anti_passback() -> None:
    p = policy(room(valid_until=s(100)), corridor_for_everyone())
    passed(p, "r1-in", "B-ANNA", s(10))
    assert reason(p, "r1-in", "B-ANNA", s(200)) == "outside_window"


def test_any_rule_that_allows_wins_and_the_closest_refusal_speaks() -> None:
    strict = room(id=1, no_reentry=True)
    late = room(id=2, valid_from=s(3600))
    p = policy(strict, late, corridor_for_everyone())
    passed(p, "r1-in", "B-ANNA", s(10))
    passed(p, "r1-out", "B-ANNA", s(20))
    assert reason(p, "r1-in", "B-ANNA", s(30)) == "no_reentry"  # closer than outside_window
    assert reason(p, "r1-in", "B-ANNA", s(3600)) == "allowed"  # the later rule lets her in
    window_only = policy(room(id=1, enter_within_seconds=5), room(id=2, valid_from=s(3600)))
    assert reason(window_only, "r1-in", "B-ANNA", s(60)) == "entry_window_passed"


def test_a_refusal_changes_nothing() -> None:
    p = policy(room())
    decide(p, "r2-in", "B-ANNA", s(1))
    assert p.memory.inside == {} and p.memory.entered == {} and p.memory.left == {}


def test_memory_forgets_before_a_moment() -> None:
    p = policy(room(no_reentry=True), corridor_for_everyone())
    passed(p, "r1-in", "B-ANNA", s(10))
    passed(p, "r1-out", "B-ANNA", s(20))
    p.memory.forget_before(s(15))
    assert (ANNA, (F, "R1")) not in p.memory.entered and (ANNA, (F, "R1")) in p.memory.left
    assert p.memory.zone_of(ANNA) == (F, "C")
    p.memory.forget_before(s(25))
    assert p.memory.left == {} and p.memory.inside == {}


def test_allowed_in_reads_the_window_only() -> None:
    p = policy(room(valid_until=s(60), enter_within_seconds=1))
    assert allowed_in(p, ANNA, (F, "R1"), s(30))
    assert not allowed_in(p, ANNA, (F, "R1"), s(60))
    assert not allowed_in(p, ANNA, (F, "R2"), s(30))
    assert not allowed_in(p, uuid.uuid4(), (F, "R1"), s(30))


def test_every_reason_is_listed() -> None:
    assert set(access.REASONS) == {"allowed", "unknown_reader", "unknown_credential", "credential_expired",
                                   "not_allowed", "outside_window", "entry_window_passed", "no_reentry",
                                   "anti_passback"}


# ---------------------------------------------------------------------------- 代理码


def test_agent_code_is_128_bits_of_base32_and_parses_back_in_any_form() -> None:
    code = agent_codes.make_code(bytes(range(16)))
    assert len(code) == agent_codes.CODE_LENGTH and code == "AAAQEAYEAUDAOCAJBIFQYDIOB4"
    assert agent_codes.qr_payload(code) == "THAC1:" + code
    assert agent_codes.parse("thac1:" + code.lower()) == code
    assert agent_codes.parse(" AAAQ-EAYE AUDA-OCAJ-BIFQ-YDIO-B4 ") == code
    assert agent_codes.parse(code[:-1]) is None
    assert agent_codes.parse(code[:-1] + "1") is None  # 1 is not a base32 digit
    with pytest.raises(ValueError):
        agent_codes.make_code(b"short")
    assert agent_codes.digest(code) == agent_codes.digest(agent_codes.parse(code) or "")


def test_agent_code_scan_reasons_in_order() -> None:
    tender, other = uuid.uuid4(), uuid.uuid4()
    day = date(2026, 11, 23)
    assert agent_codes.scan_reason(tender, day, day, None) == "accepted"
    assert agent_codes.scan_reason(tender, day, day, tender) == "accepted"
    assert agent_codes.scan_reason(tender, day, day + timedelta(days=1), None) == "wrong_day"
    assert agent_codes.scan_reason(tender, day, day + timedelta(days=1), other) == "wrong_project"


def _dark_modules(svg: str) -> set[tuple[int, int]]:
    """The (row, column) of every dark module drawn by a segno SVG path: `M x y+0.5` then runs of
    `h n` (n dark modules) and relative moves `m dx dy`, in module units."""
    root = ET.fromstring(svg)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    (path,) = [p for p in root.iterfind(".//svg:path", ns) if p.get("class") == "qrline"]
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    tokens = re.findall(r"[Mmh]|-?\d+(?:\.\d+)?", path.get("d", ""))
    i = 0
    while i < len(tokens):
        op = tokens[i]
        if op == "M":
            x, y, i = float(tokens[i + 1]), float(tokens[i + 2]), i + 3
        elif op == "m":
            x, y, i = x + float(tokens[i + 1]), y + float(tokens[i + 2]), i + 3
        else:  # h: a run of dark modules along the row
            n = int(float(tokens[i + 1]))
            dark.update((int(y), int(x) + k) for k in range(n))
            x, i = x + n, i + 2
    return dark


def test_agent_code_qr_svg_is_the_payloads_qr_symbol() -> None:
    payload = agent_codes.qr_payload(agent_codes.make_code(bytes(range(16))))
    svg = agent_codes.qr_svg(payload)
    root = ET.fromstring(svg)  # a standalone document, so it can be an <img> from a data URI
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and "<script" not in svg
    symbol = segno.make_qr(payload, error="m")
    assert symbol.error == "M"
    border = 4  # the quiet zone ISO/IEC 18004 asks for
    expected = {(r + border, c + border) for r, row in enumerate(symbol.matrix) for c, bit in enumerate(row) if bit}
    assert _dark_modules(svg) == expected
    size = symbol.symbol_size(scale=4)[0]
    assert (root.get("width"), root.get("height")) == (str(size), str(size))
    with pytest.raises(ValueError):
        agent_codes.qr_svg("X" * 8000)  # more than any QR version holds
