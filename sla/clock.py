"""Due dates for a ticket's first response and resolution, in business time.

The clocks start when the customer's first mail arrives (its arrival at our mailbox, not the Date
header the sender's machine wrote).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from mailer.config import SlaConfig
from sla.calendar import BusinessCalendar, parse_duration


@dataclass(frozen=True)
class DueDates:
    first_response: datetime
    resolution: datetime


def due_dates(calendar: BusinessCalendar, policy: SlaConfig, arrived: datetime) -> DueDates:
    return DueDates(
        first_response=calendar.add(arrived, parse_duration(policy.first_response)),
        resolution=calendar.add(arrived, parse_duration(policy.resolution)),
    )


_WEEKDAYS = {"en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
             "zh": ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")}


def format_local(moment: datetime, zone: ZoneInfo, language: str) -> str:
    """A due time as a customer reads it, in the desk's zone: "Wednesday 25 November 2026, 10:00"."""
    local = moment.astimezone(zone)
    weekday = _WEEKDAYS.get(language, _WEEKDAYS["en"])[local.weekday()]
    if language == "zh":
        return f"{local.year}年{local.month}月{local.day}日（{weekday}）{local:%H:%M}"
    return f"{weekday} {local.day} {local:%B %Y, %H:%M}"
