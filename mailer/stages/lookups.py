"""The per-mail look-ups of a batch, made for all its mails at once when the batch starts.

Verification, deduplication and the reply policy ask the ledger five things of every mail: whose account
the sender's address is, is its Message-ID recorded, which raw mails share its Message-ID or bytes, which
open tickets has its sender, which automatic mails went to its sender today. Asked one mail at a time,
that was five statements per mail; asked for the whole batch it is five per batch. An answer fetched at
the batch's start stays true for a mail as long as no earlier mail of the batch could have changed it,
which is what `MailKeys` tells (mailer/stages/unflushed.py): such a mail, and anything not fetched ahead,
is asked in SQL as before. Accounts are never written by the pipeline: fetched ahead, they stay true.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from mailer.ledger.db import Outbox, RawMessage, Ticket, TicketMessage
from mailer.ledger.directory import Directory
from mailer.stages.compose import outbox_key
from parsing.message import ParsedMail
from routing.dedup import MAX_CANDIDATES, SeenRow
from routing.verify import AccountRef, normalize_address

AUTOMATIC_PURPOSES = ("ack", "unverified", "repeat_notice", "secret_warning", "attachment_refused", "survey")
# The automatic mails whose key is the mail's own Message-ID (the repeat notice is keyed by ticket and day).
KEYED_BY_MESSAGE_ID = ("ack", "unverified", "secret_warning", "attachment_refused")


@dataclass
class Lookups:
    """Answers for the batch's mails; `None` from a method means "not fetched: ask the ledger"."""

    since: datetime  # open tickets and replies were fetched from then on
    fetched_ids: set[str] = field(default_factory=set)  # Message-IDs and hashes asked about
    fetched_senders: set[str] = field(default_factory=set)
    fetched_keys: set[str] = field(default_factory=set)
    recorded_ids: set[str] = field(default_factory=set)  # Message-IDs a ticket message has
    seen: dict[str, list[SeenRow]] = field(default_factory=lambda: defaultdict(list))  # by Message-ID and hash
    open_tickets: dict[str, list[Ticket]] = field(default_factory=lambda: defaultdict(list))  # newest first
    replies: dict[str, list[tuple[str, datetime]]] = field(default_factory=lambda: defaultdict(list))
    keys_in_use: set[str] = field(default_factory=set)  # fetched idempotency keys that have a row
    accounts: dict[str, AccountRef | None] = field(default_factory=dict)  # never written here: always true

    def recorded(self, message_id: str) -> bool | None:
        return message_id in self.recorded_ids if message_id in self.fetched_ids else None

    def seen_rows(self, message_id: str, sha256: str) -> list[SeenRow] | None:
        if message_id not in self.fetched_ids or sha256 not in self.fetched_ids:
            return None
        return list({row.raw_id: row for row in [*self.seen[message_id], *self.seen[sha256]]}.values())

    def open_tickets_of(self, customer: str, since: datetime) -> list[Ticket] | None:
        if customer not in self.fetched_senders or since < self.since:
            return None
        return [ticket for ticket in self.open_tickets[customer] if ticket.created_at >= since][:MAX_CANDIDATES]

    def earlier_replies(self, key: str, address: str, since: datetime) -> tuple[bool, int] | None:
        """Whether a row has this key (`""`: none asked), and the automatic mails to `address` since then."""
        if (key and key not in self.fetched_keys) or address not in self.fetched_senders or since < self.since:
            return None
        counted = sum(1 for purpose, at in self.replies[address] if purpose in AUTOMATIC_PURPOSES and at >= since)
        return key in self.keys_in_use, counted


def fetch(session: Session, mails: Iterable[tuple[ParsedMail, str]], since: datetime,
          directory: Directory | None = None) -> Lookups:
    """Everything the batch's mails (each with its raw row's Message-ID) will look up, in five statements."""
    pairs = list(mails)
    ids = {mail.message_id for mail, _ in pairs} | {mail.sha256 for mail, _ in pairs}
    senders = {address for mail, _ in pairs for address in _senders(mail)}
    keys = {outbox_key(purpose, f"{purpose}:{raw_message_id}") for _, raw_message_id in pairs
            for purpose in KEYED_BY_MESSAGE_ID}
    found = Lookups(since, ids, senders, keys)
    if not pairs:
        return found
    if directory is not None:
        found.accounts = directory.find_many(senders, session)
    message_ids = [mail.message_id for mail, _ in pairs]
    found.recorded_ids = set(session.scalars(select(TicketMessage.message_id)
                                             .where(TicketMessage.message_id.in_(message_ids))))
    shas = [mail.sha256 for mail, _ in pairs]
    for raw_id, status, message_id, sha256 in session.execute(
            select(RawMessage.id, RawMessage.status, RawMessage.message_id, RawMessage.sha256).where(
                or_(RawMessage.message_id.in_(message_ids), RawMessage.sha256.in_(shas)))):
        for key in {message_id, sha256} & ids:
            found.seen[key].append(SeenRow(raw_id, status, message_id))
    for ticket in session.scalars(select(Ticket).where(
            Ticket.customer_email.in_(senders), Ticket.status != "closed", Ticket.created_at >= since)
            .order_by(Ticket.id.desc())):
        found.open_tickets[ticket.customer_email].append(ticket)
    for key, address, purpose, at in session.execute(
            select(Outbox.idempotency_key, Outbox.to_address, Outbox.purpose, Outbox.created_at).where(
                or_(Outbox.idempotency_key.in_(keys), and_(Outbox.to_address.in_(senders),
                                                          Outbox.created_at >= since)))):
        if key in keys:
            found.keys_in_use.add(key)
        found.replies[address].append((purpose, at))
    return found


def window_start(received: Iterable[datetime], window: timedelta) -> datetime:
    """The earliest moment any mail of the batch looks back to: dedup's window, or a day for the caps."""
    return min(received) - max(window, timedelta(hours=24))


def _senders(mail: ParsedMail) -> set[str]:
    return {normal for normal in (normalize_address(a.address) for a in mail.from_) if normal}
