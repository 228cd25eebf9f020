"""Opening-hall rules: steps, who may act, lot outcomes, inputs, the record and its confirmation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from trading.hall import (
    HallRefused, InvalidInput, NotHost, Viewer, actions, amounts_in_words, b64url_bytes, check_closable, check_confirmable,
    check_deadline_passed, check_window_open, current_step, exclusion_reason, lot_outcomes, opening_failed,
    record_bytes, record_confirmation_message, require_host, require_step, share_subsets, step_after_window,
    text_field,
)

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=timezone.utc)
HOST = Viewer(host=True, bidder=False, custodian_position=None, signed_in=False)
BIDDER = Viewer(host=False, bidder=True, custodian_position=None, signed_in=True)
NEWCOMER = Viewer(host=False, bidder=True, custodian_position=None, signed_in=False)
CUSTODIAN = Viewer(host=False, bidder=False, custodian_position=2, signed_in=False)
FLAGS = dict(deadline_passed=False, window_over=False, confirmed=False, all_confirmed=False, confirm_over=False)


def test_the_hall_is_locked_until_it_opens_and_waits_after() -> None:
    deadline = NOW + timedelta(minutes=40)
    assert current_step(None, deadline, 30, NOW) == "locked"
    assert current_step(None, deadline, 45, NOW) == "waiting"
    assert current_step("reading", deadline, 30, NOW) == "reading"


def test_wrong_step_names_what_the_act_needs() -> None:
    with pytest.raises(HallRefused, match="needs 'decryption'") as caught:
        require_step("reading", ("decryption",), "decrypt")
    assert caught.value.code == "wrong_step" and caught.value.status == 409
    with pytest.raises(NotHost):
        require_host(BIDDER)


def test_deadline_and_window_are_decided_by_the_server_clock() -> None:
    with pytest.raises(HallRefused) as caught:
        check_deadline_passed(NOW + timedelta(seconds=1), NOW)
    assert caught.value.code == "before_deadline"
    check_deadline_passed(NOW, NOW)
    with pytest.raises(HallRefused) as caught:
        check_window_open(NOW, NOW)
    assert caught.value.code == "window_closed"


@pytest.mark.parametrize(("rule", "left", "step"), [
    ("custodians", 1, "custodians"), ("custodians", 0, "reading"), ("void", 3, "reading")])
def test_after_the_window_the_rule_decides(rule: str, left: int, step: str) -> None:
    assert step_after_window(rule, left) == step


def test_actions_follow_role_and_step() -> None:
    assert actions("waiting", HOST, **FLAGS)[0] == "start_sign_in"
    assert "close_submissions" not in actions("sign_in", HOST, **FLAGS)
    assert "close_submissions" in actions("sign_in", HOST, **{**FLAGS, "deadline_passed": True})
    assert actions("sign_in", NEWCOMER, **FLAGS) == ["sign_in"]
    assert "sign_in" not in actions("sign_in", BIDDER, **FLAGS)
    assert "decrypt" in actions("decryption", BIDDER, **FLAGS)
    assert "decrypt" not in actions("decryption", BIDDER, **{**FLAGS, "window_over": True})
    assert actions("custodians", CUSTODIAN, **FLAGS) == ["release_shares"]
    assert actions("decryption", CUSTODIAN, **FLAGS) == []
    assert "confirm" in actions("record", BIDDER, **FLAGS)
    assert "confirm" not in actions("record", BIDDER, **{**FLAGS, "confirmed": True})
    assert "close" not in actions("record", HOST, **FLAGS)
    assert "close" in actions("record", HOST, **{**FLAGS, "confirm_over": True})
    assert actions("closed", HOST, **FLAGS) == []


def test_deposits_decide_exclusion() -> None:
    assert exclusion_reason("confirmed") is None
    assert exclusion_reason("missing") == "deposit missing"
    assert exclusion_reason("unchecked") == "deposit not confirmed"


def test_lots_below_the_minimum_fail_and_all_failed_fails_the_opening() -> None:
    lots = [("L1", "一标段"), ("L2", "二标段")]
    outcomes = lot_outcomes(lots, {"L1": 3, "L2": 2}, 3)
    assert outcomes["L1"]["status"] == "open" and outcomes["L2"]["status"] == "failed"
    assert "2 valid bid(s)" in str(outcomes["L2"]["reason"])
    assert opening_failed(outcomes) is None
    failed = lot_outcomes(lots, {"L1": 1}, 3)
    assert opening_failed(failed) == "L1: 1 valid bid(s); the tender needs at least 3; L2: 0 valid bid(s); " \
                                     "the tender needs at least 3"


def test_text_fields_are_trimmed_bounded_and_clean() -> None:
    assert text_field({"text": "  异议  "}, "text", 10) == "异议"
    for bad in ({"text": ""}, {"text": 5}, {}, {"text": "x" * 11}, {"text": "a\x00b"}):
        with pytest.raises(InvalidInput):
            text_field(bad, "text", 10)
    assert text_field({}, "note", 10, required=False) == ""


def test_b64url_values_must_have_the_exact_size() -> None:
    assert b64url_bytes("AAAA", 3, "k") == bytes(3)
    for bad in ("AAAA", "!!!!", "", None):
        with pytest.raises(InvalidInput):
            b64url_bytes(bad, 4, "k")


def test_share_subsets_try_every_k_combination() -> None:
    assert list(share_subsets([b"a", b"b", b"c"], 2)) == [(b"a", b"b"), (b"a", b"c"), (b"b", b"c")]
    assert list(share_subsets([b"a"], 2)) == []


def test_record_digest_is_over_canonical_json_and_the_message_binds_tender_and_digest() -> None:
    data, sha = record_bytes({"b": 1, "a": "开标"})
    assert data == '{"a":"开标","b":1}'.encode()
    assert len(sha) == 64
    assert record_confirmation_message("t-1", sha) == f"tenderhall-opening-record/1\nt-1\n{sha}".encode()


def test_confirmation_and_closing_rules() -> None:
    with pytest.raises(HallRefused) as caught:
        check_confirmable("record", NOW - timedelta(seconds=1), NOW, False)
    assert caught.value.code == "confirm_deadline_passed"
    with pytest.raises(HallRefused) as caught:
        check_confirmable("record", NOW, NOW, True)
    assert caught.value.code == "already_confirmed"
    with pytest.raises(HallRefused) as caught:
        check_closable(False, NOW + timedelta(minutes=1), NOW, None)
    assert caught.value.code == "confirmations_pending"
    check_closable(False, NOW - timedelta(minutes=1), NOW, None)
    with pytest.raises(InvalidInput):
        check_closable(True, None, NOW, NOW - timedelta(hours=1))


def test_money_fields_of_a_summary_get_their_amount_in_words() -> None:
    fields = [{"name": "price", "type": "money"}, {"name": "deposit", "type": "money"}, {"name": "days", "type": "integer"}]
    words = amounts_in_words({"price": "1234567.89", "deposit": "not money", "days": 30}, fields)
    assert words == {"price": "壹佰贰拾叁万肆仟伍佰陆拾柒元捌角玖分"}
    assert amounts_in_words(None, fields) == {}
