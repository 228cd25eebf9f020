"""The tracker: tags to people by their binding at the time, zone hysteresis, out-of-order
positions, the live feed's throttle, and a rebuild by replay."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from venue.model import Credential, Person, Position
from venue.tracker import Directory, Tracker, Transition

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)
ALICE, BOB = uuid.uuid4(), uuid.uuid4()


def directory() -> Directory:
    return Directory(
        [Credential(ALICE, "tag", "TAG-A", T0 - timedelta(days=1)),
         Credential(BOB, "tag", "TAG-B", T0 - timedelta(days=1), T0 + timedelta(minutes=10)),
         # TAG-B re-issued to Alice after Bob handed it back; a badge never tracks anyone.
         Credential(ALICE, "tag", "TAG-B", T0 + timedelta(minutes=10)),
         Credential(BOB, "badge", "CARD-1", T0 - timedelta(days=1))],
        [Person(ALICE, "Alice", "expert"), Person(BOB, "Bob", "bidder")])


def zone_left_or_right(floor: str, x: float, y: float) -> str | None:
    """Room A left of x = 10, room B right of it up to x = 20, nothing beyond."""
    return "A" if x < 10 else "B" if x < 20 else None


def at(seconds: float, x: float, tag: str = "TAG-A", y: float = 5.0, floor: str = "F1") -> Position:
    return Position(tag, T0 + timedelta(seconds=seconds), floor, x, y)


def tracker(**options: int) -> Tracker:
    return Tracker(directory(), zone_left_or_right, **options)


def test_a_tag_means_the_person_it_was_bound_to_at_the_time() -> None:
    d = directory()
    assert d.person_at("TAG-B", T0) == BOB
    assert d.person_at("TAG-B", T0 + timedelta(minutes=10)) == ALICE  # [valid_from, valid_until)
    assert d.person_at("TAG-A", T0 - timedelta(days=2)) is None
    assert d.person_at("CARD-1", T0) is None
    assert d.person_at("NOBODY", T0) is None


def test_first_sight_sets_the_zone_and_reports_it() -> None:
    t = tracker()
    assert t.update([at(0, 5)]) == [Transition(ALICE, T0, None, None, "F1", "A")]
    state = t.state(ALICE)
    assert (state.zone_floor, state.zone, state.since, state.last_seen, state.tag) == ("F1", "A", T0, T0, "TAG-A")


def test_jitter_at_a_boundary_does_not_flap() -> None:
    t = tracker()
    t.update([at(0, 9.0)])
    # Standing in the doorway: the fixes fall on both sides, never three times running on B.
    jitter = [at(1 + i, 10.1 if i % 3 != 2 else 9.9) for i in range(30)]
    assert t.update(jitter) == []
    assert t.state(ALICE).zone == "A"
    assert t.state(ALICE).since == T0


def test_a_zone_is_entered_after_three_positions_in_it_dated_at_the_first() -> None:
    t = tracker()
    t.update([at(0, 5)])
    assert t.update([at(1, 12), at(2, 13)]) == []
    assert t.state(ALICE).zone == "A"
    assert t.update([at(3, 14)]) == [Transition(ALICE, T0 + timedelta(seconds=1), "F1", "A", "F1", "B")]
    assert (t.state(ALICE).zone, t.state(ALICE).since) == ("B", T0 + timedelta(seconds=1))


def test_leaving_every_zone_needs_the_same_agreement() -> None:
    t = tracker()
    t.update([at(0, 15)])
    assert t.update([at(1, 25), at(2, 26), at(3, 15)]) == []  # back in B before the third
    assert t.update([at(4, 30), at(5, 31), at(6, 32)]) == [
        Transition(ALICE, T0 + timedelta(seconds=4), "F1", "B", None, None)]
    assert t.state(ALICE).zone is None and t.state(ALICE).zone_floor is None


def test_a_streak_towards_another_zone_starts_over() -> None:
    t = tracker()
    t.update([at(0, 5)])
    # Two outside every zone, then B three times: B is entered, dated at its own first position.
    assert t.update([at(1, 25), at(2, 25), at(3, 15), at(4, 15), at(5, 15)]) == [
        Transition(ALICE, T0 + timedelta(seconds=3), "F1", "A", "F1", "B")]


def test_enter_after_is_configurable() -> None:
    t = tracker(enter_after=1)
    t.update([at(0, 5)])
    assert len(t.update([at(1, 15)])) == 1
    with pytest.raises(ValueError):
        tracker(enter_after=0)


def test_an_older_position_changes_no_state() -> None:
    t = tracker()
    t.update([at(10, 5)])
    assert t.update([at(5, 15), at(6, 15), at(7, 15), at(10, 15)]) == []  # older, or the same instant
    state = t.state(ALICE)
    assert (state.x, state.last_seen, state.zone, len(state.trail)) == (5, T0 + timedelta(seconds=10), "A", 1)


def test_disorder_inside_a_batch_is_applied_in_time_order() -> None:
    t = tracker()
    t.update([at(0, 5)])
    transitions = t.update([at(3, 15), at(1, 15), at(2, 15)])
    assert transitions == [Transition(ALICE, T0 + timedelta(seconds=1), "F1", "A", "F1", "B")]
    assert t.state(ALICE).last_seen == T0 + timedelta(seconds=3)


def test_unbound_tags_are_counted_not_tracked() -> None:
    t = tracker()
    assert t.update([at(0, 5, tag="NOBODY"), at(0, 5, tag="CARD-1")]) == []
    assert len(t) == 0 and t.unknown_tags == 2


def test_a_reissued_tag_moves_its_new_holder() -> None:
    t = tracker()
    t.update([at(0, 5, tag="TAG-B"), at(600, 15, tag="TAG-B")])
    assert t.state(BOB).last_seen == T0
    assert t.state(ALICE).last_seen == T0 + timedelta(seconds=600)


def test_two_tags_of_one_person_are_followed_in_time_order() -> None:
    # From minute 10 Alice carries TAG-A and the re-issued TAG-B: one track, the fixes interleaved.
    t = tracker()
    t.update([at(601, 15, tag="TAG-B"), at(600, 15), at(603, 5, tag="TAG-B"), at(602, 15)])
    trail = t.state(ALICE).trail
    assert [p.t for p in trail] == [T0 + timedelta(seconds=s) for s in (600, 601, 602, 603)]
    assert [p.tag for p in trail] == ["TAG-A", "TAG-B", "TAG-A", "TAG-B"]


def test_fixes_of_one_instant_count_once_towards_a_zone() -> None:
    t = tracker()
    t.update([at(0, 5)])
    assert t.update([at(1, 15), at(1, 15), at(1, 15)]) == []  # one fix sent three times, not three fixes
    assert len(t.state(ALICE).trail) == 2
    assert t.update([at(2, 15), at(3, 15)]) == [Transition(ALICE, T0 + timedelta(seconds=1), "F1", "A", "F1", "B")]


def test_the_trail_keeps_the_last_twenty_positions() -> None:
    t = tracker()
    t.update([at(i, 1 + i * 0.1) for i in range(50)])
    trail = t.state(ALICE).trail
    assert len(trail) == 20 and trail[0].t == T0 + timedelta(seconds=30) and trail[-1].t == T0 + timedelta(seconds=49)


def test_the_live_feed_names_the_moved_at_most_every_half_second() -> None:
    t = tracker()
    t.update([at(0, 5), at(0, 15, tag="TAG-B")])
    assert {s.person for s in t.live_due(100.0)} == {ALICE, BOB}
    t.update([at(1, 5)])
    assert t.live_due(100.2) == []
    assert [s.person for s in t.live_due(100.5)] == [ALICE]
    assert t.live_due(200.0) == []  # nobody moved since
    assert [s.person for s in t.moved()] == [ALICE]  # the last update's


def test_a_rebind_keeps_the_state() -> None:
    t = tracker()
    t.update([at(0, 5)])
    t.rebind(Directory([], []), zone_left_or_right)
    assert t.state(ALICE).zone == "A"
    assert t.update([at(1, 15), at(2, 15), at(3, 15)]) == []  # the tag is bound to nobody now


def test_a_replay_of_the_last_positions_rebuilds_the_state() -> None:
    live = tracker()
    history = [at(i, 5 if i < 40 else 15) for i in range(60)]
    for start in range(0, 60, 7):
        live.update(history[start:start + 7])
    rebuilt = tracker()
    rebuilt.update(history[-20:])  # what the loader reads back: the last 20 per tag
    was, now = live.state(ALICE), rebuilt.state(ALICE)
    assert (now.zone, now.x, now.last_seen, now.trail) == (was.zone, was.x, was.last_seen, was.trail)


def test_states_lists_everyone_seen() -> None:
    t = tracker()
    t.update([at(0, 5), at(0, 15, tag="TAG-B")])
    assert {s.person for s in t.states()} == {ALICE, BOB}
    t.forget(BOB)
    assert [s.person for s in t.states()] == [ALICE]
