"""The venue's alert rules: each one raising, not raising just below its threshold, and raising once."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from venue import rules as rules_module
from tenderhall.i18n import load_catalogues
from venue.model import Alert, Door, DoorEvent, Person, Zone
from venue.rules import Assignment, Crossing, Grant, Memory, Presence, RuleConfig, Workflow, is_after_hours, parse_clock
from venue.ruleset import Rules

T0 = datetime(2025, 3, 3, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai: the venue is open
SQUARE = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0), (0.0, 0.0))
ROOM1 = Zone("F1", "room1", "evaluation_room", "评标室1", SQUARE, capacity=2, closed_area=True)
ROOM2 = Zone("F1", "room2", "evaluation_room", "评标室2", SQUARE, capacity=8, closed_area=True)
CORRIDOR = Zone("F1", "iso", "isolation_corridor", "隔离通道", SQUARE, closed_area=True)
HALL = Zone("F1", "hall", "opening_hall", "开标厅", SQUARE)
WAITING = Zone("F1", "wait", "waiting_area", "等候区", SQUARE)
DOOR = Door("F1", "d1", "R1", (5.0, 0.0), inside_zone="room1", outside_zone="iso", capacity=1)


def at_seconds(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def person(role: str = "expert", name: str | None = None) -> Person:
    return Person(uuid.uuid4(), name or f"{role}-{uuid.uuid4().hex[:4]}", role)  # type: ignore[arg-type]


def seen(who: Person, zone: Zone | None, t: float, x: float = 1.0, y: float = 1.0, since: float | None = None,
         floor: str = "F1") -> Presence:
    return Presence(who, floor, x, y, at_seconds(t), zone, at_seconds(t if since is None else since), tag=f"tag-{who.name}")


def rules_of(**overrides: object) -> Rules:
    return Rules(RuleConfig(**overrides))  # type: ignore[arg-type]


def codes(alerts: list) -> list[str]:
    return [a.rule for a in alerts]


# --------------------------------------------------------------------------- memory


def test_memory_raises_once_per_ongoing_condition_and_again_after_it_ended() -> None:
    memory = Memory(clear_seconds=5)
    assert memory.hold(("k",), at_seconds(0)) is True
    assert memory.hold(("k",), at_seconds(1)) is False
    memory.release(("k",), at_seconds(2))
    assert memory.hold(("k",), at_seconds(4)) is False  # false for 2 s only: the same condition
    memory.release(("k",), at_seconds(5))
    memory.release(("k",), at_seconds(10))  # false for 5 s: ended
    assert memory.hold(("k",), at_seconds(11)) is True


def test_memory_threshold_is_more_than() -> None:
    memory = Memory(clear_seconds=5)
    assert memory.hold(("k",), at_seconds(0), after=10) is False
    assert memory.hold(("k",), at_seconds(10), after=10) is False
    assert memory.hold(("k",), at_seconds(10.5), after=10) is True


# --------------------------------------------------------------------------- wrong zone


def test_person_in_a_zone_they_are_not_allowed_in_raises_once() -> None:
    rules, bidder = rules_of(), person("bidder")
    allowed = lambda who, zone, now: zone.kind != "evaluation_room"  # noqa: E731
    assert rules.on_positions([seen(bidder, HALL, 0)], [], Workflow(), allowed, at_seconds(0)) == []
    alerts = rules.on_positions([seen(bidder, ROOM1, 1)], [], Workflow(), allowed, at_seconds(1))
    assert codes(alerts) == ["wrong_zone"]
    assert alerts[0].people == (bidder.id,) and alerts[0].zone == "room1" and alerts[0].severity == "high"
    assert alerts[0].evidence[0]["type"] == "position" and alerts[0].evidence[0]["x"] == "1.00"
    assert rules.on_positions([seen(bidder, ROOM1, 2)], [], Workflow(), allowed, at_seconds(2)) == []
    # Into another forbidden zone: another condition.
    assert codes(rules.on_positions([seen(bidder, ROOM2, 3)], [], Workflow(), allowed, at_seconds(3))) == ["wrong_zone"]


def test_allowed_zone_or_no_policy_raises_nothing() -> None:
    rules, bidder = rules_of(), person("bidder")
    assert rules.on_positions([seen(bidder, ROOM1, 0)], [], Workflow(), lambda *a: True, at_seconds(0)) == []
    assert rules.on_positions([seen(bidder, ROOM1, 1)], [], Workflow(), None, at_seconds(1)) == []


# --------------------------------------------------------------------------- expert leaves


def _seat(evaluating: bool = True, room: tuple[str, str] | None = ("F1", "room1")) -> Assignment:
    return Assignment(tender=uuid.uuid4(), session=uuid.uuid4(), room=room, evaluating=evaluating)


def test_expert_leaving_the_room_then_the_closed_area_during_the_evaluation() -> None:
    rules, expert = rules_of(), person("expert", "张三")
    wf = Workflow(experts={expert.id: _seat()})
    assert rules.on_positions([seen(expert, ROOM1, 0)], [], wf, None, at_seconds(0)) == []
    alerts = rules.on_positions([seen(expert, CORRIDOR, 10)], [], wf, None, at_seconds(10))
    assert codes(alerts) == ["expert_left_room"] and "张三" in alerts[0].message
    left = alerts[0]
    assert (left.phrase, dict(left.params)) == ("expert_left_room.in", {"name": "张三", "zone": CORRIDOR.name})
    assert left.message == f"expert 张三 left the evaluation room during the evaluation and is in {CORRIDOR.name}"
    assert rules.on_positions([seen(expert, CORRIDOR, 11)], [], wf, None, at_seconds(11)) == []
    alerts = rules.on_positions([seen(expert, HALL, 20)], [], wf, None, at_seconds(20))
    assert codes(alerts) == ["expert_left_closed_area"] and alerts[0].severity == "critical"


def test_expert_not_yet_in_the_room_or_outside_the_evaluation_has_not_left() -> None:
    rules, expert = rules_of(), person("expert")
    wf = Workflow(experts={expert.id: _seat()})
    assert rules.on_positions([seen(expert, HALL, 0)], [], wf, None, at_seconds(0)) == []  # on the way in
    paused = Workflow(experts={expert.id: _seat(evaluating=False)})
    rules.on_positions([seen(expert, ROOM1, 1)], [], paused, None, at_seconds(1))
    assert rules.on_positions([seen(expert, HALL, 2)], [], paused, None, at_seconds(2)) == []


def test_expert_out_of_the_room_just_below_the_threshold_raises_nothing() -> None:
    rules, expert = rules_of(left_room_seconds=30), person("expert")
    wf = Workflow(experts={expert.id: _seat()})
    rules.on_positions([seen(expert, ROOM1, 0)], [], wf, None, at_seconds(0))
    assert rules.on_positions([seen(expert, CORRIDOR, 1)], [], wf, None, at_seconds(1)) == []
    assert rules.on_positions([seen(expert, CORRIDOR, 31)], [], wf, None, at_seconds(31)) == []
    assert codes(rules.on_positions([seen(expert, CORRIDOR, 32)], [], wf, None, at_seconds(32))) == ["expert_left_room"]


def test_the_tenders_scheduled_window_stands_in_for_a_session() -> None:
    rules, expert = rules_of(), person("expert")
    seat = Assignment(tender=uuid.uuid4(), window=(at_seconds(100), at_seconds(1000)))
    wf = Workflow(experts={expert.id: seat})
    rules.on_positions([seen(expert, CORRIDOR, 0)], [], wf, None, at_seconds(0))
    assert rules.on_positions([seen(expert, HALL, 50)], [], wf, None, at_seconds(50)) == []  # before the window
    rules.on_positions([seen(expert, CORRIDOR, 200)], [], wf, None, at_seconds(200))
    alerts = rules.on_positions([seen(expert, HALL, 300)], [], wf, None, at_seconds(300))
    # No room is known without a session: only the closed area counts.
    assert codes(alerts) == ["expert_left_closed_area"]


# --------------------------------------------------------------------------- proximity


def test_expert_near_a_bidder_for_more_than_ten_seconds() -> None:
    rules, expert, bidder = rules_of(), person("expert"), person("bidder")
    tender = uuid.uuid4()
    wf = Workflow(experts={expert.id: Assignment(tender=tender)}, parties={bidder.id: frozenset({tender})})
    out = []
    for s in range(0, 11):
        out += rules.on_positions([seen(expert, HALL, s, 5.0, 5.0), seen(bidder, HALL, s, 6.5, 5.0)], [], wf, None,
                                  at_seconds(s))
    assert out == []  # exactly 10 s: not more than 10
    alerts = rules.on_positions([seen(bidder, HALL, 11, 6.5, 5.2)], [], wf, None, at_seconds(11))
    assert codes(alerts) == ["expert_near_party"]
    assert set(alerts[0].people) == {expert.id, bidder.id} and alerts[0].severity == "critical"
    assert {e["person"] for e in alerts[0].evidence} == {str(expert.id), str(bidder.id)}
    later = rules.on_positions([seen(expert, HALL, 20, 5.0, 5.0)], [], wf, None, at_seconds(20))
    assert later == []  # the same meeting


def test_expert_and_bidder_just_over_two_metres_apart_raise_nothing() -> None:
    rules, expert, bidder = rules_of(), person("expert"), person("agent")
    out = []
    for s in range(0, 30):
        out += rules.on_positions([seen(expert, HALL, s, 5.0, 5.0), seen(bidder, HALL, s, 7.01, 5.0)], [],
                                  Workflow(), None, at_seconds(s))
    assert out == []


def test_a_stale_position_is_nobody_nearby() -> None:
    rules, expert, bidder = rules_of(), person("expert"), person("bidder")
    rules.on_positions([seen(bidder, HALL, 0, 5.0, 5.0)], [], Workflow(), None, at_seconds(0))
    out = []
    for s in range(10, 30):
        out += rules.on_positions([seen(expert, HALL, s, 5.5, 5.0)], [], Workflow(), None, at_seconds(s))
    assert out == []


def test_proximity_parted_and_met_again_raises_a_second_alert() -> None:
    rules, expert, bidder = rules_of(), person("expert"), person("bidder")
    def together(s: int) -> list:
        return rules.on_positions([seen(expert, HALL, s, 5.0, 5.0), seen(bidder, HALL, s, 6.0, 5.0)], [], Workflow(),
                                  None, at_seconds(s))
    first = [a for s in range(0, 12) for a in together(s)]
    assert codes(first) == ["expert_near_party"] and first[0].severity == "high"
    for s in range(12, 20):  # apart for 8 s (> clear_seconds)
        rules.on_positions([seen(expert, HALL, s, 5.0, 5.0), seen(bidder, HALL, s, 9.0, 9.0)], [], Workflow(), None,
                           at_seconds(s))
    second = [a for s in range(20, 32) for a in together(s)]
    assert codes(second) == ["expert_near_party"]


def test_experts_of_different_sessions_meeting_outside_their_rooms() -> None:
    rules, a, b = rules_of(), person("expert"), person("expert")
    wf = Workflow(experts={a.id: _seat(room=("F1", "room1")), b.id: _seat(room=("F1", "room2"))})
    def meet(s: int) -> list:
        return rules.on_positions([seen(a, CORRIDOR, s, 3.0, 3.0), seen(b, CORRIDOR, s, 4.0, 3.0)], [], wf, None,
                                  at_seconds(s))
    assert [x for s in range(0, 11) for x in meet(s)] == []  # 10 s: not more than 10
    out = meet(11)
    assert codes(out) == ["experts_meeting"] and set(out[0].people) == {a.id, b.id}
    assert [x for s in range(12, 30) for x in meet(s)] == []


def test_experts_of_one_session_or_each_in_their_own_room_are_not_meeting() -> None:
    rules, a, b, c = rules_of(), person("expert"), person("expert"), person("expert")
    same = _seat()
    wf = Workflow(experts={a.id: same, b.id: same, c.id: _seat(room=("F1", "room2"))})
    out = []
    for s in range(0, 15):
        out += rules.on_positions([seen(a, CORRIDOR, s, 3.0, 3.0), seen(b, CORRIDOR, s, 4.0, 3.0)], [], wf, None,
                                  at_seconds(s))
        # a wall apart: each in their own room
        out += rules.on_positions([seen(a, ROOM1, s, 9.9, 3.0), seen(c, ROOM2, s, 10.1, 3.0)], [], wf, None,
                                  at_seconds(s))
    assert [x for x in codes(out) if x != "expert_left_room"] == []


def test_proximity_checks_neighbouring_cells_only() -> None:
    rules = rules_of()
    experts = [person("expert") for _ in range(50)]
    bidders = [person("bidder") for _ in range(50)]
    wf = Workflow()
    for s in range(0, 12):
        batch = [seen(e, HALL, s, 10.0 * i, 0.0) for i, e in enumerate(experts)]
        batch += [seen(b, HALL, s, 10.0 * i + 1.0, 50.0) for i, b in enumerate(bidders)]
        assert rules.on_positions(batch, [], wf, None, at_seconds(s)) == []
    assert len(rules.experts.cells) == len(rules.parties.cells) == 50


# --------------------------------------------------------------------------- silence, dwell, hours, capacity


def test_tag_silent_in_the_closed_area_for_more_than_thirty_seconds() -> None:
    rules, expert = rules_of(), person("expert")
    p = seen(expert, ROOM1, 0)
    assert rules.tick([p], Workflow(), at_seconds(30)) == []
    alerts = rules.tick([p], Workflow(), at_seconds(31))
    assert codes(alerts) == ["tag_silent"] and alerts[0].severity == "medium"
    assert rules.tick([p], Workflow(), at_seconds(32)) == []
    assert rules.tick([seen(expert, HALL, 0)], Workflow(), at_seconds(100)) == []  # outside: no matter


def test_tag_silent_again_after_speaking_is_a_new_alert() -> None:
    rules, expert = rules_of(), person("expert")
    assert codes(rules.tick([seen(expert, ROOM1, 0)], Workflow(), at_seconds(31))) == ["tag_silent"]
    assert rules.tick([seen(expert, ROOM1, 40)], Workflow(), at_seconds(40)) == []
    assert codes(rules.tick([seen(expert, ROOM1, 40)], Workflow(), at_seconds(71))) == ["tag_silent"]


def test_dwell_in_the_isolation_corridor_over_five_minutes() -> None:
    rules, staff = rules_of(), person("staff")
    assert rules.tick([seen(staff, CORRIDOR, 300, since=0)], Workflow(), at_seconds(300)) == []
    alerts = rules.tick([seen(staff, CORRIDOR, 301, since=0)], Workflow(), at_seconds(301))
    assert codes(alerts) == ["dwell"] and alerts[0].zone == "iso"
    assert rules.tick([seen(staff, CORRIDOR, 400, since=0)], Workflow(), at_seconds(400)) == []
    assert rules.tick([seen(staff, HALL, 4000, since=0)], Workflow(), at_seconds(4000)) == []


def test_presence_after_hours_in_the_venues_time_zone() -> None:
    config = RuleConfig(opens=parse_clock("07:30"), closes=parse_clock("20:00"))
    evening = datetime(2025, 3, 3, 12, 0, tzinfo=timezone.utc)  # 20:00 in Shanghai
    assert is_after_hours(config, evening) and not is_after_hours(config, evening - timedelta(seconds=1))
    assert is_after_hours(RuleConfig(opens=time(22, 0), closes=time(6, 0)), T0)  # an overnight shift: 10:00 is off
    rules, visitor = Rules(config), person("visitor")
    assert rules.tick([seen(visitor, HALL, 0)], Workflow(), evening - timedelta(seconds=1)) == []
    late = seen(visitor, HALL, 0)
    late = Presence(late.person, late.floor, late.x, late.y, evening, late.zone, late.since)
    alerts = rules.tick([late], Workflow(), evening)
    assert codes(alerts) == ["after_hours"]
    assert rules.tick([late], Workflow(), evening + timedelta(seconds=1)) == []
    staff = Rules(RuleConfig(after_hours_exempt=frozenset({"staff"})))
    assert staff.tick([Presence(person("staff"), "F1", 1, 1, evening, HALL, evening)], Workflow(), evening) == []
    with pytest.raises(ValueError):
        parse_clock("7h30")


def test_zone_over_capacity_for_more_than_five_seconds() -> None:
    rules = rules_of()
    crowd = [person("expert") for _ in range(3)]
    assert rules.tick([seen(p, ROOM1, 0) for p in crowd[:2]], Workflow(), at_seconds(0)) == []  # at capacity
    out = []
    for s in range(1, 7):
        out += rules.tick([seen(p, ROOM1, s) for p in crowd], Workflow(), at_seconds(s))
    assert out == []  # over for 5 s: not more than 5
    alerts = rules.tick([seen(p, ROOM1, 7) for p in crowd], Workflow(), at_seconds(7))
    assert codes(alerts) == ["over_capacity"] and set(alerts[0].people) == {p.id for p in crowd}
    assert rules.tick([seen(p, ROOM1, 8) for p in crowd], Workflow(), at_seconds(8)) == []


# --------------------------------------------------------------------------- badge and tag, tailgating, doors


def test_badge_granted_into_a_room_while_the_tag_stays_elsewhere() -> None:
    rules, expert = rules_of(), person("expert")
    rules.on_positions([seen(expert, WAITING, 0, since=0)], [], Workflow(), None, at_seconds(0))
    assert rules.on_grant(Grant(DOOR, at_seconds(5), expert.id), Workflow(), at_seconds(5)) == []
    assert rules.on_positions([seen(expert, WAITING, 35, since=0)], [], Workflow(), None, at_seconds(35)) == []
    alerts = rules.on_positions([seen(expert, WAITING, 36, since=0)], [], Workflow(), None, at_seconds(36))
    assert codes(alerts) == ["badge_tag_mismatch"] and alerts[0].evidence[0]["type"] == "grant"
    assert rules.tick([seen(expert, WAITING, 40, since=0)], Workflow(), at_seconds(40)) == []


def test_badge_and_tag_together_raise_nothing() -> None:
    rules, expert = rules_of(), person("expert")
    rules.on_grant(Grant(DOOR, at_seconds(0), expert.id), Workflow(), at_seconds(0))
    assert rules.on_positions([seen(expert, CORRIDOR, 1)], [], Workflow(), None, at_seconds(1)) == []  # the outside
    assert rules.on_positions([seen(expert, ROOM1, 3)], [], Workflow(), None, at_seconds(3)) == []
    assert rules.pending == {}
    # Later walks elsewhere are no longer about that badge.
    assert rules.tick([seen(expert, WAITING, 100, since=60)], Workflow(), at_seconds(100)) == []


def test_tailgating_two_crossed_on_one_grant() -> None:
    rules, holder, follower = rules_of(), person("expert"), person("bidder", "李四")
    wf = Workflow(people={holder.id: holder, follower.id: follower})
    assert rules.on_grant(Grant(DOOR, at_seconds(0), holder.id), wf, at_seconds(0)) == []
    assert rules.on_positions([], [Crossing(holder.id, "F1", at_seconds(1), "iso", "room1")], wf, None,
                              at_seconds(2)) == []
    alerts = rules.on_positions([], [Crossing(follower.id, "F1", at_seconds(3), "iso", "room1")], wf, None,
                                at_seconds(4))
    assert codes(alerts) == ["tailgating"] and set(alerts[0].people) == {holder.id, follower.id}
    assert "李四" in alerts[0].message
    assert alerts[0].phrase == "tailgating" and alerts[0].params["count"] == "2" and alerts[0].params["role"] == "expert"
    assert alerts[0].message == rules_module.PHRASES["tailgating"].format(**alerts[0].params)
    assert [e["type"] for e in alerts[0].evidence] == ["grant", "crossing", "crossing"]
    again = rules.on_positions([], [Crossing(follower.id, "F1", at_seconds(4), "iso", "room1")], wf, None, at_seconds(5))
    assert again == []


def test_crossings_with_own_grants_or_after_the_window_are_not_tailgating() -> None:
    rules, a, b, c = rules_of(), person("expert"), person("expert"), person("expert")
    rules.on_grant(Grant(DOOR, at_seconds(0), a.id), Workflow(), at_seconds(0))
    rules.on_grant(Grant(DOOR, at_seconds(2), b.id), Workflow(), at_seconds(2))
    crossings = [Crossing(a.id, "F1", at_seconds(1), "iso", "room1"), Crossing(b.id, "F1", at_seconds(3), "iso", "room1"),
                 Crossing(c.id, "F1", at_seconds(11), "iso", "room1")]  # 9 s after the last grant: past 8 s
    assert rules.on_positions([], crossings, Workflow(), None, at_seconds(12)) == []
    wide = Door("F1", "d2", "R2", (0.0, 5.0), inside_zone="room2", outside_zone="iso", capacity=2)
    rules.on_grant(Grant(wide, at_seconds(20), a.id), Workflow(), at_seconds(20))
    two = [Crossing(a.id, "F1", at_seconds(21), "iso", "room2"), Crossing(c.id, "F1", at_seconds(22), "iso", "room2")]
    assert rules.on_positions([], two, Workflow(), None, at_seconds(22)) == []  # a door for two


def test_a_forced_door_raises_once() -> None:
    rules = rules_of()
    event = DoorEvent("R1", at_seconds(0), "forced")
    alerts = rules.on_door_event(event, DOOR, at_seconds(0))
    assert codes(alerts) == ["door_forced"] and alerts[0].severity == "critical" and alerts[0].zone == "room1"
    assert rules.on_door_event(event, DOOR, at_seconds(1)) == []
    assert rules.on_door_event(DoorEvent("R1", at_seconds(2), "opened"), DOOR, at_seconds(2)) == []


def test_a_forbidden_zone_passed_through_within_one_batch_is_caught_at_its_crossing() -> None:
    rules, bidder = rules_of(), person("bidder")
    wf = Workflow(people={bidder.id: bidder})
    allowed = lambda who, zone, now: zone.kind != "isolation_corridor"  # noqa: E731
    crossings = [Crossing(bidder.id, "F1", at_seconds(1), "hall", "iso", CORRIDOR),
                 Crossing(bidder.id, "F1", at_seconds(3), "iso", "wait", WAITING)]
    alerts = rules.on_positions([seen(bidder, WAITING, 4)], crossings, wf, allowed, at_seconds(4))
    assert codes(alerts) == ["wrong_zone"] and alerts[0].zone == "iso" and alerts[0].evidence[0]["type"] == "crossing"


def test_people_gone_quiet_long_ago_raise_nothing_after_a_restart() -> None:
    rules, crowd = rules_of(), [person("staff") for _ in range(3)]
    hours_ago = [seen(p, ROOM1, 0, since=0) for p in crowd] + [seen(person("staff"), CORRIDOR, 0, since=0)]
    for s in (7200, 7201, 7210):  # silent for two hours: before the restart, not now
        assert rules.tick(hours_ago, Workflow(), at_seconds(s)) == []


def test_every_rule_of_the_catalogue_has_a_class_and_a_name_on_the_map() -> None:
    # The module docstring is the rules' catalogue ("- rule (severity)"); each rule is classified
    # for the supervisors' filter and named on their map.
    catalogue = set(re.findall(r"(\w+) \((?:low|medium|high|critical)", rules_module.__doc__ or ""))
    assert len(catalogue) == 13 and set(rules_module.RULE_CLASSES) == catalogue
    assert set(rules_module.RULE_CLASSES.values()) == set(rules_module.ALERT_CLASSES)
    page = (Path(__file__).resolve().parents[2] / "supervision/templates/supervision/map.html").read_text()
    assert all(f'"{rule}": _(' in page for rule in catalogue)
    assert all(f'<option value="{c}">' in page for c in rules_module.ALERT_CLASSES)


def test_every_phrase_is_said_in_chinese_with_the_same_parameters() -> None:
    # The map says an alert again in the page's language from its phrase and parameters.
    zh = load_catalogues()["zh_CN"]
    for phrase, text in rules_module.PHRASES.items():
        said = zh.gettext(text)
        assert said != text, phrase
        assert set(re.findall(r"\{(\w+)\}", said)) == set(re.findall(r"\{(\w+)\}", text)), phrase


def test_a_phrase_needs_all_its_parameters() -> None:
    with pytest.raises(KeyError):
        rules_module.phrase_alert("door_forced", "critical", T0, "door_forced", {}, (), None, None, ())
    door = rules_module.phrase_alert("door_forced", "critical", T0, "door_forced", {"reader": "R-1"}, (), None, None, ())
    assert door.message == "the door of reader R-1 was forced open" and door.params == {"reader": "R-1"}


# --------------------------------------------------------------------------- after a restart


def test_a_condition_alerted_before_a_restart_does_not_alert_again_while_it_lasts() -> None:
    bidder = person("bidder")
    allowed = lambda who, zone, now: zone.kind != "evaluation_room"  # noqa: E731
    before = rules_of()
    [alert] = before.on_positions([seen(bidder, ROOM1, 0)], [], Workflow(), allowed, at_seconds(0))
    after = rules_of()  # the restarted server's rules, restored from what was stored
    assert after.restore([alert], at_seconds(60)) == 1
    assert after.on_positions([seen(bidder, ROOM1, 61)], [], Workflow(), allowed, at_seconds(61)) == []
    # Out of it for long enough, and back: a new condition.
    for s in (62, 68):
        assert after.on_positions([seen(bidder, HALL, s)], [], Workflow(), allowed, at_seconds(s)) == []
    assert codes(after.on_positions([seen(bidder, ROOM1, 69)], [], Workflow(), allowed, at_seconds(69))) == ["wrong_zone"]
    # Without the restore the restarted rules would have said it again at once.
    fresh = rules_of()
    assert codes(fresh.on_positions([seen(bidder, ROOM1, 61)], [], Workflow(), allowed, at_seconds(61))) == ["wrong_zone"]
    # Found in another forbidden zone after the restart: that is another condition.
    moved_on = rules_of()
    moved_on.restore([alert], at_seconds(60))
    assert codes(moved_on.on_positions([seen(bidder, ROOM2, 61)], [], Workflow(), allowed, at_seconds(61))) == [
        "wrong_zone"]


def test_a_pair_and_a_zone_alerted_before_a_restart_are_remembered_and_released() -> None:
    expert, bidder = person("expert"), person("bidder")
    tender = uuid.uuid4()
    wf = Workflow(experts={expert.id: Assignment(tender=tender)}, parties={bidder.id: frozenset({tender})})
    crowd = [person("expert") for _ in range(3)]
    stored = [Alert("expert_near_party", "critical", at_seconds(50), "…", (expert.id, bidder.id), "F1", "hall"),
              Alert("over_capacity", "medium", at_seconds(50), "…", tuple(p.id for p in crowd), "F1", "room1"),
              Alert("tailgating", "high", at_seconds(50), "…", (expert.id,), "F1", "room1"),  # keyed by a grant
              Alert("wrong_zone", "high", at_seconds(50) - timedelta(hours=2), "…", (bidder.id,), "F1", "room1")]
    rules = rules_of()
    assert rules.restore(stored, at_seconds(100)) == 2  # the grant's and the two-hour-old one are not
    out = []
    for s in range(100, 115):
        out += rules.on_positions([seen(expert, HALL, s, 5.0, 5.0), seen(bidder, HALL, s, 6.5, 5.0)], [], wf, None,
                                  at_seconds(s))
        out += rules.tick([seen(p, ROOM1, s) for p in crowd], Workflow(), at_seconds(s))
    assert out == []
    # Parted for longer than clear_seconds, then together again for over 10 s: a new alert.
    for s in range(115, 122):
        out += rules.on_positions([seen(expert, HALL, s, 5.0, 5.0), seen(bidder, HALL, s, 20.0, 5.0)], [], wf, None,
                                  at_seconds(s))
    for s in range(122, 134):
        out += rules.on_positions([seen(expert, HALL, s, 5.0, 5.0), seen(bidder, HALL, s, 6.5, 5.0)], [], wf, None,
                                  at_seconds(s))
    assert codes(out) == ["expert_near_party"]


def test_a_silent_tag_alerted_before_a_restart_is_the_same_silence_after_it() -> None:
    # Its detail (when the tag was last heard) is not in the alert: the condition takes it when seen.
    expert = person("expert")
    quiet = seen(expert, ROOM1, 0)
    [alert] = rules_of().tick([quiet], Workflow(), at_seconds(31))
    rules = rules_of()
    assert rules.restore([alert], at_seconds(90)) == 1
    assert rules.tick([quiet], Workflow(), at_seconds(91)) == []
    assert codes(rules_of().tick([quiet], Workflow(), at_seconds(91))) == ["tag_silent"]  # not restored: again
