"""Business-time arithmetic against a brute-force oracle that steps minute by minute (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.config import CalendarConfig
from sla.calendar import BusinessCalendar, parse_duration

MINUTE = timedelta(minutes=1)


def calendar(zone: str, hours: dict[str, tuple[tuple[time, time], ...]], closed: tuple[str, ...] = (),
             country: str | None = None, extra_open: tuple[str, ...] = ()) -> BusinessCalendar:
    return BusinessCalendar.from_config(CalendarConfig(time_zone=zone, hours=hours, closed=closed, country=country,
                                                       open=extra_open))


WEEK = ("mon", "tue", "wed", "thu", "fri")
OFFICE = calendar("Europe/London", {d: ((time(9), time(18)),) for d in WEEK}, country="GB",
                  closed=("2026-03-27",), extra_open=("2026-03-28",))
SPLIT = calendar("Asia/Singapore", {d: ((time(9), time(12)), (time(13), time(18))) for d in WEEK}, country="SG")
ALWAYS = calendar("Europe/London", {d: ((time(0), time.max),) for d in (*WEEK, "sat", "sun")})
NIGHT = calendar("Europe/London", {d: ((time(0, 30), time(3, 30)), (time(22), time.max))
                                   for d in (*WEEK, "sat", "sun")})
CALENDARS = [OFFICE, SPLIT, ALWAYS, NIGHT]


def is_open(cal: BusinessCalendar, moment: datetime) -> bool:
    """The oracle's notion of open: the local wall clock is inside one of the local day's spans."""
    local = moment.astimezone(cal.zone)
    if not cal.is_working_day(local.date()):
        return False
    spans = cal.hours.get(local.weekday()) or cal.hours.get(0) or ()
    clock = local.time().replace(tzinfo=None)
    return any(start <= clock and (end == time.max or clock < end) for start, end in spans)


def oracle_between(cal: BusinessCalendar, start: datetime, end: datetime) -> int:
    count, moment = 0, start
    while moment < end:
        count += is_open(cal, moment)
        moment += MINUTE
    return count


# Around both 2026 DST changes in London (29 March, 25 October), Easter and Christmas holidays.
instants = st.builds(
    lambda base, minutes: base + timedelta(minutes=minutes),
    st.sampled_from([datetime(2026, 3, 25, tzinfo=UTC), datetime(2026, 10, 22, tzinfo=UTC),
                     datetime(2026, 12, 22, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)]),
    st.integers(min_value=0, max_value=6 * 24 * 60))


@settings(max_examples=150, deadline=None)
@given(cal=st.sampled_from(CALENDARS), start=instants, minutes=st.integers(min_value=1, max_value=40 * 60))
def test_add_matches_minute_by_minute(cal: BusinessCalendar, start: datetime, minutes: int) -> None:
    result = cal.add(start, timedelta(minutes=minutes))
    # The oracle counts whole open minutes; `add` may end exactly where the last minute ends.
    assert oracle_between(cal, start, result) == minutes
    assert is_open(cal, result - MINUTE)


@settings(max_examples=150, deadline=None)
@given(cal=st.sampled_from(CALENDARS), start=instants, length=st.integers(min_value=0, max_value=5 * 24 * 60))
def test_between_matches_minute_by_minute(cal: BusinessCalendar, start: datetime, length: int) -> None:
    end = start + timedelta(minutes=length)
    assert cal.between(start, end) == timedelta(minutes=oracle_between(cal, start, end))
    assert cal.between(end, start) == -cal.between(start, end)


@settings(max_examples=100, deadline=None)
@given(cal=st.sampled_from(CALENDARS), start=instants, minutes=st.integers(min_value=1, max_value=30 * 60))
def test_add_and_between_are_inverse(cal: BusinessCalendar, start: datetime, minutes: int) -> None:
    assert cal.between(start, cal.add(start, timedelta(minutes=minutes))) == timedelta(minutes=minutes)


def test_known_cases() -> None:
    friday_5pm = datetime(2026, 11, 20, 17, 0, tzinfo=OFFICE.zone)
    assert OFFICE.add(friday_5pm, timedelta(hours=2)) == datetime(2026, 11, 23, 10, 0, tzinfo=OFFICE.zone)
    # Two business days from Christmas Eve afternoon skip Christmas, Boxing Day (a Saturday in 2026, its
    # substitute on Monday 28th) and the weekend.
    eve = datetime(2026, 12, 24, 15, 0, tzinfo=OFFICE.zone)
    assert OFFICE.add(eve, parse_duration("2 business days")).date() == date(2026, 12, 30)
    lunch = datetime(2026, 11, 23, 11, 30, tzinfo=SPLIT.zone)
    assert SPLIT.add(lunch, timedelta(hours=1)) == datetime(2026, 11, 23, 13, 30, tzinfo=SPLIT.zone)
    # 24x7 across the spring change: a local day of 23 hours.
    spring = datetime(2026, 3, 29, 0, 0, tzinfo=ALWAYS.zone)
    assert ALWAYS.between(spring, datetime(2026, 3, 30, 0, 0, tzinfo=ALWAYS.zone)) == timedelta(hours=23)


@settings(max_examples=150, deadline=None)
@given(cal=st.sampled_from(CALENDARS), end=instants, minutes=st.integers(min_value=1, max_value=40 * 60))
def test_subtract_matches_minute_by_minute(cal: BusinessCalendar, end: datetime, minutes: int) -> None:
    start = cal.subtract(end, timedelta(minutes=minutes))
    assert oracle_between(cal, start, end) == minutes
    assert is_open(cal, start)  # the latest such start is an open minute
    assert cal.add(start, timedelta(minutes=minutes)) <= end
