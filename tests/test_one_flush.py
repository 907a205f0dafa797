"""A batch is written with one flush, yet a mail still meets what earlier mails of its batch wrote.

All mails below are appended before one `run --once`, so they are processed in one batch: the re-sent
copy, the follow-up and the reply-to-ticket-tag mail must see the rows of the first mail, which are
not flushed when a mail of another customer comes in between.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import text_mail
from mailer.ledger.db import Outbox, RawMessage, Ticket
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
