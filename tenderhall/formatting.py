"""How pages show times and money: centre-local time with its offset, yuan with digit grouping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def display_zone(name: str) -> timezone | ZoneInfo:
    """The configured zone; China has one offset and no DST, so UTC+8 stands in if tzdata is missing."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone(timedelta(hours=8), "UTC+08:00")


def when(value: datetime | str | None, zone: timezone | ZoneInfo, *, seconds: bool = True) -> str:
    """'2026-11-25 08:27:29 (UTC+08:00)' for an aware datetime or ISO 8601 text; '' for None."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    local = moment.astimezone(zone)
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + f" (UTC{offset[:3]}:{offset[3:]})"


def yuan(value: Decimal | str | int | None) -> str:
    """'12,800,000.00' from a Decimal or decimal text; the text as given if it is no number."""
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return f"{amount:,.2f}"
