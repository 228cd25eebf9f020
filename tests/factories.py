"""Test data builders: `make_user(...)`, `make_organisation(...)`, `login(client, user)`, …

Factories write through the same domain functions the platform uses, on their own
connection, so each test states only what matters to it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from starlette.testclient import TestClient

from tenderhall import accounts, credit_code, db

T = TypeVar("T")
PASSWORD = "correct horse battery"
_counter = itertools.count(1)


def run_async(coro: Awaitable[T]) -> T:
    """asyncio.run(), also from a thread whose loop is busy (Playwright's sync API keeps one running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


def run_db(dsn: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(conn)` on a fresh connection in its own event loop; return its result."""

    async def main() -> T:
        conn = await db.connect(dsn)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return run_async(main())


def new_credit_code() -> str:
    n = next(_counter) + uuid.uuid4().int % 10_000_000
    return credit_code.make(f"91110000{n % 10**9:09d}")


@dataclass(frozen=True)
class TestUser:
    id: uuid.UUID
    username: str
    password: str
    roles: tuple[str, ...]
    organisation_id: uuid.UUID | None


def make_organisation(dsn: str, *, name: str | None = None, kind: str = "bidder", code: str | None = None) -> uuid.UUID:
    code = code or new_credit_code()
    name = name or f"测试公司{next(_counter)}"
    return run_db(dsn, lambda c: accounts.create_organisation(c, credit_code_text=code, name=name, kind=kind))


def make_user(dsn: str, *roles: str, username: str | None = None, organisation_id: uuid.UUID | None = None) -> TestUser:
    roles = roles or ("agent",)
    username = username or f"{roles[0]}{next(_counter)}-{uuid.uuid4().hex[:6]}"
    if "bidder" in roles and organisation_id is None:
        organisation_id = make_organisation(dsn)
    user_id = run_db(dsn, lambda c: accounts.create_user(
        c, username=username, display_name=username, password=PASSWORD, roles=list(roles),
        organisation_id=organisation_id, scrypt_n=2**10))
    return TestUser(user_id, username, PASSWORD, tuple(roles), organisation_id)


def login(client: TestClient, user: TestUser) -> str:
    """Log `client` in as `user` through the JSON API; return the CSRF token to send."""
    response = client.post("/api/session", json={"username": user.username, "password": user.password})
    assert response.status_code == 200, response.text
    token = response.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = token
    return token
