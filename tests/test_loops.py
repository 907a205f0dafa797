"""Mail loops stop, and bounces find the mail they bounce, over real SMTP and IMAP."""

from __future__ import annotations

import secrets
import smtplib
import threading
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from aiosmtpd.controller import Controller
from sqlalchemy import select

from mailer.config import load_config
from mailer.demo.embedded import SmtpSink, free_port
from mailer.demo.samples import text_mail
from mailer.ledger.db import Database, Outbox, RawMessage, Ticket, TicketEvent
from tests.conftest import prepared_app
from tests.servers import Dovecot, Mailbox, Pymap
from tests.test_pipeline import run_once


class RelayHandler:
    """A tiny MTA: each mail is appended over IMAP to the mailbox of each known recipient."""

    def __init__(self, routes: dict[str, Mailbox]) -> None:
        self.routes, self.log, self.lock = routes, [], threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            with self.lock:
                self.log.append((envelope.mail_from, rcpt))
            if rcpt in self.routes:
                self.routes[rcpt].append(bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def relay() -> Iterator[tuple[Controller, dict[str, Mailbox], RelayHandler]]:
    routes: dict[str, Mailbox] = {}
    handler = RelayHandler(routes)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, routes, handler
    controller.stop()


def desk(tmp_path: Path, name: str, box: Mailbox, relay_port: int, **dedup: Any) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    data = {"mailboxes": [{"name": name, "url": box.url()}],
            "smtp": {"url": f"smtp://127.0.0.1:{relay_port}", "from_address": f"support@{name}.example",
                     "retry_base": 0.05},
            "database": {"url": f"sqlite:///{folder / 'supportd.db'}"},
            "desk": {"once_timeout": 30}, "paths": {"storage": str(folder / "data")}}
    if dedup:
        data["dedup"] = dedup
    path = folder / "supportd.toml"
    path.write_text(tomli_w.dumps(data))
    prepared_app(load_config(path), folder).close()
    return path


def test_two_desks_answering_each_other_stop(tmp_path: Path, imap_backend: Dovecot | Pymap,
                                            relay: tuple[Controller, dict[str, Mailbox], RelayHandler]) -> None:
    controller, routes, handler = relay
    box_a, box_b = imap_backend.new_mailbox(), imap_backend.new_mailbox()
    try:
        routes.update({"support@alpha.example": box_a, "support@beta.example": box_b})
        alpha, beta = desk(tmp_path, "alpha", box_a, controller.port), desk(tmp_path, "beta", box_b, controller.port)
        # Beta's address writes to alpha (a forward rule gone wrong); each desk answers unknown senders.
        box_a.append(text_mail("support@beta.example", "Deposit not credited", "where is it", "<seed@beta>"))
        for _ in range(4):
            assert run_once(alpha) == 0
            assert run_once(beta) == 0
        assert handler.log == [("support@alpha.example", "support@beta.example")]
    finally:
        box_a.close()
        box_b.close()


class Responder:
    """An auto-responder that answers every mail and marks nothing as automatic (the worst kind)."""

    def __init__(self, box: Mailbox, port: int, vary: bool) -> None:
        self.box, self.port, self.vary, self.seen, self.sent = box, port, vary, 0, 0

    def answer_new_mail(self) -> None:
        with self.box.client() as client:
            client.select_folder("INBOX")
            uids = sorted(client.search(["ALL"]))[self.seen:]
            self.seen += len(uids)
        for _ in uids:
            note = f" (ref {secrets.token_hex(8)} {secrets.token_hex(8)})" if self.vary else ""
            raw = text_mail("away@gamma.example", "I am away" + note, f"I am away until Monday.{note}",
                            f"<away-{secrets.token_hex(6)}@gamma.example>")
            with smtplib.SMTP("127.0.0.1", self.port) as smtp:
                smtp.sendmail("away@gamma.example", ["support@alpha.example"], raw)
            self.sent += 1


@pytest.mark.parametrize(("vary", "expected_from_desk"), [(False, 2), (True, 3)])
def test_a_naive_auto_responder_cannot_keep_us_talking(tmp_path: Path, imap_backend: Dovecot | Pymap,
                                                       relay: tuple[Controller, dict[str, Mailbox], RelayHandler],
                                                       vary: bool, expected_from_desk: int) -> None:
    """Same text each time: the repeat notice goes once a day. Different text each time: the daily cap."""
    controller, routes, handler = relay
    box_a, box_r = imap_backend.new_mailbox(), imap_backend.new_mailbox()
    try:
        routes.update({"support@alpha.example": box_a, "away@gamma.example": box_r})
        alpha = desk(tmp_path, "alpha", box_a, controller.port, max_auto_replies_per_day=3)
        responder = Responder(box_r, controller.port, vary)
        box_a.append(text_mail("away@gamma.example", "I am away", "I am away until Monday.", "<away-0@gamma>"))
        for _ in range(8):
            assert run_once(alpha) == 0
            responder.answer_new_mail()
        from_desk = [rcpt for sender, rcpt in handler.log if sender == "support@alpha.example"]
        assert len(from_desk) == expected_from_desk
        assert responder.sent == expected_from_desk
    finally:
        box_a.close()
        box_r.close()


DSN = """From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: support@desk.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.example.net>
Return-Path: <>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Your message could not be delivered.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; omar@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown

--b
Content-Type: text/rfc822-headers

From: Support <support@desk.example>
To: omar@example.com
Message-ID: {message_id}
Subject: [#1] We have your request

--b--
"""


def test_a_bounce_marks_the_reply_it_bounces(make_config: Any, mailbox: Mailbox, smtp_sink: SmtpSink,
                                             tmp_path: Path) -> None:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    mailbox.append(text_mail("omar@example.com", "Deposit missing", "missing", "<b1@x>"))
    assert run_once(path) == 0
    ack_id = message_from_bytes(smtp_sink.delivered[0].data)["Message-ID"]
    mailbox.append(DSN.format(message_id=ack_id).replace("\n", "\r\n").encode())
    assert run_once(path) == 0
    db = Database(config.database_url)
    with db.session() as session:
        row = session.scalar(select(Outbox).where(Outbox.message_id == ack_id))
        assert row is not None and row.status == "bounced" and "5.1.1" in (row.last_error or "")
        event = session.scalar(select(TicketEvent).where(TicketEvent.kind == "bounced"))
        assert event is not None and event.ticket_id == row.ticket_id
        assert event.detail["diagnostic"].startswith("smtp; 550")
        assert session.scalar(select(RawMessage.status).where(RawMessage.message_id == "<dsn-1@mx.example.net>")) \
            == "bounce"
        assert len(list(session.scalars(select(Ticket)))) == 1
    db.dispose()
    assert len(smtp_sink.delivered) == 1  # nothing went to MAILER-DAEMON


def test_imap_relay_client_is_real(imap_backend: Dovecot | Pymap) -> None:
    """The relay above really appends over IMAP (guards the loop tests against a silent no-op)."""
    box = imap_backend.new_mailbox()
    try:
        handler = RelayHandler({"x@y.example": box})
        controller = Controller(handler, hostname="127.0.0.1", port=free_port())
        controller.start()
        try:
            with smtplib.SMTP("127.0.0.1", controller.port) as smtp:
                smtp.sendmail("a@b.example", ["x@y.example"], text_mail("a@b.example", "s", "b", "<r@x>"))
        finally:
            controller.stop()
        with box.client() as client:
            client.select_folder("INBOX")
            assert len(client.search(["ALL"])) == 1
    finally:
        box.close()
