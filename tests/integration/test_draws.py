"""Expert draws end to end on the real database: schedule with a commitment, avoidance in the query,
reveal and draw, verification from the published record, notices, replies, backups, extension, unsealing."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from starlette.testclient import TestClient

from evaluation.jobs import JOBS
from evaluation.notifier import read_outbox
from tenderhall.settings import Settings
from tests.draw_world import Secret, add_expert, add_intermediary, evaluation_request, in_minutes
from tests.factories import login, make_user, new_credit_code, run_db
from tests.hall_world import make_hall


def _outbox(settings: Settings) -> list[dict[str, Any]]:
    return read_outbox(settings.notification_outbox_path)


def _token(notice: dict[str, Any]) -> str:
    return notice["link"].rsplit("/", 1)[1]


def _scalar(dsn: str, sql: str, *args: Any) -> Any:
    return run_db(dsn, lambda c: c.fetchval(sql, *args))


def _local_day(minutes: float) -> Any:
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).astimezone(ZoneInfo("Asia/Shanghai")).date()


def _declares(dsn: str, expert_id: uuid.UUID, *, user_id: uuid.UUID | None = None, code: str | None = None) -> uuid.UUID:
    run_db(dsn, lambda c: c.execute("""INSERT INTO expert_avoidances (id, expert_id, organisation_code, user_id, note)
                                       VALUES ($1, $2, $3, $4, '亲属')""", uuid.uuid4(), expert_id, code, user_id))
    return expert_id


def _paired(dsn: str, expert_id: uuid.UUID, counterpart: str, times: int, days_ago: int = 10) -> uuid.UUID:
    """Give an expert `times` past evaluations with a counterpart (each its own old draw)."""
    async def work(conn: Any) -> None:
        agent = await conn.fetchval("SELECT id FROM users LIMIT 1")
        for _ in range(times):
            draw_id = uuid.uuid4()
            await conn.execute("""INSERT INTO draws (id, purpose, subject, title, spec, needed_at, draw_after, commitment,
                                  requested_by, reply_minutes, scheduled_log_index)
                                  VALUES ($1, 'intermediary', '{}', '旧抽取', '{}', now() - make_interval(days => $2),
                                          now() - make_interval(days => $2 + 1), $3, $4, 15, 0)""",
                               draw_id, days_ago, "0" * 64, agent)
            await conn.execute("INSERT INTO pairings (draw_id, expert_id, counterpart, met_at) VALUES ($1, $2, $3, now() - make_interval(days => $4))",
                               draw_id, expert_id, counterpart, days_ago)
    run_db(dsn, work)
    return expert_id


def _schedule_and_run(client: TestClient, body: dict[str, Any], secret: Secret) -> dict[str, Any]:
    response = client.post("/api/draws", json=body)
    assert response.status_code == 201, response.text
    draw_id = response.json()["draw"]["id"]
    response = client.post(f"/api/draws/{draw_id}/run", json={"secret": secret.text})
    assert response.status_code == 200, response.text
    return response.json()["draw"]


def test_avoidance_draw_verification_and_notices(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    hall = make_hall(client, dsn, bidders=2, rule="void")
    eligible = [add_expert(dsn, region=r) for r in ("320102", "320102", "320205", "320505", "320505", "321002")]
    avoided = {
        "bidder employee": add_expert(dsn, employer_code=hall.bidders[0].credit_code),
        "suspended": add_expert(dsn, status="suspended"),
        "low credit": add_expert(dsn, credit=59),
        "other specialty": add_expert(dsn, specialties=("B0101",)),
        "on leave": add_expert(dsn, leave=(_local_day(30),)),
        "declared relation": _declares(dsn, add_expert(dsn), user_id=hall.agent.id),
        "repeat pairing": _paired(dsn, add_expert(dsn), f"tenderer:{hall.tender['tenderer']}", times=4),
    }
    # Served three times (not more than the cap of 3): still eligible.
    eligible.append(_paired(dsn, add_expert(dsn), f"tenderer:{hall.tender['tenderer']}", times=3))
    login(client, hall.agent)
    secret = Secret()
    draw = _schedule_and_run(client, evaluation_request(hall.id, secret, count=3, backups=2), secret)
    assert draw["counts"] == {"confirmed": 0, "notified": 3, "declined": 0, "expired": 0, "standby": 2, "unused": 0}

    record = client.get(f"/api/draws/{draw['id']}/record").json()
    assert len(record["candidates"]) == len(eligible)
    assert client.get(f"/api/draws/{draw['id']}/verification").json() == {"ok": True, "problems": []}
    # The public record names nobody: pseudonyms only.
    text = json.dumps(record)
    assert all(str(e) not in text for e in [*eligible, *avoided.values()])

    notices = _outbox(settings)
    assert len(notices) == 3 and all("/draws/reply/" in n["link"] for n in notices)
    assert all(hall.tender["name"] not in n["body"] for n in notices)  # the project stays confidential

    drawn = run_db(dsn, lambda c: c.fetch("SELECT person_sealed FROM draw_seats"))
    assert len(drawn) == 5


def _pool(dsn: str, n: int, **kwargs: Any) -> list[uuid.UUID]:
    regions = ("320102", "320205", "320505", "321002")
    return [add_expert(dsn, region=regions[i % len(regions)], **kwargs) for i in range(n)]


def _drawn_world(client: TestClient, settings: Settings, *, experts: int = 6, count: int = 3, backups: int = 1,
                 needed_in_minutes: float = 30) -> tuple[Any, dict[str, Any]]:
    hall = make_hall(client, settings.database_url, bidders=1, rule="void")
    _pool(settings.database_url, experts)
    login(client, hall.agent)
    secret = Secret()
    draw = _schedule_and_run(client, evaluation_request(hall.id, secret, count=count, backups=backups,
                                                        needed_in_minutes=needed_in_minutes), secret)
    return hall, draw


def test_decline_and_silence_call_the_backups_in_order_then_the_draw_extends(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    hall, draw = _drawn_world(client, settings, experts=7, count=3, backups=1)
    first = _outbox(settings)
    assert len(first) == 3
    anonymous = client.__class__(client.app)
    anonymous.__enter__()
    # A one-time link answers once.
    assert anonymous.post(f"/api/draws/reply/{_token(first[0])}", json={"answer": "accept"}).json()["status"] == "confirmed"
    again = anonymous.post(f"/api/draws/reply/{_token(first[0])}", json={"answer": "decline"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_answered"
    assert anonymous.post("/api/draws/reply/" + "x" * 43, json={"answer": "accept"}).status_code == 404
    bad = anonymous.post(f"/api/draws/reply/{_token(first[1])}", json={"answer": "maybe"})
    assert bad.status_code == 422
    # A decline notifies backup 1 at once.
    declined = anonymous.post(f"/api/draws/reply/{_token(first[1])}", json={"answer": "decline", "reason": "出差"})
    assert declined.json()["status"] == "declined"
    second = _outbox(settings)[3:]
    assert len(second) == 1
    # Silence past the window: expired, and no backup is left → the draw is short of one seat.
    run_db(dsn, lambda c: c.execute("UPDATE draw_seats SET reply_by = now() - interval '1 second' WHERE status = 'notified' AND backup_rank IS NULL"))
    late = anonymous.post(f"/api/draws/reply/{_token(first[2])}", json={"answer": "accept"})
    assert late.status_code == 410 and late.json()["error"]["code"] == "reply_window_closed"
    view = client.get(f"/api/draws/{draw['id']}").json()["draw"]
    assert view["counts"]["notified"] == 2  # the job has not run yet
    _run_jobs(client)
    view = client.get(f"/api/draws/{draw['id']}").json()["draw"]
    assert view["counts"] == {"confirmed": 1, "notified": 1, "declined": 1, "expired": 1, "standby": 0, "unused": 0}
    assert view["missing"] == [{"specialty": "A0101", "missing": 1, "exclude_regions": []}]
    kinds = run_db(dsn, lambda c: c.fetch("SELECT kind FROM log_entries WHERE kind LIKE 'draw.%' ORDER BY idx"))
    assert [k["kind"] for k in kinds].count("draw.short") == 1

    # The extension is a new verifiable draw that excludes everyone already asked.
    secret = Secret()
    extended = client.post(f"/api/draws/{draw['id']}/extend", json={"commitment": secret.commitment, "backups": 1})
    assert extended.status_code == 201, extended.text
    child = extended.json()["draw"]["draws"][-1]
    assert child["spec"]["groups"][0]["count"] == 1
    assert client.post(f"/api/draws/{draw['id']}/extend", json={"commitment": secret.commitment}).json()["error"]["code"] == "extension_pending"
    ran = client.post(f"/api/draws/{child['id']}/run", json={"secret": secret.text})
    assert ran.status_code == 200, ran.text
    record = client.get(f"/api/draws/{child['id']}/record").json()
    assert len(record["candidates"]) == 7 - 4  # four were asked already
    assert client.get(f"/api/draws/{child['id']}/verification").json()["ok"] is True
    assert ran.json()["draw"]["missing"] == []
    anonymous.__exit__(None, None, None)


def _run_jobs(client: TestClient) -> None:
    """One run of the evaluation jobs, on the app's own loop and pool."""
    for job in JOBS:
        client.portal.call(job, client.app, client.app_state)


def test_names_stay_sealed_until_sign_in_then_every_reading_is_logged(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    hall, draw = _drawn_world(client, settings, experts=5, count=3, backups=1, needed_in_minutes=180)
    url = f"/api/draws/{draw['id']}"
    sealed = client.get(url + "/names")
    assert sealed.status_code == 403 and sealed.json()["error"]["code"] == "names_sealed"
    notices = _outbox(settings)
    with TestClient(client.app) as anonymous:
        for notice in notices[:2]:
            assert anonymous.post(f"/api/draws/reply/{_token(notice)}", json={"answer": "accept"}).status_code == 200
    early = client.post(url + "/unseal")
    assert early.status_code == 409 and early.json()["error"]["code"] == "names_sealed"
    # The view shows counts and confirmation status, never who.
    view = client.get(url).json()["draw"]
    assert set(view["groups"][0]) == {"specialty", "specialty_name", "count", "confirmed", "notified", "declined",
                                      "expired", "standby", "unused"}
    assert "people" not in view and "names" not in json.dumps(view)

    run_db(dsn, lambda c: c.execute("UPDATE draws SET needed_at = now() + interval '30 minutes', draw_after = now() - interval '1 hour'"))
    assert client.post(url + "/unseal").status_code == 200
    with TestClient(client.app) as anonymous:  # the third answers too late: the committee has closed
        late = anonymous.post(f"/api/draws/reply/{_token(notices[2])}", json={"answer": "accept"})
        assert late.status_code == 409 and late.json()["error"]["code"] == "committee_closed"
    names = client.get(url + "/names").json()
    members = [p for p in names["people"] if p["backup_rank"] is None]
    assert len(members) == 3 and all(p["name"] for p in members)
    assert sorted(p["status"] for p in members) == ["confirmed", "confirmed", "expired"]
    assert [p["status"] for p in names["people"] if p["backup_rank"]] == ["unused"]
    assert _scalar(dsn, "SELECT count(*) FROM draw_name_access") == 1
    assert _scalar(dsn, "SELECT count(*) FROM log_entries WHERE kind = 'draw.names_viewed'") == 1
    # Who met whom: each confirmed member with the tenderer, the agent and the other member.
    assert _scalar(dsn, "SELECT count(*) FROM pairings") == 2 * (2 + 1)
    assert _scalar(dsn, "SELECT count(*) FROM pairings WHERE counterpart = $1", f"tenderer:{hall.tender['tenderer']}") == 2

    # Another agent sees nothing of it.
    other = make_user(dsn, "agent")
    login(client, other)
    assert client.get(url + "/names").status_code == 404
    assert client.get(url).status_code == 404


def test_impossible_and_unknown_requests_are_refused_before_anything_is_drawn(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    hall = make_hall(client, dsn, bidders=1, rule="void")
    _pool(dsn, 4)
    add_expert(dsn, status="suspended")
    login(client, hall.agent)
    secret = Secret()
    too_many = client.post("/api/draws", json=evaluation_request(hall.id, secret, count=3, backups=2))
    assert too_many.status_code == 422
    error = too_many.json()["error"]
    assert error["code"] == "draw_impossible" and "need 5, only 4 eligible" in error["message"]
    funnel = error["detail"]["funnel"]["A0101"]
    assert [step["left"] for step in funnel][:2] == [5, 4]  # the specialty had 5; status active left 4
    quota = client.post("/api/draws", json=evaluation_request(
        hall.id, secret, count=3, backups=0, group={"quotas": [{"region": "3202", "count": 2}]}))
    assert quota.status_code == 422 and quota.json()["error"]["detail"]["shortfalls"][0]["region"] == "3202"
    unknown = client.post("/api/draws", json=evaluation_request(hall.id, secret, specialty="Z99"))
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_specialty"
    over = client.post("/api/draws", json=evaluation_request(
        hall.id, secret, count=2, group={"quotas": [{"region": "3201", "count": 3}]}))
    assert over.status_code == 422 and "quotas ask for 3 seats" in over.json()["error"]["message"]
    far = client.post("/api/draws", json=evaluation_request(hall.id, secret, needed_in_minutes=3 * 24 * 60))
    assert far.status_code == 422 and "two days" in far.json()["error"]["message"]
    assert client.post("/api/draws", json={**evaluation_request(hall.id, secret), "commitment": "abc"}).status_code == 422
    assert _scalar(dsn, "SELECT count(*) FROM draws") == 0
    assert _scalar(dsn, "SELECT count(*) FROM log_entries WHERE kind LIKE 'draw.%'") == 0


def test_a_wrong_secret_or_an_early_reveal_draws_nothing(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    hall = make_hall(client, dsn, bidders=1, rule="void")
    _pool(dsn, 6)
    login(client, hall.agent)
    secret = Secret()
    body = evaluation_request(hall.id, secret, needed_in_minutes=120, draw_after=in_minutes(60))
    draw_id = client.post("/api/draws", json=body).json()["draw"]["id"]
    early = client.post(f"/api/draws/{draw_id}/run", json={"secret": secret.text})
    assert early.status_code == 409 and early.json()["error"]["code"] == "too_early"
    run_db(dsn, lambda c: c.execute("UPDATE draws SET draw_after = now() - interval '1 minute'"))
    wrong = client.post(f"/api/draws/{draw_id}/run", json={"secret": Secret().text})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "secret_mismatch"
    assert client.post(f"/api/draws/{draw_id}/run", json={"secret": "!!"}).status_code == 422
    assert _scalar(dsn, "SELECT status FROM draws") == "scheduled"
    assert _scalar(dsn, "SELECT count(*) FROM draw_seats") == 0
    assert client.post(f"/api/draws/{draw_id}/run", json={"secret": secret.text}).status_code == 200
    again = client.post(f"/api/draws/{draw_id}/run", json={"secret": secret.text})
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_scheduled"


def test_a_tampered_record_does_not_verify(client: TestClient, settings: Settings, tmp_path: Any) -> None:
    from tenderhall.cli import main

    dsn = settings.database_url
    _, draw = _drawn_world(client, settings, experts=6, count=3, backups=1)
    record = client.get(f"/api/draws/{draw['id']}/record").json()
    saved = tmp_path / "record.json"
    saved.write_text(json.dumps(record))
    key = tmp_path / "log-key.pem"
    key.write_text(client.get("/.well-known/tenderhall-log-key").json()["public_key_pem"])
    assert main(["draw", "verify", "--record", str(saved), "--public-key", str(key)]) == 0

    # Swap two members for two candidates that were not drawn: the result no longer follows.
    drawn = {m["candidate"] for g in record["result"]["groups"] for m in g["members"]} | set(record["result"]["groups"][0]["backups"])
    outsider = next(c["id"] for c in record["candidates"] if c["id"] not in drawn)
    record["result"]["groups"][0]["members"][0]["candidate"] = outsider
    saved.write_text(json.dumps(record))
    assert main(["draw", "verify", "--record", str(saved), "--public-key", str(key)]) == 1
    stored = {k: v for k, v in record.items() if not k.endswith("_log_index")}
    run_db(dsn, lambda c: c.execute("UPDATE draws SET record = $1", json.dumps(stored)))
    checked = client.get(f"/api/draws/{draw['id']}/verification").json()
    assert checked["ok"] is False
    assert any("result is not what the draw gives" in p for p in checked["problems"])
    assert any("logged result differs" in p for p in checked["problems"])
    page = client.get(f"/draws/{draw['id']}/verify")
    assert page.status_code == 200 and 'data-verified="no"' in page.text


def test_in_app_invitation_for_an_expert_with_a_login(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    hall = make_hall(client, dsn, bidders=1, rule="void")
    person = make_user(dsn, "expert")
    add_expert(dsn, user_id=person.id)
    login(client, hall.agent)
    secret = Secret()
    draw = _schedule_and_run(client, evaluation_request(hall.id, secret, count=1, backups=0), secret)
    login(client, person)
    waiting = client.get("/api/draws/invitations").json()["invitations"]
    assert len(waiting) == 1 and waiting[0]["draw"] == draw["id"]
    page = client.get("/draws/invitations")
    assert page.status_code == 200 and "A0101" in page.text
    reply = client.post(f"/api/draws/{draw['id']}/seats/{waiting[0]['position']}/reply", json={"answer": "accept"})
    assert reply.status_code == 200 and reply.json()["status"] == "confirmed"
    assert client.get("/api/draws/invitations").json()["invitations"] == []
    stranger = make_user(dsn, "expert")
    login(client, stranger)
    refused = client.post(f"/api/draws/{draw['id']}/seats/0/reply", json={"answer": "decline"})
    assert refused.status_code == 404


def test_intermediary_draw_avoids_the_purchaser_and_is_open_at_once(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    supervisor = make_user(dsn, "supervisor")
    purchaser_code = new_credit_code()
    own = add_intermediary(dsn, credit_code=purchaser_code)
    others = [add_intermediary(dsn, categories=("S01",)) for _ in range(3)]
    add_intermediary(dsn, categories=("S02",))
    login(client, supervisor)
    secret = Secret()
    body = {"purpose": "intermediary", "title": "造价咨询机构选取", "purchaser_name": "某区教育局",
            "purchaser_code": purchaser_code, "project": "校舍改造造价咨询",
            "spec": {"groups": [{"specialty": "S01", "count": 1, "backups": 2}]},
            "needed_at": in_minutes(24 * 60), "commitment": secret.commitment}
    draw = _schedule_and_run(client, body, secret)
    record = client.get(f"/api/draws/{draw['id']}/record").json()
    assert len(record["candidates"]) == 3
    pending = client.post(f"/api/draws/{draw['id']}/unseal")
    assert pending.status_code == 409 and pending.json()["error"]["code"] == "answers_pending"
    with TestClient(client.app) as anonymous:
        [notice] = _outbox(settings)
        assert anonymous.post(f"/api/draws/reply/{_token(notice)}", json={"answer": "accept"}).status_code == 200
    assert client.post(f"/api/draws/{draw['id']}/unseal").status_code == 200
    [chosen] = [p for p in client.get(f"/api/draws/{draw['id']}/names").json()["people"] if p["status"] == "confirmed"]
    assert uuid.UUID(chosen["id"]) in others and uuid.UUID(chosen["id"]) != own
    assert _scalar(dsn, "SELECT purchaser FROM intermediary_services") == "某区教育局"


def test_inspection_team_avoids_the_parties_and_the_projects_evaluators(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    hall, draw = _drawn_world(client, settings, experts=4, count=2, backups=0)
    with TestClient(client.app) as anonymous:
        for notice in _outbox(settings):
            anonymous.post(f"/api/draws/reply/{_token(notice)}", json={"answer": "accept"})
    assert client.post(f"/api/draws/{draw['id']}/unseal").status_code == 200
    evaluators = {uuid.UUID(p["id"]) for p in client.get(f"/api/draws/{draw['id']}/names").json()["people"]}
    add_expert(dsn, employer_code=hall.bidders[0].credit_code)  # works for the winner
    supervisor = make_user(dsn, "supervisor")
    login(client, supervisor)
    secret = Secret()
    body = {"purpose": "inspection", "title": "标后履约检查", "tender_ids": [hall.id],
            "spec": {"groups": [{"specialty": "A01", "count": 2, "backups": 0}]},
            "needed_at": in_minutes(24 * 60), "commitment": secret.commitment}
    open_still = client.post("/api/draws", json=body)
    assert open_still.status_code == 422 and open_still.json()["error"]["code"] == "not_awarded"
    run_db(dsn, lambda c: c.execute("""INSERT INTO openings (tender_id, step, step_at) VALUES ($1, 'closed', now())""",
                                    uuid.UUID(hall.id)))
    inspection = _schedule_and_run(client, body, secret)
    record = client.get(f"/api/draws/{inspection['id']}/record").json()
    assert len(record["candidates"]) == 2  # 4 in the pool, less the 2 evaluators; the bidder's employee avoided
    assert client.get(f"/api/draws/{inspection['id']}/verification").json()["ok"] is True
    # Agents may not request inspections.
    login(client, hall.agent)
    refused = client.post("/api/draws", json={**body, "commitment": Secret().commitment})
    assert refused.status_code == 403
    assert evaluators


def test_draw_pages_render_for_the_requester(client: TestClient, settings: Settings) -> None:
    hall, draw = _drawn_world(client, settings, experts=5, count=3, backups=1)
    listing = client.get("/draws")
    assert listing.status_code == 200 and draw["id"] in listing.text
    assert client.get(f"/draws/new?tender={hall.id}").status_code == 200
    page = client.get(f"/draws/{draw['id']}")
    assert page.status_code == 200 and "A0101" in page.text and "/verify" in page.text
    verify = client.get(f"/draws/{draw['id']}/verify")
    assert 'data-verified="yes"' in verify.text
    token = _token(_outbox(settings)[0])
    with TestClient(client.app) as anonymous:
        invitation = anonymous.get(f"/draws/reply/{token}")
        assert invitation.status_code == 200 and hall.tender["name"] not in invitation.text
        import re
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', invitation.text).group(1)
        answered = anonymous.post(f"/draws/reply/{token}", data={"csrf_token": csrf, "answer": "decline", "reason": "病假"},
                                  follow_redirects=True)
        assert answered.status_code == 200 and 'data-answered="declined"' in answered.text
        assert anonymous.get("/draws/reply/" + "y" * 43).status_code == 404


def test_a_failing_notifier_keeps_the_notice_sealed_and_retries(settings: Settings) -> None:
    from tenderhall.app import create_app

    broken = settings.with_(notifier="webhook", webhook_url="http://127.0.0.1:9/sms", webhook_secret="gateway-secret")
    with TestClient(create_app(broken)) as client:
        hall = make_hall(client, settings.database_url, bidders=1, rule="void")
        _pool(settings.database_url, 3)
        login(client, hall.agent)
        secret = Secret()
        _schedule_and_run(client, evaluation_request(hall.id, secret, count=1, backups=0), secret)
        row = run_db(settings.database_url, lambda c: c.fetchrow(
            "SELECT status, attempts, last_error, message_sealed FROM draw_notifications"))
        assert row["status"] == "pending" and row["attempts"] == 1 and row["message_sealed"] is not None
        assert "127.0.0.1" in row["last_error"] and "/draws/reply/" not in row["last_error"]
        for _ in range(4):
            _run_jobs(client)
        row = run_db(settings.database_url, lambda c: c.fetchrow(
            "SELECT status, attempts, message_sealed FROM draw_notifications"))
        assert (row["status"], row["attempts"], row["message_sealed"]) == ("failed", 5, None)


def test_an_outsider_verifies_a_draw_through_the_public_api(settings: Settings, monkeypatch: Any) -> None:
    import httpx

    from tenderhall.cli import main
    from tests.integration.test_submission import serve

    with serve(settings) as base, httpx.Client(base_url=base) as api:
        hall = make_hall(api, settings.database_url, bidders=1, rule="void")  # type: ignore[arg-type]
        _pool(settings.database_url, 4)
        login(api, hall.agent)  # type: ignore[arg-type]
        secret = Secret()
        draw = _schedule_and_run(api, evaluation_request(hall.id, secret, count=2, backups=1), secret)  # type: ignore[arg-type]
        assert main(["draw", "verify", draw["id"], "--server", base]) == 0
        # And on the server itself, from its database and its own key.
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
        monkeypatch.setenv("TENDERHALL_DATA_DIR", str(settings.data_dir))
        assert main(["draw", "verify", draw["id"]]) == 0
        assert main(["draw", "verify", str(uuid.uuid4())]) == 1
        # The same check fails when the published result is not what the draw gives.
        def swap(conn: Any) -> Any:
            return conn.execute("""UPDATE draws SET record = replace(record, $1, $2)""",
                                '"backups":[', '"backups":["0000",')
        run_db(settings.database_url, swap)
        assert main(["draw", "verify", draw["id"], "--server", base]) == 1
        assert main(["draw", "verify", draw["id"]]) == 1


def test_before_sign_in_no_row_of_the_database_says_who_was_drawn(client: TestClient, settings: Settings) -> None:
    """An insider with a dump of the database (not the data key) learns nobody's seat."""
    dsn = settings.database_url
    _, draw = _drawn_world(client, settings, experts=5, count=3, backups=1)
    experts = run_db(dsn, lambda c: c.fetch("SELECT id, name, phone FROM experts"))
    needles = [s for e in experts for s in (str(e["id"]), e["id"].hex, e["name"])]

    async def dump(conn: Any) -> str:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT IN "
            "('experts', 'expert_specialties', 'schema_migrations')")]
        parts = []
        for table in tables:
            for row in await conn.fetch(f'SELECT * FROM "{table}"'):
                parts.append(str({k: v.hex() if isinstance(v, bytes) else v for k, v in row.items()}))
        return "\n".join(parts)

    text = run_db(dsn, dump)
    assert draw["counts"]["notified"] == 3 and len(text) > 1000
    assert [n for n in needles if n in text] == []


def test_a_requester_cannot_pile_up_scheduled_draws(client: TestClient, settings: Settings) -> None:
    from evaluation.draw_service import MAX_SCHEDULED

    hall = make_hall(client, settings.database_url, bidders=1, rule="void")
    _pool(settings.database_url, 5)
    login(client, hall.agent)
    for _ in range(MAX_SCHEDULED):
        assert client.post("/api/draws", json=evaluation_request(hall.id, Secret(), count=2, backups=1)).status_code == 201
    refused = client.post("/api/draws", json=evaluation_request(hall.id, Secret(), count=2, backups=1))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_scheduled"
    first = client.get("/api/draws").json()["draws"][0]
    assert client.post(f"/api/draws/{first['id']}/cancel").status_code == 200
    assert client.post("/api/draws", json=evaluation_request(hall.id, Secret(), count=2, backups=1)).status_code == 201


def test_committees_drawn_and_seated_feed_the_familiar_faces_metric(client: TestClient, settings: Settings) -> None:
    """Two evaluations for one tenderer drawn from a pool of three: the second meets the same faces."""
    dsn = settings.database_url
    hall = make_hall(client, dsn, bidders=1, rule="void")
    _pool(dsn, 3)
    login(client, hall.agent)
    for minutes in (30, 40):
        secret = Secret()
        draw = _schedule_and_run(client, evaluation_request(hall.id, secret, count=3, backups=0,
                                                            needed_in_minutes=minutes), secret)
        with TestClient(client.app) as anonymous:
            for notice in _outbox(settings)[-3:]:
                assert anonymous.post(f"/api/draws/reply/{_token(notice)}", json={"answer": "accept"}).status_code == 200
        assert client.post(f"/api/draws/{draw['id']}/unseal").status_code == 200
    login(client, make_user(dsn, "supervisor"))
    totals = client.get("/api/familiar-faces", params={"window_days": 30}).json()["totals"]
    assert totals["evaluations"] == 2
    assert totals["tenderer_repeat_share"] == "0.5000" and totals["agent_repeat_share"] == "0.5000"
    assert totals["expert_repeat_share"] == "0.5000"
