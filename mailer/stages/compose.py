"""Turn a decision to write to someone into an outbox row: rendered, threaded, Message-ID fixed.

The row is written in the same transaction as the decision, under an idempotency key, so processing a
mail again after a crash finds the row it already made instead of writing a second mail.

A mail that cannot be composed (a broken template override, a value no header can carry) never costs
the decision that wanted it: the row is written `failed` with the reason and what is needed to compose
it again (`supportd outbox retry`), a `mail_failed` event goes on the ticket, and the caller goes on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email.header import Header
from email.utils import encode_rfc2231, format_datetime, formataddr

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.ledger.db import Outbox, Ticket, TicketEvent, TicketMessage, utcnow
from mailer.transport.dkim import DkimSigner
from routing.autoreply import LOOP_HEADER
from templates import Rendered, Renderer, single_line

log = logging.getLogger(__name__)

MAX_REFERENCES = 20
MAX_KEY = 200  # the idempotency key column; longer keys (long Message-IDs) are hashed


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
    times cheaper than running one. Only an internationalized recipient (RFC 6531) makes the header
    block UTF-8 (RFC 6532); such a mail needs a relay that offers SMTPUTF8 (mailer.transport.smtp).
    """
    utf8 = not to_address.isascii()
    if not utf8:
        # A customer's UTF-8 Message-ID would make the whole reply need SMTPUTF8; threading on the
        # ASCII identifiers is worth more than a reply that no classic relay can carry.
        in_reply_to = in_reply_to if in_reply_to is None or in_reply_to.isascii() else None
        references = [ref for ref in references if ref.isascii()]
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
        headers += [("In-Reply-To", single_line(in_reply_to, 998)),
                    ("References", single_line(" ".join(references[-MAX_REFERENCES:]), 998 * MAX_REFERENCES))]
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
    return "\r\n".join(lines).encode("utf-8" if utf8 else "ascii")


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


def outbox_key(purpose: str, key: str) -> str:
    """The idempotency key as stored: a key longer than the column (a long Message-ID in it) is hashed."""
    return key if len(key) <= MAX_KEY else f"{purpose}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def schedule_reply(session: Session, renderer: Renderer, sender: Sender, *, ticket: Ticket, purpose: str,
                   key: str, to_address: str, replying_to: TicketMessage, context: dict[str, object],
                   auto_submitted: str | None = "auto-replied", reply_to: str | None = None,
                   attachments: tuple[OutgoingFile, ...] = (), language: str | None = None,
                   known_new: bool = False) -> Outbox:
    """Render `purpose` for the ticket's language and queue it to `to_address`, once per `key`.

    `known_new`: the caller has just looked the key up in this transaction and found no row.
    """
    key = outbox_key(purpose, key)
    existing = None if known_new else session.scalar(select(Outbox).where(Outbox.idempotency_key == key))
    if existing is not None:
        return existing
    language = language or ticket.language
    message_id = new_message_id(sender, ticket.id)
    row = Outbox(idempotency_key=key, ticket_id=ticket.id, purpose=purpose, to_address=to_address,
                 from_address=sender.address, message_id=message_id, raw=b"")
    recipe = ComposeRecipe(purpose, language, to_address, replying_to.message_id, context, auto_submitted,
                           reply_to, attachments)
    try:
        rendered = _compose_into(row, renderer, sender, recipe, ticket, replying_to)
    except Exception as exc:  # any fault of composing is recorded, never raised into the mail
        _record_compose_failure(session, row, ticket, recipe, exc)
        return row
    session.add(row)
    _record_outgoing(session, row, rendered, ticket, replying_to)
    return row


@dataclass(frozen=True)
class ComposeRecipe:
    """What composing a row needs besides the ticket: kept on a row whose composition failed, for a retry."""
    purpose: str
    language: str
    to_address: str
    replying_to: str  # the Message-ID of the ticket message this answers
    context: dict[str, object]
    auto_submitted: str | None
    reply_to: str | None
    attachments: tuple[OutgoingFile, ...] = ()

    def to_json(self) -> dict[str, object]:
        # Attachments are named by content hash: their bytes are in the attachment store already.
        context = json.loads(json.dumps(self.context, default=str))
        return {"purpose": self.purpose, "language": self.language, "to": self.to_address,
                "replying_to": self.replying_to, "context": context, "auto_submitted": self.auto_submitted,
                "reply_to": self.reply_to,
                "attachments": [[f.filename, f.content_type, hashlib.sha256(f.content).hexdigest()]
                                for f in self.attachments]}


def _compose_into(row: Outbox, renderer: Renderer, sender: Sender, recipe: ComposeRecipe, ticket: Ticket,
                  replying_to: TicketMessage) -> Rendered:
    """Render and write out the mail into `row`; raises whatever rendering or writing raises."""
    rendered = renderer.render(recipe.purpose, recipe.language,
                               {"lang": recipe.language, "ticket": ticket.id, **recipe.context})
    references = [*replying_to.references, replying_to.message_id]
    row.raw = build_mail(sender, recipe.to_address, rendered.subject, rendered.text, rendered.html,
                         message_id=row.message_id, in_reply_to=replying_to.message_id, references=references,
                         auto_submitted=recipe.auto_submitted, reply_to=recipe.reply_to,
                         attachments=recipe.attachments)
    if sender.signer is not None:  # signed now, so every attempt sends the same bytes
        row.raw = sender.signer.sign(row.raw)
    row.compose = None
    return rendered


def _record_outgoing(session: Session, row: Outbox, rendered: Rendered, ticket: Ticket,
                     replying_to: TicketMessage) -> None:
    references = [*replying_to.references, replying_to.message_id]
    session.add(TicketMessage(ticket=ticket, direction="out", kind=row.purpose, message_id=row.message_id,
                              in_reply_to=replying_to.message_id, references=references[-MAX_REFERENCES:],
                              from_address=row.from_address, subject=rendered.subject, body=rendered.text))


def _record_compose_failure(session: Session, row: Outbox, ticket: Ticket, recipe: ComposeRecipe,
                            exc: Exception) -> None:
    reason = f"could not compose: {type(exc).__name__}: {exc}"[:2000]
    log.warning("ticket %s: %s mail to %r %s", ticket.id, recipe.purpose, recipe.to_address, reason)
    row.raw, row.status, row.last_error, row.compose = b"", "failed", reason, recipe.to_json()
    session.add(row)
    session.add(TicketEvent(ticket=ticket, kind="mail_failed",
                            detail={"purpose": recipe.purpose, "to": recipe.to_address, "error": reason,
                                    "attempts": 0, "retry": "supportd outbox retry"}))


def recompose(session: Session, renderer: Renderer, sender: Sender, load_file: Callable[[str], bytes],
              row: Outbox) -> bool:
    """Compose a row whose composition failed, from its recipe; True when it is now ready to send."""
    data = row.compose or {}
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
    replying_to = session.scalar(select(TicketMessage).where(TicketMessage.message_id == data.get("replying_to")))
    if ticket is None or replying_to is None:
        row.last_error = "could not compose: the ticket or the message it answers is gone"
        return False
    try:
        files = tuple(OutgoingFile(name, content_type, load_file(sha)) for name, content_type, sha
                      in data.get("attachments", []))
        recipe = ComposeRecipe(row.purpose, data["language"], row.to_address, replying_to.message_id,
                               data.get("context", {}), data.get("auto_submitted"), data.get("reply_to"), files)
        rendered = _compose_into(row, renderer, sender, recipe, ticket, replying_to)
    except Exception as exc:  # still failing: the reason is updated, the row stays failed
        row.last_error = f"could not compose: {type(exc).__name__}: {exc}"[:2000]
        return False
    _record_outgoing(session, row, rendered, ticket, replying_to)
    return True
