"""The supervisors' live map in Chromium, fed by the venue simulator through the device APIs.

The demo floor is seeded as `tenderhall demo` does; the simulator (in a thread, over HTTP) sets up
its people, badges, tags and rules as an admin and walks ten of them mid-day, with a bidder
forcing the doors into an evaluation room. The supervisor's page shows the dots moving, the
zones' head counts and the alert, which is acknowledged with a note. The page's socket is then
cut and kept from reconnecting while another alert is raised: once it reconnects, that alert is
there (the socket resumes after the last event id). A trajectory is replayed with the slider,
a heatmap drawn, and a screenshot saved for the docs.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tenderhall.platform_key import load_or_create
from tenderhall.settings import Settings
from tests.browser.test_keys_page import browser_login
from tests.factories import login, make_user, run_db
from tests.integration.test_submission import serve
from venue.demo_floor import CODE, DEMO_TRANSFORM, VENUE, seed_demo_floor
from venue.floorplan import from_local
from venue.simulate_run import Options, Summary, run
from venue.simulate_violations import parse_injection

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
# The docs' screenshot is remade only when asked (TENDERHALL_DOCS_SCREENSHOTS=1): a test run
# leaves the checkout as it found it.
SCREENSHOT = ROOT / "docs" / "img" / "supervision-map.png"
SAVE_SCREENSHOT = os.environ.get("TENDERHALL_DOCS_SCREENSHOTS") == "1"
NOTE = "已电话联系现场工作人员，将该投标人带离评标区"
TIMEOUT = 30_000
# Every WebSocket the page makes, and a switch that sends new ones nowhere (a network cut).
CUT_SOCKETS = """(() => {
  const Original = window.WebSocket;
  window.__sockets = [];
  window.__cut = false;
  window.WebSocket = class extends Original {
    constructor(url, ...rest) {
      super(window.__cut ? "ws://127.0.0.1:9/cut" : url, ...rest);
      window.__sockets.push(this);
    }
  };
})();"""
DOTS = "() => Object.fromEntries([...document.querySelectorAll('.vmap-dot')].map((d) => [d.dataset.person, d.dataset.x + ',' + d.dataset.y]))"


def _seed_floor(base: str, settings: Settings, database_url: str, admin: Any) -> None:
    """FZ-3F on the demo's main venue, as `tenderhall demo` seeds it (the venue made first if missing)."""
    with httpx.Client(base_url=base) as api:
        login(api, admin)  # type: ignore[arg-type]
        venues = api.get("/api/venues").json()["venues"]
        if not any(v["name"] == VENUE for v in venues):
            api.post("/api/venues", json={"name": VENUE, "region_code": "350100", "address": "福建省福州市",
                                          "rooms": [{"name": "1号评标室", "seats": 9}]}).raise_for_status()
    signer = load_or_create(settings.platform_key_path)
    run_db(database_url, lambda conn: seed_demo_floor(conn, signer, admin.id))


def _simulate(options: Options, stop: threading.Event, result: dict[str, Any]) -> threading.Thread:
    def work() -> None:
        try:
            result["summary"] = asyncio.run(run(options, stop=stop))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            result["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def _intruder(base: str, admin: Any, token: str) -> tuple[str, str]:
    """A visitor with a tag of their own, placed in evaluation room 3 by four positions: a
    wrong_zone alert raised while the page is cut off."""
    tag = f"T-INTRUDER-{time.time_ns() % 10**9}"
    name = f"访客 闯入者 {tag[-4:]}"
    with httpx.Client(base_url=base) as api:
        login(api, admin)  # type: ignore[arg-type]
        person = api.post("/api/venue/people", json={"name": name, "role": "visitor"}).json()["person"]
        start = datetime.now(timezone.utc) - timedelta(seconds=5)
        api.post(f"/api/venue/people/{person['id']}/credentials", json={
            "kind": "tag", "value": tag, "valid_from": start.isoformat()}).raise_for_status()
    now = datetime.now(timezone.utc)
    batch = []
    for i in range(4):
        x, y = from_local(DEMO_TRANSFORM, 39.0 + 0.2 * i, 3.0)  # the middle of 3号评标室 (x 36-42, y 0-8)
        batch.append({"tag": tag, "t": (now - timedelta(seconds=3 - i)).isoformat(), "x": x, "y": y, "floor": CODE})
    report = httpx.post(f"{base}/api/venue/positions", json=batch, headers={"Authorization": f"Bearer {token}"})
    assert report.json()["accepted"] == 4, report.text
    return person["id"], name


def test_supervisor_sees_and_acknowledges_an_injected_violation_live(database_url: str, settings: Settings,
                                                                     page: Page) -> None:
    admin = make_user(database_url, "admin")
    supervisor = make_user(database_url, "supervisor")
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.context.add_init_script(CUT_SOCKETS)
    stop, result = threading.Event(), {}
    with serve(settings) as base:
        _seed_floor(base, settings, database_url, admin)
        token = settings.venue_device_token_path.read_text().strip()
        speed = 2.0
        options = Options(server=base, token=token, user=admin.username, password=admin.password, floor=CODE,
                          people=10, rate=2.0, speed=speed, start_at=200.0, duration=120.0, seed=7,
                          injections=(parse_injection("wrong-zone@1", speed),))
        browser_login(page, base, supervisor)  # type: ignore[arg-type]
        page.goto(f"{base}/supervision/map")
        expect(page.locator("#vmap")).to_have_attribute("data-ready", "true", timeout=TIMEOUT)
        expect(page.locator("#vmap-connection")).to_have_attribute("data-state", "live")
        expect(page.locator("#vmap-svg polygon[data-zone='ev-1']")).to_have_count(1)
        thread = _simulate(options, stop, result)
        try:
            # Dots appear and move (the positions come over the socket, at most every 0.5 s).
            page.wait_for_function("() => document.querySelectorAll('.vmap-dot').length >= 10", timeout=TIMEOUT)
            before = page.evaluate(DOTS)
            page.wait_for_function(f"""(before) => {{ const now = ({DOTS})();
                return Object.keys(now).filter((k) => before[k] && now[k] !== before[k]).length >= 5; }}""",
                                   arg=before, timeout=TIMEOUT)
            # Occupancy: the head counts agree with the dots' zones; the experts are in their rooms.
            expect(page.locator("#occupancy tr[data-zone='ev-1'] td.count")).to_have_text("3", timeout=TIMEOUT)
            zones = Counter(z for z in page.eval_on_selector_all(
                ".vmap-dot:not(.stale)", "(ds) => ds.map((d) => d.dataset.zone)") if z)
            shown = dict(zip(page.locator("#occupancy tr").evaluate_all("(rs) => rs.map((r) => r.dataset.zone)"),
                             map(int, page.locator("#occupancy td.count").all_text_contents())))
            assert sum(shown.values()) == int(page.locator("#vmap-count").text_content() or 0)
            assert abs(sum(shown.values()) - sum(zones.values())) <= 2, (shown, zones)  # dots move meanwhile

            # The injected violation: a bidder forces their way into an evaluation room.
            alert = page.locator(".vmap-alert[data-rule='wrong_zone'][data-state='open']").first
            expect(alert).to_be_visible(timeout=TIMEOUT)
            intruder = alert.locator(".vmap-person").first.text_content()
            assert intruder and (intruder.startswith("投标人") or intruder.startswith("代理")), intruder
            expect(page.locator(".vmap-dot.alerting")).not_to_have_count(0)
            alert_id = int(alert.get_attribute("data-alert-id") or 0)
            item = page.locator(f".vmap-alert[data-alert-id='{alert_id}']")
            # Its class is shown, and the class filter hides it under another class.
            expect(item.locator(".vmap-alert-class")).to_have_text("轨迹行为")  # the page is in Chinese
            # Its message said in Chinese from its phrase, the intruder's role included.
            expect(item.locator(".vmap-alert-message")).to_have_text(re.compile(r"（(投标人|招标代理)）.*无权进入的区域"))
            page.select_option("#alert-class", "evaluation")
            expect(item).to_be_hidden()
            page.select_option("#alert-class", "trajectory")
            expect(item).to_be_visible()
            page.select_option("#alert-class", "")
            item.locator("textarea[name=note]").fill(NOTE)
            item.locator("button[type=submit]").click()
            expect(item).to_have_attribute("data-state", "acknowledged")
            expect(item.locator(".vmap-ack-done")).to_contain_text(NOTE)
            with httpx.Client(base_url=base) as api:
                login(api, supervisor)  # type: ignore[arg-type]
                stored = {a["id"]: a for a in api.get("/api/venue/alerts", params={"per_page": 100}).json()["alerts"]}
            assert stored[alert_id]["note"] == NOTE and stored[alert_id]["acknowledged_by"] == str(supervisor.id)

            # Cut the socket and keep it from reconnecting; an alert raised meanwhile is not lost.
            page.evaluate("() => { window.__cut = true; window.__sockets.forEach((s) => s.close()); }")
            expect(page.locator("#vmap-connection")).to_have_attribute("data-state", "retrying")
            _person, name = _intruder(base, admin, token)
            with httpx.Client(base_url=base) as api:
                login(api, supervisor)  # type: ignore[arg-type]
                deadline = time.monotonic() + 20
                while not any(name in (p["name"] or "") for a in api.get("/api/venue/alerts").json()["alerts"]
                              for p in a["people"]):
                    assert time.monotonic() < deadline, "the intruder's alert was not raised"
                    time.sleep(0.2)  # polling the server's own answer, not waiting for time to pass
            assert page.locator(".vmap-alert", has_text=name).count() == 0  # still cut off
            page.evaluate("() => { window.__cut = false; }")
            expect(page.locator("#vmap-connection")).to_have_attribute("data-state", "live", timeout=TIMEOUT)
            expect(page.locator(".vmap-alert[data-rule='wrong_zone']", has_text=name)).to_be_visible(timeout=TIMEOUT)

            # Replay the intruding bidder's trajectory with the slider.
            page.fill("#replay-form input[name=person]", intruder)
            page.click("#replay-form button[type=submit]")
            expect(page.locator("#replay-controls")).to_be_visible()
            expect(page.locator("#replay-info")).to_contain_text(intruder)
            marker = page.locator("[data-replay-x]")
            start = (marker.get_attribute("data-replay-x"), marker.get_attribute("data-replay-y"))
            start_time = page.locator("#replay-time").get_attribute("datetime")
            page.click("#replay-play")  # plays the period back on its own
            page.wait_for_function("() => Number(document.getElementById('replay-slider').value) > 100",
                                   timeout=TIMEOUT)
            page.click("#replay-play")
            page.locator("#replay-slider").fill("1000")
            end = (marker.get_attribute("data-replay-x"), marker.get_attribute("data-replay-y"))
            assert end != start
            assert (page.locator("#replay-time").get_attribute("datetime") or "") > (start_time or "")

            # A heatmap of the last hour.
            page.click("#heatmap-form button[type=submit]")
            page.wait_for_function("() => Number(document.getElementById('vmap').dataset.heatCells) > 10",
                                   timeout=TIMEOUT)
            assert page.locator(".vmap-heat-cell").count() > 10
            page.click("#heatmap-clear")
            page.check("#show-names")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shot = page.screenshot(path=str(SCREENSHOT) if SAVE_SCREENSHOT else None, full_page=True)
            assert shot[:8] == b"\x89PNG\r\n\x1a\n"

            # An admin watches too, but acknowledging is the supervisors' (the API's rule).
            other = page.context.browser.new_context()  # type: ignore[union-attr]
            try:
                admin_page = other.new_page()
                browser_login(admin_page, base, admin)  # type: ignore[arg-type]
                admin_page.goto(f"{base}/supervision/map")
                expect(admin_page.locator("#vmap")).to_have_attribute("data-ready", "true", timeout=TIMEOUT)
                expect(admin_page.locator(".vmap-alert[data-state='open']").first).to_be_visible()
                expect(admin_page.locator(".vmap-alert textarea")).to_have_count(0)
            finally:
                other.close()
        finally:
            stop.set()
            thread.join(timeout=30)
    assert not [m for m in page.console_messages if m.startswith("pageerror")], page.console_messages  # type: ignore[attr-defined]
    assert "error" not in result, result.get("error")
    summary: Summary = result["summary"]
    assert summary.rejected == 0 and summary.accepted == summary.fixes > 0, summary.lines()
    assert summary.asks.get("not_allowed", 0) >= 1, summary.lines()  # the bidder was refused, then forced
