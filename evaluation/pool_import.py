"""Bulk import of experts from a CSV file: check every row, then import all of them in one COPY, or none.

Rows that only the database can judge (a specialty the tree lacks, an ID number already in
the pool) become row errors like the others. With any error nothing is imported, unless the
caller asks for the good rows (`mode="good_rows"`). One log entry records the counts and the
file's SHA-256; the audit keeps who imported it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from evaluation import pool_store
from evaluation.pool import PoolError, sha256_hex
from evaluation.pool_csv import MAX_ROWS, CsvRow, RowError, check_csv
from evaluation.pool_service import Actor, Deps, audit, constraint_error, expert_values, seal_id_number, today
from tenderhall import log

Mode = Literal["all", "good_rows"]
MODES: tuple[Mode, ...] = ("all", "good_rows")


@dataclass(frozen=True)
class ImportResult:
    """What an import did: `imported` rows of `rows`, and every row error (imported = 0 when refused)."""

    mode: Mode
    rows: int
    imported: int
    errors: tuple[RowError, ...]
    file_sha256: str
    log_index: int | None

    @property
    def refused(self) -> bool:
        return self.imported == 0 and bool(self.errors)

    def as_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "rows": self.rows, "imported": self.imported,
                "rejected_rows": len({e.row for e in self.errors}), "errors": [e.as_json() for e in self.errors],
                "file_sha256": self.file_sha256, "log_index": self.log_index}


def parse_mode(value: str | None) -> Mode:
    if value in (None, "", "all"):
        return "all"
    if value == "good_rows":
        return "good_rows"
    raise PoolError(400, "invalid_query", "mode is all or good_rows")


async def import_experts(deps: Deps, actor: Actor, raw: bytes, mode: Mode, *, max_rows: int = MAX_ROWS) -> ImportResult:
    """Check and import a CSV file of experts (see evaluation.pool_csv for the columns).

    Raises CsvFileError (422) for a file that cannot be read as the expected CSV, PoolError 413
    past `max_rows`, 409 duplicate_id_number if another import raced this one. Otherwise the
    result says how many rows were imported and lists every row error.
    """
    digest = sha256_hex(raw)
    checked = check_csv(raw, today=today(), max_rows=max_rows)
    errors = list(checked.errors)
    good = list(checked.good)
    sealed: dict[int, tuple[uuid.UUID, bytes, bytes, str]] = {}
    for row in good:
        expert_id = uuid.uuid4()
        sealed[row.row] = (expert_id, *seal_id_number(deps.data_key, expert_id, row.expert.id_number))
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            errors += await _database_errors(conn, good, sealed)
            bad_rows = {e.row for e in errors}
            good = [r for r in good if r.row not in bad_rows]
            if (errors and mode == "all") or not good:
                await audit(conn, actor, "expert.import.refused", "experts",
                             {"rows": checked.rows, "errors": len(errors), "file_sha256": digest})
                return ImportResult(mode, checked.rows, 0, tuple(sorted(errors, key=_order)), digest, None)
            records = [expert_values(sealed[r.row][0], r.expert, *sealed[r.row][1:]) for r in good]
            specialty_records = [(sealed[r.row][0], code) for r in good for code in r.expert.specialties]
            try:
                await pool_store.copy_experts(conn, records, specialty_records)
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise constraint_error(exc) from None
            appended = await log.append_entry(conn, deps.signer, "expert.import", {
                "imported": len(good), "rows": checked.rows, "rejected_rows": len(bad_rows), "file_sha256": digest})
            await audit(conn, actor, "expert.import", "experts",
                         {"imported": len(good), "rows": checked.rows, "errors": len(errors), "mode": mode,
                          "file_sha256": digest, "log_index": appended.index})
    return ImportResult(mode, checked.rows, len(good), tuple(sorted(errors, key=_order)), digest, appended.index)


def _order(error: RowError) -> tuple[int, str]:
    return error.row, error.column


async def _database_errors(conn: asyncpg.Connection, good: list[CsvRow],
                           sealed: dict[int, tuple[uuid.UUID, bytes, bytes, str]]) -> list[RowError]:
    """Row errors for unknown specialties and ID numbers the pool already holds."""
    errors: list[RowError] = []
    unknown = set(await pool_store.unknown_specialties(conn, {c for r in good for c in r.expert.specialties}))
    existing = await pool_store.existing_indexes(conn, [s[2] for s in sealed.values()])
    for r in good:
        missing = [c for c in r.expert.specialties if c in unknown]
        if missing:
            errors.append(RowError(r.row, "specialties", f"unknown specialty code(s): {', '.join(missing)}"))
        if sealed[r.row][2] in existing:
            errors.append(RowError(r.row, "id_number", "an expert with this ID number is already in the pool"))
    return errors
