"""The 代理码 page in Chromium: an agent issues a code and sees its QR once, then an admin at the
entrance pastes the scanned text and sees it accepted, and refused for another project."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tenderhall.settings import Settings
from tests.browser.test_keys_page import browser_login
from tests.factories import login, make_organisation, make_user
from tests.integration.test_submission import serve, tender_input

pytestmark = pytest.mark.browser


def test_agent_issues_a_code_and_the_entrance_accepts_it(page: Page, settings: Settings) -> None:
    dsn = settings.database_url
    agency = make_organisation(dsn, kind="agency")
    agent, admin = make_user(dsn, "agent", organisation_id=agency), make_user(dsn, "admin")
    with serve(settings) as base:
        with httpx.Client(base_url=base) as api:
            login(api, agent)  # type: ignore[arg-type]
            tender = api.post("/api/tenders", json=tender_input([], 0, decryption_rule="void")).json()["tender"]
            other = api.post("/api/tenders", json=tender_input([], 0, decryption_rule="void")).json()["tender"]
            login(api, admin)  # type: ignore[arg-type]
            api.post("/api/venue/people", json={"name": "代理员工丙", "role": "agent",
                                                "organisation_id": str(agency)}).raise_for_status()

        browser_login(page, base, agent)
        page.goto(f"{base}/venue/agent-codes")
        page.select_option("#issue-form select[name=tender_id]", tender["id"])
        page.click("#issue-form button[type=submit]")
        expect(page.locator("#issued")).to_be_visible()
        qr = page.locator("#issued-qr")
        expect(qr).to_have_attribute("src", re.compile(r"^data:image/svg\+xml;base64,"))
        assert qr.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0  # the SVG draws as an image
        payload = page.locator("#issued-code").inner_text()
        assert payload.startswith("THAC1:")
        expect(page.locator("#codes tbody tr")).to_have_count(1)

        page.context.clear_cookies()
        browser_login(page, base, admin)
        page.goto(f"{base}/venue/agent-codes")
        page.fill("#scan-form input[name=code]", payload)
        page.select_option("#scan-form select[name=tender_id]", tender["id"])
        page.click("#scan-form button[type=submit]")
        expect(page.locator("#scan-result")).to_have_class("notice")
        expect(page.locator("#scan-result [data-holder]")).to_contain_text("代理员工丙")
        page.fill("#scan-form input[name=code]", payload)
        page.select_option("#scan-form select[name=tender_id]", other["id"])
        page.click("#scan-form button[type=submit]")
        expect(page.locator("#scan-result")).to_have_class("alert")
        expect(page.locator("#scan-result [data-verdict]")).to_have_text("拒绝：该代理码属于其他项目。")  # zh_CN, the default
