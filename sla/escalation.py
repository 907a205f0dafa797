"""Which SLA alerts a ticket is due at a given moment: a warning at a share of each target, then a breach.

Pure: the caller passes the clock (`now`), so tests drive time and the daemon passes the real one.
Each alert has a key (clock and kind); the caller sends each key at most once per ticket. `next_alert`
is the moment the periodic check must look at the ticket again: the check selects tickets by that stored
moment (an index), not by scanning every open ticket.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from mailer.config import SlaPolicy
from sla.calendar import BusinessCalendar
from sla.clock import Clocked, targets, warn_instant

PRIORITY_AFTER_BREACH = {"low": "normal", "normal": "high", "high": "urgent", "urgent": "urgent"}


@dataclass(frozen=True)
class Alert:
    clock: str  # first_response | resolution
    kind: str  # warning | breach
    due: datetime

    @property
    def key(self) -> str:
        return f"{self.clock}:{self.kind}"


class ClockedTicket(Clocked, Protocol):
    status: str
    first_responded_at: datetime | None


def schedule(ticket: ClockedTicket, calendar: BusinessCalendar, policy: SlaPolicy,
             warn_at: float) -> list[tuple[datetime, Alert]]:
    """Every alert the ticket's running clocks will raise, each with the moment it becomes due."""
    found: list[tuple[datetime, Alert]] = []
    if ticket.status == "closed":
        return found
    first_target, resolution_target = targets(calendar, policy)
    if ticket.first_responded_at is None and ticket.first_response_due is not None:
        found += _clock_alerts("first_response", ticket.first_response_due,
                               warn_instant(calendar, ticket.created_at, first_target, warn_at))
    if ticket.paused_at is None and ticket.resolution_due is not None:
        paused = timedelta(seconds=ticket.paused_seconds or 0)
        found += _clock_alerts("resolution", ticket.resolution_due,
                               warn_instant(calendar, ticket.created_at, resolution_target, warn_at, paused))
    return found


def alerts(ticket: ClockedTicket, calendar: BusinessCalendar, policy: SlaPolicy, warn_at: float,
           now: datetime) -> list[Alert]:
    return [alert for at, alert in schedule(ticket, calendar, policy, warn_at) if now >= at]


def next_alert(ticket: ClockedTicket, calendar: BusinessCalendar, policy: SlaPolicy, warn_at: float,
               sent: Collection[str]) -> datetime | None:
    """When the earliest alert not yet sent falls due (perhaps already past); None if none is left."""
    return min((at for at, alert in schedule(ticket, calendar, policy, warn_at) if alert.key not in sent),
               default=None)


def _clock_alerts(clock: str, due: datetime, warn_from: datetime) -> list[tuple[datetime, Alert]]:
    # A late breach brings its warning along: the warning is due at the breach at the latest.
    return [(min(warn_from, due), Alert(clock, "warning", due)), (due, Alert(clock, "breach", due))]
