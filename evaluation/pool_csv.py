"""Bulk import of experts from CSV: the file's shape and every row checked before anything is stored.

Pure: the service adds what only the database knows (unknown specialties, ID numbers already
in the pool) as further row errors, then imports all rows, or only the good ones when asked.
Rows are numbered as a spreadsheet shows them: the header is row 1.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date

from evaluation.pool import EXPERT_OPTIONAL, ExpertInput, FieldError, PoolError, expert_checks

MAX_BYTES = 5 * 2**20
MAX_ROWS = 20_000
COLUMNS = ("name", "id_number", "phone", "email", "employer_name", "employer_code", "region", "specialties",
           "title", "status")
REQUIRED = tuple(c for c in COLUMNS if c not in EXPERT_OPTIONAL)
# Header spellings people use in Chinese spreadsheets, mapped to the column names.
ALIASES = {"姓名": "name", "身份证号": "id_number", "身份证号码": "id_number", "手机": "phone", "手机号": "phone",
           "电话": "phone", "邮箱": "email", "电子邮箱": "email", "工作单位": "employer_name", "单位": "employer_name",
           "单位统一社会信用代码": "employer_code", "统一社会信用代码": "employer_code", "地区": "region",
           "行政区划": "region", "专业": "specialties", "评标专业": "specialties", "职称": "title", "状态": "status"}


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    message: str

    def as_json(self) -> dict[str, object]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass(frozen=True)
class CsvRow:
    row: int
    expert: ExpertInput


@dataclass(frozen=True)
class CsvCheck:
    """Every data row: the good ones parsed, the bad ones' errors; `rows` counts all data rows."""

    good: tuple[CsvRow, ...]
    errors: tuple[RowError, ...]
    rows: int


class CsvFileError(PoolError):
    """The file as a whole cannot be read (encoding, header); `errors` are row-1 errors."""

    def __init__(self, message: str, errors: list[RowError] | None = None) -> None:
        super().__init__(422, "invalid_csv", message)
        self.errors = errors or [RowError(1, "", message)]


def decode(raw: bytes) -> str:
    """UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8" writes one)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvFileError(f"the file is not UTF-8 text (byte {exc.start}); save it as \"CSV UTF-8\"") from None


def _header(names: list[str]) -> list[str]:
    columns = [ALIASES.get(n.strip(), n.strip().lower()) for n in names]
    errors = [RowError(1, c, "is not a column of the expert import") for c in columns if c not in COLUMNS]
    seen: set[str] = set()
    for c in columns:
        if c in seen:
            errors.append(RowError(1, c, "appears twice in the header"))
        seen.add(c)
    errors += [RowError(1, c, "is a required column") for c in REQUIRED if c not in columns]
    if errors:
        raise CsvFileError("the header row is not what the import expects", errors)
    return columns


def check_csv(raw: bytes, *, today: date, max_rows: int = MAX_ROWS) -> CsvCheck:
    """Parse and check the whole file; CsvFileError (422) for its shape, PoolError 413 past `max_rows`.

    An ID number appearing twice is an error on its later rows (naming the first), so a
    file is never half-imported over an ambiguity.
    """
    if len(raw) > MAX_BYTES:
        raise PoolError(413, "too_large", f"the file exceeds {MAX_BYTES} bytes")
    reader = csv.reader(io.StringIO(decode(raw), newline=""))
    try:
        first = next(reader, None)
        if first is None or not any(c.strip() for c in first):
            raise CsvFileError("the file is empty; the first row names the columns")
        columns = _header(first)
        checks = expert_checks(today)
        good: list[CsvRow] = []
        errors: list[RowError] = []
        first_row_of: dict[str, int] = {}
        rows = 0
        for number, record in enumerate(reader, start=2):
            if not any(c.strip() for c in record):
                continue  # blank lines (often at the end) are no rows
            rows += 1
            if rows > max_rows:
                raise PoolError(413, "too_many_rows", f"the file has more than {max_rows} rows; split it")
            row_errors, values = _check_row(number, columns, record, checks)
            key = values.get("id_number")
            if key is not None:
                if key in first_row_of:
                    row_errors.append(RowError(number, "id_number", f"the same ID number as row {first_row_of[key]}"))
                else:
                    first_row_of[key] = number
            if row_errors:
                errors += row_errors
            else:
                good.append(CsvRow(number, ExpertInput(**values)))
    except csv.Error as exc:
        raise CsvFileError(f"the file is not well-formed CSV: {exc}") from None
    return CsvCheck(tuple(good), tuple(errors), rows)


def _check_row(number: int, columns: list[str], record: list[str], checks: dict) -> tuple[list[RowError], dict]:
    errors: list[RowError] = []
    if len(record) > len(columns):
        errors.append(RowError(number, "", f"{len(record)} cells, but the header names {len(columns)} columns"))
    cells = dict(zip(columns, record))
    values: dict = {"user_id": None}
    for column in COLUMNS:
        raw = cells.get(column, "").strip()
        if raw == "" and column in EXPERT_OPTIONAL:
            values[column] = EXPERT_OPTIONAL[column]
            continue
        try:
            values[column] = checks[column](raw)
        except FieldError as exc:
            errors.append(RowError(number, column, str(exc)))
    return errors, values


def template() -> str:
    """A one-row example file for the import page (a valid, made-up person)."""
    return ",".join(COLUMNS) + "\r\n" + "张三,110105198001010032,13800138000,zhang@example.com,某某建设集团有限公司," \
        "91320100MA0000001B,320102,A0101;A0801,高级工程师,active\r\n"
