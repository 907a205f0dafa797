"""A batch is written with one flush, yet a mail still meets what earlier mails of its batch wrote.

All mails below are appended before one `run --once`, so they are processed in one batch: the re-sent
copy, the follow-up and the reply-to-ticket-tag mail must see the rows of the first mail, which are
not flushed when a mail of another customer comes in between.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import text_mail
from mailer.ledger.db import Outbox, RawMessage, Ticket
from mailer.ledger.directory import TableDirectory
from mailer.stages.lookups import fetch
from mailer.stages.work import _EARLIER_REPLIES
from parsing.message import parse
from routing.dedup import _OPEN_TICKETS_OF, _RECORDED, _SEEN, SeenRow
from tests.conftest import ConfigFactory
from tests.servers import Mailbox
from tests.test_followups import CUSTOMER, FIRST, SUBJECT, desk, ticket_summary
from tests.test_pipeline import run_once

OTHER = "li.wei@example.cn"  # another registered sample account


def test_mails_of_one_batch_see_each_others_rows(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink,
                                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailer.stages.runner")
    path, db = desk(make_config, tmp_path)
    first = text_mail(CUSTOMER, SUBJECT, FIRST, "<first@example.de>")
    mailbox.append(
        first,
        text_mail(OTHER, "Withdrawal pending", "My withdrawal has been pending for a day.", "<other@example.cn>"),
        first,  # the same mail again: a duplicate
        text_mail(CUSTOMER, "Re: " + SUBJECT, "still not credited, my UID is 10088812", "<second@example.de>"),
        text_mail(OTHER, "Re: Withdrawal pending [#2]", "Any news?", "<tagged@example.cn>"),
    )
    assert run_once(path) == 0
    assert "written again" not in caplog.text  # the batch went through in one go, not mail by mail
    summary = ticket_summary(db)
    assert [(number, kinds, acks) for number, kinds, acks, _ in summary] == [
        (1, ["customer", "repeat"], 1), (2, ["customer", "customer"], 1)]
    with db.session() as session:
        statuses = [raw.status for raw in session.scalars(select(RawMessage).order_by(RawMessage.id))]
        purposes = sorted(row.purpose for row in session.scalars(select(Outbox)))
        assert [t.id for t in session.scalars(select(Ticket).order_by(Ticket.id))] == [1, 2]
    db.dispose()
    assert statuses == ["done", "done", "duplicate", "done", "done"]
    assert purposes == ["ack", "ack", "repeat_notice"]
    assert len(smtp_sink.delivered) == 3


def test_answers_looked_up_ahead_equal_the_ledgers(make_config: ConfigFactory, mailbox: Mailbox,
                                                   smtp_sink: SmtpSink, tmp_path: Path) -> None:
    """For mails already recorded, re-sent, from customers with open tickets and acknowledgements today,
    and for strangers: each answer fetched for the batch is the answer the per-mail SQL gives."""
    path, db = desk(make_config, tmp_path)
    first = text_mail(CUSTOMER, SUBJECT, FIRST, "<first@example.de>")
    mailbox.append(first, text_mail(OTHER, "Withdrawal pending", "Pending for a day.", "<other@example.cn>"))
    assert run_once(path) == 0
    mails = [parse(first), parse(text_mail(CUSTOMER, "Re: " + SUBJECT, "still waiting", "<new@example.de>")),
             parse(text_mail("stranger@example.org", "Hello", "A question.", "<stranger@example.org>"))]
    now = datetime.now(UTC)
    since = now - timedelta(days=7)
    with db.session() as session:
        directory = TableDirectory(db)
        ahead = fetch(session, ((mail, mail.message_id) for mail in mails), since, directory)
        for mail in mails:
            [sender] = (a.address for a in mail.from_)
            live_seen = {SeenRow(*row) for row in session.execute(_SEEN, {"message_id": mail.message_id,
                                                                          "sha256": mail.sha256})}
            assert set(ahead.seen_rows(mail.message_id, mail.sha256) or []) == live_seen
            assert ahead.accounts[sender] == directory.find(sender, session)
            assert ahead.recorded(mail.message_id) == (session.scalar(_RECORDED, {"message_id": mail.message_id})
                                                       is not None)
            live_open = list(session.scalars(_OPEN_TICKETS_OF, {"customer": sender, "since": since}))
            assert ahead.open_tickets_of(sender, since) == live_open
            key = f"ack:{mail.message_id}"
            day = now - timedelta(hours=24)
            live = session.execute(_EARLIER_REPLIES, {"key": key, "address": sender, "since": day}).all()
            assert ahead.earlier_replies(key, sender, day) == (
                any(same for same, _ in live), sum(1 for _, counted in live if counted))
        assert ahead.open_tickets_of(CUSTOMER, since) and ahead.recorded(mails[0].message_id)
        assert ahead.accounts[CUSTOMER] is not None and ahead.accounts["stranger@example.org"] is None
        assert ahead.earlier_replies(f"ack:{mails[0].message_id}", CUSTOMER, now - timedelta(hours=24)) == (True, 1)
    db.dispose()
