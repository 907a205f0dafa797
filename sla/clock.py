"""A ticket's two clocks, in business time on the calendar of its SLA policy.

- First response: starts when the customer's first mail arrives (at our mailbox, not the sender's Date
  header) and stops at the first answer a person sends; automatic mail does not count.
- Resolution: starts at the same moment and pauses while the ticket waits on the customer or is closed;
  the business time spent paused is kept on the ticket, so

      resolution_due = add(created, resolution target + paused)

  and both due dates can be recomputed at any time from the ticket and its policy (a calendar change,
  a new queue or priority).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time, get_datetime_format

from mailer.config import SlaPolicy
from parsing.language import DEFAULT, babel_locale, normalize_tag
from sla.calendar import BusinessCalendar, parse_duration


class Clocked(Protocol):
    created_at: datetime
    first_response_due: datetime | None
    resolution_due: datetime | None
    paused_at: datetime | None
    paused_seconds: int


@dataclass(frozen=True)
class DueDates:
    first_response: datetime
    resolution: datetime


def targets(calendar: BusinessCalendar, policy: SlaPolicy) -> tuple[timedelta, timedelta]:
    return (calendar.to_timedelta(parse_duration(policy.first_response)),
            calendar.to_timedelta(parse_duration(policy.resolution)))


def due_dates(calendar: BusinessCalendar, policy: SlaPolicy, arrived: datetime,
              paused: timedelta = timedelta(0)) -> DueDates:
    first, resolution = targets(calendar, policy)
    return DueDates(first_response=calendar.add(arrived, first), resolution=calendar.add(arrived, resolution + paused))


def recompute(ticket: Clocked, calendar: BusinessCalendar, policy: SlaPolicy) -> DueDates:
    due = due_dates(calendar, policy, ticket.created_at, timedelta(seconds=ticket.paused_seconds))
    ticket.first_response_due, ticket.resolution_due = due.first_response, due.resolution
    return due


def pause(ticket: Clocked, now: datetime) -> bool:
    """Stop the resolution clock; False if it was already stopped."""
    if ticket.paused_at is not None:
        return False
    ticket.paused_at = now
    return True


def resume(ticket: Clocked, calendar: BusinessCalendar, policy: SlaPolicy, now: datetime) -> timedelta:
    """Restart the resolution clock; returns the business time it stood still (and moves the due date by it)."""
    if ticket.paused_at is None:
        return timedelta(0)
    stood = calendar.between(ticket.paused_at, now)
    ticket.paused_seconds += int(stood.total_seconds())
    ticket.paused_at = None
    recompute(ticket, calendar, policy)
    return stood


def warn_instant(calendar: BusinessCalendar, start: datetime, target: timedelta, share: float,
                 paused: timedelta = timedelta(0)) -> datetime:
    """When `share` of the target has passed, in business time."""
    return calendar.add(start, target * share + paused)


def format_local(moment: datetime, zone: ZoneInfo, language: str) -> str:
    """A due time as a customer reads it, in the desk's zone and their language's conventions (CLDR via Babel):
    "Wednesday, November 25, 2026, 10:00 AM", "2026年11月25日星期三 10:00", "среда, 25 ноября 2026 г., 10:00"."""
    local = moment.astimezone(zone)
    tag = normalize_tag(language) or DEFAULT
    return _local_text(local.date(), local.hour, local.minute, tag)


@lru_cache(maxsize=4096)
def _local_text(day: date, hour: int, minute: int, tag: str) -> str:
    """Formatting with Babel costs more than the rest of an acknowledgement's context; due times repeat."""
    locale = babel_locale(tag)
    pattern = str(get_datetime_format("medium", locale=locale)).replace("'", "")
    return (pattern.replace("{1}", format_date(day, "full", locale=locale))
            .replace("{0}", format_time(time(hour, minute), "short", locale=locale)))
