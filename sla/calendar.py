"""Business time: which moments a desk is open, and arithmetic over them.

A calendar is a time zone, opening spans per weekday, and closed days (public holidays from the pinned
`holidays` package, plus extra closed dates) and extra open dates. Arithmetic walks whole open spans,
one local day at a time, so adding two business days costs a few dozen steps, never a minute-by-minute
walk. Local spans are turned into UTC instants per day, which keeps DST days right: on a day the clocks
go forward, 09:00–18:00 is still nine hours of wall-clock opening but only as many real minutes as
actually pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from mailer.config import WEEKDAYS, CalendarConfig
from sla.duration import Duration, parse_duration

__all__ = ["BusinessCalendar", "Duration", "parse_duration"]

# Far enough for any realistic target; guards against a calendar with no open time at all.
MAX_DAYS_SCANNED = 3 * 366


@dataclass(frozen=True)
class BusinessCalendar:
    zone: ZoneInfo
    hours: dict[int, tuple[tuple[time, time], ...]]  # weekday (Mon=0) -> local opening spans
    closed: frozenset[date] = frozenset()
    extra_open: frozenset[date] = frozenset()
    holidays: holidays_lib.HolidayBase | None = field(default=None, compare=False)
    # "N business days" keep the time of day when possible; a day's length is the longest weekday's.
    day_length: timedelta = field(default=timedelta(hours=9))
    # A day's spans in UTC never change for a calendar; thousands of tickets walk the same days.
    _spans: dict[date, list[tuple[datetime, datetime]]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: CalendarConfig) -> BusinessCalendar:
        hours = {i: config.hours.get(day, ()) for i, day in enumerate(WEEKDAYS)}
        country_holidays = None
        if config.country:
            country_holidays = holidays_lib.country_holidays(config.country, subdiv=config.subdivision)
        longest = max((_span_length(spans) for spans in hours.values()), default=timedelta(0))
        return cls(
            zone=ZoneInfo(config.time_zone),
            hours=hours,
            closed=frozenset(date.fromisoformat(d) for d in config.closed),
            extra_open=frozenset(date.fromisoformat(d) for d in config.open),
            holidays=country_holidays,
            day_length=longest or timedelta(hours=24),
        )

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_open:
            return True
        if day in self.closed or (self.holidays is not None and day in self.holidays):
            return False
        return bool(self.hours.get(day.weekday()))

    def open_spans(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's opening spans as UTC instants (an extra open day uses Monday's hours if it has none)."""
        cached = self._spans.get(day)
        if cached is None:
            spans = (self.hours.get(day.weekday()) or self.hours.get(0) or ()) if self.is_working_day(day) else ()
            cached = self._spans[day] = [(self._instant(day, start), self._instant(day, end)) for start, end in spans]
        return cached

    def _instant(self, day: date, clock: time) -> datetime:
        """The first instant whose local time on `day` is at or after `clock` (24:00 is the next midnight).

        A clock time that does not exist (inside a spring-forward gap) becomes the end of the gap, which
        is when the local clock first shows a later time.
        """
        if clock == time.max:
            return datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone).astimezone(UTC)
        local = datetime.combine(day, clock, tzinfo=self.zone)
        instant = local.astimezone(UTC)
        if instant.astimezone(self.zone).replace(tzinfo=None) == local.replace(tzinfo=None):
            return instant
        earlier = local.replace(fold=1).astimezone(UTC)  # the offset after the gap gives the earlier instant
        for minutes in range(0, 24 * 60):
            candidate = earlier + timedelta(minutes=minutes)
            if candidate.astimezone(self.zone).replace(tzinfo=None) >= local.replace(tzinfo=None):
                return candidate.replace(second=0, microsecond=0)
        return instant

    def _days_from(self, moment: datetime, step: int = 1) -> Iterator[date]:
        day = moment.astimezone(self.zone).date()
        for _ in range(MAX_DAYS_SCANNED):
            yield day
            day += timedelta(days=step)
        raise ValueError("calendar has no open time within three years")

    def add(self, start: datetime, duration: Duration | timedelta) -> datetime:
        """The instant when `duration` of business time has passed since `start`."""
        if isinstance(duration, Duration):
            duration = self.to_timedelta(duration)
        start = start.astimezone(UTC)
        remaining = duration
        for day in self._days_from(start):
            for open_at, close_at in self.open_spans(day):
                if close_at <= start:
                    continue
                begin = max(open_at, start)
                if begin + remaining <= close_at:
                    return begin + remaining
                remaining -= close_at - begin
        raise AssertionError("unreachable")

    def subtract(self, end: datetime, duration: Duration | timedelta) -> datetime:
        """The latest instant from which `duration` of business time reaches `end`."""
        if isinstance(duration, Duration):
            duration = self.to_timedelta(duration)
        end = end.astimezone(UTC)
        remaining = duration
        for day in self._days_from(end, step=-1):
            for open_at, close_at in reversed(self.open_spans(day)):
                if open_at >= end:
                    continue
                finish = min(close_at, end)
                if finish - remaining >= open_at:
                    return finish - remaining
                remaining -= finish - open_at
        raise AssertionError("unreachable")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Business time elapsed from `start` to `end` (negative if `end` is earlier)."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end < start:
            return -self.between(end, start)
        total = timedelta(0)
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        while day <= last:
            for open_at, close_at in self.open_spans(day):
                overlap = min(close_at, end) - max(open_at, start)
                if overlap > timedelta(0):
                    total += overlap
            day += timedelta(days=1)
        return total

    def to_timedelta(self, duration: Duration) -> timedelta:
        if duration.unit == "days":
            return self.day_length * duration.amount
        if duration.unit == "hours":
            return timedelta(hours=duration.amount)
        return timedelta(minutes=duration.amount)


def _span_length(spans: tuple[tuple[time, time], ...]) -> timedelta:
    day = date(2000, 1, 3)
    return sum((datetime.combine(day, end) - datetime.combine(day, start) for start, end in spans), timedelta(0))
