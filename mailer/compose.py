"""Turn a decision to write to someone into an outbox row: rendered, threaded, Message-ID fixed.

The row is written in the same transaction as the decision, under an idempotency key, so processing a
mail again after a crash finds the row it already made instead of writing a second mail.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from email.header import Header
from email.utils import encode_rfc2231, format_datetime, formataddr

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.db import Outbox, Ticket, TicketMessage, utcnow
from mailer.dkim import DkimSigner
from routing.autoreply import LOOP_HEADER
from templates import Renderer, single_line

MAX_REFERENCES = 20


@dataclass(frozen=True)
class Sender:
    address: str
    name: str
    loop_token: str
    signer: DkimSigner | None = None  # None: the relay signs, or nobody does

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


def new_message_id(sender: Sender, ticket_id: int) -> str:
    return f"<supportd.{ticket_id}.{secrets.token_hex(8)}@{sender.domain}>"


def build_mail(sender: Sender, to_address: str, subject: str, text: str, html: str, *, message_id: str,
               in_reply_to: str | None, references: list[str], auto_submitted: str | None,
               reply_to: str | None = None, attachments: tuple[OutgoingFile, ...] = ()) -> bytes:
    """multipart/alternative (text + HTML), inside multipart/mixed when there are files; UTF-8, base64, CRLF.

    Written out directly: every header value is made a single line here (single_line, RFC 2047 for
    anything not ASCII), so there is nothing for a generic MIME generator to fold, and this is ten
    times cheaper than running one.
    """
    alternative = f"=_supportd_alt_{secrets.token_hex(10)}"
    headers = [
        ("From", formataddr((_encoded(single_line(sender.name)), sender.address))),
        ("To", single_line(to_address, 320)),
        ("Subject", _encoded(single_line(subject, 250))),
        ("Date", format_datetime(utcnow())),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
    ]
    if reply_to:
        headers.append(("Reply-To", single_line(reply_to, 320)))
    if in_reply_to:
        headers += [("In-Reply-To", in_reply_to), ("References", " ".join(references[-MAX_REFERENCES:]))]
    if auto_submitted:
        # X-Auto-Response-Suppress asks Exchange/Outlook not to answer our automatic mail.
        headers += [("Auto-Submitted", auto_submitted), ("X-Auto-Response-Suppress", "All")]
    headers.append((LOOP_HEADER, sender.loop_token))
    body = [""]
    for subtype, content in (("plain", text), ("html", html)):
        body += [f"--{alternative}", f'Content-Type: text/{subtype}; charset="utf-8"',
                 "Content-Transfer-Encoding: base64", "", _base64(content.encode("utf-8")), ""]
    body.append(f"--{alternative}--")
    if attachments:
        mixed = f"=_supportd_mix_{secrets.token_hex(10)}"
        parts = [f"--{mixed}", f'Content-Type: multipart/alternative; boundary="{alternative}"', *body, ""]
        for file in attachments:
            name = _filename_parameter(file.filename)
            parts += [f"--{mixed}", f"Content-Type: {single_line(file.content_type, 100)}; {name}",
                      f"Content-Disposition: attachment; {name}", "Content-Transfer-Encoding: base64", "",
                      _base64(file.content), ""]
        parts.append(f"--{mixed}--")
        headers.append(("Content-Type", f'multipart/mixed; boundary="{mixed}"'))
        body = ["", *parts]
    else:
        headers.append(("Content-Type", f'multipart/alternative; boundary="{alternative}"'))
    lines = [f"{name}: {value}" for name, value in headers] + body + [""]
    return "\r\n".join(lines).encode("ascii")


@dataclass(frozen=True)
class OutgoingFile:
    filename: str
    content_type: str
    content: bytes


def _base64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii").rstrip("\n").replace("\n", "\r\n")


def _filename_parameter(filename: str) -> str:
    """A header-safe filename parameter: one line, no quotes; RFC 2231 when not ASCII."""
    name = single_line(filename, 150).replace('"', "'").replace("\\", "_") or "attachment"
    return f'filename="{name}"' if name.isascii() else f"filename*={encode_rfc2231(name, 'utf-8')}"


def _encoded(value: str) -> str:
    """RFC 2047 for a header value that is not plain ASCII; header-safe either way (single_line first)."""
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=10_000).encode()


def schedule_reply(session: Session, renderer: Renderer, sender: Sender, *, ticket: Ticket, purpose: str,
                   key: str, to_address: str, replying_to: TicketMessage, context: dict[str, object],
                   auto_submitted: str | None = "auto-replied", reply_to: str | None = None,
                   attachments: tuple[OutgoingFile, ...] = (), language: str | None = None,
                   known_new: bool = False) -> Outbox:
    """Render `purpose` for the ticket's language and queue it to `to_address`, once per `key`.

    `known_new`: the caller has just looked the key up in this transaction and found no row.
    """
    existing = None if known_new else session.scalar(select(Outbox).where(Outbox.idempotency_key == key))
    if existing is not None:
        return existing
    language = language or ticket.language
    rendered = renderer.render(purpose, language, {"lang": language, "ticket": ticket.id, **context})
    message_id = new_message_id(sender, ticket.id)
    references = [*replying_to.references, replying_to.message_id]
    raw = build_mail(sender, to_address, rendered.subject, rendered.text, rendered.html, message_id=message_id,
                     in_reply_to=replying_to.message_id, references=references, auto_submitted=auto_submitted,
                     reply_to=reply_to, attachments=attachments)
    if sender.signer is not None:  # signed now, so every attempt sends the same bytes
        raw = sender.signer.sign(raw)
    row = Outbox(idempotency_key=key, ticket_id=ticket.id, purpose=purpose, to_address=to_address,
                 from_address=sender.address, message_id=message_id, raw=raw)
    session.add(row)
    session.add(TicketMessage(ticket=ticket, direction="out", kind=purpose, message_id=message_id,
                              in_reply_to=replying_to.message_id, references=references[-MAX_REFERENCES:],
                              from_address=sender.address, subject=rendered.subject, body=rendered.text))
    return row
