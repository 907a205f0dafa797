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

from sqlalchemy import insert, select, update

from mailer import lease, metrics
from mailer.app import App
from mailer.db import Outbox, TicketEvent, utcnow
from mailer.health import HEALTH
from mailer.smtp import SendError
from mailer.transient import retrying

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
    try:
        app.smtp.send(claimed.from_address, claimed.to_address, claimed.raw)
    except SendError as exc:
        HEALTH.relay(None if exc.permanent else str(exc)[:300])
        failure = exc
        return retrying(f"outbox {outbox_id}", lambda: _record_failure(app, outbox_id, claimed.attempts, failure))
    HEALTH.relay(None)
    # The relay has the mail: recording that must outlast a database restart, or it would be sent again.
    retrying(f"outbox {outbox_id}", lambda: _record_sent(app, outbox_id, claimed))
    metrics.reply_sent(app, outbox_id, claimed.purpose, claimed.ticket_id)
    return Delivery(outbox_id, "sent")


def _record_sent(app: App, outbox_id: int, claimed: Claimed) -> None:
    with app.db.session() as session:
        session.execute(update(Outbox).where(Outbox.id == outbox_id)
                        .values(status="sent", sent_at=utcnow(), last_error=None))
        if claimed.ticket_id:
            session.execute(insert(TicketEvent).values(
                ticket_id=claimed.ticket_id, kind="mail_sent", actor="supportd", at=utcnow(),
                detail={"purpose": claimed.purpose, "to": claimed.to_address, "message_id": claimed.message_id,
                        "attempts": claimed.attempts}))


@dataclass(frozen=True)
class Claimed:
    from_address: str
    to_address: str
    raw: bytes
    attempts: int
    ticket_id: int | None
    purpose: str
    message_id: str


def _claim(app: App, outbox_id: int) -> Delivery | Claimed:
    columns = (Outbox.status, Outbox.next_attempt_at, Outbox.from_address, Outbox.to_address, Outbox.raw,
               Outbox.attempts, Outbox.ticket_id, Outbox.purpose, Outbox.message_id)
    with app.db.session() as session:
        row = session.execute(select(*columns).where(Outbox.id == outbox_id).with_for_update()).one_or_none()
        if row is None or row.status != "pending":
            return Delivery(outbox_id, "skipped")
        wait = row.next_attempt_at - utcnow()
        if wait > timedelta(0):
            return Delivery(outbox_id, "retry", wait)
        session.execute(update(Outbox).where(Outbox.id == outbox_id).values(
            status="sending", claimed_at=utcnow(), claimed_by=lease.process_id(), attempts=row.attempts + 1))
    return Claimed(row.from_address, row.to_address, row.raw, row.attempts + 1, row.ticket_id, row.purpose,
                   row.message_id)


def _record_failure(app: App, outbox_id: int, attempts: int, exc: SendError) -> Delivery:
    give_up = exc.permanent or (attempts >= app.config.smtp.max_attempts and not exc.link)
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
        purpose = row.purpose
    metrics.reply_not_sent(purpose, give_up)  # after the commit: a retried write counts once
    log.warning("outbox %s: %s (%s)", outbox_id, exc, "giving up" if give_up else f"retry in {delay}")
    return Delivery(outbox_id, "failed") if give_up else Delivery(outbox_id, "retry", delay)
