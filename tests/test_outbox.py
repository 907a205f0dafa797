"""The outbox against a real SMTP server: retried on 4xx, failed on 5xx, sent once and marked after 250."""

from __future__ import annotations

from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import select

from mailer.demo.embedded import SmtpSink, free_port
from mailer.demo.samples import text_mail
from mailer.ledger.db import Database, Outbox, TicketEvent
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once


def _outbox(db_url: str) -> list[Outbox]:
    db = Database(db_url)
    with db.session() as session:
        rows = list(session.scalars(select(Outbox)))
    db.dispose()
    return rows


def test_temporary_failures_are_retried_until_accepted(make_config: ConfigFactory, mailbox: Mailbox,
                                                       smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    smtp_sink.handler.fail_next = 2
    mailbox.append(text_mail("omar@example.com", "Deposit missing", "missing", "<r1@x>"))
    assert run_once(path) == 0
    [row] = _outbox(config.database_url)
    assert row.status == "sent" and row.attempts == 3
    assert len(smtp_sink.delivered) == 1


class RejectingHandler:
    async def handle_RCPT(self, server, session, envelope, address, options):
        return "550 5.1.1 no such user"


def test_permanent_refusal_fails_the_row_with_an_event(make_config: ConfigFactory, mailbox: Mailbox,
                                                       tmp_path: Path) -> None:
    controller = Controller(RejectingHandler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        path, config = make_config(smtp={"url": f"smtp://127.0.0.1:{controller.port}"})
        prepared_app(config, tmp_path).close()
        mailbox.append(text_mail("omar@example.com", "Deposit missing", "missing", "<p1@x>"))
        assert run_once(path) == 0
    finally:
        controller.stop()
    [row] = _outbox(config.database_url)
    assert row.status == "failed" and row.attempts == 1 and "550" in (row.last_error or "")
    db = Database(config.database_url)
    with db.session() as session:
        assert session.scalar(select(TicketEvent.kind).where(TicketEvent.kind == "mail_failed")) == "mail_failed"
    db.dispose()


def test_smtp_down_leaves_replies_queued_and_once_reports_it(make_config: ConfigFactory, mailbox: Mailbox,
                                                            tmp_path: Path) -> None:
    path, config = make_config(smtp={"url": f"smtp://127.0.0.1:{free_port()}"}, desk={"once_timeout": 2})
    prepared_app(config, tmp_path).close()
    mailbox.append(text_mail("omar@example.com", "Deposit missing", "missing", "<d1@x>"))
    assert run_once(path) == 1
    [row] = _outbox(config.database_url)
    assert row.status == "pending" and row.attempts >= 1 and "Connection refused" in (row.last_error or "")
    # The mail itself is safe in the ledger and not marked on the server until its reply is out.
    sink = SmtpSink().start()
    try:
        path, config = make_config(smtp={"url": sink.url})
        assert run_once(path) == 0
        assert [m.rcpt_tos for m in sink.delivered] == [["omar@example.com"]]
    finally:
        sink.stop()
