"""Tickets listed for people and for scripts: one JSON-ready row per ticket, and the text table.

`supportd tickets list` and `supportd demo` both print them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from mailer.ledger.db import Ticket


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def ticket_json(ticket: Ticket, message_count: int) -> dict[str, object]:
    return {
        "id": ticket.id, "queue": ticket.queue, "priority": ticket.priority, "status": ticket.status,
        "customer_email": ticket.customer_email, "verified": ticket.verified, "subject": ticket.subject,
        "language": ticket.language, "message_count": message_count, "identifiers": ticket.identifiers,
        "created_at": _iso(ticket.created_at), "first_response_due": _iso(ticket.first_response_due),
        "resolution_due": _iso(ticket.resolution_due),
    }


def format_ticket_table(rows: Sequence[dict[str, object]], zone: ZoneInfo) -> str:
    """A table for people: due times in the desk's time zone."""
    header = f"{'#':>5}  {'queue':<9} {'priority':<8} {'verified':<12} {'msgs':>4}  {'first reply due':<17} subject"
    lines = [f"(times in {zone.key})", header, "-" * len(header)]
    for r in rows:
        due_at = r["first_response_due"]
        due = datetime.fromisoformat(str(due_at)).astimezone(zone).strftime("%a %d %b %H:%M") if due_at else ""
        lines.append(f"{r['id']:>5}  {r['queue']:<9} {r['priority']:<8} {r['verified']:<12} {r['message_count']:>4}"
                     f"  {due:<17} {str(r['subject'])[:60]}")
    return "\n".join(lines)
