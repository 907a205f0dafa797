"""The SLA report: per queue, how many tickets met or breached their first-reply target, and how long
first replies took in business time (median and 90th percentile), with a histogram for the HTML page.

The lead's at-risk view sits beside it: the tickets waiting on the desk now, by business time left to
their next due time (overdue, within 4 business hours, within a business day, later), per queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sla.calendar import BusinessCalendar, parse_duration

# Histogram bins in business hours: what a person reads at a glance.
BINS = ((0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, None))
# Time left to the due time of a waiting ticket, in the words of the at-risk view.
AT_RISK = ("overdue", "within_4h", "within_1d", "later")
AT_RISK_LABELS = {"overdue": "overdue", "within_4h": "due within 4 business hours",
                  "within_1d": "due within a business day", "later": "due later"}
_FOUR_HOURS, _ONE_DAY = parse_duration("4 business hours"), parse_duration("1 business day")


@dataclass
class QueueReport:
    queue: str
    tickets: int = 0
    responded: int = 0
    met: int = 0
    breached: int = 0
    waiting: int = 0  # no first reply yet, not yet due
    median_hours: float | None = None
    p90_hours: float | None = None
    histogram: list[int] = field(default_factory=lambda: [0] * len(BINS))
    target_hours: float | None = None  # the first-reply target of the queue's normal priority
    at_risk: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AT_RISK, 0))  # waiting now, by time left

    def bin_colours(self) -> list[str]:
        """Green below the target, amber for the bin that holds it, red beyond."""
        target = self.target_hours if self.target_hours is not None else float("inf")
        return ["#2da44e" if hi is not None and hi <= target else "#d4a72c" if lo < target else "#cf222e"
                for lo, hi in BINS]

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["bins"] = [f"{lo}-{hi}h" if hi else f"{lo}h+" for lo, hi in BINS]
        return data


@dataclass(frozen=True)
class TicketTimes:
    queue: str
    priority: str
    created_at: datetime
    first_response_due: datetime | None
    first_responded_at: datetime | None


def build(tickets: Iterable[TicketTimes], calendar_for: Callable[[TicketTimes], BusinessCalendar],
          now: datetime, target_hours: Callable[[str], float] | None = None) -> list[QueueReport]:
    reports: dict[str, QueueReport] = {}
    hours: dict[str, list[float]] = {}
    for ticket in tickets:
        report = reports.setdefault(ticket.queue, QueueReport(ticket.queue))
        report.tickets += 1
        due, answered = ticket.first_response_due, ticket.first_responded_at
        if answered is not None:
            report.responded += 1
            taken = calendar_for(ticket).between(ticket.created_at, answered).total_seconds() / 3600
            hours.setdefault(ticket.queue, []).append(taken)
            report.histogram[_bin(taken)] += 1
            if due is None or answered <= due:
                report.met += 1
            else:
                report.breached += 1
        elif due is not None and now > due:
            report.breached += 1
        else:
            report.waiting += 1
    for queue, report_ in reports.items():
        report_.target_hours = target_hours(queue) if target_hours else None
    for queue, values in hours.items():
        values.sort()
        reports[queue].median_hours = round(_percentile(values, 0.5), 2)
        reports[queue].p90_hours = round(_percentile(values, 0.9), 2)
    return sorted(reports.values(), key=lambda r: r.queue)


@dataclass(frozen=True)
class Waiting:
    """A ticket waiting on the desk: its next due time (first reply, else resolution) and its calendar."""

    queue: str
    due: datetime
    calendar: str


def time_left(calendar: BusinessCalendar, due: datetime, now: datetime) -> str:
    if due <= now:
        return "overdue"
    if due <= calendar.add(now, _FOUR_HOURS):
        return "within_4h"
    return "within_1d" if due <= calendar.add(now, _ONE_DAY) else "later"


def with_waiting(reports: list[QueueReport], waiting: Iterable[Waiting], calendars: dict[str, BusinessCalendar],
                 now: datetime) -> list[QueueReport]:
    """Add the at-risk counts; a queue with waiting tickets and nothing answered yet still gets its row."""
    by_queue = {r.queue: r for r in reports}
    for ticket in waiting:
        report = by_queue.setdefault(ticket.queue, QueueReport(ticket.queue))
        calendar = calendars.get(ticket.calendar) or calendars["default"]
        report.at_risk[time_left(calendar, ticket.due, now)] += 1
    return sorted(by_queue.values(), key=lambda r: r.queue)


def at_risk_table(reports: list[QueueReport]) -> str:
    header = f"{'queue':<10} {'overdue':>8} {'< 4 bh':>7} {'< 1 bd':>7} {'later':>6}"
    lines = ["Waiting tickets by business time left to their due time (bh: business hours, bd: business day)",
             header, "-" * len(header)]
    for r in reports:
        risk = r.at_risk
        lines.append(f"{r.queue:<10} {risk['overdue']:>8} {risk['within_4h']:>7} {risk['within_1d']:>7} "
                     f"{risk['later']:>6}")
    return "\n".join(lines)


def _bin(hours: float) -> int:
    return next(i for i, (lo, hi) in enumerate(BINS) if hi is None or lo <= hours < hi)


def _percentile(ordered: list[float], share: float) -> float:
    """Linear interpolation between closest ranks."""
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def text_table(reports: list[QueueReport]) -> str:
    header = f"{'queue':<10} {'tickets':>7} {'met':>5} {'breached':>8} {'waiting':>7} {'median h':>9} {'p90 h':>7}"
    lines = [header, "-" * len(header)]
    for r in reports:
        median = f"{r.median_hours:.1f}" if r.median_hours is not None else "–"
        p90 = f"{r.p90_hours:.1f}" if r.p90_hours is not None else "–"
        lines.append(f"{r.queue:<10} {r.tickets:>7} {r.met:>5} {r.breached:>8} {r.waiting:>7} {median:>9} {p90:>7}")
    return "\n".join(lines)
