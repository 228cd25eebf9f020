"""The expert and intermediary pools through the app: API, pages, CSV import, credit, roles, demo data."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from starlette.testclient import TestClient

from evaluation.demo_pool import seed_demo_pool
from evaluation.pool_csv import COLUMNS
from tenderhall.settings import Settings
from tests.factories import login, make_user, run_db
from tests.pool_world import app_data_key, ensure_tree, make_expert, make_intermediary, new_credit_code, new_id_number


@pytest.fixture
def pool_client(client: TestClient, settings: Settings) -> Iterator[TestClient]:
    ensure_tree(settings.database_url)
    yield client


def as_role(client: TestClient, settings: Settings, role: str) -> Any:
    user = make_user(settings.database_url, role)
    login(client, user)
    return user


def expert_body(**overrides: Any) -> dict[str, Any]:
    body = {"name": "王建国", "id_number": new_id_number(), "phone": "13912345678", "email": "wang@example.com",
            "employer_name": "南京华建建设集团有限公司", "employer_code": new_credit_code(), "region": "320102",
            "specialties": ["A0101", "A0801"], "title": "高级工程师"}
    body.update(overrides)
    return body


def table_text(dsn: str, query: str) -> str:
    async def work(conn: Any) -> str:
        return "\n".join(str(dict(r)) for r in await conn.fetch(query))
    return run_db(dsn, work)


def csv_file(rows: list[dict[str, Any]], *, bom: bool = False) -> bytes:
    lines = [",".join(COLUMNS)]
    for row in rows:
        lines.append(",".join(str(row.get(c, "")) for c in COLUMNS))
    text = "\r\n".join(lines) + "\r\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def csv_row(**overrides: Any) -> dict[str, Any]:
    row = {**expert_body(), "specialties": "A0101;A0201", "status": "active", "email": ""}
    row.update(overrides)
    return row


# ---------------------------------------------------------------------------- experts


def test_admin_adds_lists_searches_and_pages_experts(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    created = pool_client.post("/api/experts", json=expert_body())
    assert created.status_code == 201, created.text
    expert = created.json()["expert"]
    assert expert["specialties"] == ["A0101", "A0801"] and expert["specialty_names"]["A0101"] == "土建"
    assert expert["credit_score"] == 100 and expert["version"] == 1 and expert["status"] == "active"
    for n in range(4):
        make_expert(settings.database_url, name=f"李{n}", region="320205", specialties=("B0201",))
    listing = pool_client.get("/api/experts", params={"per_page": 2}).json()
    assert listing["total"] == 5 and len(listing["experts"]) == 2 and listing["pages"] == 3
    assert pool_client.get("/api/experts", params={"q": "王建"}).json()["total"] == 1
    assert pool_client.get("/api/experts", params={"q": "华建"}).json()["total"] == 1  # employer
    assert pool_client.get("/api/experts", params={"region": "3202"}).json()["total"] == 4
    assert pool_client.get("/api/experts", params={"specialty": "A08"}).json()["total"] == 1
    assert pool_client.get("/api/experts", params={"specialty": "B02"}).json()["total"] == 4
    assert pool_client.get("/api/experts", params={"status": "retired"}).json()["total"] == 0
    assert pool_client.get("/api/experts", params={"q": "%"}).json()["total"] == 0  # wildcards are literal
    assert pool_client.get("/api/experts", params={"region": "x"}).status_code == 400
    page = pool_client.get("/experts", params={"region": "3202", "per_page": 2})
    assert page.status_code == 200 and "李0" in page.text and "region=3202" in page.text


def test_the_full_id_number_never_leaves_the_server(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    number = new_id_number()
    expert = pool_client.post("/api/experts", json=expert_body(id_number=number)).json()["expert"]
    assert expert["id_number_masked"] == number[:3] + "*" * 11 + number[-4:]
    seen = [pool_client.get(f"/api/experts/{expert['id']}").text, pool_client.get("/api/experts").text,
            pool_client.get("/experts").text, pool_client.get(f"/experts/{expert['id']}").text,
            pool_client.get(f"/experts/{expert['id']}/edit").text,
            pool_client.post("/api/experts", json=expert_body(id_number=number)).text,
            pool_client.patch(f"/api/experts/{expert['id']}", json={"version": 1, "id_number": number[:-1] + "0"}).text]
    for text in seen:
        assert number not in text and number[6:14] not in text
    dsn = settings.database_url
    for query in ("SELECT body FROM log_entries", "SELECT detail FROM audit_events", "SELECT * FROM experts"):
        assert number not in table_text(dsn, query), query


def test_a_duplicate_id_number_is_refused(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    number = new_id_number()
    assert pool_client.post("/api/experts", json=expert_body(id_number=number)).status_code == 201
    again = pool_client.post("/api/experts", json=expert_body(id_number=number.lower(), name="另一人"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_id_number"
    other = pool_client.post("/api/experts", json=expert_body()).json()["expert"]
    edit = pool_client.patch(f"/api/experts/{other['id']}", json={"version": 1, "id_number": number})
    assert edit.status_code == 409 and edit.json()["error"]["code"] == "duplicate_id_number"


def test_bad_fields_and_unknown_specialties_are_named(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    unknown = pool_client.post("/api/experts", json=expert_body(specialties=["A0101", "A0199"]))
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_specialty"
    assert "A0199" in unknown.json()["error"]["message"]
    bad = pool_client.post("/api/experts", json=expert_body(phone="12345", id_number="110105198001010033"))
    assert bad.status_code == 422
    message = bad.json()["error"]["message"]
    assert "phone" in message and "id_number" in message and "110105198001010033" not in message
    reserved = pool_client.post("/api/experts", json=expert_body(specialties=["S01"]))
    assert reserved.status_code == 422
    agent = make_user(settings.database_url, "agent")
    linked = pool_client.post("/api/experts", json=expert_body(user_id=str(agent.id)))
    assert linked.status_code == 422 and linked.json()["error"]["code"] == "user_not_expert"


def test_a_stale_edit_is_refused_and_a_fresh_one_applies(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    expert = pool_client.post("/api/experts", json=expert_body()).json()["expert"]
    url = f"/api/experts/{expert['id']}"
    first = pool_client.patch(url, json={"version": 1, "title": "正高级工程师", "specialties": ["A0102"]})
    assert first.status_code == 200 and first.json()["expert"]["version"] == 2
    assert first.json()["expert"]["specialties"] == ["A0102"]
    stale = pool_client.patch(url, json={"version": 1, "phone": "13800000000"})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_version"
    assert pool_client.get(url).json()["expert"]["phone"] == "13912345678"
    assert pool_client.patch(url, json={"version": 2, "nickname": "x"}).status_code == 422
    status = pool_client.post(url + "/status", json={"status": "suspended", "version": 2})
    assert status.status_code == 200 and status.json()["expert"]["status"] == "suspended"
    kinds = table_text(settings.database_url, "SELECT kind FROM log_entries ORDER BY idx")
    assert "expert.added" in kinds and "expert.updated" in kinds and "expert.status" in kinds


def test_leave_and_avoidances_are_managed_by_admins(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    expert = make_expert(settings.database_url)
    url = f"/api/experts/{expert.id}"
    leave = pool_client.put(url + "/leave", json={"days": ["2030-05-02", "2030-05-01", "2030-05-02"]})
    assert leave.status_code == 200 and leave.json()["leave"] == ["2030-05-01", "2030-05-02"]
    assert pool_client.put(url + "/leave", json=["2030-13-01"]).status_code == 422
    code = new_credit_code()
    added = pool_client.post(url + "/avoidances", json={"organisation_code": code, "note": "前雇主"})
    assert added.status_code == 201
    assert pool_client.post(url + "/avoidances", json={"organisation_code": code, "user_id": str(expert.id)}).status_code == 422
    detail = pool_client.get(url).json()["expert"]
    assert detail["leave"] == ["2030-05-01", "2030-05-02"] and detail["avoidances"][0]["organisation_code"] == code
    removed = pool_client.delete(f"{url}/avoidances/{added.json()['avoidance']['id']}")
    assert removed.status_code == 200 and pool_client.get(url).json()["expert"]["avoidances"] == []
    log = table_text(settings.database_url, "SELECT body FROM log_entries")
    assert "前雇主" not in log and "2030-05-01" not in log


# ---------------------------------------------------------------------------- CSV import


def test_a_good_csv_file_is_imported_whole(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    body = csv_file([csv_row(name=f"导入{n}") for n in range(5)], bom=True)
    response = pool_client.post("/api/experts/import", content=body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["imported"] == 5 and result["rows"] == 5 and result["errors"] == []
    assert pool_client.get("/api/experts", params={"q": "导入"}).json()["total"] == 5
    kinds = table_text(settings.database_url, "SELECT body FROM log_entries")
    assert "expert.import" in kinds and result["file_sha256"] in kinds


def test_a_bad_csv_file_imports_nothing_and_reports_every_row(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    existing = make_expert(settings.database_url, app_data_key(settings))
    twice = new_id_number()
    rows = [csv_row(), csv_row(phone="123"), csv_row(specialties="A0101;Z99", region="01"), csv_row(id_number=twice),
            csv_row(id_number=twice), csv_row(id_number=existing.id_number), csv_row(id_number="110105198001010033")]
    response = pool_client.post("/api/experts/import", content=csv_file(rows), headers={"Content-Type": "text/csv"})
    assert response.status_code == 422
    result = response.json()
    assert result["imported"] == 0 and result["error"]["code"] == "invalid_rows"
    found = {(e["row"], e["column"]) for e in result["errors"]}
    assert {(3, "phone"), (4, "region"), (6, "id_number"), (7, "id_number"), (8, "id_number")} <= found
    assert (2, "name") not in found and not any(e["row"] == 2 for e in result["errors"])
    assert pool_client.get("/api/experts").json()["total"] == 1
    assert existing.id_number not in response.text and twice not in response.text
    unknown = pool_client.post("/api/experts/import", content=csv_file([csv_row(specialties="A0199")]),
                               headers={"Content-Type": "text/csv"})
    assert unknown.json()["errors"][0]["column"] == "specialties" and "A0199" in unknown.json()["errors"][0]["message"]
    header = pool_client.post("/api/experts/import", content="name,colour\r\n张三,红\r\n".encode(),
                              headers={"Content-Type": "text/csv"})
    assert header.status_code == 422 and header.json()["error"]["code"] == "invalid_csv"
    assert any(e["column"] == "colour" for e in header.json()["errors"])
    latin = pool_client.post("/api/experts/import", content="name\r\n张三\r\n".encode("gb18030"),
                             headers={"Content-Type": "text/csv"})
    assert latin.status_code == 422 and "UTF-8" in latin.json()["error"]["message"]


def test_good_rows_mode_imports_only_the_good_rows(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    rows = [csv_row(name="好甲"), csv_row(name="坏乙", phone="1"), csv_row(name="好丙")]
    response = pool_client.post("/api/experts/import?mode=good_rows", content=csv_file(rows),
                                headers={"Content-Type": "text/csv"})
    assert response.status_code == 200
    assert response.json()["imported"] == 2 and response.json()["rejected_rows"] == 1
    names = {e["name"] for e in pool_client.get("/api/experts").json()["experts"]}
    assert names == {"好甲", "好丙"}


def test_an_oversized_csv_file_is_refused(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    big = b"name\r\n" + b"x" * (5 * 2**20)
    response = pool_client.post("/api/experts/import", content=big, headers={"Content-Type": "text/csv"})
    assert response.status_code == 413
    header = ",".join(COLUMNS).encode() + b"\r\n"
    rows = pool_client.post("/api/experts/import", content=header + b"a,b\r\n" * 20_001,
                            headers={"Content-Type": "text/csv"})
    assert rows.status_code == 413
    assert pool_client.post("/api/experts/import", json={}).status_code == 415


def test_the_import_page_shows_the_error_report(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    assert "experts_import.js" in pool_client.get("/experts/import").text
    response = pool_client.post("/experts/import", content=csv_file([csv_row(phone="1")]),
                                headers={"Content-Type": "text/csv"})
    assert response.status_code == 422 and 'id="import-errors"' in response.text and "phone" in response.text


# ---------------------------------------------------------------------------- credit


def test_a_credit_deduction_changes_the_score_history_and_log(pool_client: TestClient, settings: Settings) -> None:
    supervisor = as_role(pool_client, settings, "supervisor")
    expert = make_expert(settings.database_url)
    url = f"/api/experts/{expert.id}/credit"
    first = pool_client.post(url, json={"delta": -30, "reason": "无故缺席评标", "evidence": "通报〔2024〕3号"})
    assert first.status_code == 201 and first.json()["credit"]["score_after"] == 70
    second = pool_client.post(url, json={"delta": -15, "reason": "评标迟到"})
    assert second.json()["credit"]["score_after"] == 55 and second.json()["credit"]["below_threshold"]
    history = pool_client.get(url).json()
    assert [e["delta"] for e in history["events"]] == [-15, -30] and history["credit_score"] == 55
    assert history["below_threshold"] and history["events"][0]["recorded_by"] == str(supervisor.id)
    for bad in ({"delta": 0, "reason": "x"}, {"delta": -101, "reason": "x"}, {"delta": -5, "reason": ""}):
        assert pool_client.post(url, json=bad).status_code == 422
    assert pool_client.post(url, json={"delta": -100, "reason": "严重违规"}).json()["credit"]["score_after"] == 0
    log = table_text(settings.database_url, "SELECT body FROM log_entries WHERE kind = 'expert.credit'")
    assert log.count("expert.credit") == 3 and "无故缺席" not in log and "score_after" in log
    page = pool_client.get(f"/experts/{expert.id}/credit")
    assert page.status_code == 200 and "无故缺席评标" in page.text
    form = pool_client.post(f"/experts/{expert.id}/credit", data={"delta": "5", "reason": "表现良好",
                                                                  "csrf_token": pool_client.headers["X-CSRF-Token"]},
                            follow_redirects=False)
    assert form.status_code == 303
    assert pool_client.get(f"/api/experts/{expert.id}").json()["expert"]["credit_score"] == 5


# ---------------------------------------------------------------------------- roles and CSRF


@pytest.mark.parametrize("role", ["agent", "bidder", "custodian"])
def test_people_who_draw_or_bid_cannot_see_the_pool(pool_client: TestClient, settings: Settings, role: str) -> None:
    expert = make_expert(settings.database_url)
    as_role(pool_client, settings, role)
    for url in ("/api/experts", f"/api/experts/{expert.id}", "/api/intermediaries", f"/api/experts/{expert.id}/credit"):
        response = pool_client.get(url)
        assert response.status_code == 403 and response.json()["error"]["code"] == "role_forbidden", url
    assert pool_client.get("/experts").status_code == 403
    assert expert.name not in pool_client.get(f"/experts/{expert.id}").text


def test_supervisors_read_and_record_credit_but_do_not_edit(pool_client: TestClient, settings: Settings) -> None:
    expert = make_expert(settings.database_url)
    as_role(pool_client, settings, "supervisor")
    assert pool_client.get("/api/experts").json()["total"] == 1
    assert pool_client.get(f"/experts/{expert.id}").status_code == 200
    assert pool_client.patch(f"/api/experts/{expert.id}", json={"version": 1, "title": "x"}).status_code == 403
    assert pool_client.post("/api/experts", json=expert_body()).status_code == 403
    assert pool_client.post(f"/api/experts/{expert.id}/status", json={"status": "retired"}).status_code == 403
    assert pool_client.post(f"/api/experts/{expert.id}/credit", json={"delta": 3, "reason": "好"}).status_code == 201


def test_state_changes_need_the_csrf_token(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "admin")
    del pool_client.headers["X-CSRF-Token"]
    refused = pool_client.post("/api/experts", json=expert_body())
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    form = pool_client.post("/experts/new", data={"name": "x"})
    assert form.status_code == 403


def test_an_expert_keeps_their_own_leave_and_avoidances(pool_client: TestClient, settings: Settings) -> None:
    user = make_user(settings.database_url, "expert")
    other = make_expert(settings.database_url)
    number = new_id_number()
    mine = make_expert(settings.database_url, id_number=number, user_id=user.id)
    token = login(pool_client, user)
    record = pool_client.get("/api/experts/me").json()["expert"]
    assert record["id"] == str(mine.id) and number not in pool_client.get("/api/experts/me").text
    assert pool_client.put("/api/experts/me/leave", json=["2031-01-05"]).json()["leave"] == ["2031-01-05"]
    added = pool_client.post("/api/experts/me/avoidances", json={"organisation_code": new_credit_code()})
    assert added.status_code == 201
    assert pool_client.delete(f"/api/experts/me/avoidances/{added.json()['avoidance']['id']}").status_code == 200
    assert pool_client.get(f"/api/experts/{other.id}").status_code == 403
    page = pool_client.get("/experts/me")
    assert page.status_code == 200 and "2031-01-05" in page.text and number not in page.text
    form = pool_client.post("/experts/me/leave", data={"action": "add", "first": "2031-02-01", "last": "2031-02-03",
                                                       "csrf_token": token}, follow_redirects=False)
    assert form.status_code == 303
    assert len(pool_client.get("/api/experts/me").json()["expert"]["leave"]) == 4
    agent = make_user(settings.database_url, "agent")
    declared = pool_client.post("/experts/me/avoidances", data={"username": agent.username, "note": "同学",
                                                               "csrf_token": token}, follow_redirects=False)
    assert declared.status_code == 303
    page = pool_client.get("/experts/me")
    assert agent.username in page.text and "同学" in page.text
    unknown = pool_client.post("/experts/me/avoidances", data={"username": "nobody-here", "csrf_token": token})
    assert unknown.status_code == 422 and "没有该用户名的登录账号" in unknown.text
    log = table_text(settings.database_url, "SELECT body FROM log_entries WHERE kind = 'expert.leave'")
    assert '"self_service":true' in log
    unlinked = make_user(settings.database_url, "expert")
    login(pool_client, unlinked)
    assert pool_client.get("/api/experts/me").status_code == 404


# ---------------------------------------------------------------------------- pages


def test_admin_pages_add_and_edit_an_expert(pool_client: TestClient, settings: Settings) -> None:
    token = login(pool_client, make_user(settings.database_url, "admin"))
    expert_user = make_user(settings.database_url, "expert")
    assert pool_client.get("/experts/new").status_code == 200
    fields = {**expert_body(), "csrf_token": token, "username": expert_user.username}
    fields["specialties"] = ["A0101", "A0201"]
    added = pool_client.post("/experts/new", data=fields, follow_redirects=False)
    assert added.status_code == 303, added.text
    page_url = added.headers["location"].split("?")[0]
    page = pool_client.get(added.headers["location"])
    assert page.status_code == 200 and "王建国" in page.text and fields["id_number"] not in page.text
    bad = pool_client.post("/experts/new", data={**fields, "phone": "123"})
    assert bad.status_code == 422 and "手机号码" in bad.text and fields["id_number"] not in bad.text
    again = pool_client.post("/experts/new", data=fields)
    assert again.status_code == 409 and fields["id_number"] not in again.text
    edit_form = pool_client.get(page_url + "/edit")
    assert edit_form.status_code == 200 and 'name="version" value="1"' in edit_form.text
    edited = pool_client.post(page_url + "/edit", data={**fields, "id_number": "", "title": "正高级工程师",
                                                        "version": "1"}, follow_redirects=False)
    assert edited.status_code == 303
    stale = pool_client.post(page_url + "/edit", data={**fields, "id_number": "", "version": "1"})
    assert stale.status_code == 409
    status = pool_client.post(page_url + "/status", data={"status": "retired", "csrf_token": token},
                              follow_redirects=False)
    assert status.status_code == 303 and "retired" in pool_client.get(page_url.replace("/experts", "/api/experts")).text


# ---------------------------------------------------------------------------- intermediaries


def test_intermediaries_are_managed_like_experts(pool_client: TestClient, settings: Settings) -> None:
    token = as_role(pool_client, settings, "admin") and pool_client.headers["X-CSRF-Token"]
    code = new_credit_code()
    body = {"name": "南京恒信工程造价咨询有限公司", "credit_code": code, "region": "320102", "contact_name": "刘敏",
            "phone": "13700000000", "categories": ["S01", "S02"]}
    created = pool_client.post("/api/intermediaries", json=body)
    assert created.status_code == 201, created.text
    agency = created.json()["intermediary"]
    assert agency["category_names"]["S01"] == "工程造价咨询"
    assert pool_client.post("/api/intermediaries", json=body).json()["error"]["code"] == "duplicate_credit_code"
    assert pool_client.post("/api/intermediaries", json={**body, "credit_code": new_credit_code(),
                                                         "categories": ["A0101"]}).status_code == 422
    url = f"/api/intermediaries/{agency['id']}"
    assert pool_client.patch(url, json={"version": 1, "contact_name": "张伟"}).json()["intermediary"]["version"] == 2
    assert pool_client.patch(url, json={"version": 1, "contact_name": "李娜"}).status_code == 409
    assert pool_client.post(url + "/credit", json={"delta": -50, "reason": "报告质量差"}).json()["credit"]["score_after"] == 50
    assert pool_client.get(url + "/credit").json()["below_threshold"]
    make_intermediary(settings.database_url, categories=("S03",))
    assert pool_client.get("/api/intermediaries", params={"category": "S03"}).json()["total"] == 1
    assert pool_client.get("/intermediaries").status_code == 200
    page = pool_client.get(f"/intermediaries/{agency['id']}")
    assert page.status_code == 200 and "报告质量差" in page.text
    status = pool_client.post(f"/intermediaries/{agency['id']}/status", data={"status": "suspended", "csrf_token": token},
                              follow_redirects=False)
    assert status.status_code == 303 and pool_client.get(url).json()["intermediary"]["status"] == "suspended"
    bad = pool_client.post(f"/intermediaries/{agency['id']}", data={**body, "phone": "1", "version": "2",
                                                                    "csrf_token": token})
    assert bad.status_code == 422 and "手机号码: " in bad.text
    added = pool_client.post("/intermediaries", data={**body, "credit_code": new_credit_code(), "categories": ["S04"],
                                                      "csrf_token": token}, follow_redirects=False)
    assert added.status_code == 303


def test_the_specialty_tree_is_served_to_every_user(pool_client: TestClient, settings: Settings) -> None:
    as_role(pool_client, settings, "agent")
    tree = {s["code"]: s for s in pool_client.get("/api/specialties").json()["specialties"]}
    assert 60 <= len(tree) <= 150 and tree["A0101"]["parent"] == "A01" and tree["S01"]["name"] == "工程造价咨询"


# ---------------------------------------------------------------------------- demo data


def test_the_demo_pool_seeds_3000_experts_in_bulk_and_only_once(settings: Settings) -> None:
    key = app_data_key(settings)
    statements: list[Any] = []

    async def seed(conn: Any) -> dict[str, Any]:
        conn.add_query_logger(statements.append)
        return await seed_demo_pool(conn, key, experts=3000, intermediaries=60)

    counts = run_db(settings.database_url, seed)
    assert counts["experts"] == 3000 and counts["intermediaries"] == 60 and not counts["skipped"]
    # Bulk writes, counted rather than timed: a statement per expert would be thousands.
    assert len(statements) < 100, len(statements)
    assert run_db(settings.database_url, seed)["skipped"]

    async def facts(conn: Any) -> dict[str, Any]:
        return dict(await conn.fetchrow("""
            SELECT count(DISTINCT region) AS regions, count(DISTINCT employer_code) AS employers,
                   count(*) FILTER (WHERE status <> 'active') AS inactive,
                   (SELECT count(DISTINCT specialty) FROM expert_specialties) AS specialties,
                   (SELECT count(*) FROM expert_leave) AS leave FROM experts"""))

    found = run_db(settings.database_url, facts)
    assert found["regions"] >= 8 and found["employers"] >= 100 and found["specialties"] >= 40
    assert 0 < found["inactive"] < 300 and found["leave"] > 0
