"""Re-derive queued work from the ledger: what is unfinished in the database goes back on the broker.

Run at start (a kill -9 or a broker restart lost the queue) and periodically (a message dropped by a
broker, a retry budget spent). Enqueuing twice is harmless: the actors skip finished rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from mailer.app import App
from mailer.ledger.db import Outbox, RawMessage, utcnow
from mailer.runtime import lease
from mailer.transport import sentlog

CLAIM_LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class Unfinished:
    raw_ids: list[int]
    outbox_ids: list[int]


def at_start(app: App, *, reclaim_all_sending: bool) -> Unfinished:
    """Everything unfinished; waiting replies are due now (a restart is when someone fixed the relay).

    `reclaim_all_sending` is for a daemon whose embedded broker died with it: rows claimed before claims
    named their process are given back too.
    """
    now = utcnow()
    with app.db.session() as session:
        # Another process of this kind may be running beside us (a hot standby): only unclaimed rows
        # (from before claims were named), lapsed claims and claims of dead processes are given back.
        given_back = [Outbox.claimed_at < now - CLAIM_LEASE, *_dead_claims(app, session)]
        if reclaim_all_sending:
            given_back.append(Outbox.claimed_by.is_(None))
        session.execute(update(Outbox).where(Outbox.status == "sending", or_(*given_back)).values(status="pending"))
        session.execute(update(Outbox).where(Outbox.status == "pending").values(next_attempt_at=now))
    return _select(app, received_before=now, due_before=now)


def overdue(app: App, *, settled_for: timedelta) -> Unfinished:
    """Work whose broker message should have run `settled_for` ago: it was lost, or retries ran out."""
    now = utcnow()
    with app.db.session() as session:
        session.execute(update(Outbox).where(Outbox.status == "sending",
                                              or_(Outbox.claimed_at < now - CLAIM_LEASE, *_dead_claims(app, session)))
                        .values(status="pending", next_attempt_at=now - settled_for))
    return _select(app, received_before=now - settled_for, due_before=now - settled_for)


def _dead_claims(app: App, session: Session) -> list[ColumnElement[bool]]:
    """A condition matching rows claimed by a process of this host that has died (kill -9, a crash).

    What the relay had accepted from them (their sent journals) is marked sent first, so only mails that
    never reached the relay are given back.
    """
    claimants = session.scalars(select(Outbox.claimed_by).where(
        Outbox.status == "sending", Outbox.claimed_by.is_not(None)).distinct())
    dead = [c for c in claimants if c and lease.holder_is_dead(c)]
    sentlog.recover(session, app.config.storage_dir, dead)
    return [Outbox.claimed_by.in_(dead)] if dead else []


def _select(app: App, *, received_before: object, due_before: object) -> Unfinished:
    with app.db.session() as session:
        raw_ids = list(session.scalars(select(RawMessage.id).where(
            RawMessage.status == "pending", RawMessage.received_at <= received_before).order_by(RawMessage.id)))
        outbox_ids = list(session.scalars(select(Outbox.id).where(
            Outbox.status == "pending", Outbox.next_attempt_at <= due_before).order_by(Outbox.id)))
    return Unfinished(raw_ids, outbox_ids)
