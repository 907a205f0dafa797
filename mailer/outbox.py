"""Delivering one outbox row: claim it, hand it to SMTP, record the outcome.

A row is claimed (`sending`) in its own committed transaction before the SMTP conversation and marked
`sent` only after the server accepted it. A worker killed in between leaves a `sending` row that the
reconciler gives back after the claim lapses; the same Message-ID is then sent again, which receiving
systems treat as the same mail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from mailer.app import App
from mailer.db import Outbox, TicketEvent, utcnow
from mailer.smtp import SendError

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class Delivery:
    outbox_id: int
    outcome: str  # sent | retry | failed | skipped
    retry_in: timedelta | None = None


def backoff(attempts: int, base_seconds: float) -> timedelta:
    """Exponential: base, 2×base, 4×base … capped at an hour."""
    return min(timedelta(seconds=base_seconds * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def deliver(app: App, outbox_id: int) -> Delivery:
    claimed = _claim(app, outbox_id)
    if isinstance(claimed, Delivery):
        return claimed
    from_address, to_address, raw, attempts = claimed
    try:
        app.smtp.send(from_address, to_address, raw)
    except SendError as exc:
        return _record_failure(app, outbox_id, attempts, exc)
    with app.db.session() as session:
        row = session.get(Outbox, outbox_id)
        assert row is not None
        row.status, row.sent_at, row.last_error = "sent", utcnow(), None
        if row.ticket_id:
            session.add(TicketEvent(ticket_id=row.ticket_id, kind="mail_sent",
                                    detail={"purpose": row.purpose, "to": row.to_address,
                                            "message_id": row.message_id, "attempts": row.attempts}))
    return Delivery(outbox_id, "sent")


def _claim(app: App, outbox_id: int) -> Delivery | tuple[str, str, bytes, int]:
    with app.db.session() as session:
        row = session.get(Outbox, outbox_id, with_for_update=True)
        if row is None or row.status != "pending":
            return Delivery(outbox_id, "skipped")
        wait = row.next_attempt_at - utcnow()
        if wait > timedelta(0):
            return Delivery(outbox_id, "retry", wait)
        row.status, row.claimed_at, row.attempts = "sending", utcnow(), row.attempts + 1
        return row.from_address, row.to_address, row.raw, row.attempts


def _record_failure(app: App, outbox_id: int, attempts: int, exc: SendError) -> Delivery:
    give_up = exc.permanent or attempts >= app.config.smtp.max_attempts
    delay = backoff(attempts, app.config.smtp.retry_base)
    with app.db.session() as session:
        row = session.get(Outbox, outbox_id)
        assert row is not None
        row.last_error = str(exc)[:2000]
        if give_up:
            row.status = "failed"
            if row.ticket_id:
                session.add(TicketEvent(ticket_id=row.ticket_id, kind="mail_failed",
                                        detail={"purpose": row.purpose, "to": row.to_address,
                                                "error": str(exc), "attempts": attempts}))
        else:
            row.status, row.next_attempt_at = "pending", utcnow() + delay
    log.warning("outbox %s: %s (%s)", outbox_id, exc, "giving up" if give_up else f"retry in {delay}")
    return Delivery(outbox_id, "failed") if give_up else Delivery(outbox_id, "retry", delay)
