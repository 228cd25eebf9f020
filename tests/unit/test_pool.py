"""The pools' pure rules: field checks, edits, leave days, avoidances, credit, CSV rows and their errors."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from evaluation import id_number, pool
from evaluation.pool import PoolError, PoolInvalid
from evaluation.pool_csv import COLUMNS, MAX_BYTES, CsvFileError, check_csv, template
from evaluation.specialty_tree import TREE, parent_of
from tenderhall import credit_code

TODAY = date(2026, 6, 1)
NUMBER = id_number.make("32010219800101001")
CODE = credit_code.make("91320100MA0000001")


def expert(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "王建国", "id_number": NUMBER, "phone": "13912345678", "employer_name": "南京华建建设集团有限公司",
        "employer_code": CODE, "region": "320102", "specialties": ["A0801", "A0101", "A0101"], "title": "高级工程师"}
    data.update(overrides)
    return data


def fields_at_fault(data: object) -> list[str]:
    with pytest.raises(PoolInvalid) as refused:
        pool.parse_expert(data, today=TODAY)
    return [f for f, _ in refused.value.errors]


def test_a_valid_expert_is_normalised() -> None:
    parsed = pool.parse_expert(expert(phone="+86 139-1234-5678", name="  王  建国 ", id_number=NUMBER.lower()),
                               today=TODAY)
    assert parsed.phone == "13912345678" and parsed.name == "王 建国" and parsed.id_number == NUMBER.upper()
    assert parsed.specialties == ("A0101", "A0801") and parsed.status == "active" and parsed.email is None
    assert NUMBER not in repr(parsed)


def test_every_bad_field_is_named_and_no_id_number_is_repeated() -> None:
    bad = NUMBER[:-1] + ("0" if NUMBER[-1] != "0" else "1")
    data = expert(id_number=bad, phone="1234", email="nope", region="012345", employer_code="91320100MA0000001Z",
                  specialties=[], status="sleeping")
    with pytest.raises(PoolInvalid) as refused:
        pool.parse_expert(data, today=TODAY)
    assert [f for f, _ in refused.value.errors] == ["id_number", "phone", "email", "employer_code", "region",
                                                   "specialties", "status"]
    assert bad not in refused.value.message and refused.value.status == 422


def test_required_fields_and_bodies() -> None:
    assert fields_at_fault({"name": "x"})[:2] == ["id_number", "phone"]
    with pytest.raises(PoolError) as refused:
        pool.parse_expert([1], today=TODAY)
    assert refused.value.status == 400
    assert fields_at_fault(expert(name="x" * 51)) == ["name"]
    assert fields_at_fault(expert(specialties="A01;bad")) == ["specialties"]
    assert fields_at_fault(expert(specialties=["S01"])) == ["specialties"]  # intermediary categories only
    assert fields_at_fault(expert(user_id="not-a-uuid")) == ["user_id"]
    born_later = id_number.make("32010220300101001")
    assert fields_at_fault(expert(id_number=born_later)) == ["id_number"]


def test_specialties_accept_a_separated_string() -> None:
    assert pool.parse_expert(expert(specialties="a0101；A0201, A0801"), today=TODAY).specialties == (
        "A0101", "A0201", "A0801")


def test_an_edit_needs_the_version_and_known_fields() -> None:
    version, changes = pool.parse_expert_changes({"version": 3, "title": "正高级工程师", "email": ""}, today=TODAY)
    assert version == 3 and changes == {"title": "正高级工程师", "email": None}
    with pytest.raises(PoolInvalid):
        pool.parse_expert_changes({"title": "x"}, today=TODAY)
    with pytest.raises(PoolInvalid) as refused:
        pool.parse_expert_changes({"version": 1, "colour": "red"}, today=TODAY)
    assert refused.value.errors[0][0] == "colour"
    assert pool.parse_version("2") == 2
    with pytest.raises(PoolInvalid):
        pool.parse_version(True)


def test_status_changes() -> None:
    assert pool.parse_status_change({"status": "suspended"}) == ("suspended", None)
    assert pool.parse_status_change({"status": "retired", "version": "4"}) == ("retired", 4)
    with pytest.raises(PoolInvalid):
        pool.parse_status_change({"status": "gone"})


def test_leave_days_are_sorted_unique_and_bounded() -> None:
    assert pool.parse_days(["2030-05-02", "2030-05-01", "2030-05-02"]) == (date(2030, 5, 1), date(2030, 5, 2))
    for bad in (["2030-02-30"], ["1999-12-31"], "2030-01-01", [20300101]):
        with pytest.raises(PoolInvalid):
            pool.parse_days(bad)
    with pytest.raises(PoolInvalid):
        pool.parse_days(["2030-01-01"] + [str(date.fromordinal(date(2030, 1, 2).toordinal() + n)) for n in range(400)])
    assert len(pool.day_range("2030-05-01", "2030-05-07")) == 7
    assert pool.day_range("2030-05-01", "") == (date(2030, 5, 1),)
    with pytest.raises(PoolInvalid):
        pool.day_range("2030-05-07", "2030-05-01")


def test_an_avoidance_names_one_organisation_or_one_user() -> None:
    user = uuid.uuid4()
    assert pool.parse_avoidance({"organisation_code": CODE.lower(), "note": " 前雇主 "}) == pool.AvoidanceInput(
        CODE, None, "前雇主")
    assert pool.parse_avoidance({"user_id": str(user)}).user_id == user
    for bad in ({}, {"organisation_code": CODE, "user_id": str(user)}, {"organisation_code": "123"},
                {"user_id": "x"}, {"organisation_code": CODE, "note": "x" * 501}):
        with pytest.raises(PoolInvalid):
            pool.parse_avoidance(bad)


def test_credit_changes_are_bounded_and_scores_clamped() -> None:
    assert pool.parse_credit({"delta": "-30", "reason": "无故缺席", "evidence": " 通报 "}) == pool.CreditInput(
        -30, "无故缺席", "通报")
    for bad in ({"delta": 0, "reason": "x"}, {"delta": 101, "reason": "x"}, {"delta": True, "reason": "x"},
                {"delta": 1.5, "reason": "x"}, {"delta": -5}, {"delta": -5, "reason": "x", "evidence": "e" * 2001}):
        with pytest.raises(PoolInvalid):
            pool.parse_credit(bad)
    assert pool.apply_credit(100, -30) == 70
    assert pool.apply_credit(20, -100) == 0
    assert pool.apply_credit(190, 100) == 200
    assert pool.below_threshold(59, 60) and not pool.below_threshold(60, 60)


def test_intermediaries_take_service_categories_only() -> None:
    data = {"name": "南京恒信工程造价咨询有限公司", "credit_code": CODE, "region": "320102", "contact_name": "刘敏",
            "phone": "13700000000", "categories": ["S02", "S01"]}
    assert pool.parse_intermediary(data).categories == ("S01", "S02")
    for categories in (["A0101"], ["S"], []):
        with pytest.raises(PoolInvalid):
            pool.parse_intermediary({**data, "categories": categories})


def test_like_prefix_escapes_wildcards() -> None:
    assert pool.like_prefix("50%_a\\b") == "50\\%\\_a\\\\b"


def test_the_default_tree_is_well_formed() -> None:
    codes = [c for c, _ in TREE]
    assert len(codes) == len(set(codes)) and 60 <= len(codes) <= 150
    for n, code in enumerate(codes):
        assert pool.CODE.match(code), code
        parent = parent_of(code)
        assert parent is None or parent in codes[:n], f"{code}: parent {parent} must come first"
    assert {c for c in codes if len(c) == 1} >= {"A", "B", "C", "D", "S"}


# ---------------------------------------------------------------------------- CSV


def csv(*rows: str, header: str = ",".join(COLUMNS)) -> bytes:
    return ("\r\n".join((header,) + rows) + "\r\n").encode()


def row(number: str = NUMBER, **cells: str) -> str:
    values = {"name": "张三", "id_number": number, "phone": "13800138000", "email": "", "employer_name": "某公司",
              "employer_code": CODE, "region": "320102", "specialties": "A0101;A0801", "title": "工程师",
              "status": ""}
    values.update(cells)
    return ",".join(values[c] for c in COLUMNS)


def test_a_good_file_parses_every_row() -> None:
    other = id_number.make("32010219800101002")
    checked = check_csv(b"\xef\xbb\xbf" + csv(row(), "", row(other, status="suspended")), today=TODAY)
    assert checked.rows == 2 and checked.errors == ()
    assert [r.row for r in checked.good] == [2, 4]
    assert checked.good[0].expert.specialties == ("A0101", "A0801") and checked.good[1].expert.status == "suspended"


def test_row_errors_name_row_and_column_and_duplicates_point_back() -> None:
    checked = check_csv(csv(row(), row(phone="1"), row(region="x", email="bad"), row()), today=TODAY)
    found = [(e.row, e.column) for e in checked.errors]
    assert sorted(found) == [(3, "id_number"), (3, "phone"), (4, "email"), (4, "id_number"), (4, "region"),
                             (5, "id_number")]
    assert "row 2" in checked.errors[-1].message and NUMBER not in str(checked.errors)
    assert [r.row for r in checked.good] == [2]


def test_the_header_is_checked_and_chinese_names_are_understood() -> None:
    with pytest.raises(CsvFileError) as refused:
        check_csv(csv(header="name,colour,name"), today=TODAY)
    columns = {e.column for e in refused.value.errors}
    assert {"colour", "name", "id_number", "phone"} <= columns
    header = "姓名,身份证号,手机号,工作单位,统一社会信用代码,地区,专业,职称"
    cells = f"张三,{NUMBER},13800138000,某公司,{CODE},320102,A0101,工程师"
    assert check_csv(csv(cells, header=header), today=TODAY).rows == 1


def test_files_that_cannot_be_read_are_refused() -> None:
    for raw in (b"", "姓名\r\n张三".encode("gb18030"), b'name,"unclosed\r\n'):
        with pytest.raises(PoolError):
            check_csv(raw, today=TODAY)
    with pytest.raises(PoolError) as too_many:
        check_csv(csv(row(), row(), row()), today=TODAY, max_rows=2)
    assert too_many.value.status == 413
    with pytest.raises(PoolError) as too_big:
        check_csv(b"x" * (MAX_BYTES + 1), today=TODAY)
    assert too_big.value.status == 413


def test_extra_cells_are_a_row_error() -> None:
    checked = check_csv(csv(row() + ",extra"), today=TODAY)
    assert checked.errors[0].column == "" and not checked.good


def test_the_example_file_is_valid() -> None:
    assert check_csv(template().encode(), today=TODAY).errors == ()
