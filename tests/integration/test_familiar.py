"""The familiar-faces metric over a small pairing history written with SQL, as the draw service writes it."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from starlette.testclient import TestClient

from evaluation.familiar import FamiliarQueryError
from evaluation.familiar_store import familiar_summary
from tenderhall.settings import Settings
from tests.factories import TestUser as User, login, make_organisation, make_user, new_credit_code, run_db

SHANGHAI = timezone(timedelta(hours=8))
URL = "/api/familiar-faces"


def at(day: str, hour: int = 9) -> datetime:
    """A time on a day of the centre (UTC+8)."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=SHANGHAI)


@dataclass
class Evaluation:
    """One committee: the experts (names), the tenderer's name and the agent's key, met at `when`."""

    when: datetime
    experts: list[str]
    tenderer: str
    agent: str
    parent: int | None = None  # index of the evaluation this one is an extension of
    draw_id: uuid.UUID = field(default_factory=uuid.uuid4)


async def _write_history(conn: Any, requester: uuid.UUID, evaluations: list[Evaluation]) -> dict[str, uuid.UUID]:
    """Experts, tenders, draws and pairings for `evaluations`; returns the experts' ids by name."""
    names = sorted({n for e in evaluations for n in e.experts})
    experts: dict[str, uuid.UUID] = {}
    for i, name in enumerate(names):
        experts[name] = uuid.uuid4()
        await conn.execute(
            """INSERT INTO experts (id, name, id_number_sealed, id_number_index, id_number_masked, phone,
                                    employer_name, employer_code, region, title)
               VALUES ($1, $2, $3, $4, '110105********123X', $5, '测试设计院', $6, '110105', '高级工程师')""",
            experts[name], name, b"sealed", hashlib.sha256(experts[name].bytes).digest(), f"1380000{i:04d}",
            new_credit_code())
    for e in evaluations:
        tender_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO tenders (id, code, name, tenderer, agent_id, budget, evaluation_method, deadline,
                                    decryption_minutes, decryption_rule, threshold, summary_fields)
               VALUES ($1, $2, '测试项目', $3, $4, 1000000, 'lowest_evaluated_price', $5, 30, 'void', 0, '[]'::jsonb)""",
            tender_id, f"T-{tender_id.hex[:12]}", e.tenderer, requester, e.when - timedelta(days=1))
        parent = evaluations[e.parent].draw_id if e.parent is not None else None
        await conn.execute(
            """INSERT INTO draws (id, purpose, tender_id, subject, title, spec, needed_at, draw_after, commitment,
                                  requested_by, parent_id, reply_minutes, scheduled_log_index)
               VALUES ($1, 'evaluation', $2, $3::jsonb, '评标专家抽取', '{}'::jsonb, $4, $5, $6, $7, $8, 15, 0)""",
            e.draw_id, tender_id, json.dumps({"tender_id": str(tender_id)}), e.when, e.when - timedelta(days=1),
            "ab" * 32, requester, parent)
        rows = []
        for name in e.experts:
            rows.append((e.draw_id, experts[name], f"tenderer:{e.tenderer}", e.when))
            rows.append((e.draw_id, experts[name], f"agent:{e.agent}", e.when))
            rows += [(e.draw_id, experts[name], f"expert:{experts[other]}", e.when) for other in e.experts if other != name]
        await conn.executemany("INSERT INTO pairings (draw_id, expert_id, counterpart, met_at) VALUES ($1, $2, $3, $4)",
                               rows)
    return experts


def write_history(dsn: str, evaluations: list[Evaluation]) -> dict[str, uuid.UUID]:
    requester = make_user(dsn, "agent")
    return run_db(dsn, lambda conn: _write_history(conn, requester.id, evaluations))


def as_supervisor(client: TestClient, dsn: str) -> User:
    user = make_user(dsn, "supervisor")
    login(client, user)
    return user


def get(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(URL, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def period(body: dict[str, Any], start: str) -> dict[str, Any]:
    return next(p for p in body["periods"] if p["period_start"] == start)


def test_march_share_counts_evaluations_meeting_a_tenderer_met_in_february(client: TestClient, database_url: str) -> None:
    write_history(database_url, [
        Evaluation(at("2025-02-10"), ["张伟", "李娜", "王芳"], "市第一医院", "agency-a"),
        Evaluation(at("2025-02-20"), ["赵磊", "陈静", "刘洋"], "市交通局", "agency-b"),
        # March: two committees hold an expert who met the same tenderer in February.
        Evaluation(at("2025-03-03"), ["张伟", "孙强", "周敏"], "市第一医院", "agency-c"),
        Evaluation(at("2025-03-10"), ["吴昊", "郑洁", "刘洋"], "市交通局", "agency-d"),
        # ... and two do not: 李娜 meets another tenderer; the others are new faces.
        Evaluation(at("2025-03-17"), ["李娜", "冯雪", "韩梅"], "市水务局", "agency-e"),
        Evaluation(at("2025-03-24"), ["杨光", "朱丽", "秦岭"], "市教育局", "agency-f"),
    ])
    as_supervisor(client, database_url)
    body = get(client, **{"from": "2025-02-01", "to": "2025-03-31"})
    assert [p["period_start"] for p in body["periods"]] == ["2025-02-01", "2025-03-01"]
    february, march = body["periods"]
    # An expert's first meeting with a tenderer never counts as a repeat.
    assert (february["evaluations"], february["tenderer_repeat_evaluations"], february["tenderer_repeat_share"]) == (
        2, 0, "0.0000")
    assert (march["evaluations"], march["tenderer_repeat_evaluations"], march["tenderer_repeat_share"]) == (4, 2, "0.5000")
    assert march["agent_repeat_share"] == "0.0000" and march["experts"] == 12
    assert (march["expert_pairs"], march["expert_repeat_pairs"], march["expert_repeat_share"]) == (12, 0, "0.0000")
    assert body["totals"]["evaluations"] == 6 and body["totals"]["experts"] == 15
    assert body["totals"]["tenderer_repeat_share"] == "0.3333"
    top = body["repeated_pairings"]["tenderer"]
    assert [(r["expert_name"], r["counterpart_name"], r["meetings"]) for r in top] == [
        ("刘洋", "市交通局", 2), ("张伟", "市第一医院", 2)]  # equal counts: the later meeting first
    assert top[0]["counterpart"] == "tenderer:市交通局" and top[0]["last_met_at"].startswith("2025-03-10T01:00:00")
    assert body["repeated_pairings"]["agent"] == []


def test_window_counts_180_days_back_but_not_181(client: TestClient, database_url: str) -> None:
    base = at("2025-07-01")
    write_history(database_url, [
        Evaluation(base - timedelta(days=181), ["张伟"], "甲医院", "agency-a"),
        Evaluation(base + timedelta(hours=2) - timedelta(days=180), ["李娜"], "乙医院", "agency-b"),
        Evaluation(base, ["张伟"], "甲医院", "agency-x"),  # 181 days after: not a repeat
        Evaluation(base + timedelta(hours=2), ["李娜"], "乙医院", "agency-y"),  # exactly 180 days after: a repeat
    ])
    as_supervisor(client, database_url)
    month = {"from": "2025-07-01", "to": "2025-07-31"}
    july = period(get(client, **month), "2025-07-01")
    assert (july["evaluations"], july["tenderer_repeat_evaluations"], july["tenderer_repeat_share"]) == (2, 1, "0.5000")
    assert period(get(client, **month, window_days=181), "2025-07-01")["tenderer_repeat_evaluations"] == 2
    assert period(get(client, **month, window_days=179), "2025-07-01")["tenderer_repeat_evaluations"] == 0
    # The earlier meetings lie outside the range: they count as history, not as evaluations of it.
    assert get(client, **month)["totals"]["evaluations"] == 2


def test_expert_pairs_and_agents_that_meet_again(client: TestClient, database_url: str) -> None:
    agency = make_organisation(database_url, name="华信招标代理有限公司", kind="agency")
    write_history(database_url, [
        Evaluation(at("2025-04-07"), ["张伟", "李娜", "王芳"], "甲医院", str(agency)),
        # Two of the three sat together before: 1 of 3 pairs; same agency again for both experts.
        Evaluation(at("2025-05-12"), ["张伟", "李娜", "赵磊"], "乙医院", str(agency)),
        # All three pairs new; another agent.
        Evaluation(at("2025-05-19"), ["陈静", "刘洋", "孙强"], "丙医院", "agent-user-1"),
    ])
    as_supervisor(client, database_url)
    body = get(client, **{"from": "2025-04-01", "to": "2025-05-31"})
    april, may = body["periods"]
    assert (april["expert_pairs"], april["expert_repeat_pairs"], april["expert_repeat_share"]) == (3, 0, "0.0000")
    assert (may["expert_pairs"], may["expert_repeat_pairs"], may["expert_repeat_share"]) == (6, 1, "0.1667")
    assert (may["agent_repeat_evaluations"], may["agent_repeat_share"]) == (1, "0.5000")
    assert may["tenderer_repeat_share"] == "0.0000"
    assert (body["totals"]["expert_pairs"], body["totals"]["expert_repeat_pairs"]) == (9, 1)
    agents = body["repeated_pairings"]["agent"]
    assert [(r["expert_name"], r["counterpart_name"], r["meetings"]) for r in agents] == [
        ("张伟", "华信招标代理有限公司", 2), ("李娜", "华信招标代理有限公司", 2)]


def test_an_extension_draw_is_part_of_its_evaluation(client: TestClient, database_url: str) -> None:
    when = at("2025-05-06")
    write_history(database_url, [
        Evaluation(at("2025-04-01"), ["张伟"], "甲医院", "agency-a"),
        Evaluation(when, ["李娜", "王芳"], "甲医院", "agency-b"),
        Evaluation(when, ["张伟"], "甲医院", "agency-b", parent=1),  # the seat left empty, drawn again
    ])
    as_supervisor(client, database_url)
    may = period(get(client, **{"from": "2025-05-01", "to": "2025-05-31"}), "2025-05-01")
    assert (may["evaluations"], may["tenderer_repeat_evaluations"], may["experts"]) == (1, 1, 3)


def test_periods_follow_the_display_time_zone_and_weeks_start_on_monday(client: TestClient, database_url: str) -> None:
    write_history(database_url, [
        # 2025-03-31 20:00 UTC is 1 April 04:00 in Shanghai (a Tuesday).
        Evaluation(datetime(2025, 3, 31, 20, tzinfo=timezone.utc), ["张伟"], "甲医院", "agency-a"),
        Evaluation(at("2025-03-30", 23), ["李娜"], "乙医院", "agency-b"),  # Sunday
    ])
    as_supervisor(client, database_url)
    months = get(client, **{"from": "2025-03-01", "to": "2025-04-30"})
    assert [p["evaluations"] for p in months["periods"]] == [1, 1]
    weeks = get(client, period="week", **{"from": "2025-03-24", "to": "2025-04-06"})
    assert [(p["period_start"], p["evaluations"]) for p in weeks["periods"]] == [("2025-03-24", 1), ("2025-03-31", 1)]
    # The range is in local dates too: to=2025-03-31 leaves out the Shanghai morning of 1 April.
    assert get(client, **{"from": "2025-03-31", "to": "2025-03-31"})["totals"]["evaluations"] == 0


def test_no_evaluations_gives_null_shares_and_an_empty_page(client: TestClient, database_url: str) -> None:
    as_supervisor(client, database_url)
    body = get(client)
    assert len(body["periods"]) == 12 and body["period"] == "month" and body["window_days"] == 180
    assert all(p["evaluations"] == 0 and p["tenderer_repeat_share"] is None for p in body["periods"])
    assert body["totals"]["expert_repeat_share"] is None
    assert body["repeated_pairings"] == {"tenderer": [], "agent": []}
    client.cookies.set("lang", "en")
    page = client.get("/familiar-faces")
    assert page.status_code == 200 and "No evaluations in this range" in page.text and "<svg" not in page.text


def test_page_shows_periods_chart_and_repeated_pairings(client: TestClient, database_url: str) -> None:
    write_history(database_url, [
        Evaluation(at("2025-02-10"), ["张伟", "李娜"], "市第一医院", "agency-a"),
        Evaluation(at("2025-03-03"), ["张伟", "王芳"], "市第一医院", "agency-b"),
    ])
    as_supervisor(client, database_url)
    page = client.get("/familiar-faces", params={"from": "2025-02-01", "to": "2025-03-31"})
    assert page.status_code == 200
    assert "熟面孔" in page.text and "<svg" in page.text and "100.0%" in page.text
    assert "张伟" in page.text and "市第一医院" in page.text
    assert 'value="2025-02-01"' in page.text


@pytest.mark.parametrize(("params", "message"), [
    ({"period": "year"}, "period must be week or month, got 'year'"),
    ({"from": "2025-03-02", "to": "2025-03-01"}, "from (2025-03-02) is after to (2025-03-01)"),
    ({"from": "2019-01-01", "to": "2025-01-01"}, "the range 2019-01-01 to 2025-01-01 is longer than 5 years"),
    ({"window_days": "0"}, "window_days must be from 1 to 730, got 0"),
    ({"window_days": "731"}, "window_days must be from 1 to 730, got 731"),
    ({"to": "yesterday"}, "to must be a date written YYYY-MM-DD, got 'yesterday'"),
])
def test_bad_requests_are_refused_with_422_and_the_reason(client: TestClient, database_url: str,
                                                          params: dict[str, str], message: str) -> None:
    as_supervisor(client, database_url)
    response = client.get(URL, params=params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_query"
    assert message in response.json()["error"]["message"]
    page = client.get("/familiar-faces", params=params)
    assert page.status_code == 422 and message.split(" got ")[0].replace("'", "&#39;") in page.text


@pytest.mark.parametrize(("role", "status"), [
    ("supervisor", 200), ("admin", 200), ("agent", 403), ("expert", 403), ("bidder", 403)])
def test_only_supervisors_and_admins_see_the_metric(client: TestClient, database_url: str, role: str,
                                                    status: int) -> None:
    login(client, make_user(database_url, role))
    response = client.get(URL)
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["code"] == "role_forbidden"
    assert client.get("/familiar-faces").status_code == status


def test_anonymous_is_asked_to_log_in(client: TestClient) -> None:
    assert client.get(URL).status_code == 401
    page = client.get("/familiar-faces", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_familiar_summary_serves_other_pages(settings: Settings, database_url: str) -> None:
    write_history(database_url, [
        Evaluation(at("2025-02-10"), ["张伟"], "甲医院", "agency-a"),
        Evaluation(at("2025-03-03"), ["张伟"], "甲医院", "agency-a"),
    ])

    async def both(conn: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        free = await familiar_summary(conn, start=date(2025, 3, 1), end=date(2025, 3, 31), period="month",
                                      window_days=180, zone=settings.display_timezone)
        async with conn.transaction():  # inside the caller's own transaction too
            held = await familiar_summary(conn, start=date(2025, 3, 1), end=date(2025, 3, 31), period="week",
                                          window_days=10, zone=settings.display_timezone)
        return free, held

    free, held = run_db(database_url, both)
    assert free["totals"]["tenderer_repeat_share"] == "1.0000" and free["totals"]["agent_repeat_share"] == "1.0000"
    assert held["totals"]["tenderer_repeat_share"] == "0.0000" and len(held["periods"]) == 6

    async def refused(conn: Any) -> None:
        await familiar_summary(conn, start=date(2025, 3, 1), end=date(2025, 3, 1), period="month", window_days=0,
                               zone="Asia/Shanghai")

    with pytest.raises(FamiliarQueryError, match="window_days"):
        run_db(database_url, refused)
