"""Turn a decision to write to someone into an outbox row: rendered, threaded, Message-ID fixed.

The row is written in the same transaction as the decision, under an idempotency key, so processing a
mail again after a crash finds the row it already made instead of writing a second mail.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.db import Outbox, Ticket, TicketMessage, utcnow
from routing.autoreply import LOOP_HEADER
from templates import Renderer, single_line

MAX_REFERENCES = 20


@dataclass(frozen=True)
class Sender:
    address: str
    name: str
    loop_token: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


def new_message_id(sender: Sender, ticket_id: int) -> str:
    return f"<supportd.{ticket_id}.{secrets.token_hex(8)}@{sender.domain}>"


def build_mail(sender: Sender, to_address: str, subject: str, text: str, html: str, *, message_id: str,
               in_reply_to: str | None, references: list[str], auto_submitted: str | None) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(display_name=single_line(sender.name), addr_spec=sender.address)
    msg["To"] = to_address
    msg["Subject"] = single_line(subject, 250)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = " ".join(references[-MAX_REFERENCES:])
    if auto_submitted:
        msg["Auto-Submitted"] = auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"  # asks Exchange/Outlook not to answer our automatic mail
    msg[LOOP_HEADER] = sender.loop_token
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg.as_bytes()


def schedule_reply(session: Session, renderer: Renderer, sender: Sender, *, ticket: Ticket, purpose: str,
                   key: str, to_address: str, replying_to: TicketMessage, context: dict[str, object],
                   auto_submitted: str | None = "auto-replied") -> Outbox:
    """Render `purpose` for the ticket's language and queue it to `to_address`, once per `key`."""
    existing = session.scalar(select(Outbox).where(Outbox.idempotency_key == key))
    if existing is not None:
        return existing
    rendered = renderer.render(purpose, ticket.language, {"lang": ticket.language, "ticket": ticket.id, **context})
    message_id = new_message_id(sender, ticket.id)
    references = [*replying_to.references, replying_to.message_id]
    raw = build_mail(sender, to_address, rendered.subject, rendered.text, rendered.html, message_id=message_id,
                     in_reply_to=replying_to.message_id, references=references, auto_submitted=auto_submitted)
    row = Outbox(idempotency_key=key, ticket_id=ticket.id, purpose=purpose, to_address=to_address,
                 from_address=sender.address, message_id=message_id, raw=raw)
    session.add(row)
    session.add(TicketMessage(ticket=ticket, direction="out", kind=purpose, message_id=message_id,
                              in_reply_to=replying_to.message_id, references=references[-MAX_REFERENCES:],
                              from_address=sender.address, subject=rendered.subject, body=rendered.text))
    return row
