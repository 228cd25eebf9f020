"""Accounts: users and roles, organisations, server-side sessions, login with rate limits, audit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

from tenderhall import credit_code, passwords

Role = Literal["admin", "agent", "bidder", "expert", "supervisor", "custodian"]
ROLES: tuple[Role, ...] = ("admin", "agent", "bidder", "expert", "supervisor", "custodian")
ORGANISATION_KINDS = ("bidder", "tenderer", "agency", "centre", "authority")


class AccountError(Exception):
    """A refused account operation; `code` is stable, the message is for people."""

    code = "account_error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LoginFailed(AccountError):
    code, status = "login_failed", 401


class LoginThrottled(AccountError):
    code, status = "too_many_attempts", 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccountConflict(AccountError):
    code, status = "conflict", 409


@dataclass(frozen=True)
class CurrentUser:
    id: uuid.UUID
    username: str
    display_name: str
    roles: frozenset[str]
    organisation_id: uuid.UUID | None
    organisation_name: str | None = None

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


@dataclass(frozen=True)
class Session:
    user: CurrentUser
    csrf_token: str
    expires_at: datetime


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets given as text."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


_USER_COLUMNS = """u.id, u.username, u.display_name, u.roles, u.organisation_id, o.name AS organisation_name"""


def _user(row: asyncpg.Record) -> CurrentUser:
    return CurrentUser(
        id=row["id"],
        username=row["username"],
        display_name=row["display_name"],
        roles=frozenset(row["roles"]),
        organisation_id=row["organisation_id"],
        organisation_name=row["organisation_name"],
    )


async def create_organisation(conn: asyncpg.Connection, *, credit_code_text: str, name: str, kind: str) -> uuid.UUID:
    """Create an organisation; CreditCodeError for a bad code, AccountConflict for a duplicate."""
    code = credit_code.validate(credit_code_text)
    if kind not in ORGANISATION_KINDS:
        raise AccountError(f"organisation kind must be one of {', '.join(ORGANISATION_KINDS)}")
    if not name.strip() or len(name) > 200:
        raise AccountError("an organisation needs a name of 1 to 200 characters")
    org_id = uuid.uuid4()
    try:
        await conn.execute(
            "INSERT INTO organisations (id, credit_code, name, kind) VALUES ($1, $2, $3, $4)",
            org_id, code, name.strip(), kind,
        )
    except asyncpg.UniqueViolationError:
        raise AccountConflict(f"an organisation with credit code {code} already exists") from None
    return org_id


async def create_user(
    conn: asyncpg.Connection,
    *,
    username: str,
    display_name: str,
    password: str,
    roles: list[str] | tuple[str, ...],
    organisation_id: uuid.UUID | None = None,
    scrypt_n: int = 2**15,
) -> uuid.UUID:
    """Create a user; AccountError/PasswordPolicyError with a precise message when refused."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise AccountError(f"unknown role(s): {', '.join(unknown) or '(none given)'}")
    passwords.check_policy(password)
    password_hash = await asyncio.to_thread(passwords.hash_password, password, n=scrypt_n)
    user_id = uuid.uuid4()
    try:
        await conn.execute(
            """INSERT INTO users (id, username, display_name, password_hash, roles, organisation_id)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            user_id, username, display_name, password_hash, sorted(set(roles)), organisation_id,
        )
    except asyncpg.UniqueViolationError:
        raise AccountConflict(f"the username {username!r} is taken") from None
    except asyncpg.CheckViolationError as exc:
        messages = {
            "users_username_check": "a username has 3 to 64 characters: lower-case letters, digits, '.', '_' or '-'",
            "users_bidder_organisation_check": "a bidder must belong to a bidder organisation",
            "users_role_conflict_check": "a bidder cannot also be an expert, supervisor, agent, admin or custodian",
            "users_roles_check": "unknown role",
        }
        raise AccountError(messages.get(exc.constraint_name or "", str(exc))) from None
    return user_id


# Advisory lock classes (two-key form, apart from the one-key locks elsewhere) that serialise
# the throttle check and the attempt's record per username and per client address.
_LOGIN_USER_LOCK = 7401101
_LOGIN_IP_LOCK = 7401102


async def _throttle(conn: asyncpg.Connection, username: str, ip: str, settings: Any) -> None:
    # asyncpg encodes an interval parameter from a timedelta, not from text.
    since = timedelta(seconds=settings.login_window_seconds)
    row = await conn.fetchrow(
        """SELECT
             count(*) FILTER (WHERE username = $1) AS by_user,
             count(*) FILTER (WHERE ip = $2) AS by_ip
           FROM login_attempts
           WHERE NOT succeeded AND at > clock_timestamp() - $3::interval AND (username = $1 OR ip = $2)""",
        username, ip, since,
    )
    if row["by_user"] >= settings.login_failures_per_user or row["by_ip"] >= settings.login_failures_per_ip:
        raise LoginThrottled(
            f"too many failed logins; try again in {settings.login_window_seconds // 60} minutes",
            retry_after=settings.login_window_seconds,
        )


async def _claim_attempt(conn: asyncpg.Connection, username: str, ip: str, settings: Any) -> int:
    """Check the limits and record the attempt as failed, atomically; return its id.

    Concurrent attempts for one username (or from one address) wait on advisory locks, so each
    sees the ones before it: parallel guesses cannot all pass the count. The transaction is
    short; the slow password check happens after it, and only a success updates the record.
    Locks are always taken user first, then address, so two attempts never deadlock.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOGIN_USER_LOCK, username)
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOGIN_IP_LOCK, ip)
        await _throttle(conn, username, ip, settings)
        return await conn.fetchval(
            "INSERT INTO login_attempts (username, ip, succeeded) VALUES ($1, $2, false) RETURNING id", username, ip
        )


async def authenticate(conn: asyncpg.Connection, username: str, password: str, ip: str, settings: Any) -> CurrentUser:
    """Check a password login; LoginThrottled past the limits, LoginFailed otherwise refused.

    Call it outside any transaction: the attempt must be recorded even when the login fails.
    """
    username = username.strip().lower()[:64]
    attempt_id = await _claim_attempt(conn, username, ip, settings)
    row = await conn.fetchrow(
        f"""SELECT {_USER_COLUMNS}, u.password_hash, u.disabled FROM users u
            LEFT JOIN organisations o ON o.id = u.organisation_id WHERE u.username = $1""",
        username,
    )
    stored = row["password_hash"] if row else await asyncio.to_thread(passwords.dummy_hash, settings.scrypt_n)
    ok = await asyncio.to_thread(passwords.verify_password, password, stored)
    ok = ok and row is not None and not row["disabled"]
    if not ok:
        raise LoginFailed("wrong username or password")
    await conn.execute("UPDATE login_attempts SET succeeded = true WHERE id = $1", attempt_id)
    return _user(row)


async def get_user(conn: asyncpg.Connection, user_id: uuid.UUID) -> CurrentUser | None:
    row = await conn.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users u LEFT JOIN organisations o ON o.id = u.organisation_id WHERE u.id = $1",
        user_id,
    )
    return _user(row) if row else None


# --- administration views: organisations and users as the admin pages list them -------------

_ORGANISATION_COLUMNS = "id, credit_code, name, kind, created_at"
_LIST_ORGANISATIONS = f"SELECT {_ORGANISATION_COLUMNS} FROM organisations ORDER BY name, id LIMIT $1 OFFSET $2"
_COUNT_ORGANISATIONS = "SELECT count(*) FROM organisations"
_GET_ORGANISATION = f"SELECT {_ORGANISATION_COLUMNS} FROM organisations WHERE id = $1"
_USER_DETAILS = f"""
SELECT {_USER_COLUMNS}, u.disabled, u.created_at
FROM users u LEFT JOIN organisations o ON o.id = u.organisation_id"""
_LIST_USERS = _USER_DETAILS + " ORDER BY u.username LIMIT $1 OFFSET $2"
_COUNT_USERS = "SELECT count(*) FROM users"
_GET_USER_DETAILS = _USER_DETAILS + " WHERE u.id = $1"


async def list_organisations(conn: asyncpg.Connection, limit: int, offset: int) -> list[asyncpg.Record]:
    """Organisations by name (id, credit_code, name, kind, created_at)."""
    return await conn.fetch(_LIST_ORGANISATIONS, limit, offset)


async def count_organisations(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(_COUNT_ORGANISATIONS)


async def get_organisation(conn: asyncpg.Connection, organisation_id: uuid.UUID) -> asyncpg.Record | None:
    """One organisation's row, or None."""
    return await conn.fetchrow(_GET_ORGANISATION, organisation_id)


async def list_users(conn: asyncpg.Connection, limit: int, offset: int) -> list[asyncpg.Record]:
    """Users by username, with organisation name, `disabled` and `created_at`."""
    return await conn.fetch(_LIST_USERS, limit, offset)


async def count_users(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(_COUNT_USERS)


async def get_user_details(conn: asyncpg.Connection, user_id: uuid.UUID) -> asyncpg.Record | None:
    """One user's row as `list_users` gives it, or None."""
    return await conn.fetchrow(_GET_USER_DETAILS, user_id)


async def create_session(conn: asyncpg.Connection, user_id: uuid.UUID, ip: str, hours: int) -> tuple[str, str]:
    """Start a session; return (session token for the cookie, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await conn.execute(
        """INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at, ip)
           VALUES ($1, $2, $3, now() + $4::interval, $5)""",
        token_hash(token), user_id, csrf, timedelta(hours=hours), ip,
    )
    return token, csrf


async def load_session(conn: asyncpg.Connection, token: str) -> Session | None:
    """The live session for a cookie token, or None (unknown, expired or user disabled)."""
    if not token or len(token) > 128:
        return None
    row = await conn.fetchrow(
        f"""SELECT {_USER_COLUMNS}, s.csrf_token, s.expires_at FROM sessions s
            JOIN users u ON u.id = s.user_id LEFT JOIN organisations o ON o.id = u.organisation_id
            WHERE s.token_hash = $1 AND s.expires_at > now() AND NOT u.disabled""",
        token_hash(token),
    )
    if row is None:
        return None
    return Session(_user(row), row["csrf_token"], row["expires_at"])


async def end_session(conn: asyncpg.Connection, token: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash(token))


async def record_audit(
    conn: asyncpg.Connection,
    action: str,
    *,
    actor_id: uuid.UUID | None = None,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    """Record an act that matters but is no public record (logins, account changes)."""
    await conn.execute(
        "INSERT INTO audit_events (actor_id, action, subject, detail, ip) VALUES ($1, $2, $3, $4, $5)",
        actor_id, action, subject, detail or {}, ip,
    )
