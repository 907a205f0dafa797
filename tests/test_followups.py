"""A short follow-up with the subject of the customer's open ticket joins it; other problems do not.

Through the real pipeline: each mail is a new mail (no In-Reply-To), fetched in a later run than the first.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import encoded_word, text_mail
from mailer.ledger.db import Database, Outbox, Ticket, TicketEvent
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once

CUSTOMER = "anna.schmidt@example.de"  # a registered sample account
TXID = "7d5c" * 16
OTHER_TXID = "91ab" * 16
SUBJECT = "Deposit not credited"
FIRST = (f"Hello,\n\nI deposited 250 USDT over TRC20 this morning at 09:12 from my wallet. The transfer shows "
         f"as confirmed on the explorer (TxID: {TXID}), with 40 confirmations, but my balance still shows "
         "the old amount. I used the deposit address shown in the app. Please check and credit it.\n\n"
         "Thank you,\nAnna")


def desk(make_config: ConfigFactory, tmp_path: Path) -> tuple[Path, Database]:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    return path, Database(config.database_url)


def deliver(path: Path, mailbox: Mailbox, subject: str, body: str, message_id: str) -> None:
    mailbox.append(text_mail(CUSTOMER, subject if subject.isascii() else encoded_word(subject, "utf-8"), body,
                             message_id))
    assert run_once(path) == 0


def ticket_summary(db: Database) -> list[tuple[int, list[str], int, str | None]]:
    """Per ticket: inbound message kinds, acknowledgements, and the reason of its repeat event."""
    with db.session() as session:
        rows = []
        for ticket in session.scalars(select(Ticket).order_by(Ticket.id)):
            acks = len(session.scalars(select(Outbox).where(Outbox.ticket_id == ticket.id,
                                                            Outbox.purpose == "ack")).all())
            repeat = session.scalar(select(TicketEvent.detail).where(TicketEvent.ticket_id == ticket.id,
                                                                     TicketEvent.kind == "repeat"))
            rows.append((ticket.id, [m.kind for m in ticket.messages if m.direction == "in"], acks,
                         repeat["reason"] if repeat else None))
    return rows


@pytest.mark.parametrize("prefix", ["Re: ", "AW: ", "回复：", "Fwd: RE:  "])
def test_a_one_line_follow_up_with_the_same_subject_joins_the_open_ticket(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path, prefix: str) -> None:
    path, db = desk(make_config, tmp_path)
    deliver(path, mailbox, SUBJECT, FIRST, "<first@example.de>")
    with db.session() as session:
        [ticket] = session.scalars(select(Ticket))
        due = ticket.first_response_due, ticket.resolution_due
    deliver(path, mailbox, prefix + SUBJECT, "still not credited, my UID is 10088812", "<second@example.de>")
    [(_, kinds, acks, reason)] = ticket_summary(db)
    assert kinds == ["customer", "repeat"] and acks == 1
    assert reason == "a follow-up with the subject of #1"
    with db.session() as session:
        [ticket] = session.scalars(select(Ticket))
        assert (ticket.first_response_due, ticket.resolution_due) == due
        assert ticket.status == "open"
    db.dispose()
    assert [m.rcpt_tos for m in smtp_sink.delivered] == [[CUSTOMER], [CUSTOMER]]  # the ack, one repeat notice


@pytest.mark.parametrize(("subject", "body", "why"), [
    (SUBJECT, f"Another deposit of 80 USDT is missing too, TxID {OTHER_TXID}.", "another TxID"),
    ("Re: " + SUBJECT, "still not credited, my UID is 10099001", "another user ID"),
    ("Cannot change my phone number", "still not possible, my UID is 10088812", "another subject"),
])
def test_another_problem_opens_another_ticket(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink,
                                              tmp_path: Path, subject: str, body: str, why: str) -> None:
    path, db = desk(make_config, tmp_path)
    deliver(path, mailbox, SUBJECT, FIRST + "\nMy UID is 10088812.", "<first@example.de>")
    deliver(path, mailbox, subject, body, "<other@example.de>")
    summary = ticket_summary(db)
    db.dispose()
    assert [(kinds, acks) for _, kinds, acks, _ in summary] == [(["customer"], 1), (["customer"], 1)], why


def test_a_follow_up_after_the_ticket_was_closed_opens_a_new_one(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, db = desk(make_config, tmp_path)
    deliver(path, mailbox, SUBJECT, FIRST, "<first@example.de>")
    with db.session() as session:
        session.scalars(select(Ticket)).one().status = "closed"
    deliver(path, mailbox, "Re: " + SUBJECT, "still not credited, my UID is 10088812", "<late@example.de>")
    assert len(ticket_summary(db)) == 2
    db.dispose()
