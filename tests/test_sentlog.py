"""The sent journal: what the relay accepted from a killed process is marked sent, never sent again."""

from __future__ import annotations

import multiprocessing
import socket
from pathlib import Path

from sqlalchemy import select

from mailer.app import App
from mailer.config import Config
from mailer.demo.embedded import SmtpSink
from mailer.ledger import migrate
from mailer.ledger.db import Outbox, utcnow
from mailer.runtime import reconcile
from mailer.transport.outbox import deliver_batch
from mailer.transport.sentlog import SentLog
from tests.conftest import ConfigFactory


def _dead_claimant() -> str:
    """The holder name of a process of this host that has exited."""
    child = multiprocessing.get_context("spawn").Process(target=int)
    child.start()
    child.join()
    return f"{socket.gethostname()}:{child.pid}:deadbeef"


def _rows(app: App, count: int, claimant: str) -> list[int]:
    with app.db.session() as session:
        rows = [Outbox(idempotency_key=f"k{n}", purpose="ack", to_address=f"c{n}@example.com",
                       from_address="support@desk.example", message_id=f"<m{n}@desk.example>",
                       raw=b"Subject: x\r\n\r\nx\r\n", status="sending", claimed_by=claimant, claimed_at=utcnow())
                for n in range(count)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _app(make_config: ConfigFactory) -> tuple[App, Config]:
    _, config = make_config()
    migrate.upgrade(config.database_url)
    return App.from_config(config), config


def test_rows_a_dead_process_had_sent_are_marked_the_rest_given_back(make_config: ConfigFactory,
                                                                      tmp_path: Path) -> None:
    app, config = _app(make_config)
    claimant = _dead_claimant()
    ids = _rows(app, 4, claimant)
    journal = config.storage_dir / "sent-journal"
    journal.mkdir(parents=True)
    # As the dead process left it: two 250s written down, the batch's mark never committed.
    (journal / f"{claimant.replace(':', '_')}.1234.log").write_text(f"{ids[0]}\n{ids[2]}\n")

    unfinished = reconcile.at_start(app, reclaim_all_sending=False)

    with app.db.session() as session:
        status = {row.id: row.status for row in session.execute(select(Outbox.id, Outbox.status))}
    app.close()
    assert status == {ids[0]: "sent", ids[1]: "pending", ids[2]: "sent", ids[3]: "pending"}
    assert unfinished.outbox_ids == [ids[1], ids[3]]
    assert list(journal.iterdir()) == []


def test_a_journal_holds_only_the_batch_not_yet_marked(make_config: ConfigFactory, smtp_sink: SmtpSink) -> None:
    app, config = _app(make_config)
    with app.db.session() as session:
        session.add(Outbox(idempotency_key="k", purpose="ack", to_address="c@example.com",
                           from_address="support@desk.example", message_id="<m@desk.example>",
                           raw=b"Subject: x\r\n\r\nx\r\n"))
    [delivery] = deliver_batch(app, [1])
    app.close()
    assert delivery.outcome == "sent" and len(smtp_sink.delivered) == 1
    journals = list((config.storage_dir / "sent-journal").iterdir())
    assert journals and all(path.read_text() == "" for path in journals)


def test_a_journal_line_is_written_per_accepted_mail(tmp_path: Path) -> None:
    log = SentLog(tmp_path)
    log.accepted(7)
    log.accepted(9)
    [path] = list((tmp_path / "sent-journal").iterdir())
    assert path.read_text() == "7\n9\n"
    log.marked()
    assert path.read_text() == ""
