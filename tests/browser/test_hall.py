"""One online opening (不见面开标) attended in Chromium by a host, three bidders and a custodian.

Each person has a browser context of their own (own cookies, own IndexedDB). Bids are sealed
and submitted in Python; the bidders' key files are restored on their /keys pages, except the
third bidder's, which "lost its key" at the opening. Everything else happens by clicking in
the hall page: sign-in, closing submissions when the server-synchronised countdown runs out,
deposits, the published list, decryption in the browser (and the precise message for the
missing keys), the custodian's share released from the browser (the second custodian uses the
API), read-out with 大写 on every bidder's page, an objection and its answer, chat, the record
signed by all three bidders with WebCrypto, and the close with the resumption time.

The tender's deadline and decryption window are moved in the database (tests/hall_world.py)
instead of waiting minutes; the pages only learn of it from the snapshot, as they would.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tenderhall.formatting import display_zone, when, yuan, yuan_in_words
from tenderhall.keyfile import encrypt_keyfile
from tenderhall.settings import Settings
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_keys_page import browser_login, restore_backup
from tests.factories import TestUser as User, login, run_db
from tests.hall_world import PRICES, Hall, end_window, make_hall, share, shift
from tests.integration.test_submission import Keys, serve

pytestmark = pytest.mark.browser
PASSPHRASE = "hall browser passphrase"
STEP_TIMEOUT = 15_000
CENTRE = ZoneInfo("Asia/Shanghai")  # Settings.display_timezone's default


class People:
    """A browser context and page per person, with their console kept for failure reports."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.logs: dict[str, list[str]] = {}

    def page(self, name: str) -> Page:
        context = self.browser.new_context(locale="zh-CN", timezone_id=str(CENTRE))
        context.set_default_timeout(STEP_TIMEOUT)
        self.contexts.append(context)
        page = context.new_page()
        log = self.logs.setdefault(name, [])
        page.on("console", lambda msg: log.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: log.append(f"pageerror: {exc}"))
        page.on("response", lambda r: r.status >= 400 and log.append(f"http {r.status}: {r.request.method} {r.url}"))
        return page

    def page_errors(self) -> list[str]:
        return [f"{name}: {line}" for name, lines in self.logs.items()
                for line in lines if line.startswith("pageerror")]

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def people(browser: Browser) -> Iterator[People]:
    crowd = People(browser)
    try:
        yield crowd
    finally:
        # Captured output: pytest shows it only when the test fails.
        for name, lines in crowd.logs.items():
            print(f"--- console of {name}:", *lines[-40:], sep="\n")
        crowd.close()


def key_file(tmp_path: Path, owner: str, keys: Keys) -> Path:
    path = tmp_path / f"{owner.replace(':', '-')}.json"
    path.write_bytes(encrypt_keyfile(owner, keys.sign, keys.decrypt, PASSPHRASE, iterations=1000))
    return path


def strings(page: Page) -> dict[str, Any]:
    """The hall page's own words (#hall-strings), so assertions hold in either language."""
    return page.evaluate("() => JSON.parse(document.getElementById('hall-strings').textContent)")


def at_step(page: Page, step: str) -> None:
    expect(page.locator("#hall")).to_have_attribute("data-step", step)


def bid_row(page: Page, bid_id: str) -> Any:
    return page.locator(f"#bids tr[data-bid-id='{bid_id}']")


def open_hall(people: People, name: str, base: str, user: User, hall: Hall, backup: Path | None = None) -> Page:
    page = people.page(name)
    browser_login(page, base, user)
    if backup is not None:
        restore_backup(page, base, backup, PASSPHRASE)
    page.goto(f"{base}/tenders/{hall.id}/hall")
    expect(page.locator("#hall-connection")).to_have_attribute("data-state", "live")
    return page


def test_an_opening_attended_by_host_bidders_and_custodian_in_their_browsers(
        database_url: str, settings: Settings, people: People, tmp_path: Path) -> None:
    deadline = datetime.now(timezone.utc) + timedelta(minutes=20)
    with serve(settings) as base, httpx.Client(base_url=base) as api:
        hall = make_hall(api, database_url,  # type: ignore[arg-type]
                         deadline=deadline.isoformat(), hall_opens_minutes=60, decryption_minutes=5)
        b1, b2, b3 = hall.bidders
        bid1, bid2, bid3 = (b.bids[-1]["bid"] for b in hall.bidders)
        c1 = hall.custodians[0]

        host = open_hall(people, "host", base, hall.agent, hall)
        pages = [open_hall(people, f"bidder{i + 1}", base, b.user, hall,
                           key_file(tmp_path, f"organisation:{b.user.organisation_id}", b.keys) if i < 2 else None)
                 for i, b in enumerate(hall.bidders)]
        p1, p2, p3 = pages
        custodian = open_hall(people, "custodian1", base, c1, hall,
                              key_file(tmp_path, f"custodian:{c1.id}", hall.custodian_keys[0]))
        words = strings(host)

        # Waiting: the count of bids is shown, the bidder list is not; the host starts the sign-in.
        for page in (host, *pages, custodian):
            at_step(page, "waiting")
        expect(host.locator("#bids-received")).to_have_text("3")
        expect(p1.locator("#keys-status")).to_have_text(words["keysReady"])
        expect(p3.locator("#keys-status")).to_have_text(words["noKeys"])
        expect(p1.locator("#bidders tbody")).to_contain_text(words["biddersHidden"])
        expect(host.locator("#countdown")).to_have_text(re.compile(r"^00:1\d:\d\d$"))
        host.click("[data-action=start_sign_in]")
        at_step(host, "sign_in")

        # The deadline is now only seconds away; each bidder signs in.
        shift(database_url, "UPDATE tenders SET deadline = $2 WHERE id = $1", uuid.UUID(hall.id),
              datetime.now(timezone.utc) + timedelta(seconds=3))
        for page in pages:
            at_step(page, "sign_in")
            page.click("#sign-in")
            expect(page.locator("#sign-in")).to_be_hidden()
            expect(page.locator("#step-todo")).to_have_text(words["todo"]["bidder"]["signed_in"])
        expect(host.locator("#signed-in-count")).to_have_text("3")
        expect(host.locator("#bidders tbody tr[data-organisation-id]")).to_have_count(3)

        # Close submissions appears only once the server's clock passes the deadline.
        host.click("[data-action=close_submissions]", timeout=STEP_TIMEOUT)
        at_step(host, "bidder_list")
        for b in hall.bidders:
            row = host.locator(f"#bidders tr[data-organisation-id='{b.user.organisation_id}']")
            if b is b1:
                row.locator("input.deposit-note").fill("保函 BH-001")
            row.locator("button.deposit-confirmed").click()
            expect(row.locator("[data-deposit]")).to_have_attribute("data-deposit", "confirmed")
        expect(host.locator("#bidders")).to_contain_text("保函 BH-001")
        host.click("[data-action=publish_bidders]")

        # Decryption: two bidders open their bids here; the third has no keys in its browser.
        for page in (host, *pages):
            at_step(page, "decryption")
        expect(p3.locator("#bidders tbody tr[data-organisation-id]")).to_have_count(3)
        p1.click("#decrypt-mine")
        expect(bid_row(p1, bid1)).to_have_attribute("data-status", "opened")
        bid_row(p2, bid2).locator("button[data-decrypt]").click()
        expect(bid_row(p2, bid2)).to_have_attribute("data-status", "opened")
        bid_row(p3, bid3).locator("button[data-decrypt]").click()
        expect(bid_row(p3, bid3).locator(".bid-note")).to_have_text(words["noKeys"])
        expect(bid_row(p3, bid3)).to_have_attribute("data-status", "listed")
        expect(bid_row(p3, bid3).locator("button[data-decrypt]")).to_have_text(words["retry"])
        expect(host.locator("#decrypt-progress")).to_have_attribute("value", "2")

        # The window ends; the host's own chat message brings the fresh snapshot.
        end_window(hall)
        p2.fill("#chat-form input[name=text]", "BIDDER-2-CHAT")
        p2.click("#chat-form button")
        host.fill("#chat-form input[name=text]", "解密时间已到")
        host.click("#chat-form button")
        expect(p1.locator("#chat")).to_contain_text("解密时间已到")
        host.locator("#chat li", has_text="BIDDER-2-CHAT").locator("button[data-hide]").click()
        expect(p1.locator("#chat")).to_contain_text(words["hidden"])
        expect(p1.locator("#chat")).not_to_contain_text("BIDDER-2-CHAT")
        host.click("[data-action=close_window]")

        # Custodians: one releases in the browser, the second through the API; 2 of 3 open the bid.
        at_step(custodian, "custodians")
        expect(custodian.locator("#step-todo")).to_have_text(words["todo"]["custodian"]["custodians"])
        custodian.click("#release-shares")
        expect(custodian.locator("#hall-notice")).to_have_text(words["released"])
        login(api, hall.custodians[1])  # type: ignore[arg-type]
        r = api.post(f"/api/tenders/{hall.id}/hall/shares",
                     json={"shares": [{"bid_id": bid3, "share": share(hall, b3, 2)}]})
        assert r.status_code == 200, r.text

        # Read-out: one bid, then the rest; every bidder sees each price with its 大写.
        for page in (host, *pages):
            at_step(page, "reading")
        expect(bid_row(p3, bid3)).to_have_attribute("data-status", "opened")
        host.click("[data-action=read_next]")
        expect(p2.locator("#readout tbody tr[data-bid-id]")).to_have_count(1)
        host.click("[data-action=read_all]")
        for page in pages:
            expect(page.locator("#readout tbody tr[data-bid-id]")).to_have_count(3)
            for price in PRICES:
                expect(page.locator("#readout")).to_contain_text(yuan(price))
                expect(page.locator("#readout")).to_contain_text(yuan_in_words(Decimal(price)))

        # A reload lands where the opening is.
        p2.reload()
        at_step(p2, "reading")
        expect(p2.locator("#readout tbody tr[data-bid-id]")).to_have_count(3)

        # An objection blocks the record until the host answers it.
        p1.fill("#objection-form textarea[name=text]", "报价大写与小写是否一致？")
        p1.click("#objection-form button")
        objection = host.locator("#objections li[data-objection-id]")
        expect(objection).to_contain_text("报价大写与小写是否一致？")
        host.click("[data-action=record]")
        expect(host.locator("#hall-error")).to_contain_text("objection_unanswered")
        objection.locator("textarea").fill("一致，以大写为准。")
        objection.locator("button[data-answer]").click()
        expect(p1.locator("#objections")).to_contain_text("一致，以大写为准。")
        host.click("[data-action=record]")

        # The record: two bidders sign at once; the third restores its backup first.
        for page in (host, *pages):
            at_step(page, "record")
        sha256 = host.locator("#record-sha256").inner_text()
        assert hashlib.sha256(api.get(f"/api/tenders/{hall.id}/hall/record.json").content).hexdigest() == sha256
        for page in (p1, p2):
            page.click("#confirm-record")
            expect(page.locator("#step-todo")).to_have_text(words["todo"]["bidder"]["confirmed"])
        restore_backup(p3, base, key_file(tmp_path, f"organisation:{b3.user.organisation_id}", b3.keys), PASSPHRASE)
        p3.goto(f"{base}/tenders/{hall.id}/hall")
        p3.click("#confirm-record")
        expect(host.locator("#confirmations li[data-confirmed=true]")).to_have_count(3)

        # The record page shows what was signed.
        p1.click("#record-html")
        expect(p1.locator("#record-sha256")).to_have_text(sha256)
        expect(p1.locator("#record-bids tbody tr[data-bid-id]")).to_have_count(3)
        expect(p1.locator("#record-objections")).to_contain_text("一致，以大写为准。")
        p1.go_back()

        # Closed with the resumption time (复会时间).
        # The page reads <input type=datetime-local> in the browser's zone, which is the centre's here.
        resumption = (datetime.now(CENTRE) + timedelta(days=1)).replace(hour=9, minute=30, second=0, microsecond=0)
        host.fill("#close-form input[name=resumption_at]", resumption.strftime("%Y-%m-%dT%H:%M"))
        host.click("#close-form button")
        for page in (host, *pages, custodian):
            at_step(page, "closed")
            expect(page.locator("#resumption-at")).to_contain_text(resumption.strftime("%Y-%m-%d") + " 09:30:00")
        assert people.page_errors() == []


def test_viewers_watch_the_hosts_camera_in_the_hall(database_url: str, settings: Settings, browser: Browser) -> None:
    # Chromium's fake camera (a test pattern) stands in for the host's; ICE stays on loopback.
    camera = browser.browser_type.launch(executable_path=CHROMIUM, args=[
        *CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
    crowd = People(camera)
    try:
        with serve(replace(settings, rtc_host_addresses=("127.0.0.1",))) as base, httpx.Client(base_url=base) as api:
            deadline = datetime.now(timezone.utc) + timedelta(minutes=20)
            hall = make_hall(api, database_url, bidders=1, deadline=deadline.isoformat(),  # type: ignore[arg-type]
                             hall_opens_minutes=60)
            host = open_hall(crowd, "host", base, hall.agent, hall)
            viewer = open_hall(crowd, "bidder", base, hall.bidders[0].user, hall)
            words = strings(host)
            expect(viewer.locator("#video-status")).to_have_text(words["videoOff"])
            expect(viewer.locator("#hall-video")).to_be_hidden()
            host.click("#start-camera")
            expect(host.locator("#video-status")).to_have_text(words["cameraLive"])
            expect(host.locator("#start-camera")).to_be_hidden()
            # No reload: the hall.video event tells the viewer the host is live.
            expect(viewer.locator("#video-status")).to_have_text(words["videoLive"])
            viewer.wait_for_function("() => document.getElementById('hall-video').videoWidth > 0")
            host.click("#stop-camera")
            expect(host.locator("#start-camera")).to_be_visible()
            expect(viewer.locator("#video-status")).to_have_text(words["videoOff"])
            kinds = run_db(database_url, lambda c: c.fetch("SELECT kind, body FROM log_entries WHERE kind = 'media.segment'"))
            assert len(kinds) == 1  # the host's recording segment closed, its digest logged
            assert crowd.page_errors() == []
    finally:
        for name, lines in crowd.logs.items():
            print(f"--- console of {name}:", *lines[-40:], sep="\n")
        crowd.close()
        camera.close()


FORMAT_PROBE = """async (cases) => {
  const f = await import("/static/trading/hall_format.js");
  const r = await import("/static/trading/hall_render.js");
  const S = { reasons: { "deposit missing": "未缴纳保证金", lotFailed: "标段流标：{reason}",
                         tooFew: "有效投标 {valid} 家，少于规定的 {min} 家" } };
  return {
    yuan: cases.money.map(f.yuan),
    when: cases.times.map((t) => f.when(t, "Asia/Shanghai")),
    countdown: cases.durations.map(f.countdown),
    reasons: cases.reasons.map((text) => r.reasonText(text, S)),
    fill: f.fill("{a} of {b} {c}", { a: 1, b: "二" }),
  };
}"""


def test_the_hall_page_shows_money_and_times_as_the_server_does(page: Page, base_url: str) -> None:
    money = ["98765432.10", "0.5", "1000", "007", "12.345", "9999999999999999.99", "abc", ""]
    times = ["2026-11-25T00:27:29Z", "2026-12-31T16:00:00.250000+00:00", "2026-06-01T08:00:00+08:00"]
    page.goto(f"{base_url}/harness/index.html")
    out = page.evaluate(FORMAT_PROBE, {
        "money": money, "times": times, "durations": [3_661_000, 999, 1, 0, -5_000, 90_000_000],
        "reasons": ["deposit missing", "lot failed: 2 valid bid(s); the tender needs at least 3", "unknown"]})
    zone = display_zone("Asia/Shanghai")
    assert out["yuan"][:6] == [yuan(m) if m != "12.345" else "12.345" for m in money[:6]]
    assert out["yuan"][6:] == ["abc", ""]
    assert out["when"] == [when(t, zone) for t in times]
    assert out["countdown"] == ["01:01:01", "00:00:01", "00:00:01", "00:00:00", "00:00:00", "25:00:00"]
    assert out["reasons"] == ["未缴纳保证金", "标段流标：有效投标 2 家，少于规定的 3 家", "unknown"]
    assert out["fill"] == "1 of 二 {c}"
