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


def unfinished_work(app: App, *, settled_for: timedelta, reclaim_all_sending: bool = False) -> Unfinished:
    """Pending mails and due outbox rows older than `settled_for`; lapsed `sending` claims are given back.

    `reclaim_all_sending` is for a daemon whose embedded broker died with it: no one else can be sending.
    """
    now = utcnow()
    with app.db.session() as session:
        lapsed = Outbox.claimed_at < now - CLAIM_LEASE
        session.execute(update(Outbox).where(Outbox.status == "sending", true() if reclaim_all_sending else lapsed)
                        .values(status="pending", next_attempt_at=now))
        raw_ids = list(session.scalars(select(RawMessage.id).where(
            RawMessage.status == "pending", RawMessage.received_at <= now - settled_for).order_by(RawMessage.id)))
        outbox_ids = list(session.scalars(select(Outbox.id).where(
            Outbox.status == "pending", Outbox.next_attempt_at <= now,
            Outbox.created_at <= now - settled_for).order_by(Outbox.id)))
    return Unfinished(raw_ids, outbox_ids)
