"""Which SLA alerts a ticket is due at a given moment: a warning at a share of each target, then a breach.

Pure: the caller passes the clock (`now`), so tests drive time and the daemon passes the real one.
Each alert has a key (clock and kind); the caller sends each key at most once per ticket.
"""

from __future__ import annotations

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


def alerts(ticket: ClockedTicket, calendar: BusinessCalendar, policy: SlaPolicy, warn_at: float,
           now: datetime) -> list[Alert]:
    found: list[Alert] = []
    if ticket.status == "closed":
        return found
    first_target, resolution_target = targets(calendar, policy)
    if ticket.first_responded_at is None and ticket.first_response_due is not None:
        found += _clock_alerts("first_response", ticket.first_response_due,
                               warn_instant(calendar, ticket.created_at, first_target, warn_at), now)
    if ticket.paused_at is None and ticket.resolution_due is not None:
        paused = timedelta(seconds=ticket.paused_seconds)
        found += _clock_alerts("resolution", ticket.resolution_due,
                               warn_instant(calendar, ticket.created_at, resolution_target, warn_at, paused), now)
    return found


def _clock_alerts(clock: str, due: datetime, warn_from: datetime, now: datetime) -> list[Alert]:
    if now >= due:
        return [Alert(clock, "warning", due), Alert(clock, "breach", due)]
    if now >= warn_from:
        return [Alert(clock, "warning", due)]
    return []
