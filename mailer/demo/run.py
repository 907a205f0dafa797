"""`supportd demo`: the whole pipeline on embedded servers, with no outside service.

An in-process IMAP server (pymap, in memory) and SMTP sink (aiosmtpd) on loopback, SQLite in a
temporary directory, the embedded broker. Sample customer mails go into the inbox, the daemon runs
once, and the tickets and the replies the sink received are printed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from email.header import decode_header, make_header
from pathlib import Path

from imapclient import IMAPClient

from mailer.app import App
from mailer.config import config_from_dict
from mailer.demo.embedded import EmbeddedImap, SmtpSink
from mailer.demo.samples import ACCOUNTS_CSV, DEMO_MTA, as_delivered, demo_mails, showcase_mails
from mailer.ledger import migrate
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Ticket, TicketMessage
from mailer.ledger.listing import format_ticket_table, ticket_json
from mailer.runtime.daemon import Daemon


def demo_config(workdir: Path, imap_url: str, smtp_url: str) -> dict[str, object]:
    return {
        "mailboxes": [{"name": "support", "url": imap_url, "poll_interval": 1}],
        "smtp": {"url": smtp_url, "from_address": "support@desk.example", "from_name": "Example Exchange Support"},
        "database": {"url": f"sqlite:///{workdir / 'supportd.db'}"},
        "desk": {"name": "Example Exchange Support", "once_timeout": 60},
        "calendar": {"time_zone": "Asia/Singapore", "country": "SG"},
        "trust": {"authserv_id": DEMO_MTA},
        "paths": {"storage": str(workdir / "data")},
    }


def run_demo(keep: Path | None = None) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    workdir = keep or Path(tempfile.mkdtemp(prefix="supportd-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    imap, smtp = EmbeddedImap().start(), SmtpSink().start()
    try:
        config = config_from_dict(demo_config(workdir, imap.url, smtp.url), "demo", base_dir=workdir)
        migrate.upgrade(config.database_url)
        app = App.from_config(config)
        (workdir / "accounts.csv").write_text(ACCOUNTS_CSV, encoding="utf-8")
        report = import_accounts(app.db, workdir / "accounts.csv")
        print(f"Imported {report.added} accounts. Appending sample mails to the IMAP inbox:")
        with IMAPClient(imap.host, imap.port, ssl=False) as client:
            client.login(imap.user, imap.password)
            for sample in demo_mails():
                client.append("INBOX", as_delivered(sample.raw))
                print(f"  - {sample.label}")
            for sample in showcase_mails():
                client.append("INBOX", sample.raw)
                print(f"  - {sample.label}")
        print("\nRunning `supportd run --once` on embedded IMAP, SMTP, SQLite and broker ...")
        backlog = Daemon(app).run_once()
        _print_results(App.from_config(config), smtp)
        if not backlog.empty:
            print(f"\nUnfinished: {backlog}")
            return 1
        print(f"\nDatabase and attachments: {workdir}" if keep else "")
        return 0
    finally:
        smtp.stop()
        imap.stop()
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _print_results(app: App, smtp: SmtpSink) -> None:
    from sqlalchemy import func, select

    with app.db.reading() as session:
        counts = dict(session.execute(select(TicketMessage.ticket_id, func.count()).where(
            TicketMessage.direction == "in").group_by(TicketMessage.ticket_id)).all())
        rows = [ticket_json(t, counts.get(t.id, 0)) for t in session.scalars(select(Ticket).order_by(Ticket.id))]
    app.close()
    print("\nTickets:")
    print(format_ticket_table(rows, app.calendar.zone))
    print(f"\nReplies received by the SMTP sink ({len(smtp.delivered)}):")
    for mail in smtp.delivered:
        subject = str(make_header(decode_header(mail.message["Subject"])))
        print(f"  to {', '.join(mail.rcpt_tos):<28} {subject}")
    print("\nThe duplicate and the auto-reply opened no ticket; the forged sender got no answer; the seed phrase "
          "was redacted before storage and its sender warned.")
