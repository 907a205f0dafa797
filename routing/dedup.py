"""Which ticket, if any, a mail belongs to.

Exact duplicates (a Message-ID we already hold, or the same bytes) change nothing. Replies join their
ticket through In-Reply-To/References to any message of it, ours included, or through a `[#123]` tag in
the subject, which counts only when the sender is that ticket's customer: nobody writes into someone
else's ticket by guessing a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.db import RawMessage, Ticket, TicketMessage
from parsing.message import ParsedMail

TICKET_TAG = re.compile(r"\[#(\d{1,12})\]")


@dataclass(frozen=True)
class ThreadMatch:
    ticket: Ticket
    reason: str


def find_exact_duplicate(session: Session, mail: ParsedMail, raw_id: int) -> str | None:
    """A reason if this mail was already recorded, else None."""
    if session.scalar(select(TicketMessage.id).where(TicketMessage.message_id == mail.message_id)):
        return f"Message-ID {mail.message_id} already recorded"
    # Look up by hash alone: with a status condition too, SQLite may walk the (large) status index instead.
    same_bytes = session.execute(select(RawMessage.id, RawMessage.status).where(RawMessage.sha256 == mail.sha256))
    if any(other_id != raw_id and status == "done" for other_id, status in same_bytes):
        return "identical bytes already recorded"
    return None


def find_thread(session: Session, mail: ParsedMail, customer: str | None) -> ThreadMatch | None:
    referenced = [m for m in (mail.in_reply_to, *mail.references) if m]
    if referenced:
        hit = session.scalars(
            select(TicketMessage).where(TicketMessage.message_id.in_(referenced[-50:])).limit(1)).first()
        if hit is not None:
            return ThreadMatch(hit.ticket, f"replies to {hit.message_id}")
    if customer:
        for number in TICKET_TAG.findall(mail.subject):
            ticket = session.get(Ticket, int(number))
            if ticket is not None and ticket.customer_email == customer:
                return ThreadMatch(ticket, f"subject carries [#{number}] and the sender is its customer")
    return None
