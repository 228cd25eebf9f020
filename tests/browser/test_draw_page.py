"""A draw requested, revealed and verified in Chromium: the commitment is made by WebCrypto in the
page and must be exactly what the Python side computes from the revealed secret."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from evaluation.draw import commitment
from evaluation.notifier import read_outbox
from tenderhall.canonical import b64url_decode
from tenderhall.settings import Settings
from tests.browser.test_keys_page import browser_login
from tests.draw_world import add_expert
from tests.factories import run_db
from tests.hall_world import make_hall
from tests.integration.test_submission import serve

pytestmark = pytest.mark.browser
SPECIALTY = "C0907"  # used by no other browser test, which share this database


def test_agent_schedules_reveals_and_verifies_a_draw(database_url: str, settings: Settings, page: Page,
                                                     tmp_path: Path) -> None:
    with serve(settings) as base, httpx.Client(base_url=base) as api:
        hall = make_hall(api, database_url, bidders=1, rule="void")  # type: ignore[arg-type]
        for region in ("350102", "350102", "350203", "350203", "350503", "350503"):
            add_expert(database_url, specialties=(SPECIALTY,), region=region)
        browser_login(page, base, hall.agent)
        page.goto(f"{base}/draws/new?tender={hall.id}")
        form = page.locator("#draw-form")
        form.locator("input[name=title]").fill("浏览器抽取")
        # datetime-local speaks the browser's own zone: let the page compute "in two hours".
        page.evaluate("""() => {
            const at = new Date(Date.now() + 2 * 3600 * 1000);
            const local = new Date(at.getTime() - at.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
            document.querySelector('input[name=needed_at]').value = local;
        }""")
        form.locator("input[name=specialty]").fill(SPECIALTY)
        form.locator("input[name=count]").fill("3")
        form.locator("input[name=backups]").fill("1")
        form.locator("input[name=quotas]").fill("3502:1")
        form.locator("button[type=submit]").click()
        expect(page.locator("#secret-box")).to_be_visible()
        secret = page.locator("#secret-text").text_content().strip()
        published = run_db(database_url, lambda c: c.fetchval("SELECT commitment FROM draws WHERE title = '浏览器抽取'"))
        assert published == commitment(b64url_decode(secret))  # WebCrypto and Python agree

        page.locator("#go-draw").click()
        page.locator(".run-form input[name=secret]").fill(secret)
        page.locator(".run-form button[type=submit]").click()
        expect(page.locator("table.list tbody tr td").nth(3)).to_have_text("3")  # three waiting for an answer
        # An expert answers through the link in their notice: the open page follows it live.
        notice = read_outbox(settings.notification_outbox_path)[-1]
        api.post("/api/draws/reply/" + notice["link"].rsplit("/", 1)[1], json={"answer": "accept"}).raise_for_status()
        expect(page.locator("table.list tbody tr td").nth(2)).to_have_text("1")  # confirmed
        page.locator("a[href$='/verify']").first.click()
        expect(page.locator("[data-verified]")).to_have_attribute("data-verified", "yes")
