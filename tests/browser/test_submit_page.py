"""The bid page in Chromium: restore keys from a backup, seal a 3 MiB bid in the browser, upload, see the receipt.

Then Python checks the stored bid: its receipt verifies, and its ciphertext opens with the
bidder's key and holds the summary typed into the form.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tenderhall.keyfile import encrypt_keyfile, generate_keys, public_key_spki_b64url
from tenderhall.platform_key import load_public_pem
from tenderhall.settings import Settings
from tests.factories import login, make_user
from tests.integration.test_submission import credit_code_of, publish_tender, register_keys, serve, tender_input
from trading import key_wrap, receipts, sealing, uploads
from trading.manifest import validate_manifest

pytestmark = pytest.mark.browser
PASSPHRASE = "browser test passphrase"


def test_bidder_seals_and_submits_in_the_browser(database_url: str, settings: Settings, page: Page,
                                                 tmp_path: Path) -> None:
    agent = make_user(database_url, "agent")
    custodians = [make_user(database_url, "custodian") for _ in range(2)]
    bidder = make_user(database_url, "bidder")
    sign, decrypt = generate_keys()
    backup = tmp_path / "keys-backup.json"
    backup.write_bytes(encrypt_keyfile(f"organisation:{bidder.organisation_id}", sign, decrypt, PASSPHRASE,
                                       iterations=1000))
    with serve(settings) as base:
        with httpx.Client(base_url=base) as api:
            for custodian in custodians:
                register_keys(api, custodian)  # type: ignore[arg-type]
            login(api, bidder)  # type: ignore[arg-type]
            r = api.post("/api/keys", json={"sign_spki": public_key_spki_b64url(sign),
                                            "decrypt_spki": public_key_spki_b64url(decrypt)})
            assert r.status_code == 201, r.text
            tender = publish_tender(api, agent, tender_input(custodians, 2))  # type: ignore[arg-type]

        page.goto(f"{base}/login")
        page.fill("input[name=username]", bidder.username)
        page.fill("input[name=password]", bidder.password)
        page.click("form.stack button[type=submit]")
        page.wait_for_url(f"{base}/")

        page.goto(f"{base}/keys")
        page.set_input_files("#restore-form input[name=backup]", str(backup))
        page.fill("#restore-form input[name=passphrase]", PASSPHRASE)
        page.click("#restore-form button[type=submit]")
        expect(page.locator("#keys-notice")).to_be_visible(timeout=30_000)

        page.goto(f"{base}/tenders/{tender['id']}/bid")
        expect(page.locator("#keys-status")).to_contain_text("就绪", timeout=10_000)
        page.select_option("select[name=lot]", "L2")
        page.fill("input[name='summary.price']", "4321.5")
        page.fill("input[name='summary.duration_days']", "365")
        page.fill("input[name='summary.quality']", "合格 BROWSER-MARKER")
        document = bytes(range(256)) * (3 * 4096)  # 3 MiB
        page.set_input_files("input[name=files]", files=[
            {"name": "技术标.bin", "mimeType": "application/octet-stream", "buffer": document}])
        page.click("#submit-bid")
        expect(page.locator("#receipt")).to_be_visible(timeout=60_000)
        assert page.locator("#progress-bar").get_attribute("value") == "100"
        assert "100%" in page.locator("#progress-text").inner_text()
        log_index = int(page.locator("#receipt-log-index").inner_text())
        expect(page.locator("#receipt-check")).to_have_attribute("data-verified", "true")
        assert not page.locator("#bid-error").is_visible(), page.locator("#bid-error").inner_text()

        with httpx.Client(base_url=base) as api:
            login(api, bidder)  # type: ignore[arg-type]
            bid = api.get("/api/bids", params={"tender": tender["id"]}).json()["bids"][0]
            receipt = api.get(f"/api/bids/{bid['id']}/receipt").json()
            key = load_public_pem(api.get("/.well-known/tenderhall-log-key").json()["public_key_pem"])
            status = api.get(f"/api/uploads/{bid['upload_id']}").json()
        receipts.verify_receipt(receipt, key)
        assert receipt["log_index"] == log_index and bid["lot"] == "L2"
        assert receipt["organisation"] == credit_code_of(database_url, bidder.organisation_id)

    manifest = _manifest_of(database_url, bid["upload_id"])
    stored = uploads.bid_path(settings.storage_dir, uuid.UUID(tender["id"]), uuid.UUID(bid["upload_id"]))
    content_key = key_wrap.unwrap_bidder_key(manifest["bidder_wrap"]["enc"], decrypt)
    sink = io.BytesIO()
    with stored.open("rb") as f:
        opened = sealing.open_bid(f, content_key, validate_manifest(manifest),
                                  files_out=lambda name, size: sink)
    assert opened.summary == {"price": "4321.50", "duration_days": 365, "quality": "合格 BROWSER-MARKER"}
    assert [f.name for f in opened.files] == ["技术标.bin"] and sink.getvalue() == document
    assert status["status"] == "complete"


def _manifest_of(dsn: str, upload_id: str) -> dict:
    from tests.factories import run_db

    return run_db(dsn, lambda c: c.fetchval("SELECT manifest FROM uploads WHERE id = $1", uuid.UUID(upload_id)))


def test_agent_creates_publishes_and_clarifies_a_tender_in_the_browser(database_url: str, settings: Settings,
                                                                        page: Page) -> None:
    agent = make_user(database_url, "agent")
    custodians = [make_user(database_url, "custodian") for _ in range(2)]
    with serve(settings) as base:
        with httpx.Client(base_url=base) as api:
            for custodian in custodians:
                register_keys(api, custodian)  # type: ignore[arg-type]
        page.goto(f"{base}/login")
        page.fill("input[name=username]", agent.username)
        page.fill("input[name=password]", agent.password)
        page.click("form.stack button[type=submit]")
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/tenders/new")
        code = f"ZB-{uuid.uuid4().hex[:8]}"
        page.fill("input[name=name]", "浏览器创建的项目")
        page.fill("input[name=code]", code)
        page.fill("input[name=tenderer]", "某区教育局")
        page.fill("input[name=budget]", "500000")
        page.fill("input[name=lot_name]", "一标段")
        page.fill("input[name=lot_budget]", "500000")
        page.fill("input[name=deadline]", "2099-01-01T09:30")
        for custodian in custodians:
            page.check(f"input[name=custodians][value='{custodian.id}']")
        page.click("#tender-form button[type=submit]")
        page.wait_for_url(f"{base}/tenders/*")
        expect(page.locator("h1")).to_contain_text(code)
        page.click("#publish")
        expect(page.locator("#change-form")).to_be_visible(timeout=10_000)
        page.fill("#change-form textarea[name=text]", "澄清：工期按日历天计算")
        page.click("#change-form button[type=submit]")
        expect(page.locator("text=澄清：工期按日历天计算")).to_be_visible(timeout=10_000)
        assert not page.locator("#form-error").is_visible()
