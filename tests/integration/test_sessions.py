"""Remote evaluation sessions on the real database: the whole evaluation through its acts, and
every refusal the issue names leaving the session as it was."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.testclient import TestClient

from cryptography.hazmat.primitives.serialization import load_der_public_key

from evaluation.session_state import report_signature_message
from tenderhall.canonical import b64url_decode
from tenderhall.settings import Settings
from trading.manifest import verify_raw_p256
from tests.factories import login, run_db
from tests.integration.test_submission import FILE_TEXT
from tests.session_world import (
    declare, make_world, ok, pass_all, refused, sign_in_all, sign_report, through_election,
)


def _scalar(dsn: str, sql: str, *args: Any) -> Any:
    return run_db(dsn, lambda c: c.fetchval(sql, *args))


def test_a_committee_evaluates_two_bidders_from_sign_in_to_the_signed_report(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    # Five experts: with three, the median of the others would include the deviating score.
    world = make_world(client, dsn, experts=5, rooms=3, bidders=2)
    chair = through_election(world)
    snap = world.snapshot(chair.user)
    assert snap["step"] == "initial_review" and snap["chair"] == str(chair.user.id)
    assert {b["id"] for b in snap["bidders"]} == set(world.bidders)
    pass_all(world)
    ok(world.act(chair.user, "advance"))
    scheme = world.snapshot(chair.user)["scheme"]
    # Two experts agree, the third deviates on one criterion by more than 20 % of its range.
    for i, e in enumerate(world.experts):
        cells = []
        for b in world.bidders:
            for c in scheme["criteria"]:
                high = int(c["max_score"])
                value = high - 2 if not (i == 4 and c["id"] == "technical_plan" and b == world.bidders[0]) else 5
                cells.append({"bidder": b, "criterion": c["id"], "score": str(value)})
        ok(world.act(e.user, "score", {"scores": cells}))
    ok(world.act(chair.user, "advance"))
    snap = world.snapshot(chair.user)
    [flag] = snap["consolidation"]["flags"]
    assert flag["expert"] == str(world.experts[4].user.id) and flag["criterion"] == "technical_plan"
    refused(world.act(chair.user, "advance"), 409, "unexplained_deviations")
    refused(world.act(world.experts[0].user, "explain-deviation",
                      {"bidder": world.bidders[0], "criterion": "technical_plan", "reason": "x"}), 422, "not_flagged")
    ok(world.act(world.experts[4].user, "explain-deviation",
                 {"bidder": world.bidders[0], "criterion": "technical_plan", "reason": "施工组织设计缺少关键工序安排"}))
    ok(world.act(chair.user, "advance"))
    report = ok(client.get(f"{world.url}/report"))
    data = client.get(f"{world.url}/report.json")
    assert hashlib.sha256(data.content).hexdigest() == report["sha256"] == data.headers["X-Report-SHA256"]
    assert [r["rank"] for r in report["report"]["ranking"]] == [1, 2]
    assert report["report"]["deviations"][0]["reason"] == "施工组织设计缺少关键工序安排"
    for i, e in enumerate(world.experts):
        ok(sign_report(world, e, report["sha256"], dissent="对排名有保留意见" if i == 1 else None))
    refused(sign_report(world, world.experts[0], report["sha256"]), 409, "already_signed")
    assert ok(world.act(chair.user, "advance"))["step"] == "closed"
    signatures = ok(client.get(f"{world.url}/report"))["signatures"]
    assert len(signatures) == 5 and [s["dissent"] for s in signatures if s["dissent"]] == ["对排名有保留意见"]
    # An outsider checks every signature with the key the expert signed in with (logged at sign-in).
    logged_keys = {e["user"]: e["public_key"] for e in run_db(dsn, lambda c: c.fetch(
        "SELECT body FROM log_entries WHERE kind = 'session.signed_in'")) for e in [json.loads(e["body"])["body"]]}
    for s in signatures:
        assert logged_keys[s["user"]] == s["public_key"]
        key = load_der_public_key(b64url_decode(s["public_key"]))
        verify_raw_p256(key, report_signature_message(world.session_id, report["sha256"]), s["signature"])
    kinds = {r["kind"] for r in run_db(dsn, lambda c: c.fetch("SELECT DISTINCT kind FROM log_entries"))}
    assert {"session.scheduled", "session.signed_in", "session.declared", "session.voted", "session.step",
            "session.verdicts", "session.scores", "session.deviation_explained", "session.report_signed"} <= kinds
    page = client.get(f"/sessions/{world.session_id}/report")
    assert page.status_code == 200 and report["sha256"] in page.text


def test_out_of_order_and_unauthorised_acts_are_refused_and_change_nothing(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=3, rooms=2, bidders=2)
    e0 = world.experts[0]
    # Before sign-in opens: nobody signs in, an outsider sees no session.
    refused(world.act(e0.user, "sign-in", {"room_id": world.rooms[0], "public_key": e0.public_key}), 409, "wrong_step")
    login(client, e0.user)
    refused(client.get(world.url), 403, "not_on_committee")  # the names are still sealed
    login(client, e0.user)
    assert ok(client.get("/api/sessions"))["sessions"] == []
    ok(world.act(world.agent, "open-sign-in"))
    login(client, e0.user)
    [waiting] = ok(client.get("/api/sessions"))["sessions"]
    assert waiting["id"] == world.session_id and waiting["sign_in"] is True
    # Drawn and unsealed: the expert sees the session to sign in, before signing in.
    assert world.snapshot(e0.user)["me"] == {"id": str(e0.user.id), "kind": "expert", "room": None, "member": False,
                                             "media_role": "receive_only"}
    refused(world.act(e0.user, "sign-in", {"room_id": world.rooms[0], "public_key": "bm90IGEga2V5"}), 422,
            "invalid_key")
    refused(world.act(e0.user, "sign-in", {"room_id": str(world.agent.id), "public_key": e0.public_key}), 422,
            "unknown_room")
    sign_in_all(world, opened=True)
    refused(world.act(e0.user, "sign-in", {"room_id": world.rooms[0], "public_key": e0.public_key}), 409,
            "already_signed_in")
    refused(world.act(world.supervisor, "score", {"scores": [{"bidder": world.bidders[0], "criterion": "schedule",
                                                              "score": "5"}]}), 403, "not_allowed")
    # Scoring before the declarations.
    refused(world.act(e0.user, "score", {"scores": [{"bidder": world.bidders[0], "criterion": "schedule",
                                                     "score": "5"}]}), 409, "wrong_step")
    ok(world.act(world.agent, "advance"))
    refused(world.act(world.agent, "advance"), 409, "declarations_missing")
    bad = {"conflict": False, "statement": "无利害关系", "signature": "A" * 86}
    refused(world.act(e0.user, "declare", bad), 422, "bad_signature")
    assert _scalar(dsn, "SELECT count(*) FROM session_declarations") == 0
    for e in world.experts:
        ok(declare(world, e))
    refused(declare(world, e0), 409, "already_declared")
    ok(world.act(world.agent, "advance"))
    refused(world.act(e0.user, "vote", {"candidate": str(world.supervisor.id)}), 422, "not_a_candidate")
    ok(world.act(world.experts[1].user, "vote", {"candidate": str(e0.user.id)}))
    refused(world.act(world.agent, "advance"), 409, "no_chair")
    ok(world.act(world.experts[2].user, "vote", {"candidate": str(e0.user.id)}))
    refused(world.act(e0.user, "vote", {"candidate": str(e0.user.id)}), 409, "election_over")
    ok(world.act(world.agent, "advance"))
    refused(world.act(world.agent, "advance"), 403, "not_allowed")  # the chair moves on now
    pass_all(world)
    ok(world.act(e0.user, "advance"))
    step = world.snapshot(e0.user)["step"]
    cells = [{"bidder": world.bidders[0], "criterion": "schedule", "score": "10.5"}]
    refused(world.act(e0.user, "score", {"scores": cells}), 422, "score_out_of_range")
    refused(world.act(e0.user, "score", {"scores": [{"bidder": world.bidders[0], "criterion": "nope", "score": "1"}]}),
            422, "unknown_criterion")
    assert _scalar(dsn, "SELECT count(*) FROM session_scores") == 0
    assert world.snapshot(e0.user)["step"] == step == "detailed_review"
    refused(world.act(e0.user, "advance"), 409, "scores_missing")


def test_a_user_off_the_committee_cannot_join(client: TestClient, settings: Settings) -> None:
    from tests.factories import make_user
    from tests.session_world import Expert
    from tests.draw_world import add_expert
    dsn = settings.database_url
    world = make_world(client, dsn, experts=3, rooms=2)
    ok(world.act(world.agent, "open-sign-in"))
    person = make_user(dsn, "expert")
    outsider = Expert(person, add_expert(dsn, user_id=person.id))
    refused(world.act(outsider.user, "sign-in", {"room_id": world.rooms[0], "public_key": outsider.public_key}), 403,
            "not_on_committee")
    login(client, outsider.user)
    refused(client.get(world.url), 403, "not_on_committee")
    bidder = world.hall.bidders[0].user
    login(client, bidder)
    refused(client.get(world.url), 404, "session_not_found")
    assert _scalar(dsn, "SELECT count(*) FROM session_members") == 0


def test_scheduling_is_refused_with_the_reason(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=3, rooms=2, schedule=False)
    login(client, world.agent)
    base = {"tender_id": world.hall.id, "scheduled_start": world.draw["needed_at"],
            "rooms": [{"room_id": r, "staff_id": str(s.id)} for r, s in zip(world.rooms, world.staff)]}
    refused(client.post("/api/sessions", json={**base, "colour": "red"}), 422, "invalid_body")
    refused(client.post("/api/sessions", json={**base, "rooms": [base["rooms"][0]] * 2}), 422, "invalid_body")
    refused(client.post("/api/sessions", json={**base, "rooms": [{"room_id": str(world.agent.id),
                                                                   "staff_id": str(world.agent.id)}]}), 422, "unknown_room")
    refused(client.post("/api/sessions", json={**base, "scheduled_start": "2020-01-01T09:00:00+08:00"}), 422,
            "start_in_past")
    refused(client.post("/api/sessions", json={**base, "supervisors": [str(world.agent.id)]}), 422, "invalid_user")
    refused(client.post("/api/sessions", json={**base, "scheme": {"method": "lowest_evaluated_price",
                                                                 "initial_review": [{"id": "f", "name": "形式", "kind": "form"}]}}),
            422, "wrong_method")
    refused(client.post("/api/sessions", json={**base, "scheme": {"method": "comprehensive_scoring"}}), 422,
            "invalid_scheme")
    refused(client.post("/api/sessions", json={**base, "lot_code": "L9"}), 422, "unknown_lot")
    login(client, world.staff[1])  # another agent's tender
    refused(client.post("/api/sessions", json=base), 404, "tender_not_found")
    run_db(dsn, lambda c: c.execute("UPDATE openings SET step = 'reading'"))
    login(client, world.agent)
    refused(client.post("/api/sessions", json=base), 409, "opening_not_closed")
    run_db(dsn, lambda c: c.execute("UPDATE openings SET step = 'closed'"))
    assert _scalar(dsn, "SELECT count(*) FROM eval_sessions") == 0
    ok(client.post("/api/sessions", json=base))
    refused(client.post("/api/sessions", json=base), 409, "session_exists")
    listed = ok(client.get("/api/sessions"))
    assert listed["total"] == 1 and listed["sessions"][0]["lot"] == "L1"


def test_a_declared_conflict_holds_the_session_until_the_member_is_released(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=4, rooms=2)
    sign_in_all(world)
    ok(world.act(world.agent, "advance"))
    conflicted = world.experts[3]
    ok(declare(world, conflicted, conflict=True, statement="本人曾在投标人单位任职，申请回避。"))
    for e in world.experts[:3]:
        ok(declare(world, e))
    refused(world.act(world.agent, "advance"), 409, "replacement_needed")
    refused(world.act(world.agent, "release-member", {"user_id": str(world.experts[0].user.id)}), 409,
            "no_conflict_declared")
    refused(world.act(world.experts[0].user, "release-member", {"user_id": str(conflicted.user.id)}), 403, "not_allowed")
    ok(world.act(world.agent, "release-member", {"user_id": str(conflicted.user.id)}))
    login(client, conflicted.user)
    refused(client.get(world.url), 403, "not_on_committee")  # released: off the committee
    assert ok(world.act(world.agent, "advance"))["step"] == "chair_election"
    assert len(world.snapshot(world.agent)["committee"]) == 3


def test_clarifications_go_through_the_supervisor_to_the_bidder_and_back(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=3, rooms=2, bidders=2)
    through_election(world)
    expert, bidder = world.experts[1], world.hall.bidders[0]
    refused(world.act(expert.user, "clarifications", {"bidder": world.bidders[0], "question": ""}), 422, "invalid_body")
    refused(world.act(expert.user, "clarifications", {"bidder": str(world.agent.id), "question": "?"}), 422,
            "unknown_bidder")
    drafted = ok(world.act(expert.user, "clarifications", {"bidder": world.bidders[0],
                                                           "question": "请澄清投标报价中暂列金额的构成。"}))
    login(client, bidder.user)
    assert ok(client.get("/api/clarifications"))["clarifications"] == []  # not before the supervisor approves
    refused(client.post(f"/api/clarifications/{drafted['id']}/answer", json={"answer": "x"}), 404,
            "clarification_not_found")
    review_url = f"{world.url}/clarifications/{drafted['id']}/review"
    login(client, expert.user)
    refused(client.post(review_url, json={"decision": "approve", "hours": 2}), 403, "not_allowed")
    login(client, world.supervisor)
    refused(client.post(review_url, json={"decision": "approve", "hours": 0}), 422, "invalid_body")
    approved = ok(client.post(review_url, json={"decision": "approve", "hours": 2}))
    assert approved["status"] == "approved" and approved["deadline"]
    refused(client.post(review_url, json={"decision": "reject"}), 409, "already_reviewed")
    other = world.hall.bidders[1]
    login(client, other.user)
    refused(client.post(f"/api/clarifications/{drafted['id']}/answer", json={"answer": "x"}), 404,
            "clarification_not_found")
    login(client, bidder.user)
    [shown] = ok(client.get("/api/clarifications"))["clarifications"]
    assert shown["question"] == "请澄清投标报价中暂列金额的构成。" and not shown["overdue"]
    page = client.get("/clarifications")
    assert page.status_code == 200 and "请澄清投标报价中暂列金额的构成。" in page.text and "answer-form" in page.text
    answer_url = f"/api/clarifications/{drafted['id']}/answer"
    ok(client.post(answer_url, json={"answer": "暂列金额为120万元，详见附表。"}))
    refused(client.post(answer_url, json={"answer": "again"}), 409, "already_answered")
    [seen] = world.snapshot(expert.user)["clarifications"]
    assert seen["status"] == "answered" and seen["answer"] == "暂列金额为120万元，详见附表。"
    late = ok(world.act(expert.user, "clarifications", {"bidder": world.bidders[1], "question": "工期？"}))
    login(client, world.supervisor)
    ok(client.post(f"{world.url}/clarifications/{late['id']}/review", json={"decision": "approve", "hours": 1}))
    run_db(dsn, lambda c: c.execute("UPDATE session_clarifications SET deadline = now() - interval '1 second' "
                                    "WHERE id = $1", late["id"]))
    login(client, other.user)
    refused(client.post(f"/api/clarifications/{late['id']}/answer", json={"answer": "180天"}), 409, "deadline_passed")
    run_db(dsn, lambda c: c.execute("UPDATE session_clarifications SET deadline = now() + interval '1 hour'"))
    run_db(dsn, lambda c: c.execute("UPDATE eval_sessions SET step = 'failed'"))
    refused(client.post(f"/api/clarifications/{late['id']}/answer", json={"answer": "180天"}), 409, "session_ended")
    assert _scalar(dsn, "SELECT count(*) FROM log_entries WHERE kind LIKE 'session.clarification%'") == 5


def test_documents_open_with_the_session_and_every_view_is_logged(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    pricing = "分项报价\n".encode() * 50000  # about 0.7 MB: several encrypted chunks
    world = make_world(client, dsn, experts=3, rooms=2, bidders=1,
                       files=[("技术标.pdf", FILE_TEXT), ("商务标-报价清单.txt", pricing)])
    sign_in_all(world)
    bid = world.hall.bidders[0].bids[-1]
    expert = world.experts[0]
    # Every file of the bid was recorded at the opening, in order (not only the first).
    names = [f["name"] for f in run_db(dsn, lambda c: c.fetchval("SELECT files FROM opening_bids"))]
    assert names == ["技术标.pdf", "商务标-报价清单.txt"]
    name = names[0]
    url = f"{world.url}/bids/{bid['bid']}/documents/{name}"
    login(client, expert.user)
    refused(client.get(url), 409, "documents_closed")
    assert world.snapshot(expert.user)["bidders"][0]["documents"] == []
    ok(world.act(world.agent, "advance"))
    login(client, expert.user)
    assert world.snapshot(expert.user)["bidders"][0]["documents"] == names
    response = client.get(url)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    assert response.content == FILE_TEXT  # what the bidder sealed, decrypted on demand
    from urllib.parse import quote
    second = client.get(f"{world.url}/bids/{bid['bid']}/documents/{quote(names[1], safe='')}")
    assert second.status_code == 200 and second.content == pricing
    refused(client.get(f"{world.url}/bids/{bid['bid']}/documents/nope.pdf"), 404, "document_not_found")
    login(client, world.staff[1])
    refused(client.get(url), 403, "not_on_committee")
    assert _scalar(dsn, "SELECT count(*) FROM session_document_views") == 2
    assert _scalar(dsn, "SELECT count(*) FROM log_entries WHERE kind = 'session.document_viewed'") == 2


def test_fault_rules_let_the_tenderer_decide_after_two_hours(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=3, rooms=3)
    ok(world.act(world.agent, "open-sign-in"))
    for i, e in enumerate(world.experts):
        if i == 1:
            refused(world.act(world.agent, "advance"), 409, "not_signed_in")  # one of three drawn is in
        ok(world.act(e.user, "sign-in", {"room_id": world.rooms[0], "public_key": e.public_key}))
    ok(world.act(world.staff[0], "confirm-room", {"room_id": world.rooms[0]}))
    ok(world.act(world.staff[1], "confirm-room", {"room_id": world.rooms[1]}))
    refused(world.act(world.staff[1], "confirm-room", {"room_id": world.rooms[2]}), 403, "other_room")
    refused(world.act(world.agent, "advance"), 409, "rooms_not_ready")
    refused(world.act(world.agent, "decision", {"choice": "continue_without"}), 409, "no_decision_due")
    run_db(dsn, lambda c: c.execute("UPDATE eval_sessions SET scheduled_start = now() - interval '2 hours 1 minute'"))
    assert world.snapshot(world.agent)["fault"]["outcome"] == "tenderer_decides"
    refused(world.act(world.agent, "decision", {"choice": "wait"}), 422, "invalid_decision")
    refused(world.act(world.supervisor, "decision", {"choice": "continue_without"}), 403, "not_allowed")
    decided = ok(world.act(world.agent, "decision", {"choice": "continue_without"}))
    assert decided["rooms"] == [world.rooms[2]]
    snap = world.snapshot(world.agent)
    assert snap["decision"]["choice"] == "continue_without" and [r["left_out"] for r in snap["rooms"]].count(True) == 1
    assert ok(world.act(world.agent, "advance"))["step"] == "declarations"


def test_the_scheduling_form_offers_ready_lots_and_venues_are_listed(client: TestClient, settings: Settings) -> None:
    dsn = settings.database_url
    world = make_world(client, dsn, experts=3, rooms=2, schedule=False)
    login(client, world.agent)
    choices = ok(client.get("/api/sessions/form-choices"))
    assert [(l["tender_id"], l["lot_code"]) for l in choices["lots"]] == [(world.hall.id, "L1")]
    assert {r["id"] for r in choices["rooms"]} == set(world.rooms)
    assert str(world.supervisor.id) in {u["id"] for u in choices["supervisors"]}
    page = client.get("/sessions/new")
    assert page.status_code == 200 and "session-form" in page.text
    venues = client.get("/venues")
    assert venues.status_code == 200 and "厦门市公共资源交易中心" in venues.text and "venue-form" not in venues.text
    refused(client.post("/api/venues", json={"name": "x", "region_code": "350100"}), 403, "role_forbidden")
    login(client, world.admin)
    refused(client.post("/api/venues", json={"name": "福州市公共资源交易中心", "region_code": "350100"}), 409,
            "venue_exists")
    refused(client.post("/api/venues", json={"name": "宁德", "region_code": "35090"}), 422, "invalid_body")
    assert "venue-form" in client.get("/venues").text
    login(client, world.hall.bidders[0].user)
    refused(client.get("/api/sessions/form-choices"), 403, "role_forbidden")
