"""Settings: read once from the environment (or given by tests), failing loudly on bad values."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """An environment variable holds a value the platform cannot use."""


def default_data_dir() -> Path:
    """Per-user data directory: $XDG_DATA_HOME/tenderhall, else ~/.local/share/tenderhall.

    As root the embedded PostgreSQL runs as a separate system user that must traverse every
    parent of its data directory, so root's data goes under /var/lib instead of /root.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/tenderhall")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tenderhall"


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _list(env: dict[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list; empty items are dropped."""
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """Everything configurable. `from_env()` for the CLI; tests build their own."""

    database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8000
    # None: Secure cookies exactly when the request came over https.
    cookie_secure: bool | None = None
    session_hours: int = 12
    # scrypt cost (RFC 7914 N); tests lower it, production keeps 2**15.
    scrypt_n: int = 2**15
    login_failures_per_user: int = 5
    login_failures_per_ip: int = 30
    login_window_seconds: int = 900
    max_bid_bytes: int = 8 * 2**30
    max_json_bytes: int = 1 * 2**20
    # Urlencoded form bodies (login, admin pages): small, and reachable before login.
    max_form_bytes: int = 64 * 2**10
    # How far a bidder's client clock may differ from the server's on a manifest.
    client_clock_skew_seconds: int = 900
    pool_min: int = 2
    pool_max: int = 20
    default_language: str = "zh_CN"
    # How often each instance runs the domains' periodic jobs (expiring abandoned uploads, ...).
    job_interval_seconds: int = 300
    # Pages show times in the centre's zone; the API always speaks UTC.
    display_timezone: str = "Asia/Shanghai"
    # WebRTC: STUN/TURN URLs given to every peer (empty on a LAN), and the host addresses ICE
    # may offer (empty: aioice's own choice, which never includes 127.0.0.1; tests set it).
    # The trading centre that publishes open data (OCDS publisher.name).
    publisher_name: str = "公共资源交易中心"
    rtc_ice_servers: tuple[str, ...] = ()
    rtc_host_addresses: tuple[str, ...] = ()
    # Long-term TURN credentials for the turn:/turns: URLs above (browsers get them too).
    rtc_turn_username: str = ""
    rtc_turn_credential: str = ""
    # Expert draws: a credit score under the threshold excludes an expert (or an intermediary);
    # the repeat-pairing cap excludes whoever served more than N times for the same tenderer or
    # agent in the last D days; drawn people have `draw_reply_minutes` to confirm.
    credit_threshold: int = 60
    pairing_cap: int = 3
    pairing_days: int = 90
    draw_reply_minutes: int = 15
    # Reply windows are minutes long: their expiry and the notices run on a short period of their own.
    draw_job_seconds: int = 30
    # How drawn people are told: "log" (an outbox file in the data directory, for the demo),
    # "smtp" or "webhook"; the base URL goes into their one-time confirmation links.
    notifier: str = "log"
    public_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_sender: str = ""
    smtp_starttls: bool = True
    webhook_url: str = ""
    webhook_secret: str = ""
    # The venue (issue 6): door controllers and positioning systems authenticate with this
    # bearer token (TENDERHALL_VENUE_DEVICE_TOKEN; empty: a file made in the data directory);
    # positions older than the retention are dropped a day's partition at a time; the venue's
    # opening hours bound "presence after hours"; its time zone is display_timezone.
    venue_device_token: str = ""
    venue_position_retention_days: int = 30
    venue_opens: str = "07:30"
    venue_closes: str = "20:00"

    def ice_servers(self) -> list[dict[str, str]]:
        """The ICE servers as RTCIceServer dicts (W3C shape), TURN URLs with their credentials."""
        servers = []
        for url in self.rtc_ice_servers:
            server = {"urls": url}
            if url.startswith(("turn:", "turns:")) and self.rtc_turn_username:
                server.update(username=self.rtc_turn_username, credential=self.rtc_turn_credential)
            servers.append(server)
        return servers

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def platform_key_path(self) -> Path:
        return self.data_dir / "platform-signing-key.pem"

    @property
    def data_key_path(self) -> Path:
        return self.data_dir / "platform-data-key"

    @property
    def venue_device_token_path(self) -> Path:
        return self.data_dir / "venue-device-token"

    @property
    def notification_outbox_path(self) -> Path:
        return self.data_dir / "notifications.jsonl"

    def base_url(self) -> str:
        """Where people reach this server (links in notifications): TENDERHALL_PUBLIC_URL, else host:port."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> "Settings":
        """Read TENDERHALL_* variables (and DATABASE_URL); `overrides` win (CLI flags)."""
        env = dict(os.environ if env is None else env)
        data_dir = env.get("TENDERHALL_DATA_DIR")
        cookie = env.get("TENDERHALL_COOKIE_SECURE")
        settings = cls(
            database_url=env.get("DATABASE_URL") or None,
            data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
            host=env.get("TENDERHALL_HOST", "127.0.0.1"),
            port=_int(env, "TENDERHALL_PORT", 8000, 1),
            cookie_secure=None if not cookie else _bool(env, "TENDERHALL_COOKIE_SECURE", False),
            session_hours=_int(env, "TENDERHALL_SESSION_HOURS", 12, 1),
            max_bid_bytes=_int(env, "TENDERHALL_MAX_BID_BYTES", 8 * 2**30, 1),
            default_language=env.get("TENDERHALL_LANGUAGE", "zh_CN"),
            display_timezone=env.get("TENDERHALL_TIMEZONE", "Asia/Shanghai"),
            publisher_name=env.get("TENDERHALL_PUBLISHER_NAME") or "公共资源交易中心",
            rtc_ice_servers=_list(env, "TENDERHALL_ICE_SERVERS"),
            rtc_host_addresses=_list(env, "TENDERHALL_ICE_HOST_ADDRESSES"),
            rtc_turn_username=env.get("TENDERHALL_TURN_USERNAME", ""),
            rtc_turn_credential=env.get("TENDERHALL_TURN_CREDENTIAL", ""),
            credit_threshold=_int(env, "TENDERHALL_CREDIT_THRESHOLD", 60, 0),
            pairing_cap=_int(env, "TENDERHALL_PAIRING_CAP", 3, 0),
            pairing_days=_int(env, "TENDERHALL_PAIRING_DAYS", 90, 1),
            draw_reply_minutes=_int(env, "TENDERHALL_DRAW_REPLY_MINUTES", 15, 1),
            notifier=env.get("TENDERHALL_NOTIFIER") or "log",
            public_url=env.get("TENDERHALL_PUBLIC_URL", ""),
            smtp_host=env.get("TENDERHALL_SMTP_HOST", ""),
            smtp_port=_int(env, "TENDERHALL_SMTP_PORT", 587, 1),
            smtp_username=env.get("TENDERHALL_SMTP_USERNAME", ""),
            smtp_password=env.get("TENDERHALL_SMTP_PASSWORD", ""),
            smtp_sender=env.get("TENDERHALL_SMTP_SENDER", ""),
            smtp_starttls=_bool(env, "TENDERHALL_SMTP_STARTTLS", True),
            webhook_url=env.get("TENDERHALL_WEBHOOK_URL", ""),
            webhook_secret=env.get("TENDERHALL_WEBHOOK_SECRET", ""),
            venue_device_token=env.get("TENDERHALL_VENUE_DEVICE_TOKEN", ""),
            venue_position_retention_days=_int(env, "TENDERHALL_VENUE_RETENTION_DAYS", 30, 1),
            venue_opens=env.get("TENDERHALL_VENUE_OPENS", "07:30"),
            venue_closes=env.get("TENDERHALL_VENUE_CLOSES", "20:00"),
        )
        if settings.default_language not in ("zh_CN", "en"):
            raise SettingsError("TENDERHALL_LANGUAGE must be zh_CN or en")
        if settings.notifier not in ("log", "smtp", "webhook"):
            raise SettingsError("TENDERHALL_NOTIFIER must be log, smtp or webhook")
        if settings.notifier == "smtp" and not (settings.smtp_host and settings.smtp_sender):
            raise SettingsError("TENDERHALL_NOTIFIER=smtp needs TENDERHALL_SMTP_HOST and TENDERHALL_SMTP_SENDER")
        if settings.notifier == "webhook" and not (settings.webhook_url and settings.webhook_secret):
            raise SettingsError("TENDERHALL_NOTIFIER=webhook needs TENDERHALL_WEBHOOK_URL and TENDERHALL_WEBHOOK_SECRET")
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean) if clean else settings  # type: ignore[arg-type]
