"""Delivering outbox rows in batches: claim them, hand them to SMTP over one connection, record the outcome.

Rows are claimed (`sending`) in one committed transaction before the SMTP conversations and marked
`sent` only after the server accepted them. A worker killed in between leaves `sending` rows; the
reconciler marks sent those its journal shows the relay accepted and gives the rest back (at once for a
dead process of this host, after the claim lapses otherwise); a mail is then sent again with the same
Message-ID, which receiving systems treat as the same mail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from mailer.app import App
from mailer.ledger.db import Outbox, Ticket, TicketEvent, utcnow
from mailer.runtime import lease, metrics
from mailer.runtime.health import HEALTH
from mailer.runtime.transient import retrying
from mailer.stages.compose import recompose
from mailer.transport.smtp import SendError

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
    [delivery] = deliver_batch(app, [outbox_id])
    return delivery


def deliver_batch(app: App, outbox_ids: list[int]) -> list[Delivery]:
    """Claim the rows in one transaction, send them over this thread's one SMTP connection, mark them.

    The mark is written as soon as the batch has gone out (a few milliseconds of SMTP on a LAN relay), with
    priority over the pipeline's writers; until then each 250 is in this thread's sent journal
    (`mailer/transport/sentlog.py`), so a kill re-sends only a mail whose 250 had not yet been written down.
    """
    claimed, deliveries = _claim(app, outbox_ids)
    sent: list[Claimed] = []
    for row in claimed:
        try:
            app.smtp.send(row.from_address, row.to_address, row.raw)
        except SendError as exc:
            HEALTH.relay(None if exc.permanent else str(exc)[:300])
            _mark_sent(app, sent)
            sent = []
            deliveries.append(_failed(app, row, exc))
            continue
        app.sent_log.accepted(row.outbox_id)
        HEALTH.relay(None)
        sent.append(row)
    _mark_sent(app, sent)
    return deliveries + [Delivery(row.outbox_id, "sent") for row in sent]


def _failed(app: App, row: Claimed, exc: SendError) -> Delivery:
    return retrying(f"outbox {row.outbox_id}", lambda: _record_failure(app, row.outbox_id, row.attempts, exc))


def _mark_sent(app: App, rows: list[Claimed]) -> None:
    if not rows:
        return
    # The relay has the mails: recording that must outlast a database restart, or they would be sent again.
    retrying(f"outbox {rows[0].outbox_id}…", lambda: _record_sent(app, rows))
    app.sent_log.marked()
    for row in rows:
        metrics.reply_sent(app, row.outbox_id, row.purpose, row.ticket_id, row.ticket_created_at)


def _record_sent(app: App, rows: list[Claimed]) -> None:
    now = utcnow()
    with app.db.session(priority=True) as session:
        session.execute(update(Outbox).where(Outbox.id.in_([row.outbox_id for row in rows]))
                        .values(status="sent", sent_at=now, last_error=None))
        events = [{"ticket_id": row.ticket_id, "kind": "mail_sent", "actor": "supportd", "at": now,
                   "detail": {"purpose": row.purpose, "to": row.to_address, "message_id": row.message_id,
                              "attempts": row.attempts}} for row in rows if row.ticket_id]
        if events:
            session.execute(insert(TicketEvent), events)


@dataclass(frozen=True)
class Claimed:
    outbox_id: int
    from_address: str
    to_address: str
    raw: bytes
    attempts: int
    ticket_id: int | None
    purpose: str
    message_id: str
    ticket_created_at: datetime | None


def _claim(app: App, outbox_ids: list[int]) -> tuple[list[Claimed], list[Delivery]]:
    """Pending and due rows become `sending` (in id order); the rest are skipped or told when to retry."""
    columns = (Outbox.id, Outbox.status, Outbox.next_attempt_at, Outbox.from_address, Outbox.to_address,
               Outbox.raw, Outbox.attempts, Outbox.ticket_id, Outbox.purpose, Outbox.message_id, Ticket.created_at)
    claimed: list[Claimed] = []
    deliveries: list[Delivery] = []
    now = utcnow()
    with app.db.session(priority=True) as session:
        rows = {row.id: row for row in session.execute(
            select(*columns).outerjoin(Ticket, Ticket.id == Outbox.ticket_id).where(Outbox.id.in_(outbox_ids))
            .with_for_update(of=Outbox, skip_locked=True))}
        for outbox_id in sorted(set(outbox_ids)):
            row = rows.get(outbox_id)
            if row is None or row.status != "pending":
                deliveries.append(Delivery(outbox_id, "skipped"))
            elif row.next_attempt_at > now:
                deliveries.append(Delivery(outbox_id, "retry", row.next_attempt_at - now))
            else:
                claimed.append(Claimed(row.id, row.from_address, row.to_address, row.raw, row.attempts + 1,
                                       row.ticket_id, row.purpose, row.message_id, row.created_at))
        if claimed:
            session.execute(update(Outbox).where(Outbox.id.in_([c.outbox_id for c in claimed]))
                            .values(status="sending", claimed_at=now, claimed_by=lease.process_id(),
                                    attempts=Outbox.attempts + 1))
    return claimed, deliveries


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


@dataclass(frozen=True)
class RetryReport:
    requeued: int
    still_failed: int


def retry_failed(app: App, ids: list[int] | None) -> RetryReport:
    """Give failed rows another chance (after the template, the relay or the address was fixed).

    A row whose composition failed is composed again from its recipe first; one that still cannot be
    composed stays failed with the new reason. The rows go back to `pending`: the next `supportd run`
    (or the running daemon's reconciler) sends them.
    """
    requeued = still_failed = 0
    with app.db.session() as session:
        query = select(Outbox).where(Outbox.status == "failed")
        if ids is not None:
            query = query.where(Outbox.id.in_(ids))
        for row in session.scalars(query.order_by(Outbox.id)):
            if row.compose is not None and not recompose(session, app.renderer, app.sender, app.store.get, row):
                still_failed += 1
                continue
            row.status, row.attempts, row.next_attempt_at, row.last_error = "pending", 0, utcnow(), None
            requeued += 1
    return RetryReport(requeued, still_failed)
