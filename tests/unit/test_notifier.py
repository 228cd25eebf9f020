"""Notifiers: the outbox file, SMTP and the signed webhook, each against a loopback peer; secrets stay out of errors."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import logging
import os
import socket
import socketserver
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from evaluation.notifier import (
    LogNotifier, Notice, NotifyError, SmtpNotifier, WebhookNotifier, make_notifier, read_outbox, sign_webhook,
    verify_webhook_signature,
)
from tenderhall.settings import Settings, SettingsError

LINK = "http://127.0.0.1:8000/draws/confirm/TOKEN-s3cr3t-0123456789"
PASSWORD = "hunter2-smtp-password"
SECRET = "webhook-shared-secret"


def notice(email_address: str | None = "li.si@example.org", body: str | None = None, reference: str = "d1/1") -> Notice:
    return Notice(
        recipient_name="李四", phone="13800138000", email=email_address, subject="评标专家抽取通知",
        body=body if body is not None else f"您已被抽取为评标专家，请在15分钟内确认：{LINK}",
        link=LINK, reference=reference,
    )


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_clean(error: NotifyError) -> None:
    for secret in (LINK, "TOKEN-s3cr3t", PASSWORD, SECRET, "apikey"):
        assert secret not in str(error)


# --- the outbox ---------------------------------------------------------------------------


async def test_log_notifier_appends_a_private_json_line_and_keeps_the_link_out_of_the_log(tmp_path, caplog):
    path = tmp_path / "sub" / "notifications.jsonl"
    caplog.set_level(logging.DEBUG)
    await LogNotifier(path).send(notice())
    await LogNotifier(path).send(notice(reference="d1/2"))

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = read_outbox(path)
    assert [line["reference"] for line in lines] == ["d1/1", "d1/2"]
    first = lines[0]
    assert first["channel"] == "log" and first["link"] == LINK and first["subject"] == "评标专家抽取通知"
    assert first["recipient_name"] == "李四" and first["phone"] == "13800138000" and first["email"] == "li.si@example.org"
    assert first["time"].endswith("+00:00")
    assert "d1/1" in caplog.text and "TOKEN" not in caplog.text
    assert "TOKEN" not in repr(notice())


async def test_concurrent_sends_each_land_one_intact_line(tmp_path):
    path = tmp_path / "notifications.jsonl"
    big = "长" * 100_000  # large lines: interleaved partial writes would break the JSON
    await asyncio.gather(*(LogNotifier(path).send(notice(body=big, reference=f"d1/{i}")) for i in range(8)))
    lines = read_outbox(path)
    assert sorted(line["reference"] for line in lines) == [f"d1/{i}" for i in range(8)]
    assert all(line["body"] == big for line in lines)


def test_read_outbox_before_anything_was_sent_is_empty(tmp_path):
    assert read_outbox(tmp_path / "missing.jsonl") == []


# --- SMTP ---------------------------------------------------------------------------------


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough RFC 5321 (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to capture one message."""

    def say(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        box: dict[str, Any] = self.server.box  # type: ignore[attr-defined]
        envelope: dict[str, Any] = {"rcpt": []}
        self.say("220 test.local ESMTP")
        while line := self.rfile.readline():
            text = line.decode("ascii", "replace").strip()
            verb = text.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250-test.local\r\n250-8BITMIME\r\n250 AUTH PLAIN\r\n")
            elif verb == "AUTH":
                box["auth"].append(base64.b64decode(text.split()[2]))
                self.say("235 2.7.0 ok" if box["accept_auth"] else "535 5.7.8 authentication failed")
            elif verb == "MAIL":
                envelope["from"] = text[len("MAIL FROM:"):]
                self.say("250 ok")
            elif verb == "RCPT":
                envelope["rcpt"].append(text[len("RCPT TO:"):])
                self.say("250 ok")
            elif verb == "DATA":
                self.say("354 end with <CRLF>.<CRLF>")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk[1:] if chunk.startswith(b"..") else chunk)  # RFC 5321 4.5.2
                box["messages"].append({**envelope, "data": b"".join(data)})
                self.say("250 queued")
            elif verb == "QUIT":
                self.say("221 bye")
                return
            else:
                self.say("250 ok")


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, dict[str, Any]]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.daemon_threads = True
    server.box = {"messages": [], "auth": [], "accept_auth": True}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server.box  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def smtp_settings(tmp_path: Path, port: int, **changes: Any) -> Settings:
    return Settings(data_dir=tmp_path, notifier="smtp", smtp_host="127.0.0.1", smtp_port=port,
                    smtp_sender="draws@centre.example", smtp_starttls=False, **changes)


async def test_smtp_sends_a_utf8_message_to_the_expert(tmp_path, smtp_server):
    port, box = smtp_server
    notifier = make_notifier(smtp_settings(tmp_path, port, smtp_username="centre", smtp_password=PASSWORD))
    await notifier.send(notice())

    [sent] = box["messages"]
    assert sent["from"] == "<draws@centre.example>" and sent["rcpt"] == ["<li.si@example.org>"]
    assert box["auth"] == [f"\0centre\0{PASSWORD}".encode()]
    message = email.message_from_bytes(sent["data"], policy=email.policy.default)
    assert message["Subject"] == "评标专家抽取通知"
    assert message["To"].addresses[0].addr_spec == "li.si@example.org"
    assert message["Message-ID"].endswith("@centre.example>") and message["Date"]
    assert message["X-Tenderhall-Reference"] == "d1/1"
    assert message.get_content().strip() == notice().body


async def test_smtp_without_a_username_does_not_log_in(tmp_path, smtp_server):
    port, box = smtp_server
    await make_notifier(smtp_settings(tmp_path, port)).send(notice())
    assert box["auth"] == [] and len(box["messages"]) == 1


async def test_smtp_to_a_recipient_without_email_is_refused(tmp_path, smtp_server):
    port, box = smtp_server
    with pytest.raises(NotifyError, match="no email address for this recipient"):
        await make_notifier(smtp_settings(tmp_path, port)).send(notice(email_address=None))
    with pytest.raises(NotifyError, match="invalid email address"):
        await make_notifier(smtp_settings(tmp_path, port)).send(notice(email_address="a@b\r\nBcc: x@y"))
    assert box["messages"] == []


async def test_smtp_connection_refused_is_a_clean_error(tmp_path):
    notifier = make_notifier(smtp_settings(tmp_path, free_port(), smtp_username="centre", smtp_password=PASSWORD))
    with pytest.raises(NotifyError, match="unreachable") as caught:
        await notifier.send(notice())
    assert_clean(caught.value)


async def test_smtp_rejected_login_is_a_clean_error(tmp_path, smtp_server):
    port, box = smtp_server
    box["accept_auth"] = False
    notifier = make_notifier(smtp_settings(tmp_path, port, smtp_username="centre", smtp_password=PASSWORD))
    with pytest.raises(NotifyError, match="535") as caught:
        await notifier.send(notice())
    assert_clean(caught.value)
    assert box["messages"] == []


# --- webhook ------------------------------------------------------------------------------


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        box = self.server.box  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        box["requests"].append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(box["status"])
        if box["status"] == 302:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_server(monkeypatch) -> Iterator[tuple[str, dict[str, Any]]]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # loopback only, never through a proxy
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HookHandler)
    server.daemon_threads = True
    server.box = {"requests": [], "status": 200}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sms?key=apikey", server.box  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def hook_settings(tmp_path: Path, url: str) -> Settings:
    return Settings(data_dir=tmp_path, notifier="webhook", webhook_url=url, webhook_secret=SECRET)


async def test_webhook_posts_signed_json(tmp_path, hook_server):
    url, box = hook_server
    await make_notifier(hook_settings(tmp_path, url)).send(notice())

    [request] = box["requests"]
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/sms?key=apikey" and headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["link"] == LINK and payload["reference"] == "d1/1" and payload["phone"] == "13800138000"
    assert payload["subject"] == "评标专家抽取通知" and payload["email"] == "li.si@example.org" and payload["sent_at"]
    assert headers["X-Tenderhall-Signature"].startswith("sha256=")
    assert verify_webhook_signature(SECRET, headers["X-Tenderhall-Timestamp"], body,
                                    headers["X-Tenderhall-Signature"], now=time.time())


async def test_webhook_server_error_is_reported_with_its_status(tmp_path, hook_server):
    url, box = hook_server
    box["status"] = 500
    with pytest.raises(NotifyError, match="500") as caught:
        await make_notifier(hook_settings(tmp_path, url)).send(notice())
    assert_clean(caught.value)


async def test_webhook_redirect_is_not_followed(tmp_path, hook_server):
    url, box = hook_server
    box["status"] = 302
    with pytest.raises(NotifyError, match="302") as caught:
        await make_notifier(hook_settings(tmp_path, url)).send(notice())
    assert_clean(caught.value)
    assert [r["path"] for r in box["requests"]] == ["/sms?key=apikey"]


async def test_webhook_unreachable_is_a_clean_error(tmp_path, hook_server):
    with pytest.raises(NotifyError, match="unreachable") as caught:
        await WebhookNotifier(f"http://127.0.0.1:{free_port()}/sms?key=apikey", SECRET).send(notice())
    assert_clean(caught.value)


def test_signature_refuses_tampering_replays_and_garbage():
    body, sent = b'{"reference":"d1/1"}', 1_800_000_000
    signature = sign_webhook(SECRET, str(sent), body)
    assert verify_webhook_signature(SECRET, str(sent), body, signature, now=sent + 299)
    assert not verify_webhook_signature(SECRET, str(sent), body + b" ", signature, now=sent)
    assert not verify_webhook_signature("other", str(sent), body, signature, now=sent)
    assert not verify_webhook_signature(SECRET, str(sent), body, signature, now=sent + 301)
    assert not verify_webhook_signature(SECRET, str(sent), body, signature, now=sent - 301)
    assert not verify_webhook_signature(SECRET, str(sent + 1), body, signature, now=sent)
    assert not verify_webhook_signature(SECRET, "soon", body, signature, now=sent)
    assert not verify_webhook_signature(SECRET, f"+{sent}", body, signature, now=sent)
    assert not verify_webhook_signature(SECRET, str(sent), body, "sha256=" + "0" * 64, now=sent)


# --- choosing -----------------------------------------------------------------------------


def test_make_notifier_picks_the_configured_channel(tmp_path):
    log_notifier = make_notifier(Settings(data_dir=tmp_path))
    assert isinstance(log_notifier, LogNotifier) and log_notifier.channel == "log"
    assert log_notifier.path == Settings(data_dir=tmp_path).notification_outbox_path
    smtp = make_notifier(smtp_settings(tmp_path, 2525))
    assert isinstance(smtp, SmtpNotifier) and smtp.channel == "smtp"
    hook = make_notifier(hook_settings(tmp_path, "https://gateway.example/sms"))
    assert isinstance(hook, WebhookNotifier) and hook.channel == "webhook"


@pytest.mark.parametrize("changes", [
    {"notifier": "pigeon"},
    {"notifier": "smtp"},
    {"notifier": "webhook", "webhook_url": "https://gateway.example/sms"},
    {"notifier": "webhook", "webhook_url": "file:///etc/passwd", "webhook_secret": SECRET},
])
def test_make_notifier_refuses_unusable_settings(tmp_path, changes):
    with pytest.raises(SettingsError):
        make_notifier(Settings(data_dir=tmp_path, **changes))
