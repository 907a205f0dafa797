"""The ledger side of spam: the `spam` stage, the list, and release.

A held mail keeps its raw row with status `spam`, the reason in `error` and the verdict (kind, evidence,
From, subject) in `verdict`; it has no ticket and gets no answer. Released, it goes back to `pending`
with `released_at`/`released_by` added to its verdict, and the stage lets it through from then on, so it
becomes the ticket it would have been. A second copy of a held mail (another mailbox, a folder read
again) is held on its own rather than called a duplicate of the first, so releasing one copy makes the
ticket and releasing the other then finds it recorded. The decision itself is routing.spam's.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from mailer.ledger.db import Database, RawMessage, utcnow
from mailer.stages.work import Work, first_from, need
from routing.spam import judge

log = logging.getLogger(__name__)


def hold_spam(work: Work) -> bool:
    """Spam and forged strangers are kept in the ledger, with no ticket and no answer, until released."""
    if released(work.raw):
        return True
    mail, config = need(work.mail, "parse"), work.app.config
    verdict = judge(mail.trace, need(work.verification, "verify").status, config.spam, config.trust)
    if verdict is None:
        return True
    work.raw.verdict = {"kind": verdict.kind, "reason": verdict.reason, "evidence": verdict.evidence,
                        "from": first_from(mail)[:320], "subject": mail.subject[:200]}
    work.outcome, work.raw.error = "spam", verdict.reason
    return False


def released(raw: RawMessage) -> bool:
    return bool(raw.verdict and raw.verdict.get("released_at"))


@dataclass(frozen=True)
class HeldMail:
    id: int
    mailbox: str
    uid: int
    received_at: datetime
    status: str
    ticket_id: int | None
    verdict: dict[str, Any]


def held(db: Database, *, include_released: bool = False, limit: int | None = None) -> tuple[list[HeldMail], int]:
    """The newest `limit` mails held as spam (all without a limit), oldest first, and how many are held.

    With `include_released`, mails released since are listed too.
    """
    query = select(RawMessage.id, RawMessage.mailbox, RawMessage.uid, RawMessage.received_at, RawMessage.status,
                   RawMessage.ticket_id, RawMessage.verdict)
    query = query.where(RawMessage.verdict.is_not(None)) if include_released \
        else query.where(RawMessage.status == "spam")
    with db.reading() as session:
        rows = session.execute(query.order_by(RawMessage.id.desc()).limit(limit)).all()
        count = session.scalar(select(func.count()).where(RawMessage.status == "spam")) or 0
    return [HeldMail(*row[:6], verdict=row.verdict or {}) for row in reversed(rows)], count


def release(db: Database, raw_ids: list[int], by: str | None = None) -> tuple[list[int], list[int]]:
    """Put held mails back in the queue as normal mail; (released ids, ids that were not held)."""
    who = by or _user()
    done: list[int] = []
    with db.session() as session:
        rows = {r.id: r for r in session.scalars(select(RawMessage).where(RawMessage.id.in_(raw_ids)))}
        for raw_id in raw_ids:
            raw = rows.get(raw_id)
            if raw is None or raw.status != "spam" or raw_id in done:
                continue
            raw.verdict = {**(raw.verdict or {}), "released_at": utcnow().isoformat(), "released_by": who}
            raw.status, raw.error, raw.processed_at = "pending", None, None
            done.append(raw_id)
    log.info("released from spam by %s: %s", who, done)
    return done, [i for i in raw_ids if i not in done]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"
