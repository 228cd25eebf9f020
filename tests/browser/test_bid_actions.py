"""The bid page's actions in Chromium: re-confirm a bid after a clarification, then withdraw it.

The bid is sealed in Python and submitted through the API (the browser's sealing has its
own test); the buttons are clicked in the browser, whose keys come from a restored backup
and are non-extractable, so the re-confirmation is signed by WebCrypto in the page.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from playwright.sync_api import Page, expect

from tenderhall.canonical import b64url_decode
from tenderhall.keyfile import encrypt_keyfile, generate_keys, public_key_spki_b64url
from tenderhall.settings import Settings
from tests.browser.test_keys_page import browser_login, restore_backup, stored_keys
from tests.factories import login, make_user, run_db
from tests.integration.test_submission import (
    Keys, World, credit_code_of, publish_tender, register_keys, serve, submit, tender_input,
)
from trading.tenders import confirmation_message

pytestmark = pytest.mark.browser
PASSPHRASE = "bid actions passphrase"


def _bid_row(dsn: str, bid_id: str) -> dict[str, Any]:
    row = run_db(dsn, lambda c: c.fetchrow("SELECT status, tender_version, manifest_sha256, withdrawn_at FROM bids "
                                           "WHERE id = $1", uuid.UUID(bid_id)))
    return dict(row)


def _confirmations(dsn: str, bid_id: str) -> list[dict[str, Any]]:
    rows = run_db(dsn, lambda c: c.fetch("SELECT tender_version, signature, confirmed_by FROM bid_confirmations "
                                         "WHERE bid_id = $1 ORDER BY tender_version", uuid.UUID(bid_id)))
    return [dict(r) for r in rows]


def _log_entries(api: httpx.Client, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    url: str | None = "/api/log/entries?start=0&limit=100"
    while url:
        page = api.get(url).json()
        found += [e["entry"] for e in page["entries"] if e["kind"] == kind]
        url = page["next"]
    return found


def test_bidder_reconfirms_after_a_clarification_then_withdraws(database_url: str, settings: Settings, page: Page,
                                                                 tmp_path: Path) -> None:
    agent = make_user(database_url, "agent")
    custodians = [make_user(database_url, "custodian") for _ in range(2)]
    bidder = make_user(database_url, "bidder")
    owner = f"organisation:{bidder.organisation_id}"
    sign, decrypt = generate_keys()
    backup = tmp_path / "keys-backup.json"
    backup.write_bytes(encrypt_keyfile(owner, sign, decrypt, PASSPHRASE, iterations=1000))

    with serve(settings) as base:
        with httpx.Client(base_url=base) as api:
            custodian_keys = [register_keys(api, c) for c in custodians]  # type: ignore[arg-type]
            tender = publish_tender(api, agent, tender_input(custodians, 2))  # type: ignore[arg-type]
            bidder_keys = Keys(sign, decrypt)
            login(api, bidder)  # type: ignore[arg-type]
            r = api.post("/api/keys", json={"sign_spki": public_key_spki_b64url(sign),
                                            "decrypt_spki": public_key_spki_b64url(decrypt)})
            assert r.status_code == 201, r.text
            world = World(database_url, agent, bidder, bidder_keys, custodian_keys, tender,
                          credit_code_of(database_url, bidder.organisation_id))
            bid_id = submit(api, world, lot="L1")["bid"]  # type: ignore[arg-type]
        assert _bid_row(database_url, bid_id)["tender_version"] == tender["version"]

        browser_login(page, base, bidder)
        restore_backup(page, base, backup, PASSPHRASE)
        bid_page = f"{base}/tenders/{tender['id']}/bid"
        page.goto(bid_page)
        expect(page.locator("#keys-status")).to_contain_text("就绪", timeout=10_000)
        row = page.locator(f"#bids tr[data-bid-id='{bid_id}']")
        expect(row.locator("button.withdraw")).to_be_visible()
        expect(row.locator("button.confirm")).to_have_count(0)  # nothing to confirm before a change

        with httpx.Client(base_url=base) as agent_api:
            login(agent_api, agent)  # type: ignore[arg-type]
            r = agent_api.post(f"/api/tenders/{tender['id']}/changes",
                               json={"kind": "clarification", "text": "澄清：工期按日历天计算"})
            assert r.status_code == 201, r.text
            version = r.json()["change"]["version"]
        assert version == tender["version"] + 1

        page.reload()
        confirm_button = row.locator("button.confirm")
        expect(confirm_button).to_be_visible(timeout=10_000)
        expect(confirm_button).to_contain_text(str(version))
        expect(page.locator("#bid-page")).to_have_attribute("data-version", str(version))
        # The key that is about to sign lives in this browser and cannot be exported.
        held = stored_keys(page, owner)
        assert held is not None and held["privateKeys"]["sign"]["extractable"] is False
        assert held["privateKeys"]["sign"]["exports"]["pkcs8"] == "InvalidAccessError"

        confirm_button.click()
        expect(row.locator("button.confirm")).to_have_count(0, timeout=15_000)  # the page reloads on success
        assert not page.locator("#bid-error").is_visible(), page.locator("#bid-error").inner_text()
        confirmations = _confirmations(database_url, bid_id)
        assert [(c["tender_version"], c["confirmed_by"]) for c in confirmations] == [(version, bidder.id)]
        # Signed in the page, by the organisation's key, over the documented message (raw r||s).
        raw = b64url_decode(confirmations[0]["signature"])
        message = confirmation_message(bid_id, tender["id"], version, _bid_row(database_url, bid_id)["manifest_sha256"])
        sign.public_key().verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                                 message, ec.ECDSA(hashes.SHA256()))
        page.reload()
        expect(row.locator("button.withdraw")).to_be_visible(timeout=10_000)
        expect(row.locator("button.confirm")).to_have_count(0)

        # Withdraw: dismissing the confirm() dialog does nothing; accepting it withdraws the bid.
        dialogs: list[str] = []

        def dismiss(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", dismiss)
        row.locator("button.withdraw").click()
        page.evaluate("1")  # a round trip through the page: the dialog has been handled by now
        assert dialogs == ["确定撤回该投标？"]
        assert _bid_row(database_url, bid_id)["status"] == "active"

        page.once("dialog", lambda dialog: dialog.accept())
        row.locator("button.withdraw").click()
        expect(row.locator("td").nth(1)).to_have_text("已撤回", timeout=15_000)  # after the page's reload
        expect(row.locator("button")).to_have_count(0)
        assert not page.locator("#bid-error").is_visible(), page.locator("#bid-error").inner_text()
        stored = _bid_row(database_url, bid_id)
        assert stored["status"] == "withdrawn" and stored["withdrawn_at"] is not None

        with httpx.Client(base_url=base) as api:
            withdrawn = [e for e in _log_entries(api, "bid.withdrawn") if e["body"]["bid"] == bid_id]
            confirmed = [e for e in _log_entries(api, "bid.confirmed") if e["body"]["bid"] == bid_id]
        assert len(withdrawn) == 1
        assert withdrawn[0]["body"]["tender"] == tender["id"] and withdrawn[0]["body"]["lot"] == "L1"
        assert [e["body"]["tender_version"] for e in confirmed] == [version]
