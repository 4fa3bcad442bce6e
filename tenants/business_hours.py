"""A tenant's business hours: when people are there to answer, and how much of a stretch of
time fell within them (for response times "within business hours")."""

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tenants.models import Tenant

logger = logging.getLogger(__name__)

# A stretch longer than this is counted up to it: response times past a year mean nothing more.
_LONGEST = timedelta(days=366)


@dataclass(frozen=True)
class BusinessHours:
    """Open on ``days`` (0 = Monday) from ``opening`` up to, not including, ``closing``, in
    ``zone``'s local time."""

    zone: ZoneInfo
    days: frozenset[int]
    opening: time
    closing: time

    def is_open(self, instant: datetime) -> bool:
        local = instant.astimezone(self.zone)
        return local.weekday() in self.days and self.opening <= local.time() < self.closing

    def open_ms_between(self, start: datetime, end: datetime) -> int:
        """How many milliseconds of ``start``–``end`` fell within the hours (0 when ``end``
        is not after ``start``). Days on which the clocks change count their real length."""
        if end <= start:
            return 0
        end = min(end, start + _LONGEST)
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        total = timedelta()
        while day <= last:
            if day.weekday() in self.days:
                opens = datetime.combine(day, self.opening, tzinfo=self.zone)
                closes = datetime.combine(day, self.closing, tzinfo=self.zone)
                overlap = min(end, closes) - max(start, opens)
                if overlap > timedelta():
                    total += overlap
            day += timedelta(days=1)
        return int(total.total_seconds() * 1000)


def business_hours(tenant: Tenant) -> BusinessHours | None:
    """The tenant's hours, or None when it is always open (none set). A malformed setting
    (saved before the console checked it) reads as always open and is logged."""
    hours = tenant.business_hours or {}
    if not hours:
        return None
    try:
        return BusinessHours(
            zone=ZoneInfo(hours.get("timezone", "UTC")),
            days=frozenset(int(day) for day in hours.get("days", range(7))),
            opening=time.fromisoformat(hours.get("open", "00:00")),
            closing=time.fromisoformat(hours.get("close", "23:59")),
        )
    except (ZoneInfoNotFoundError, ValueError, TypeError, AttributeError):
        logger.warning("tenant %s has malformed business hours", tenant.pk)
        return None
