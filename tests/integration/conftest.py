"""Integration fixtures: a clean database before each test, an app and a client."""

from __future__ import annotations

from typing import Iterator

import pytest
from starlette.testclient import TestClient

from tenderhall import db
from tests.factories import run_async
from tenderhall.app import create_app
from tenderhall.settings import Settings

KEEP = {"schema_migrations"}


async def _truncate(dsn: str) -> None:
    conn = await db.connect(dsn)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        names = [r["tablename"] for r in tables if r["tablename"] not in KEEP]
        if names:
            await conn.execute("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def clean_database(database_url: str) -> None:
    run_async(_truncate(database_url))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
