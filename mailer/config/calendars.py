"""Service levels: `[calendar]`, `[calendars.NAME]` (business hours and holidays) and `[sla]` targets."""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from mailer.config.base import Items, Section
from mailer.config.errors import KeyProblem
from mailer.config.routing import Priority
from sla.duration import parse_duration

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Spans = tuple[tuple[time, time], ...]
OFFICE_WEEK = {day: (("09:00-18:00",) if day in WEEKDAYS[:5] else ()) for day in WEEKDAYS}


def _clock(day: str, text: str) -> time:
    try:
        hour, minute = (int(p) for p in text.split(":"))
        return time(23, 59, 59, 999999) if (hour, minute) == (24, 0) else time(hour, minute)
    except ValueError:
        raise KeyProblem(day, f"times must look like 09:00; got {text!r}") from None


def _span(day: str, text: Any) -> Any:
    if not isinstance(text, str):
        return text
    start_text, _, end_text = text.partition("-")
    start, end = _clock(day, start_text.strip()), _clock(day, end_text.strip())
    if end <= start:
        raise KeyProblem(day, f"span {text!r} ends before it starts")
    return start, end


def _week(value: Any) -> Any:
    """`mon = ["09:00-12:00", "13:00-18:00"]` -> local opening spans; once given, unlisted days are closed."""
    if not isinstance(value, dict):
        return value
    value = value or OFFICE_WEEK  # an empty [calendar.hours] table is the usual office week
    unknown = sorted(set(value) - set(WEEKDAYS))
    if unknown:
        raise KeyProblem(unknown[0], "unknown key (check the spelling against supportd.toml.example)")
    week = {}
    for day in WEEKDAYS:
        spans = value.get(day, ())
        week[day] = tuple(sorted(_span(day, s) for s in spans)) if isinstance(spans, tuple | list) else spans
    return week


def _time_zone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r} (use an IANA name such as Asia/Singapore)") from None
    return zone


WeekInput = dict[Weekday, tuple[str, ...]]  # what the file holds: mon = ["09:00-18:00"]


class CalendarConfig(Section):
    """Business time for SLA clocks: a time zone, opening spans per weekday, holidays and exceptions."""

    time_zone: Annotated[str, AfterValidator(_time_zone)] = Field("Asia/Singapore", description="an IANA name")
    hours: Annotated[dict[str, Spans], BeforeValidator(_week, json_schema_input_type=WeekInput)] = Field(
        default_factory=lambda: _week(OFFICE_WEEK),
        description='opening spans per weekday, e.g. fri = ["09:00-12:00", "13:00-18:00"]; default Mon–Fri '
                    "09:00–18:00; once given, unlisted days are closed")
    country: str | None = Field(None, description="public holidays from the `holidays` package, e.g. SG")
    subdivision: str | None = Field(None, description="a state or province code")
    closed: Items = Field((), description="extra closed dates, YYYY-MM-DD")
    open: Items = Field((), description="extra open dates (use Monday's hours if the day has none)")


def always_open(time_zone: str) -> CalendarConfig:
    """The shipped `24x7` calendar: every hour of every day, in the desk's time zone."""
    whole_day = ((time(0, 0), time(23, 59, 59, 999999)),)
    return CalendarConfig(time_zone=time_zone, hours={day: whole_day for day in WEEKDAYS})


def _duration(text: str) -> str:
    parse_duration(text)
    return text


DurationText = Annotated[str, AfterValidator(_duration)]


class SlaPolicy(Section):
    """Targets for tickets of a queue and priority (either may be None: any), on a named calendar."""

    first_response: DurationText = Field("2 business days", description="default: [sla] first_response")
    resolution: DurationText = Field("5 business days", description="default: [sla] resolution")
    queue: str | None = Field(None, description="a queue of [queues]; none: any")
    priority: Priority | None = Field(None, description="low | normal | high | urgent; none: any")
    calendar: str = Field("default", description='"default" ([calendar]), "24x7" or a [calendars.NAME]')

    @property
    def name(self) -> str:
        return f"{self.queue or '*'}/{self.priority or '*'}"


class SlaConfig(Section):
    """`[sla]`: the desk's targets and `[[sla.policies]]` for particular queues and priorities."""

    first_response: DurationText = Field(
        "2 business days", description='"N business days" | "N business hours" | "N minutes"')
    resolution: DurationText = Field("5 business days", description="time to close a ticket")
    warn_at: float = Field(0.75, ge=0.01, lt=1,
                           description="warn the queue's lead when this share of a target is used")
    policies: tuple[SlaPolicy, ...] = Field((), description="the most specific match wins")

    @model_validator(mode="after")
    def _policies_inherit_targets(self) -> Self:
        """A policy without its own targets takes the section's."""
        inherited = tuple(p.model_copy(update={key: getattr(self, key) for key in ("first_response", "resolution")
                                               if key not in p.model_fields_set}) for p in self.policies)
        object.__setattr__(self, "policies", inherited)
        return self

    def policy_for(self, queue: str, priority: str) -> SlaPolicy:
        """The most specific policy: queue and priority, then queue, then priority, then the default."""
        ranked = sorted((p for p in self.policies if p.queue in (None, queue) and p.priority in (None, priority)),
                        key=lambda p: (p.queue is not None, p.priority is not None), reverse=True)
        return ranked[0] if ranked else _default_policy(self.first_response, self.resolution)


@lru_cache(maxsize=64)
def _default_policy(first_response: str, resolution: str) -> SlaPolicy:
    """Built once per pair of targets: asked for every new ticket, and a model costs more to build than to use."""
    return SlaPolicy(first_response=first_response, resolution=resolution)
