from datetime import datetime, timezone
from decimal import Decimal

from tenderhall.formatting import display_zone, when, yuan


def test_times_show_in_the_centre_zone_with_their_offset() -> None:
    zone = display_zone("Asia/Shanghai")
    assert when("2026-11-25T00:27:29.99Z", zone) == "2026-11-25 08:27:29 (UTC+08:00)"
    assert when(datetime(2026, 1, 1, 16, 0, tzinfo=timezone.utc), zone, seconds=False) == "2026-01-02 00:00 (UTC+08:00)"
    assert when(None, zone) == ""


def test_unknown_zone_falls_back_to_china_standard_time() -> None:
    assert when("2026-11-25T00:00:00Z", display_zone("No/Such_Zone")) == "2026-11-25 08:00:00 (UTC+08:00)"


def test_yuan_groups_digits_and_keeps_two_places() -> None:
    assert yuan(Decimal("12800000")) == "12,800,000.00"
    assert yuan("6120500.5") == "6,120,500.50"
    assert yuan("n/a") == "n/a" and yuan(None) == ""
