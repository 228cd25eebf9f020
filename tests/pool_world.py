"""Test builders for the expert and intermediary pools: `make_expert(dsn, ...)`, `make_intermediary(dsn, ...)`, ….

They write straight through evaluation.pool_store (no transparency-log entries, no audit), so
a test states only what matters to it, e.g. for the draw:

    expert = make_expert(dsn, region="320205", specialties=("A0101",))
    set_leave(dsn, expert.id, [date(2030, 5, 1)])
    add_avoidance(dsn, expert.id, organisation_code=bidder_code)
    set_credit(dsn, expert.id, 50)

Every builder makes the specialty tree first (the integration tests empty every table before
each test). ID numbers are sealed with `data_key` when given (pass `app_data_key(settings)` to
share the app's key, so duplicates against the pool are detected), else with a fixed test key.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

from evaluation import id_number, pool_service, pool_store
from evaluation.pool import ExpertInput
from tenderhall import credit_code
from tenderhall.data_key import DataKey, load_or_create
from tenderhall.settings import Settings
from tests.factories import run_db

TEST_DATA_KEY = DataKey(b"\x07" * 32)
_counter = itertools.count(1)


def app_data_key(settings: Settings) -> DataKey:
    """The data key the app built from `settings` uses (made on first use, like the app does)."""
    return load_or_create(settings.data_key_path)


def new_id_number(region: str = "320102") -> str:
    """A valid GB 11643 number, different at each call."""
    n = next(_counter) + uuid.uuid4().int % 900_000
    born = date(1960 + n % 35, 1 + n // 35 % 12, 1 + n // 420 % 28)
    return id_number.make(f"{region}{born:%Y%m%d}{n % 1000:03d}")


def new_credit_code() -> str:
    """A valid unified social credit code, different at each call."""
    n = next(_counter) * 7919 + uuid.uuid4().int % 10**8
    return credit_code.make(f"91320100{n % 10**9:09d}")


def ensure_tree(dsn: str) -> None:
    """The default specialty tree, inserted if missing."""
    run_db(dsn, pool_service.ensure_specialty_tree)


@dataclass(frozen=True)
class PoolExpert:
    id: uuid.UUID
    name: str
    id_number: str
    phone: str
    email: str | None
    employer_name: str
    employer_code: str
    region: str
    specialties: tuple[str, ...]
    title: str
    status: str
    user_id: uuid.UUID | None


def expert_input(**overrides: Any) -> ExpertInput:
    """A valid ExpertInput; `overrides` replace any field (specialties as a tuple of codes)."""
    n = next(_counter)
    values: dict[str, Any] = {
        "name": f"测试专家{n}", "id_number": new_id_number(), "phone": f"139{n % 10**8:08d}",
        "email": None, "employer_name": f"测试单位{n}", "employer_code": new_credit_code(), "region": "320102",
        "specialties": ("A0101",), "title": "高级工程师", "status": "active", "user_id": None}
    values.update(overrides)
    values["specialties"] = tuple(values["specialties"])
    return ExpertInput(**values)


def make_expert(dsn: str, data_key: DataKey | None = None, **overrides: Any) -> PoolExpert:
    """Insert one expert (fields of ExpertInput as overrides, plus `credit_score=`); return it."""
    score = overrides.pop("credit_score", None)
    expert = expert_input(**overrides)
    expert_id = uuid.uuid4()
    sealed, index, masked = pool_service.seal_id_number(data_key or TEST_DATA_KEY, expert_id, expert.id_number)

    async def work(conn: Any) -> None:
        await pool_service.ensure_specialty_tree(conn)
        await pool_store.insert_expert(conn, pool_service.expert_values(expert_id, expert, sealed, index, masked),
                                       expert.specialties)
        if score is not None:
            await pool_store.set_score(conn, "expert", expert_id, score)

    run_db(dsn, work)
    return PoolExpert(expert_id, expert.name, expert.id_number, expert.phone, expert.email, expert.employer_name,
                      expert.employer_code, expert.region, expert.specialties, expert.title, expert.status,
                      expert.user_id)


def make_experts(dsn: str, count: int, data_key: DataKey | None = None, **overrides: Any) -> list[PoolExpert]:
    """`count` experts sharing `overrides`."""
    return [make_expert(dsn, data_key, **overrides) for _ in range(count)]


def set_leave(dsn: str, expert_id: uuid.UUID, days: Iterable[date]) -> None:
    """Add leave days to an expert's calendar."""
    run_db(dsn, lambda c: pool_store.add_leave(c, expert_id, list(days)))


def add_avoidance(dsn: str, expert_id: uuid.UUID, *, organisation_code: str | None = None,
                  user_id: uuid.UUID | None = None, note: str = "") -> uuid.UUID:
    """Declare a relation for an expert (an organisation's credit code or a user id); its id."""
    avoidance_id = uuid.uuid4()
    run_db(dsn, lambda c: pool_store.insert_avoidance(c, avoidance_id, expert_id, organisation_code, user_id, note))
    return avoidance_id


def set_credit(dsn: str, expert_id: uuid.UUID, score: int, subject: str = "expert") -> None:
    """Set a credit score directly (no credit event): e.g. under the threshold."""
    run_db(dsn, lambda c: pool_store.set_score(c, subject, expert_id, score))


def set_status(dsn: str, expert_id: uuid.UUID, status: str) -> None:
    run_db(dsn, lambda c: pool_store.set_status(c, expert_id, status))


@dataclass(frozen=True)
class PoolIntermediary:
    id: uuid.UUID
    name: str
    credit_code: str
    region: str
    contact_name: str
    phone: str
    categories: tuple[str, ...]
    status: str


def make_intermediary(dsn: str, **overrides: Any) -> PoolIntermediary:
    """Insert one intermediary (fields as overrides, categories as codes under S, plus `credit_score=`)."""
    score = overrides.pop("credit_score", None)
    n = next(_counter)
    values: dict[str, Any] = {"name": f"测试中介{n}", "credit_code": new_credit_code(), "region": "320102",
                              "contact_name": f"联系人{n}", "phone": f"138{n % 10**8:08d}", "email": None,
                              "categories": ("S01",), "status": "active"}
    values.update(overrides)
    agency = PoolIntermediary(uuid.uuid4(), values["name"], values["credit_code"], values["region"],
                              values["contact_name"], values["phone"], tuple(values["categories"]), values["status"])

    async def work(conn: Any) -> None:
        await pool_service.ensure_specialty_tree(conn)
        await pool_store.insert_intermediary(conn, (agency.id, agency.name, agency.credit_code, agency.region,
                                                    agency.contact_name, agency.phone, values["email"],
                                                    agency.status), agency.categories)
        if score is not None:
            await pool_store.set_score(conn, "intermediary", agency.id, score)

    run_db(dsn, work)
    return agency
