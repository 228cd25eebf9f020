"""A draw world for integration tests: specialties, experts and intermediaries written straight to the tables,
and the requester's secret and commitment.

The pool's own pages and import are tested in test_pool.py; here only what the draw reads matters,
so rows are inserted directly (ID numbers are opaque bytes: the draw never opens them).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from evaluation.draw import commitment
from tenderhall.canonical import b64url
from tests.factories import new_credit_code, run_db


@dataclass(frozen=True)
class Secret:
    raw: bytes = field(default_factory=lambda: os.urandom(32))

    @property
    def text(self) -> str:
        return b64url(self.raw)

    @property
    def commitment(self) -> str:
        return commitment(self.raw)


def ensure_specialties(dsn: str, *codes: str) -> None:
    async def work(conn: Any) -> None:
        for code in codes:
            for end in range(1, len(code) + 1, 2):
                part = code[:end]
                await conn.execute("""INSERT INTO specialties (code, name, parent) VALUES ($1, $2, $3)
                                      ON CONFLICT DO NOTHING""", part, f"专业{part}", part[:-2] if len(part) > 1 else None)
    run_db(dsn, work)


def add_expert(dsn: str, *, specialties: tuple[str, ...] = ("A0101",), region: str = "320102",
               employer_code: str | None = None, employer_name: str | None = None, status: str = "active",
               credit: int = 100, leave: tuple[date, ...] = (), user_id: uuid.UUID | None = None,
               email: str | None = None, name: str | None = None) -> uuid.UUID:
    ensure_specialties(dsn, *specialties)
    expert_id = uuid.uuid4()

    async def work(conn: Any) -> None:
        await conn.execute("""
            INSERT INTO experts (id, name, id_number_sealed, id_number_index, id_number_masked, phone, email,
                                 employer_name, employer_code, region, title, status, credit_score, user_id)
            VALUES ($1, $2, $3, $4, '110105********0011', '13800138000', $5, $6, $7, $8, '高级工程师', $9, $10, $11)""",
                           expert_id, name or f"专家{expert_id.hex[:6]}", os.urandom(40), os.urandom(32), email,
                           employer_name or f"单位{expert_id.hex[:6]}", employer_code or new_credit_code(), region,
                           status, credit, user_id)
        await conn.executemany("INSERT INTO expert_specialties (expert_id, specialty) VALUES ($1, $2)",
                               [(expert_id, s) for s in specialties])
        await conn.executemany("INSERT INTO expert_leave (expert_id, day) VALUES ($1, $2)", [(expert_id, d) for d in leave])
    run_db(dsn, work)
    return expert_id


def add_intermediary(dsn: str, *, categories: tuple[str, ...] = ("S01",), region: str = "320102",
                     credit_code: str | None = None, name: str | None = None, status: str = "active") -> uuid.UUID:
    ensure_specialties(dsn, *categories)
    agency_id = uuid.uuid4()

    async def work(conn: Any) -> None:
        await conn.execute("""INSERT INTO intermediaries (id, name, credit_code, region, contact_name, phone, status)
                              VALUES ($1, $2, $3, $4, '联系人', '13900139000', $5)""",
                           agency_id, name or f"中介{agency_id.hex[:6]}", credit_code or new_credit_code(), region, status)
        await conn.executemany("INSERT INTO intermediary_categories (intermediary_id, category) VALUES ($1, $2)",
                               [(agency_id, c) for c in categories])
    run_db(dsn, work)
    return agency_id


def in_minutes(minutes: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()


def evaluation_request(tender_id: str, secret: Secret, *, specialty: str = "A0101", count: int = 3, backups: int = 2,
                       needed_in_minutes: float = 30, **extra: Any) -> dict[str, Any]:
    group = {"specialty": specialty, "count": count, "backups": backups, **extra.pop("group", {})}
    return {"purpose": "evaluation", "tender_id": tender_id, "title": "评标专家抽取", "spec": {"groups": [group]},
            "needed_at": in_minutes(needed_in_minutes), "commitment": secret.commitment, **extra}
