"""Remote evaluation session rules: each transition's precondition, roles, the chair vote, the fault
rules at their exact boundaries, and the media directions a participant may offer."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from evaluation.session_rules import (
    NATIONAL, ORDER, FaultOutcome, FaultRules, Participant, RoomFacts, SessionFacts, SessionRefused, check_action,
    check_declaration, check_offer_directions, check_report_signature, check_vote, declaration_outcome,
    election_result, fail, media_role, next_step, record_decision, require_member, require_role,
    require_step, room_state, session_fault_outcome, suspend,
)

START = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # 09:00 in Beijing
MEMBERS = frozenset({"e1", "e2", "e3", "e4", "e5"})
ROOMS = frozenset({"main-1", "xa-2", "hz-3"})
BIDDERS = ("b1", "b2")
INITIAL = ("form", "qualification")
DETAILED = ("technical", "price")


def cells(experts, bidders, criteria) -> frozenset:
    return frozenset((e, b, c) for e in experts for b in bidders for c in criteria)


def facts(**changes) -> SessionFacts:
    """Facts under which every transition's precondition holds."""
    base = SessionFacts(
        members=MEMBERS, rooms=ROOMS, rooms_ready=ROOMS, signed_in=MEMBERS, declared=MEMBERS,
        ballots=(("e1", "e2"), ("e2", "e2"), ("e3", "e2")), bidders=BIDDERS, initial_criteria=INITIAL,
        verdicts=cells(MEMBERS, BIDDERS, INITIAL), passed_bidders=BIDDERS, detailed_criteria=DETAILED,
        scores=cells(MEMBERS, BIDDERS, DETAILED), signatures=MEMBERS)
    return replace(base, **changes)


def refused(code: str, fn, *args, **kwargs) -> SessionRefused:
    with pytest.raises(SessionRefused) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


# ---------------------------------------------------------------------------- steps in order


def test_the_steps_run_in_order_when_every_precondition_holds() -> None:
    assert [next_step(s, facts()) for s in ORDER[:-1]] == list(ORDER[1:])


@pytest.mark.parametrize("step", ["closed", "failed", "suspended"])
def test_a_finished_or_suspended_session_has_no_next_step(step: str) -> None:
    assert refused("wrong_step", next_step, step, facts()).status == 409


def test_an_unknown_step_is_bad_input() -> None:
    assert refused("unknown_step", next_step, "scoring", facts()).status == 422


def test_scoring_before_the_declarations_is_out_of_order() -> None:
    error = refused("wrong_step", check_action, "declarations", Participant("expert", "xa-2"), "score")
    assert error.status == 409 and "'declarations'" in error.message and "'detailed_review'" in error.message


def test_require_step_accepts_any_allowed_step() -> None:
    require_step("report", "consolidation", "report")
    assert refused("wrong_step", require_step, "sign_in", "report", doing="sign the report").message.startswith(
        "cannot sign the report now")


def test_the_session_opens_only_when_every_room_is_ready() -> None:
    error = refused("rooms_not_ready", next_step, "sign_in", facts(rooms_ready=ROOMS - {"hz-3"}))
    assert error.message == "rooms not ready: hz-3"


def test_the_session_opens_only_when_every_member_signed_in() -> None:
    error = refused("not_signed_in", next_step, "sign_in", facts(signed_in=MEMBERS - {"e4", "e2"}))
    assert error.message == "not signed in: e2, e4"


def test_a_session_without_rooms_or_committee_is_bad_input() -> None:
    assert refused("invalid_input", next_step, "sign_in", facts(rooms=frozenset())).status == 422
    assert refused("invalid_input", next_step, "declarations", facts(members=frozenset())).status == 422


def test_missing_declarations_keep_the_session_at_declarations() -> None:
    error = refused("declarations_missing", next_step, "declarations", facts(declared=MEMBERS - {"e3"}))
    assert error.message == "declarations missing: e3"


def test_a_declared_conflict_needs_a_replacement_before_anything_else() -> None:
    f = facts(declared=MEMBERS - {"e3", "e5"}, conflicts=frozenset({"e5"}))
    error = refused("replacement_needed", next_step, "declarations", f)
    assert error.detail == {"experts": ["e5"]} and "must be replaced" in error.message
    assert declaration_outcome(f.members, f.declared, f.conflicts).outcome == "replace"


def test_a_replacement_must_sign_in_and_declare() -> None:
    members = (MEMBERS - {"e5"}) | {"r1"}
    f = facts(members=members, declared=MEMBERS - {"e5"}, conflicts=frozenset({"e5"}))
    assert refused("not_signed_in", next_step, "declarations", f).message == "not signed in: r1"
    f = replace(f, signed_in=members)
    assert refused("declarations_missing", next_step, "declarations", f).message == "declarations missing: r1"
    assert next_step("declarations", replace(f, declared=members)) == "chair_election"


def test_a_declaration_twice_or_from_outside_the_committee_is_refused() -> None:
    assert refused("already_declared", check_declaration, "e1", MEMBERS, {"e1"}, set()).status == 409
    assert refused("already_declared", check_declaration, "e1", MEMBERS, set(), {"e1"}).status == 409
    assert refused("not_on_committee", check_declaration, "x", MEMBERS, set(), set()).status == 403
    check_declaration("e2", MEMBERS, {"e1"}, set())


def test_no_chair_no_initial_review() -> None:
    error = refused("no_chair", next_step, "chair_election", facts(ballots=(("e1", "e2"),)))
    assert error.message == "1 of 5 votes cast; a chair needs 3"


def test_initial_review_needs_every_verdict_of_every_expert() -> None:
    verdicts = cells(MEMBERS, BIDDERS, INITIAL) - {("e2", "b1", "form"), ("e4", "b2", "form"), ("e4", "b1", "form")}
    error = refused("verdicts_missing", next_step, "initial_review", facts(verdicts=verdicts))
    assert error.message == "verdicts missing: e2 (1 of 4), e4 (2 of 4)"
    assert error.detail == {"missing": {"e2": 1, "e4": 2}}


def test_initial_review_with_every_bid_rejected_fails_the_session() -> None:
    assert next_step("initial_review", facts(passed_bidders=())) == "failed"


def test_initial_review_refuses_inconsistent_facts() -> None:
    refused("invalid_input", next_step, "initial_review", facts(bidders=()))
    refused("invalid_input", next_step, "initial_review", facts(passed_bidders=("b9",)))
    refused("invalid_input", next_step, "initial_review", facts(initial_criteria=()))


def test_detailed_review_needs_every_score_for_the_bidders_that_passed() -> None:
    only_b1 = cells(MEMBERS, ("b1",), DETAILED)
    error = refused("scores_missing", next_step, "detailed_review", facts(scores=only_b1))
    assert error.message.startswith("scores missing: e1 (2 of 4), e2 (2 of 4)")
    assert next_step("detailed_review", facts(scores=only_b1, passed_bidders=("b1",))) == "consolidation"


def test_the_report_waits_for_every_deviation_to_be_explained() -> None:
    error = refused("unexplained_deviations", next_step, "consolidation", facts(unexplained_deviations=2))
    assert error.message == "2 flagged deviation(s) have no written reason yet" and error.status == 409
    assert refused("invalid_input", next_step, "consolidation", facts(unexplained_deviations=-1)).status == 422


def test_the_session_closes_only_when_every_expert_signed() -> None:
    error = refused("signatures_missing", next_step, "report", facts(signatures=MEMBERS - {"e1"}))
    assert error.message == "report not signed by: e1"


def test_signing_the_report_twice_is_refused() -> None:
    assert refused("already_signed", check_report_signature, "e1", MEMBERS, {"e1"}).status == 409
    assert refused("not_on_committee", check_report_signature, "x", MEMBERS, set()).status == 403
    assert check_report_signature("e2", MEMBERS, {"e1"}) is None


def test_a_dissent_is_recorded_with_its_reason() -> None:
    assert check_report_signature("e2", MEMBERS, set(), "  b2's price is abnormally low ") == "b2's price is abnormally low"
    assert refused("dissent_invalid", check_report_signature, "e2", MEMBERS, set(), "  ").status == 422
    refused("dissent_invalid", check_report_signature, "e2", MEMBERS, set(), "x" * 2001)


def test_no_step_is_taken_while_a_room_is_down_after_the_start() -> None:
    error = refused("room_down", next_step, "detailed_review", facts(rooms_down=frozenset({"xa-2"})))
    assert "xa-2" in error.message and "'detailed_review'" in error.message
    assert next_step("scheduled", facts(rooms_down=frozenset({"xa-2"}))) == "sign_in"


def test_suspend_and_fail() -> None:
    assert suspend("detailed_review") == "suspended" and suspend("sign_in") == "suspended"
    refused("wrong_step", suspend, "closed")
    refused("wrong_step", suspend, "suspended")
    assert fail("suspended") == "failed"
    refused("wrong_step", fail, "closed")


# ---------------------------------------------------------------------------- chair election


def test_a_strict_majority_of_the_committee_elects_the_chair_before_everyone_voted() -> None:
    result = election_result((("e1", "e3"), ("e2", "e3"), ("e3", "e3")), MEMBERS)
    assert result.winner == "e3" and result.tally == {"e3": 3}


def test_half_of_an_even_committee_is_not_a_majority() -> None:
    four = frozenset({"e1", "e2", "e3", "e4"})
    result = election_result((("e1", "e1"), ("e2", "e1"), ("e3", "e2"), ("e4", "e2")), four)
    assert result.winner is None and result.message == "tie: vote again"


def test_a_tie_after_every_vote_means_vote_again() -> None:
    ballots = (("e1", "e1"), ("e2", "e1"), ("e3", "e2"), ("e4", "e2"), ("e5", "e3"))
    assert election_result(ballots, MEMBERS).message == "tie: vote again"


def test_a_plurality_without_majority_means_vote_again() -> None:
    ballots = (("e1", "e1"), ("e2", "e1"), ("e3", "e2"), ("e4", "e3"), ("e5", "e4"))
    result = election_result(ballots, MEMBERS)
    assert result.winner is None and result.message == "no majority (3 of 5 needed): vote again"


def test_a_member_votes_once() -> None:
    assert refused("already_voted", election_result, (("e1", "e2"), ("e1", "e3")), MEMBERS).status == 409
    refused("already_voted", check_vote, (("e1", "e2"),), "e1", "e3", MEMBERS)


def test_voting_for_a_non_member_or_as_a_non_member_is_refused() -> None:
    assert refused("not_a_candidate", check_vote, (), "e1", "supervisor-1", MEMBERS).status == 422
    assert refused("not_on_committee", check_vote, (), "x", "e1", MEMBERS).status == 403


def test_no_vote_once_the_chair_is_elected() -> None:
    refused("election_over", check_vote, (("e1", "e2"), ("e2", "e2"), ("e3", "e2")), "e4", "e1", MEMBERS)
    check_vote((("e1", "e2"),), "e4", "e4", MEMBERS)


# ---------------------------------------------------------------------------- roles


@pytest.mark.parametrize("kind, action", [
    ("supervisor", "score"), ("supervisor", "sign_report"), ("supervisor", "advance"), ("room_staff", "advance"),
    ("room_staff", "score"), ("main_staff", "score"), ("main_staff", "sign_report"), ("expert", "advance"),
    ("expert", "approve_clarification"), ("chair", "approve_clarification"), ("room_staff", "watch"),
])
def test_who_may_not(kind: str, action: str) -> None:
    assert refused("not_allowed", require_role, Participant(kind, "xa-2"), action).status == 403  # type: ignore[arg-type]


@pytest.mark.parametrize("kind, action", [
    ("expert", "score"), ("expert", "sign_report"), ("chair", "score"), ("chair", "advance"),
    ("main_staff", "advance"), ("supervisor", "watch"), ("supervisor", "approve_clarification"),
])
def test_who_may(kind: str, action: str) -> None:
    require_role(Participant(kind, "xa-2"), action)  # type: ignore[arg-type]


def test_room_staff_confirm_their_own_room_only() -> None:
    staff = Participant("room_staff", "xa-2")
    require_role(staff, "confirm_room", room="xa-2")
    assert refused("other_room", require_role, staff, "confirm_room", room="hz-3").status == 403
    refused("other_room", require_role, staff, "confirm_room")


def test_an_unknown_action_is_bad_input() -> None:
    assert refused("invalid_input", require_role, Participant("expert", "xa-2"), "bribe").status == 422


def test_check_action_checks_the_role_before_the_step() -> None:
    refused("not_allowed", check_action, "scheduled", Participant("supervisor"), "score")
    check_action("detailed_review", Participant("expert", "xa-2"), "score")
    check_action("declarations", Participant("expert", "xa-2"), "sign_in")


def test_only_committee_members_join() -> None:
    require_member("e1", MEMBERS)
    assert refused("not_on_committee", require_member, "stranger", MEMBERS).status == 403


# ---------------------------------------------------------------------------- fault rules

H = timedelta(hours=1)
S = timedelta(seconds=1)


def rooms(*down: str, dropped_at: datetime | None = None) -> list[RoomFacts]:
    return [RoomFacts(r, r not in down, dropped_at if r in down else None) for r in sorted(ROOMS)]


def before(now: datetime, *down: str, **kw):
    return session_fault_outcome(rooms(*down), START, now, step="sign_in", **kw)


def test_every_room_up_is_on_time() -> None:
    outcome = before(START + 3 * H)
    assert outcome.outcome == "on_time" and outcome.rooms == () and outcome.next_deadline is None


def test_a_room_not_joined_is_on_time_up_to_and_including_the_start() -> None:
    outcome = before(START, "hz-3")
    assert (outcome.outcome, outcome.rooms, outcome.deadlines) == ("on_time", ("hz-3",), {"hz-3": START})


def test_a_late_room_delays_the_start_up_to_and_including_two_hours() -> None:
    assert before(START + S, "hz-3").outcome == "delayed"
    outcome = before(START + 2 * H, "hz-3")
    assert (outcome.outcome, outcome.next_deadline) == ("delayed", START + 2 * H)


def test_just_after_two_hours_the_tenderer_decides() -> None:
    outcome = before(START + 2 * H + S, "hz-3", "xa-2")
    assert (outcome.outcome, outcome.rooms, outcome.deadlines) == ("tenderer_decides", ("hz-3", "xa-2"), {})


def test_the_tenderers_decision_is_recorded() -> None:
    due = before(START + 3 * H, "hz-3")
    decision = record_decision(due, "continue_without", START + 3 * H)
    assert (decision.choice, decision.rooms, decision.decided_at) == ("continue_without", ("hz-3",), START + 3 * H)
    assert before(START + 3 * H, "hz-3", decision=decision).outcome == "on_time"
    postpone = record_decision(due, "postpone", START + 3 * H)
    assert before(START + 3 * H, "hz-3", decision=postpone).outcome == "suspend"
    assert refused("invalid_decision", record_decision, due, "wait", START).status == 422
    assert refused("no_decision_due", record_decision, before(START, "hz-3"), "postpone", START).status == 409


def dropped(now: datetime, *down: str, at: datetime) -> FaultOutcome:
    return session_fault_outcome(rooms(*down, dropped_at=at), START, now, step="initial_review")


def test_a_room_down_for_exactly_four_hours_still_continues() -> None:
    at = START + H
    outcome = dropped(at + 4 * H, "xa-2", at=at)
    assert (outcome.outcome, outcome.rooms, outcome.deadlines) == ("continue", ("xa-2",), {"xa-2": at + 4 * H})


def test_a_room_down_longer_than_four_hours_suspends_the_session() -> None:
    at = START + H
    outcome = dropped(at + 4 * H + S, "xa-2", at=at)
    assert (outcome.outcome, outcome.rooms) == ("suspend", ("xa-2",))


def test_the_session_survives_a_drop_and_continues_when_all_are_up() -> None:
    outcome = session_fault_outcome(rooms(), START, START + 5 * H, step="detailed_review")
    assert (outcome.outcome, outcome.rooms) == ("continue", ())


def test_each_down_room_has_its_own_window() -> None:
    facts_ = [RoomFacts("main-1", True), RoomFacts("xa-2", False, START + H), RoomFacts("hz-3", False, START + 2 * H)]
    outcome = session_fault_outcome(facts_, START, START + 5 * H, step="consolidation")
    assert (outcome.outcome, outcome.next_deadline) == ("continue", START + 5 * H)
    outcome = session_fault_outcome(facts_, START, START + 5 * H + S, step="consolidation")
    assert (outcome.outcome, outcome.rooms) == ("suspend", ("xa-2",))


def test_rules_are_configurable() -> None:
    rules = FaultRules(start_delay_max=30 * timedelta(minutes=1), rejoin_window=H)
    assert session_fault_outcome(rooms("hz-3"), START, START + H, rules, step="sign_in").outcome == "tenderer_decides"
    assert room_state(RoomFacts("x", False, START), START + H, scheduled_start=START, started=True,
                      rules=rules).state == "down"
    refused("invalid_input", FaultRules, rejoin_window=timedelta(0))
    assert NATIONAL == FaultRules(timedelta(hours=2), timedelta(hours=4))


def test_a_down_room_after_the_start_needs_a_past_drop_time() -> None:
    refused("invalid_input", room_state, RoomFacts("x", False), START, scheduled_start=START, started=True)
    refused("invalid_input", room_state, RoomFacts("x", False, START + H), START, scheduled_start=START, started=True)


def test_fault_rules_do_not_apply_to_a_finished_session() -> None:
    refused("wrong_step", session_fault_outcome, rooms("xa-2"), START, START, step="closed")


# ---------------------------------------------------------------------------- media


def test_media_roles() -> None:
    assert media_role(Participant("expert", "xa-2")) == "send_receive"
    assert media_role(Participant("chair", "main-1")) == "send_receive"
    assert media_role(Participant("supervisor", "main-1")) == "receive_only"
    assert media_role(Participant("main_staff")) == "receive_only"


@pytest.mark.parametrize("directions", [["recvonly", "sendrecv"], ["sendonly"]])
def test_a_receive_only_participant_cannot_offer_to_send(directions: list[str]) -> None:
    assert refused("receive_only", check_offer_directions, "receive_only", directions).status == 403


def test_allowed_offers() -> None:
    check_offer_directions("receive_only", ["recvonly", "recvonly", "inactive"])
    check_offer_directions("send_receive", ["sendrecv", "sendonly", "recvonly"])


def test_a_malformed_direction_or_role_is_bad_input() -> None:
    assert refused("bad_direction", check_offer_directions, "send_receive", ["send"]).status == 422
    refused("invalid_input", check_offer_directions, "admin", ["recvonly"])
