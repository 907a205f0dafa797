"""SIGHUP: the daemon re-reads its config (rules, templates …) between batches; a broken file is refused
with its `file: key: reason` and the running configuration keeps serving."""

from __future__ import annotations

import signal
from email import message_from_bytes
from pathlib import Path

from sqlalchemy import select

from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import text_mail
from mailer.ledger.db import Database, Ticket, TicketMessage
from templates import BUILTIN_DIR
from tests.conftest import ConfigFactory, prepared_app
from tests.outages import SupportdProcess, wait_until
from tests.servers import Mailbox

MARKER = "This answer comes from the reloaded template."


def zebra_rules(queue: str) -> list[dict[str, object]]:
    return [{"name": "zebra", "queue": queue, "subject": ["zebra"]}, {"name": "fallback", "queue": "general"}]


def queue_of(db: Database, message_id: str) -> str | None:
    with db.reading() as session:
        return session.scalar(select(Ticket.queue).join(TicketMessage, TicketMessage.ticket_id == Ticket.id)
                              .where(TicketMessage.message_id == message_id))


def ack_text(sink: SmtpSink, message_id: str) -> str | None:
    for mail in sink.delivered:
        msg = message_from_bytes(mail.data)
        if msg["In-Reply-To"] == message_id:
            part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
            return part.get_payload(decode=True).decode("utf-8")
    return None


def test_sighup_reloads_rules_and_templates_and_refuses_a_broken_file(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config(rules=zebra_rules("kyc"))
    prepared_app(config, tmp_path).close()
    db = Database(config.database_url)
    daemon = SupportdProcess(path, "run", log=tmp_path / "daemon.log")

    def route(n: int) -> tuple[str, str]:
        mid = f"<zebra-{n}@customers.example>"
        mailbox.append(text_mail(f"zebra{n}@customers.example", f"Zebra question {n}", "A question.", mid))
        wait_until(lambda: ack_text(smtp_sink, mid) is not None, 30, f"mail {n} to be answered")
        return queue_of(db, mid) or "", ack_text(smtp_sink, mid) or ""

    try:
        queue, ack = route(1)
        assert queue == "kyc" and MARKER not in ack

        overrides = tmp_path / "templates"
        for purpose in ("ack", "unverified"):  # what a stranger's first mail gets, whichever the queue
            (overrides / purpose).mkdir(parents=True)
            original = (BUILTIN_DIR / purpose / "en.txt.j2").read_text(encoding="utf-8")
            (overrides / purpose / "en.txt.j2").write_text(original + "\n" + MARKER + "\n", encoding="utf-8")
        make_config(rules=zebra_rules("api"), paths={"storage": str(tmp_path / "data"), "templates": str(overrides)})
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in daemon.log_text(), 15, "the reload")
        queue, ack = route(2)
        assert queue == "api", "the next mail is routed by the new rule"
        assert MARKER in ack, "and answered with the new template"

        good = path.read_text(encoding="utf-8")
        path.write_text(good.replace('queue = "api"', 'queue = "nosuchqueue"'), encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in daemon.log_text(), 15, "the refusal")
        assert f"{path}: rules[0].queue: names no queue in [queues]: 'nosuchqueue'" in daemon.log_text()
        queue, ack = route(3)
        assert queue == "api" and MARKER in ack, "the running configuration stays"
        assert daemon.alive()
    finally:
        daemon.stop()
        db.dispose()
