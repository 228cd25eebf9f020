"""Browser-test fixtures: one headless Debian Chromium per run, driven by sync Playwright."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent / "harness"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """The system Chromium (never a downloaded one), shared by the whole run."""
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context (own IndexedDB and storage) and page per test."""
    context = browser.new_context()
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: messages.append(f"pageerror: {exc}"))
    page.console_messages = messages  # type: ignore[attr-defined]  # for failure reports
    try:
        yield page
    finally:
        context.close()


class _Handler(SimpleHTTPRequestHandler):
    """Serves /static/* from the repo's static/ and /harness/* from the harness directory."""

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, base in (("/static/", ROOT / "static"), ("/harness/", HARNESS)):
            if path.startswith(prefix):
                target = (base / path[len(prefix):]).resolve()
                if base.resolve() in target.parents:
                    return str(target)
        return str(HARNESS / "__not_found__")

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """A tiny static server for static/ and tests/browser/harness/ (pages that need no platform)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    for _ in range(200):  # poll until it answers
        try:
            with urllib.request.urlopen(f"{url}/harness/index.html", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            continue
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
