"""Business hours: open or closed at an instant, and the open time within a stretch."""

from datetime import UTC, datetime, timedelta

import pytest

from tenants.business_hours import business_hours
from tenants.models import Tenant

WEEKDAYS_9_TO_18 = {
    "timezone": "Asia/Shanghai",
    "days": [0, 1, 2, 3, 4],
    "open": "09:00",
    "close": "18:00",
}


def shanghai(text: str) -> datetime:
    """An instant given in Shanghai time (UTC+8), ``"2026-03-06 17:50"`` (a Friday)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC) - timedelta(hours=8)


def hours_of(setting: dict):
    return business_hours(Tenant(business_hours=setting))


def test_no_hours_set_means_always_open() -> None:
    assert hours_of({}) is None


@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        ("2026-03-06 08:59", False),
        ("2026-03-06 09:00", True),
        ("2026-03-06 17:59", True),
        ("2026-03-06 18:00", False),  # closing time is not open
        ("2026-03-07 10:00", False),  # Saturday
    ],
)
def test_open_from_opening_up_to_closing_on_the_days_set(when: str, is_open: bool) -> None:
    assert hours_of(WEEKDAYS_9_TO_18).is_open(shanghai(when)) is is_open


@pytest.mark.parametrize(
    ("start", "end", "minutes"),
    [
        ("2026-03-06 10:00", "2026-03-06 10:30", 30),  # all within
        ("2026-03-06 17:50", "2026-03-09 09:10", 20),  # Friday evening to Monday morning
        ("2026-03-06 19:00", "2026-03-06 23:00", 0),  # all after closing
        ("2026-03-07 09:00", "2026-03-08 18:00", 0),  # the weekend
        ("2026-03-05 08:00", "2026-03-06 20:00", 2 * 9 * 60),  # two whole working days
        ("2026-03-06 10:30", "2026-03-06 10:00", 0),  # backwards
    ],
)
def test_open_time_between_two_instants(start: str, end: str, minutes: int) -> None:
    hours = hours_of(WEEKDAYS_9_TO_18)
    assert hours.open_ms_between(shanghai(start), shanghai(end)) == minutes * 60_000


def test_a_day_when_the_clocks_change_counts_its_real_length() -> None:
    # New York springs forward at 02:00 on 2026-03-08: that day has 23 hours.
    hours = hours_of({"timezone": "America/New_York", "open": "00:00", "close": "23:59"})
    start = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 local
    end = datetime(2026, 3, 9, 4, 0, tzinfo=UTC)  # 00:00 local the next day
    assert hours.open_ms_between(start, end) == (23 * 60 - 1) * 60_000


@pytest.mark.parametrize(
    "setting",
    [{"timezone": "Mars/Olympus"}, {"open": "9 o'clock"}, {"days": "weekdays"}],
)
def test_a_malformed_setting_reads_as_always_open(setting: dict) -> None:
    assert hours_of(setting) is None
