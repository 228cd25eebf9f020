"""The "My keys" page in Chromium: generate keys in the browser, save the backup, restore one.

Python then checks what the browser made: the downloaded backup opens with
tenderhall.keyfile and the passphrase typed into the form, and its public keys are the
owner's active key set in the database and in the keys.registered log entry. The private
keys the page keeps in IndexedDB cannot be exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tenderhall.keyfile import decrypt_keyfile, encrypt_keyfile, generate_keys, key_id
from tenderhall.settings import Settings
from tests.factories import TestUser as User, make_user, run_db
from tests.integration.test_submission import serve

pytestmark = pytest.mark.browser
PASSPHRASE = "browser generated passphrase 密码"
KEYS_MODULE = "/static/tenderhall/keys.js"

# In the page: the keys stored for `owner` in IndexedDB, whether each private key is marked
# extractable, and what exportKey says when asked for it in every private format.
PROBE_STORED_KEYS = """async (owner) => {
  const { keyId, loadKeys } = await import("%s");
  const keys = await loadKeys(owner);
  if (!keys) return null;
  const out = { signKeyId: await keyId(keys.sign.publicKey), decryptKeyId: await keyId(keys.decrypt.publicKey),
                privateKeys: {} };
  for (const name of ["sign", "decrypt"]) {
    const key = keys[name].privateKey;
    const exports = {};
    for (const format of ["pkcs8", "jwk"]) {
      try {
        await crypto.subtle.exportKey(format, key);
        exports[format] = "exported";
      } catch (error) {
        exports[format] = error.name;
      }
    }
    out.privateKeys[name] = { type: key.type, extractable: key.extractable, usages: key.usages, exports };
  }
  return out;
}""" % KEYS_MODULE


def browser_login(page: Page, base: str, user: User) -> None:
    """Log `user` in through the login form."""
    page.goto(f"{base}/login")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.password)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(f"{base}/")


def restore_backup(page: Page, base: str, backup: Path, passphrase: str) -> None:
    """Load a backup file into this browser on /keys and wait for the page to say it worked."""
    page.goto(f"{base}/keys")
    page.set_input_files("#restore-form input[name=backup]", str(backup))
    page.fill("#restore-form input[name=passphrase]", passphrase)
    page.click("#restore-form button[type=submit]")
    expect(page.locator("#keys-notice")).to_have_text(_strings(page)["restored"], timeout=30_000)


def stored_keys(page: Page, owner: str) -> dict[str, Any] | None:
    return page.evaluate(PROBE_STORED_KEYS, owner)


def _strings(page: Page) -> dict[str, str]:
    """The page's own messages (#keys-strings), so assertions do not depend on the language."""
    return page.locator("#keys-strings").evaluate("(el) => ({...el.dataset})")


def _active_key_sets(dsn: str, user: User) -> list[dict[str, Any]]:
    if "bidder" in user.roles:
        column, owner_id = "organisation_id", user.organisation_id
    else:
        column, owner_id = "custodian_id", user.id
    rows = run_db(dsn, lambda c: c.fetch(
        "SELECT id, sign_key_id, decrypt_key_id, registered_by FROM key_sets "
        f"WHERE {column} = $1 AND revoked_at IS NULL", owner_id))
    return [dict(r) for r in rows]


def _log_entries(base: str, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    url: str | None = "/api/log/entries?start=0&limit=100"
    with httpx.Client(base_url=base) as api:
        while url:
            r = api.get(url)
            assert r.status_code == 200, r.text
            page = r.json()
            found += [e for e in page["entries"] if e["kind"] == kind]
            url = page["next"]
    return found


def _generate_in_browser(page: Page, base: str, dsn: str, user: User, owner: str) -> None:
    """Generate keys on /keys for `user`; check the backup, the database and the log against each other."""
    page.goto(f"{base}/keys")
    expect(page.locator("#active-keys")).to_have_attribute("data-owner", owner)
    strings = _strings(page)
    expect(page.locator("#local-status")).to_have_text(strings["localNone"], timeout=10_000)
    page.fill("#generate-form input[name=passphrase]", PASSPHRASE)
    page.fill("#generate-form input[name=passphrase2]", PASSPHRASE)
    with page.expect_download(timeout=60_000) as download_info:
        page.click("#generate-form button[type=submit]")
    download = download_info.value
    backup = Path(download.path()).read_bytes()
    expect(page.locator("#keys-notice")).to_have_text(strings["registered"], timeout=30_000)
    assert not page.locator("#keys-message").is_visible(), page.locator("#keys-message").inner_text()

    opened = decrypt_keyfile(backup, PASSPHRASE)
    assert opened.owner == owner
    sign_id, decrypt_id = key_id(opened.sign.public_key()), key_id(opened.decrypt.public_key())
    assert download.suggested_filename == f"tenderhall-keys-{sign_id[:12]}.json"

    active = _active_key_sets(dsn, user)
    assert len(active) == 1
    assert (active[0]["sign_key_id"], active[0]["decrypt_key_id"]) == (sign_id, decrypt_id)
    assert active[0]["registered_by"] == user.id

    entries = [e for e in _log_entries(base, "keys.registered") if e["entry"]["body"]["owner"] == owner]
    assert len(entries) == 1
    body = entries[0]["entry"]["body"]
    assert (body["sign_key_id"], body["decrypt_key_id"]) == (sign_id, decrypt_id)
    assert body["key_set_id"] == str(active[0]["id"]) and body["revokes"] == []

    # The page reloads itself after registering: it then shows the new set as active and held here.
    expect(page.locator("#active-keys")).to_have_attribute("data-sign-key-id", sign_id, timeout=15_000)
    expect(page.locator("#active-keys")).to_have_attribute("data-decrypt-key-id", decrypt_id)
    expect(page.locator("#local-status")).to_have_text(strings["localMatch"], timeout=10_000)

    stored = stored_keys(page, owner)
    assert stored is not None
    assert (stored["signKeyId"], stored["decryptKeyId"]) == (sign_id, decrypt_id)
    for name, usages in (("sign", ["sign"]), ("decrypt", ["deriveBits"])):
        private = stored["privateKeys"][name]
        assert private["type"] == "private" and private["extractable"] is False and private["usages"] == usages
        assert private["exports"] == {"pkcs8": "InvalidAccessError", "jwk": "InvalidAccessError"}, private


def test_bidder_generates_keys_and_a_wrong_backup_passphrase_changes_nothing(
        database_url: str, settings: Settings, page: Page, tmp_path: Path) -> None:
    bidder = make_user(database_url, "bidder")
    owner = f"organisation:{bidder.organisation_id}"
    with serve(settings) as base:
        browser_login(page, base, bidder)
        _generate_in_browser(page, base, database_url, bidder, owner)
        before_db = _active_key_sets(database_url, bidder)
        before_local = stored_keys(page, owner)
        before_log = len(_log_entries(base, "keys.registered"))

        # Another backup of this organisation, with other keys: the wrong passphrase must not load it.
        other_sign, other_decrypt = generate_keys()
        other = tmp_path / "other-keys.json"
        other.write_bytes(encrypt_keyfile(owner, other_sign, other_decrypt, "the right passphrase", iterations=1000))
        page.set_input_files("#restore-form input[name=backup]", str(other))
        page.fill("#restore-form input[name=passphrase]", "not the right passphrase")
        page.click("#restore-form button[type=submit]")
        strings = _strings(page)
        expect(page.locator("#keys-message")).to_have_text(strings["wrongPassphrase"], timeout=30_000)
        expect(page.locator("#keys-message")).to_be_visible()
        expect(page.locator("#keys-notice")).to_be_hidden()

        assert stored_keys(page, owner) == before_local
        assert _active_key_sets(database_url, bidder) == before_db
        assert len(_log_entries(base, "keys.registered")) == before_log
        page.reload()
        expect(page.locator("#local-status")).to_have_text(strings["localMatch"], timeout=10_000)

        # The right passphrase does load it: the browser then holds keys that are not the active ones.
        restore_backup(page, base, other, "the right passphrase")
        expect(page.locator("#local-status")).to_have_text(strings["localOther"], timeout=10_000)
        expect(page.locator("#register-local")).to_be_visible()
        restored = stored_keys(page, owner)
        assert restored is not None and restored["signKeyId"] == key_id(other_sign.public_key())
        assert restored["privateKeys"]["sign"]["extractable"] is False
        assert _active_key_sets(database_url, bidder) == before_db


def test_custodian_generates_keys_in_the_browser(database_url: str, settings: Settings, page: Page) -> None:
    custodian = make_user(database_url, "custodian")
    with serve(settings) as base:
        browser_login(page, base, custodian)
        _generate_in_browser(page, base, database_url, custodian, f"custodian:{custodian.id}")


def test_mismatched_passphrases_generate_nothing(database_url: str, settings: Settings, page: Page) -> None:
    custodian = make_user(database_url, "custodian")
    with serve(settings) as base:
        browser_login(page, base, custodian)
        page.goto(f"{base}/keys")
        strings = _strings(page)
        expect(page.locator("#local-status")).to_have_text(strings["localNone"], timeout=10_000)
        page.fill("#generate-form input[name=passphrase]", PASSPHRASE)
        page.fill("#generate-form input[name=passphrase2]", PASSPHRASE + "!")
        page.click("#generate-form button[type=submit]")
        expect(page.locator("#keys-message")).to_have_text(strings["passphraseMismatch"])
        assert stored_keys(page, f"custodian:{custodian.id}") is None
        assert _active_key_sets(database_url, custodian) == []

