"""Notifiers: how a drawn expert is told about a draw and given a one-time confirmation link.

Three channels behind one `send(notice)`: "log" (an outbox file standing in for SMS in the
demo), "smtp" (e-mail) and "webhook" (a signed POST to an SMS or voice gateway). The link
in a notice is a bearer secret: it goes only to the channel, never to the server log, an
error message or a repr.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from tenderhall.settings import Settings, SettingsError

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 15
WEBHOOK_TIMEOUT_SECONDS = 10
SIGNATURE_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class Notice:
    """One message to one drawn person; `reference` ("draw_id/position") lets receivers drop duplicates."""

    recipient_name: str
    phone: str
    email: str | None
    subject: str
    body: str = field(repr=False)  # holds the link
    link: str = field(repr=False)  # the one-time confirmation URL: a secret
    reference: str


class NotifyError(Exception):
    """A notice was not delivered; the message says what failed and never holds the link, a password or a secret."""


class Notifier(Protocol):
    channel: str

    async def send(self, notice: Notice) -> None:
        """Deliver `notice` or raise NotifyError."""
        ...


def _utcnow_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _scrub(text: str, *secrets: str) -> str:
    """`text` with every non-empty secret replaced, for messages built from a peer's reply."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:300]


class LogNotifier:
    """Appends one JSON line per notice to the outbox file (mode 0600): the demo's stand-in for SMS."""

    channel: str = "log"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    async def send(self, notice: Notice) -> None:
        line = json.dumps({
            "time": _utcnow_iso(), "channel": self.channel, "reference": notice.reference,
            "recipient_name": notice.recipient_name, "phone": notice.phone, "email": notice.email,
            "subject": notice.subject, "body": notice.body, "link": notice.link,
        }, ensure_ascii=False) + "\n"
        await asyncio.to_thread(self._append, line.encode("utf-8"))
        log.info("notice %s written to the outbox", notice.reference)  # never the link

    def _append(self, data: bytes) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # One write() on an O_APPEND descriptor: concurrent writers each land a whole line.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise NotifyError(f"cannot write the notification outbox: {exc.strerror or type(exc).__name__}") from None
        if written != len(data):
            raise NotifyError("the notification outbox write was cut short (disk full?)")


def read_outbox(path: Path) -> list[dict[str, Any]]:
    """Every notice in the outbox file, oldest first; [] when nothing has been sent yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class SmtpNotifier:
    """Sends the notice by e-mail to the expert's address (STARTTLS and login as configured)."""

    channel: str = "smtp"

    def __init__(self, host: str, port: int, sender: str, username: str = "", password: str = "",
                 starttls: bool = True) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password, self.starttls = username, password, starttls

    def message(self, notice: Notice) -> EmailMessage:
        """The MIME message (UTF-8 subject and body); NotifyError when the recipient has no usable address."""
        if not notice.email:
            raise NotifyError("no email address for this recipient")
        try:
            # Whitespace folded so a stray line break in a name cannot add a header.
            to = Address(display_name=" ".join(notice.recipient_name.split()), addr_spec=notice.email)
        except (ValueError, IndexError, HeaderParseError):
            raise NotifyError("invalid email address for this recipient") from None
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = notice.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or "localhost")
        message["X-Tenderhall-Reference"] = notice.reference
        message.set_content(notice.body, charset="utf-8")
        return message

    async def send(self, notice: Notice) -> None:
        message = self.message(notice)
        await asyncio.to_thread(self._deliver, message, notice.link)
        log.info("notice %s sent by e-mail", notice.reference)

    def _deliver(self, message: EmailMessage, link: str) -> None:
        where = f"SMTP server {self.host}:{self.port}"
        # `from None` throughout: the message is the whole story, and no chained traceback carries a secret.
        try:
            with smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            reply = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
            reply = _scrub(reply, link, self.password)
            raise NotifyError(f"{where} answered {exc.smtp_code}: {reply}") from None
        except smtplib.SMTPRecipientsRefused:
            raise NotifyError(f"{where} refused the recipient address") from None
        except (smtplib.SMTPException, ssl.SSLError) as exc:
            raise NotifyError(f"{where} failed: {_scrub(str(exc), link, self.password)}") from None
        except OSError as exc:
            raise NotifyError(f"{where} unreachable: {exc.strerror or type(exc).__name__}") from None


def sign_webhook(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The X-Tenderhall-Signature value: "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_webhook_signature(secret: str | bytes, timestamp: str, body: bytes, signature: str, now: float,
                             tolerance: int = SIGNATURE_TOLERANCE_SECONDS) -> bool:
    """True when `signature` signs (timestamp, body) with `secret` and the timestamp is within
    `tolerance` seconds of `now` either way (older ones are refused as possible replays)."""
    timestamp = str(timestamp)
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(now - int(timestamp)) > tolerance:
        return False
    expected = sign_webhook(secret, timestamp, body).encode("ascii")
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could carry the signed link to another host; a 3xx then surfaces as an HTTPError.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


class WebhookNotifier:
    """POSTs the notice as signed JSON to an SMS/voice gateway; a non-2xx answer or a redirect is a failure."""

    channel: str = "webhook"

    def __init__(self, url: str, secret: str) -> None:
        self.url, self.secret = url, secret
        # Operators see the host in errors, never the whole URL (gateways put API keys in it).
        self.where = f"webhook at {urlsplit(url).hostname}"

    async def send(self, notice: Notice) -> None:
        body = json.dumps({
            "reference": notice.reference, "recipient_name": notice.recipient_name, "phone": notice.phone,
            "email": notice.email, "subject": notice.subject, "body": notice.body, "link": notice.link,
            "sent_at": _utcnow_iso(),
        }, ensure_ascii=False).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Tenderhall-Timestamp": timestamp,
            "X-Tenderhall-Signature": sign_webhook(self.secret, timestamp, body),
        }
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        await asyncio.to_thread(self._post, request)
        log.info("notice %s posted to the %s", notice.reference, self.where)

    def _post(self, request: urllib.request.Request) -> None:
        opener = urllib.request.build_opener(_RefuseRedirects)
        try:
            with opener.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS):
                pass
        except urllib.error.HTTPError as exc:
            exc.close()
            kind = "redirected (not followed)" if 300 <= exc.code < 400 else "answered"
            raise NotifyError(f"{self.where} {kind} with HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason.strerror if isinstance(exc.reason, OSError) else exc.reason
            raise NotifyError(f"{self.where} unreachable: {reason or type(exc.reason).__name__}") from None
        except OSError as exc:  # timeouts and resets while reading the answer
            raise NotifyError(f"{self.where} failed: {exc.strerror or type(exc).__name__}") from None


def make_notifier(settings: Settings) -> Notifier:
    """The notifier `settings.notifier` names; SettingsError when its configuration is unusable."""
    if settings.notifier == "log":
        return LogNotifier(settings.notification_outbox_path)
    if settings.notifier == "smtp":
        if not (settings.smtp_host and settings.smtp_sender):
            raise SettingsError("the smtp notifier needs smtp_host and smtp_sender")
        return SmtpNotifier(settings.smtp_host, settings.smtp_port, settings.smtp_sender,
                            settings.smtp_username, settings.smtp_password, settings.smtp_starttls)
    if settings.notifier == "webhook":
        if urlsplit(settings.webhook_url).scheme not in ("http", "https") or not settings.webhook_secret:
            raise SettingsError("the webhook notifier needs an http(s) webhook_url and a webhook_secret")
        return WebhookNotifier(settings.webhook_url, settings.webhook_secret)
    raise SettingsError(f"unknown notifier {settings.notifier!r} (log, smtp or webhook)")
