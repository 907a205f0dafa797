"""Re-derive queued work from the ledger: what is unfinished in the database goes back on the broker.

Run at start (a kill -9 or a broker restart lost the queue) and periodically (a message dropped by a
broker, a retry budget spent). Enqueuing twice is harmless: the actors skip finished rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, true, update

from mailer.app import App
from mailer.db import Outbox, RawMessage, utcnow

CLAIM_LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class Unfinished:
    raw_ids: list[int]
    outbox_ids: list[int]


def at_start(app: App, *, reclaim_all_sending: bool) -> Unfinished:
    """Everything unfinished; waiting replies are due now (a restart is when someone fixed the relay).

    `reclaim_all_sending` is for a daemon whose embedded broker died with it: no one else can be sending.
    """
    now = utcnow()
    with app.db.session() as session:
        session.execute(update(Outbox).where(Outbox.status == "sending",
                                              true() if reclaim_all_sending else Outbox.claimed_at < now - CLAIM_LEASE)
                        .values(status="pending"))
        session.execute(update(Outbox).where(Outbox.status == "pending").values(next_attempt_at=now))
    return _select(app, received_before=now, due_before=now)


def overdue(app: App, *, settled_for: timedelta) -> Unfinished:
    """Work whose broker message should have run `settled_for` ago: it was lost, or retries ran out."""
    now = utcnow()
    with app.db.session() as session:
        session.execute(update(Outbox).where(Outbox.status == "sending", Outbox.claimed_at < now - CLAIM_LEASE)
                        .values(status="pending", next_attempt_at=now - settled_for))
    return _select(app, received_before=now - settled_for, due_before=now - settled_for)


def _select(app: App, *, received_before: object, due_before: object) -> Unfinished:
    with app.db.session() as session:
        raw_ids = list(session.scalars(select(RawMessage.id).where(
            RawMessage.status == "pending", RawMessage.received_at <= received_before).order_by(RawMessage.id)))
        outbox_ids = list(session.scalars(select(Outbox.id).where(
            Outbox.status == "pending", Outbox.next_attempt_at <= due_before).order_by(Outbox.id)))
    return Unfinished(raw_ids, outbox_ids)
