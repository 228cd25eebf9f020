"""Floor plans: validation with precise errors, the transform, and the zone index (venue/floorplan.py),
with the demo floor (venue/demo_floor.py) as the realistic case."""

from __future__ import annotations

import copy
import math
import random
import uuid
from typing import Any

import pytest

from venue import demo_floor, floorplan
from venue.floorplan import (
    MAX_FEATURES, MAX_RING_POINTS, PlanInvalid, ZoneIndex, area, boundary_distance, contains, distance,
    from_local, parse_plan, parse_transform, self_intersection, to_local,
)
from venue.model import Floor, Transform


def unit(zone_id: str, ring: list[list[float]], kind: str = "evaluation_room", **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "id": zone_id, "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"feature_type": "unit", "kind": kind, "name": zone_id, **props}}


def door(door_id: str, x: float, y: float, inside: str, outside: str | None = None, reader: str | None = None,
         **props: Any) -> dict[str, Any]:
    properties = {"feature_type": "door", "reader_id": reader or f"R-{door_id}", "inside_zone": inside, **props}
    if outside is not None:
        properties["outside_zone"] = outside
    return {"type": "Feature", "id": door_id, "geometry": {"type": "Point", "coordinates": [x, y]},
            "properties": properties}


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def plan(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def parse(data: Any) -> Floor:
    return parse_plan(data, code="F1", level=1, name="一层")


def refused(data: Any) -> PlanInvalid:
    with pytest.raises(PlanInvalid) as caught:
        parse(data)
    return caught.value


# A corridor and a room north of it, a door in their shared wall, a street door into the corridor.
def small_plan() -> dict[str, Any]:
    return plan(unit("corridor", rect(0, 0, 10, 2.5), kind="corridor"), unit("room", rect(0, 2.5, 6, 10.5)),
                door("d1", 3, 2.5, "room", "corridor"), door("street", 0, 1.25, "corridor"))


# ---------------------------------------------------------------------------- a valid plan


def test_a_valid_plan_gives_its_zones_and_doors() -> None:
    floor = parse(small_plan())
    assert [z.id for z in floor.zones] == ["corridor", "room"]
    assert floor.zone("room").polygon[0] == (0.0, 2.5) and floor.zone("room").kind == "evaluation_room"
    assert [(d.id, d.reader_id, d.inside_zone, d.outside_zone, d.capacity) for d in floor.doors] == [
        ("d1", "R-d1", "room", "corridor", 1), ("street", "R-street", "corridor", None, 1)]


def test_optional_properties_are_read_and_other_properties_ignored() -> None:
    room_id = uuid.uuid4()
    data = plan(unit("room", rect(0, 0, 6, 8), capacity=9, closed_area=True, room_id=str(room_id), colour="blue"),
                door("d", 3, 0, "room", capacity=2, name="正门"))
    floor = parse(data)
    assert floor.zones[0].capacity == 9 and floor.zones[0].closed_area and floor.zones[0].room_id == room_id
    assert floor.doors[0].capacity == 2


def test_a_door_within_the_tolerance_of_the_wall_is_on_it() -> None:
    data = plan(unit("room", rect(0, 0, 6, 8)), door("d", 3, -0.2, "room"))
    assert parse(data).doors[0].point == (3.0, -0.2)


def test_an_altitude_is_accepted_and_dropped() -> None:
    data = plan(unit("room", [[0, 0, 3], [6, 0, 3], [6, 8, 3], [0, 0, 3]]))
    assert parse(data).zones[0].polygon == ((0, 0), (6, 0), (6, 8), (0, 0))


# ---------------------------------------------------------------------------- refusals, one per check


def test_a_ring_that_is_not_closed_is_refused_naming_the_feature() -> None:
    error = refused(plan(unit("room-1", [[0, 0], [6, 0], [6, 8], [0, 8]])))
    assert (error.code, error.feature) == ("ring_not_closed", "room-1")
    assert "[0.0, 8.0]" in error.message and "[0.0, 0.0]" in error.message


def test_a_ring_of_fewer_than_four_points_is_refused() -> None:
    error = refused(plan(unit("r", [[0, 0], [6, 0], [0, 0]])))
    assert (error.code, error.feature) == ("too_few_points", "r")


def test_a_bow_tie_is_refused_naming_the_crossing_edges() -> None:
    error = refused(plan(unit("bow", [[0, 0], [4, 4], [4, 0], [0, 4], [0, 0]])))
    assert (error.code, error.feature) == ("self_intersection", "bow")
    assert "edge 0" in error.message and "edge 2" in error.message


def test_a_ring_touching_itself_at_a_vertex_is_refused() -> None:
    figure_eight = [[0, 0], [2, 0], [2, 2], [4, 2], [4, 4], [2, 4], [2, 2], [0, 2], [0, 0]]
    assert refused(plan(unit("eight", figure_eight))).code == "self_intersection"


def test_a_spike_folding_back_over_its_neighbour_is_refused() -> None:
    spike = [[0, 0], [6, 0], [6, 8], [6, 4], [0, 8], [0, 0]]
    assert refused(plan(unit("spike", spike))).code == "self_intersection"


def test_a_repeated_point_is_refused() -> None:
    error = refused(plan(unit("r", [[0, 0], [6, 0], [6, 0], [6, 8], [0, 0]])))
    assert error.code == "repeated_point" and "point 2" in error.message


def test_a_ring_without_area_is_refused() -> None:
    assert refused(plan(unit("flat", [[0, 0], [1, 0], [2, 0.000001], [0, 0]]))).code == "degenerate_ring"


@pytest.mark.parametrize("value, code", [(math.nan, "not_finite"), (math.inf, "not_finite"), (True, "bad_coordinates"),
                                         ("1", "bad_coordinates"), (1e9, "out_of_range")])
def test_coordinates_must_be_finite_numbers_of_a_floor(value: Any, code: str) -> None:
    error = refused(plan(unit("r", [[0, 0], [value, 0], [6, 8], [0, 0]])))
    assert (error.code, error.feature) == (code, "r")


def test_duplicate_feature_ids_are_refused() -> None:
    error = refused(plan(unit("a", rect(0, 0, 1, 1)), unit("a", rect(2, 0, 3, 1))))
    assert (error.code, error.feature) == ("duplicate_id", "a")


def test_duplicate_reader_ids_are_refused_naming_both_doors() -> None:
    data = plan(unit("a", rect(0, 0, 4, 4)), door("d1", 0, 1, "a", reader="X1"), door("d2", 0, 2, "a", reader="X1"))
    error = refused(data)
    assert (error.code, error.feature) == ("duplicate_reader", "d2") and "'d1'" in error.message


def test_an_unknown_zone_kind_is_refused_listing_the_kinds() -> None:
    error = refused(plan(unit("a", rect(0, 0, 4, 4), kind="ballroom")))
    assert (error.code, error.feature) == ("unknown_kind", "a") and "isolation_corridor" in error.message


def test_a_door_off_its_zones_boundary_is_refused_with_the_gap() -> None:
    error = refused(plan(unit("a", rect(0, 0, 4, 4)), door("d", 2, 2, "a")))
    assert (error.code, error.feature) == ("door_off_boundary", "d") and "2.00 m" in error.message


def test_a_door_must_also_be_on_its_outside_zones_boundary() -> None:
    data = plan(unit("a", rect(0, 0, 4, 4)), unit("b", rect(5, 0, 9, 4)), door("d", 4, 2, "a", "b"))
    error = refused(data)
    assert error.code == "door_off_boundary" and "outside_zone 'b'" in error.message


def test_a_door_into_an_unknown_zone_is_refused() -> None:
    error = refused(plan(unit("a", rect(0, 0, 4, 4)), door("d", 0, 2, "a", "nowhere")))
    assert (error.code, error.feature) == ("unknown_zone", "d")


def test_a_door_between_a_zone_and_itself_is_refused() -> None:
    assert refused(plan(unit("a", rect(0, 0, 4, 4)), door("d", 0, 2, "a", "a"))).code == "bad_property"


@pytest.mark.parametrize("props", [{"capacity": 0}, {"capacity": 2.5}, {"closed_area": "yes"}, {"name": ""},
                                   {"room_id": "not-a-uuid"}, {"room_id": 7}])
def test_bad_unit_properties_are_refused(props: dict[str, Any]) -> None:
    error = refused(plan(unit("a", rect(0, 0, 4, 4), **props)))
    assert (error.code, error.feature) == ("bad_property", "a")


def test_a_room_id_belongs_to_evaluation_rooms_only_and_to_one_of_them() -> None:
    room = str(uuid.uuid4())
    assert refused(plan(unit("a", rect(0, 0, 4, 4), kind="archive", room_id=room))).code == "bad_property"
    error = refused(plan(unit("a", rect(0, 0, 4, 4), room_id=room), unit("b", rect(4, 0, 8, 4), room_id=room)))
    assert (error.code, error.feature) == ("duplicate_room", "b")


@pytest.mark.parametrize("reader", ["", "-starts-with-dash", "has space", "x" * 65, 12])
def test_reader_ids_follow_the_controllers_rule(reader: Any) -> None:
    data = plan(unit("a", rect(0, 0, 4, 4)), door("d", 0, 2, "a"))
    data["features"][1]["properties"]["reader_id"] = reader
    assert refused(data).code == "bad_property"


def test_holes_and_wrong_geometries_are_refused() -> None:
    holed = unit("a", rect(0, 0, 4, 4))
    holed["geometry"]["coordinates"].append(rect(1, 1, 2, 2))
    assert refused(plan(holed)).code == "bad_geometry"
    pointy = unit("a", rect(0, 0, 4, 4))
    pointy["geometry"] = {"type": "Point", "coordinates": [0, 0]}
    assert refused(plan(pointy)).code == "bad_geometry"
    flat_door = door("d", 0, 0, "a")
    flat_door["geometry"] = {"type": "Polygon", "coordinates": [rect(0, 0, 1, 1)]}
    assert refused(plan(unit("a", rect(0, 0, 4, 4)), flat_door)).code == "bad_geometry"


@pytest.mark.parametrize("data, code", [
    ([], "not_feature_collection"), ({"type": "Feature"}, "not_feature_collection"),
    ({"type": "FeatureCollection", "features": {}}, "not_feature_collection"),
    (plan("not a feature"), "bad_feature"),  # type: ignore[arg-type]
    (plan({"type": "Feature", "properties": {"feature_type": "unit"}}), "missing_id"),
    (plan({"type": "Feature", "id": "x", "properties": {"feature_type": "fixture"}}), "unknown_feature_type"),
])
def test_the_plans_shape_is_checked(data: Any, code: str) -> None:
    assert refused(data).code == code


def test_size_limits() -> None:
    many = plan(*[unit(f"z{i}", rect(i, 0, i + 1, 1)) for i in range(MAX_FEATURES + 1)])
    assert refused(many).code == "too_many_features"
    circle = [[math.cos(t / 1000), math.sin(t / 1000)] for t in range(MAX_RING_POINTS)] + [[1.0, 0.0]]
    assert refused(plan(unit("round", circle))).code == "too_many_points"


def test_a_ring_of_the_largest_size_is_checked_in_near_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # Counted, not timed: the sweep tries only edges overlapping in x, not every pair.
    n = MAX_RING_POINTS - 1
    circle = [(20 * math.cos(2 * math.pi * k / n), 20 * math.sin(2 * math.pi * k / n)) for k in range(n)]
    circle.append(circle[0])
    tried = 0
    exact = floorplan.segments_intersect

    def counting(*points: Any) -> bool:
        nonlocal tried
        tried += 1
        return exact(*points)
    monkeypatch.setattr(floorplan, "segments_intersect", counting)
    assert self_intersection(circle) is None
    assert 0 < tried < 50 * n  # every pair would be n * n / 2


def test_detail_names_code_message_and_feature() -> None:
    error = refused(plan(unit("room-1", [[0, 0], [6, 0], [6, 8], [0, 8]])))
    assert error.as_detail() == {"code": "ring_not_closed", "message": error.message, "feature": "room-1"}


# ---------------------------------------------------------------------------- the transform


def test_the_transform_defaults_and_refusals() -> None:
    assert parse_transform(None) == parse_transform({}) == Transform()
    assert parse_transform({"scale": 2, "rotation_deg": 90, "dx": 1, "dy": -1}) == Transform(2.0, 90.0, 1.0, -1.0)
    for bad in ([1], {"scale": 0}, {"scale": -1}, {"rotation_deg": 400}, {"dx": "1"}, {"dx": math.nan},
                {"shear": 1}):
        with pytest.raises(PlanInvalid) as caught:
            parse_transform(bad)
        assert caught.value.code in ("bad_transform", "not_finite"), bad


def test_to_local_rotates_scales_then_translates_and_from_local_inverts_it() -> None:
    quarter = Transform(scale=2.0, rotation_deg=90.0, dx=10.0, dy=5.0)
    x, y = to_local(quarter, 1.0, 0.0)
    assert (round(x, 9), round(y, 9)) == (10.0, 7.0)
    t = demo_floor.DEMO_TRANSFORM
    for point in ((0.0, 0.0), (31.7, 12.2), (-3.0, 58.9)):
        back = from_local(t, *to_local(t, *point))
        assert distance(back, point) < 1e-9


# ---------------------------------------------------------------------------- where is a point


def test_the_smallest_containing_zone_wins_and_outside_is_none() -> None:
    hall = unit("hall", rect(0, 0, 20, 20), kind="opening_hall")
    booth = unit("booth", rect(5, 5, 8, 8), kind="office")
    index = ZoneIndex([parse(plan(hall, booth))])
    assert index.zone_at("F1", 6, 6).id == "booth"
    assert index.zone_at("F1", 1, 1).id == "hall"
    assert index.zone_at("F1", 25, 1) is None and index.zone_at("F1", -1, 5) is None
    assert index.zone_at("F2", 6, 6) is None


def test_distance_to_a_zone() -> None:
    index = ZoneIndex([parse(small_plan())])
    assert index.distance("F1", "room", 3, 5) == 0.0
    assert index.distance("F1", "room", 9, 5) == pytest.approx(3.0)
    assert index.distance("F1", "nowhere", 0, 0) is None
    assert boundary_distance(((0, 0), (4, 0), (4, 4), (0, 0)), (2, -1)) == pytest.approx(1.0)


def demo() -> Floor:
    plan_ = demo_floor.demo_floor_plan()
    return parse_plan(plan_, code=demo_floor.CODE, level=demo_floor.LEVEL, name=demo_floor.NAME,
                      transform=demo_floor.DEMO_TRANSFORM)


def test_the_index_agrees_with_trying_every_zone_on_the_demo_floor() -> None:
    floor = demo()
    index = ZoneIndex([floor])
    rng = random.Random(6)
    for _ in range(5000):
        x, y = rng.uniform(-2, 62), rng.uniform(-2, 32)
        containing = sorted((z for z in floor.zones if contains(z.polygon, x, y)), key=lambda z: area(z.polygon))
        found = index.zone_at(floor.code, x, y)
        assert (found.id if found else None) == (containing[0].id if containing else None), (x, y)


def test_cells_answered_whole_agree_with_ray_casting_on_a_lattice() -> None:
    # A cell wholly inside one zone is answered without ray casting once first asked; a lattice
    # of 0.25 m (cell corners and walls included) must read exactly as trying every zone does.
    floor = demo()
    index = ZoneIndex([floor])
    zones = sorted(floor.zones, key=lambda z: (area(z.polygon), z.id))
    for i in range(-8, 249):
        for j in range(-8, 129):
            x, y = i / 4, j / 4
            exact = next((z.id for z in zones if contains(z.polygon, x, y)), None)
            found = index.zone_at(floor.code, x, y)
            assert (found.id if found else None) == exact, (x, y)
    grid = index._grids[floor.code]
    assert sum(a is not None and a is not floorplan._MIXED for a in grid.answers if a is not floorplan._UNKNOWN) > 100


# ---------------------------------------------------------------------------- the demo floor


def test_the_demo_floor_is_a_realistic_evaluation_floor() -> None:
    floor = demo()
    kinds = {z.kind for z in floor.zones}
    assert kinds >= {"entrance", "opening_hall", "waiting_area", "evaluation_room", "isolation_corridor",
                     "phone_lockers", "supervision_room", "archive", "corridor"}
    x0 = min(x for z in floor.zones for x, _ in z.polygon)
    x1 = max(x for z in floor.zones for x, _ in z.polygon)
    y0 = min(y for z in floor.zones for _, y in z.polygon)
    y1 = max(y for z in floor.zones for _, y in z.polygon)
    assert (x0, y0, x1, y1) == (0, 0, 60, 30)
    # The zones tile the floor: their areas add up to it, none overlapping.
    assert sum(area(z.polygon) for z in floor.zones) == pytest.approx(60 * 30)
    corridor = floor.zone("iso-corridor")
    assert corridor is not None and corridor.polygon[2][1] - corridor.polygon[1][1] == 2.5  # metres wide


def test_every_demo_evaluation_room_has_two_layer_doors_from_the_isolation_corridor() -> None:
    floor = demo()
    rooms = [z for z in floor.zones if z.kind == "evaluation_room"]
    assert len(rooms) >= 6 and all(z.closed_area and z.capacity for z in rooms)
    for room in rooms:
        inner = [d for d in floor.doors if d.inside_zone == room.id]
        assert len(inner) == 1, room.id
        vestibule = floor.zone(inner[0].outside_zone or "")
        assert vestibule is not None and vestibule.closed_area
        outer = [d for d in floor.doors if d.inside_zone == vestibule.id]
        assert [d.outside_zone for d in outer] == ["iso-corridor"], room.id
        # A whole 6 × 8 m footprint (the vestibule is a notch of it).
        assert area(room.polygon) + area(vestibule.polygon) >= 48


def test_the_demo_closed_area_is_entered_only_through_readers_on_its_edge() -> None:
    floor = demo()
    crossings = [d for d in floor.doors
                 if floor.zone(d.inside_zone).closed_area != (d.outside_zone is not None and floor.zone(d.outside_zone).closed_area)]
    assert {d.reader_id for d in crossings} == {"FZ3F-CA-IN", "FZ3F-SUP-STAFF"}
    check_in = floor.zone("check-in")
    assert check_in.kind == "entrance" and check_in.closed_area
    assert floor.zone("phone-lockers").closed_area


def test_the_demo_plan_carries_room_ids_given_and_stays_valid_after_a_round_trip() -> None:
    rooms = {name: uuid.uuid4() for _, name, _ in (*demo_floor.SOUTH_ROOMS, demo_floor.REMOTE_ROOM)}
    data = demo_floor.demo_floor_plan(rooms)
    floor = parse_plan(copy.deepcopy(data), code="FZ-3F", level=3, name="x")
    assert {z.room_id for z in floor.zones if z.kind == "evaluation_room"} == set(rooms.values())
