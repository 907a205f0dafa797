"""Retention: what `[retention]` says may go, found in batches and, with `apply`, removed.

Three rules, each "keep N days" (see `RetentionConfig`):

- raw mail: the bytes of a finished mail go; the row stays with its Message-ID and SHA-256, so the same
  mail fetched again is still recognised as a duplicate.
- attachments: a message's reference to a file is released; the file leaves the content store only when
  no reference is left (the same SHA-256 may belong to many messages).
  Files no reference ever held go too, whatever the rules, once they are an hour old: attachments are
  stored while the mail is prepared, before the pipeline decides whether it becomes a ticket, so a
  spam mail, a duplicate or a crash before the commit leaves such files (mailer/stages/prepare.py).
- closed tickets: anonymised, not deleted. The number, queue, dates and the audit trail stay (an
  exchange must show what it did and when); bodies, subjects, the customer's address, identifiers,
  sent mail and the addresses in events go. Message-IDs stay, again for deduplication.

What an operator still has to act on is never touched: pending, quarantined and spam rows, and every
open or pending ticket (its raw mail and files too: it is evidence in a case still being worked).
A closed ticket past its rule takes its raw mail and attachments with it, whatever their own rules.
Each batch is one transaction; each ticket touched gets a `purged` event naming the rule.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, or_, select, update
from sqlalchemy.orm import Session

from mailer.config import RetentionConfig
from mailer.ledger.db import (
    Attachment,
    Database,
    Outbox,
    Rating,
    RawMessage,
    Review,
    Ticket,
    TicketEvent,
    TicketMessage,
)
from mailer.ledger.store import ContentStore
from routing.dedup import FINISHED

ACTOR = "retention"
PURGED = "(purged)"
# A file written or re-referenced this recently may belong to a mail whose transaction is still open.
FILE_GRACE_SECONDS = 3600
# Event detail keys that hold text a person wrote (notes, subjects, delivery diagnostics).
FREE_TEXT_KEYS = frozenset({"text", "subject", "from", "body", "diagnostic", "comment"})

Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class Cutoffs:
    """Records older than these moments go; None: that rule is off."""

    raw_mail: datetime | None
    attachments: datetime | None
    closed_tickets: datetime | None
    retention: RetentionConfig

    @classmethod
    def at(cls, retention: RetentionConfig, now: datetime) -> Cutoffs:
        def before(days: int | None) -> datetime | None:
            return None if days is None else now - timedelta(days=days)

        return cls(before(retention.raw_mail_days), before(retention.attachments_days),
                   before(retention.closed_tickets_days), retention)

    def rule(self, name: str) -> str:
        return f"retention.{name}_days = {getattr(self.retention, name + '_days')}"


@dataclass
class PurgeReport:
    """Counts per kind: what was removed (apply) or would be (dry run)."""

    applied: bool
    raw_mails: int = 0
    attachments: int = 0  # references released
    files: int = 0  # content files that leave the store
    files_kept: int = 0  # unreferenced but used within the hour: kept with their references for a later run
    unreferenced_files: int = 0  # of `files`: those no message referenced (stored for a mail left without one)
    tickets: int = 0  # anonymised
    cutoffs: dict[str, datetime | None] = field(default_factory=dict)


def _older(column: Any, cutoff: datetime | None) -> ColumnElement[bool]:
    return false() if cutoff is None else column < cutoff


def purge(db: Database, store: ContentStore, retention: RetentionConfig, now: datetime, *, apply: bool,
          batch_size: int = 500, progress: Progress | None = None) -> PurgeReport:
    """Find (and with `apply`, remove) what the rules allow, kind by kind, one batch per transaction."""
    cutoffs = Cutoffs.at(retention, now)
    report = PurgeReport(applied=apply, cutoffs={"raw_mail": cutoffs.raw_mail, "attachments": cutoffs.attachments,
                                                 "closed_tickets": cutoffs.closed_tickets})
    tick = progress or (lambda _kind, _count: None)
    # Raw mail and files first: a run stopped half-way leaves no anonymised ticket with its mail still kept.
    for count in _batches(db, apply, lambda s, after: _raw_batch(s, cutoffs, now, after, batch_size, apply)):
        report.raw_mails += count
        tick("raw mail", report.raw_mails)
    for count, files, held in _batches(db, apply, lambda s, after: _attachment_batch(
            s, store, cutoffs, now, after, batch_size, apply)):
        report.attachments += count
        removed = _remove_files(db, store, files) if apply else len(files)
        report.files += removed
        report.files_kept += held + len(files) - removed
        tick("attachments", report.attachments)
    for stray in _unreferenced_files(db, store, batch_size):
        removed = _remove_files(db, store, stray) if apply else len(stray)
        report.files += removed
        report.unreferenced_files += removed
        report.files_kept += len(stray) - removed
        tick("unreferenced files", report.unreferenced_files)
    if cutoffs.closed_tickets is not None:
        for count in _batches(db, apply, lambda s, after: _ticket_batch(s, cutoffs, now, after, batch_size, apply)):
            report.tickets += count
            tick("closed tickets", report.tickets)
    return report


def _batches(db: Database, apply: bool, step: Callable[[Session, int], tuple[int, Any] | None]) -> Iterable[Any]:
    """Run `step` on successive id ranges until it finds nothing; each in its own transaction."""
    after = 0
    while True:
        with db.session() if apply else db.reading() as session:
            result = step(session, after)
        if result is None:
            return
        after, value = result
        yield value


def _ticket_event(session: Session, ticket_id: int, now: datetime, what: str, rule: str, **detail: object) -> None:
    session.add(TicketEvent(ticket_id=ticket_id, at=now, kind="purged", actor=ACTOR,
                            detail={"what": what, "rule": rule, **detail}))


def _group(rows: Iterable[tuple[int | None, str, int]]) -> dict[tuple[int, str], list[int]]:
    """(ticket, rule) -> row ids, for one event per ticket and rule."""
    groups: dict[tuple[int, str], list[int]] = {}
    for ticket_id, rule, row_id in rows:
        if ticket_id is not None:
            groups.setdefault((ticket_id, rule), []).append(row_id)
    return groups


# --- raw mail ---------------------------------------------------------------------------------------

def _raw_candidates(cutoffs: Cutoffs) -> ColumnElement[bool]:
    old = _older(RawMessage.received_at, cutoffs.raw_mail)
    of_closed_ticket = and_(Ticket.status == "closed", or_(old, _older(Ticket.closed_at, cutoffs.closed_tickets)))
    return and_(RawMessage.purged_at.is_(None), RawMessage.status.in_(FINISHED),
                or_(and_(RawMessage.ticket_id.is_(None), old), of_closed_ticket))


def _raw_batch(session: Session, cutoffs: Cutoffs, now: datetime, after: int, size: int,
               apply: bool) -> tuple[int, int] | None:
    rows = session.execute(
        select(RawMessage.id, RawMessage.ticket_id, RawMessage.received_at)
        .outerjoin(Ticket, Ticket.id == RawMessage.ticket_id)
        .where(_raw_candidates(cutoffs), RawMessage.id > after).order_by(RawMessage.id).limit(size)).all()
    if not rows:
        return None
    if apply:
        ids = [row.id for row in rows]
        session.execute(update(RawMessage).where(RawMessage.id.in_(ids)).values(raw=b"", purged_at=now))
        def rule(received_at: datetime) -> str:
            own = cutoffs.raw_mail is not None and received_at < cutoffs.raw_mail
            return cutoffs.rule("raw_mail" if own else "closed_tickets")

        for (ticket_id, name), raw_ids in _group((r.ticket_id, rule(r.received_at), r.id) for r in rows).items():
            _ticket_event(session, ticket_id, now, "raw_mail", name, raw_messages=raw_ids)
    return rows[-1].id, len(rows)


# --- attachments ------------------------------------------------------------------------------------

def _attachment_candidates(cutoffs: Cutoffs) -> ColumnElement[bool]:
    return and_(Attachment.refused_reason.is_(None), Ticket.status == "closed",
                or_(_older(TicketMessage.created_at, cutoffs.attachments),
                    _older(Ticket.closed_at, cutoffs.closed_tickets)))


def _attachment_batch(session: Session, store: ContentStore, cutoffs: Cutoffs, now: datetime, after: int,
                      size: int, apply: bool) -> tuple[int, tuple[int, list[str], int]] | None:
    """Release one batch of references: (count released, files left without any, files held back)."""
    candidates = _attachment_candidates(cutoffs)
    rows = session.execute(
        select(Attachment.id, Attachment.sha256, TicketMessage.ticket_id, TicketMessage.created_at)
        .join(TicketMessage, TicketMessage.id == Attachment.message_id)
        .join(Ticket, Ticket.id == TicketMessage.ticket_id)
        .where(Attachment.purged_at.is_(None), candidates, Attachment.id > after)
        .order_by(Attachment.id).limit(size)).all()
    if not rows:
        return None
    last = rows[-1].id
    # A file goes with its last reference: none left, apart from candidates this run reaches later.
    unreferenced = [sha for sha in dict.fromkeys(r.sha256 for r in rows)
                    if not _referenced(session, sha, candidates, last)]
    # A file used again within the hour may belong to a mail still committing: its references here stay
    # too, so the next run asks again.
    held = {sha for sha in unreferenced if _recently_used(store, sha)}
    released = [r for r in rows if r.sha256 not in held]
    if apply and released:
        session.execute(update(Attachment).where(Attachment.id.in_([r.id for r in released])).values(purged_at=now))

        def rule(created_at: datetime) -> str:
            own = cutoffs.attachments is not None and created_at < cutoffs.attachments
            return cutoffs.rule("attachments" if own else "closed_tickets")

        for (ticket_id, name), ids in _group((r.ticket_id, rule(r.created_at), r.id) for r in released).items():
            _ticket_event(session, ticket_id, now, "attachments", name, attachments=ids)
    return last, (len(released), [sha for sha in unreferenced if sha not in held], len(held))


def _recently_used(store: ContentStore, sha256: str) -> bool:
    try:
        return time.time() - store.path_for(sha256).stat().st_mtime < FILE_GRACE_SECONDS
    except FileNotFoundError:
        return False


def _referenced(session: Session, sha256: str, candidates: ColumnElement[bool] | None, last: int) -> bool:
    """Whether a message still holds the content: a live reference not about to go in this run."""
    query = (select(Attachment.id).join(TicketMessage, TicketMessage.id == Attachment.message_id)
             .join(Ticket, Ticket.id == TicketMessage.ticket_id)
             .where(Attachment.sha256 == sha256, Attachment.purged_at.is_(None), Attachment.refused_reason.is_(None)))
    if candidates is not None:
        # CASE, not NOT: a NULL in the rule (a ticket closed without a date) must count as "kept".
        query = query.where(or_(case((candidates, 1), else_=0) == 0, Attachment.id > last))
    return session.scalar(query.limit(1)) is not None


def _remove_files(db: Database, store: ContentStore, shas: list[str]) -> int:
    """Remove files no reference holds. The file is first renamed aside, so a mail storing the same
    content meanwhile writes a fresh copy; one that re-used the file just before (the store touches it)
    or a reference that appeared since puts it back."""
    removed = 0
    for sha in shas:
        path = store.path_for(sha)
        aside = path.with_name(f".purging-{sha}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            removed += 1  # gone already (an earlier run stopped between its commit and here)
            continue
        recent = time.time() - aside.stat().st_mtime < FILE_GRACE_SECONDS
        with db.reading() as session:
            wanted = recent or _referenced(session, sha, None, 0)
        if wanted:
            os.replace(aside, path)
        else:
            aside.unlink()
            removed += 1
    return removed


def _unreferenced_files(db: Database, store: ContentStore, batch_size: int) -> Iterator[list[str]]:
    """In batches: the hashes of stored files past the grace period that no live reference holds."""
    settled = [sha for sha in _stored_hashes(store) if not _recently_used(store, sha)]
    for start in range(0, len(settled), batch_size):
        batch = settled[start:start + batch_size]
        with db.reading() as session:
            held = set(session.scalars(select(Attachment.sha256).where(
                Attachment.sha256.in_(batch), Attachment.purged_at.is_(None), Attachment.refused_reason.is_(None))))
        stray = [sha for sha in batch if sha not in held]
        if stray:
            yield stray


def _stored_hashes(store: ContentStore) -> list[str]:
    """The hashes the store holds a file for (anything else under its directory is not its own)."""
    hashes = []
    for path in store.paths():
        try:
            if store.path_for(path.name) == path:
                hashes.append(path.name)
        except ValueError:
            continue
    return hashes


# --- closed tickets ---------------------------------------------------------------------------------

def _ticket_batch(session: Session, cutoffs: Cutoffs, now: datetime, after: int, size: int,
                  apply: bool) -> tuple[int, int] | None:
    # A mail of the ticket still waiting for an operator, or a reply still going out, keeps it whole.
    unsettled_mail = select(RawMessage.id).where(RawMessage.ticket_id == Ticket.id,
                                                 RawMessage.status.not_in(FINISHED)).exists()
    unsent_reply = select(Outbox.id).where(Outbox.ticket_id == Ticket.id,
                                           Outbox.status.in_(("pending", "sending"))).exists()
    query = select(Ticket).where(Ticket.status == "closed", Ticket.purged_at.is_(None),
                                 _older(Ticket.closed_at, cutoffs.closed_tickets), Ticket.id > after,
                                 ~unsettled_mail, ~unsent_reply)
    tickets = list(session.scalars(query.order_by(Ticket.id).limit(size)))
    if not tickets:
        return None
    if apply:
        rule = cutoffs.rule("closed_tickets")
        for ticket in tickets:
            _anonymise(session, ticket, now, rule)
    return tickets[-1].id, len(tickets)


def _anonymise(session: Session, ticket: Ticket, now: datetime, rule: str) -> None:
    """Keep what shows what the desk did and when; drop what says who wrote and what."""
    messages = list(session.scalars(select(TicketMessage).where(TicketMessage.ticket_id == ticket.id)))
    addresses = {a.lower() for a in [ticket.customer_email, *(m.from_address for m in messages if m.direction == "in")]
                 if a}
    for message in messages:
        message.subject, message.body, message.content_hash = "", "", None
        if message.direction == "in":
            message.from_address = ""
    session.execute(update(Attachment).where(Attachment.message_id.in_([m.id for m in messages]))
                    .values(filename=""))
    for model in (Rating, Review):  # the words written with a rating or a review score; the numbers stay
        session.execute(update(model).where(model.ticket_id == ticket.id).values(comment=None))
    for row in session.scalars(select(Outbox).where(Outbox.ticket_id == ticket.id)):
        addresses.add(row.to_address.lower())
        row.raw, row.to_address = b"", ""
    for past in session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)):
        past.detail = _scrubbed(past.detail, addresses)
    ticket.customer_email, ticket.subject, ticket.identifiers, ticket.account_id = "", "", {}, None
    ticket.purged_at = now
    _ticket_event(session, ticket.id, now, "ticket", rule, messages=len(messages))


def _scrubbed(value: Any, addresses: set[str]) -> Any:
    """The detail with free text dropped and the customer's addresses replaced, at any depth."""
    if isinstance(value, dict):
        return {k: PURGED if k in FREE_TEXT_KEYS and v else _scrubbed(v, addresses) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, addresses) for v in value]
    if isinstance(value, str) and addresses:
        lowered = value.lower()
        for address in addresses:
            start = lowered.find(address)
            while start >= 0:
                value = value[:start] + PURGED + value[start + len(address):]
                lowered = value.lower()
                start = lowered.find(address)
        return value
    return value
