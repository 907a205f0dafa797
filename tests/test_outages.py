"""Outages ridden out: the IMAP server, the SMTP relay, PostgreSQL and Redis each go away while the daemon
works, and come back. The daemon recovers by itself; every mail ends as exactly one ticket entry and
every ticket gets exactly one acknowledgement.

The daemons run as `supportd` processes. PostgreSQL and Redis are instances of the test's own (the
machine's serve other tests); the IMAP server is a Dovecot of the test's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailer.demo.embedded import SmtpSink, free_port
from mailer.demo.samples import text_mail
from mailer.ledger.db import Database, Outbox
from tests.conftest import ConfigFactory, prepared_app
from tests.outages import (
    PrivatePostgres,
    PrivateRedis,
    SupportdProcess,
    assert_nothing_lost_or_doubled,
    finished,
    postgres_available,
    readyz,
    replies_settled,
    stop_dovecot,
    stored,
    wait_until,
)
from tests.servers import Dovecot, Mailbox, dovecot_available

NO_CAP = {"max_unverified_replies_per_hour": 10_000}  # many strangers at once is the point here


def endpoint() -> tuple[int, dict[str, str]]:
    """A port for the daemon's /readyz and the [http] section that opens it."""
    port = free_port()
    return port, {"listen": f"127.0.0.1:{port}"}


def mails(first: int, count: int, tag: str) -> tuple[list[str], list[bytes]]:
    """Mails from distinct customers about distinct deposits: each opens a ticket of its own."""
    ids = [f"<{tag}-{i}@customers.example>" for i in range(first, first + count)]
    raws = [text_mail(f"customer{i}@customers.example", f"Deposit {i} not credited",
                      f"Deposit number {i} is missing.", mid) for i, mid in zip(range(first, first + count), ids,
                                                                                 strict=True)]
    return ids, raws


def all_done(db: Database, count: int) -> bool:
    try:
        return finished(db) == count and replies_settled(db)
    except Exception:  # the database of the test may be the one that is away
        return False


def marked(box: Mailbox) -> int:
    return sum(b"\\Seen" in flags for flags in box.flags().values())


def test_imap_server_restarted_during_idle(make_config: ConfigFactory, smtp_sink: SmtpSink,
                                           tmp_path: Path) -> None:
    if not dovecot_available():
        pytest.skip("needs Dovecot (run as root) to restart an IMAP server")
    dovecot = Dovecot().start()
    daemon = None
    try:
        box = dovecot.new_mailbox()
        http, http_section = endpoint()
        path, config = make_config(mailboxes=[{"name": "support", "url": box.url(), "idle_timeout": 60}],
                                   spam=NO_CAP, http=http_section)
        prepared_app(config, tmp_path).close()
        db = Database(config.database_url)
        daemon = SupportdProcess(path, "run", log=tmp_path / "daemon.log")
        before_ids, before = mails(0, 5, "idle")
        box.append(*before)
        wait_until(lambda: all_done(db, 5) and marked(box) == 5, 60, "the first mails to be answered and marked")
        wait_until(lambda: readyz(http) == 200, 15, "/readyz 200 while the mailbox is served")
        time.sleep(1.0)  # back in IDLE

        stop_dovecot(dovecot)
        wait_until(lambda: readyz(http) == 503, 15, "/readyz 503 while the IMAP server is away")
        dovecot.start()
        after_ids, after = mails(5, 5, "idle")
        box.append(*after)

        took = wait_until(lambda: all_done(db, 10) and marked(box) == 10, 90, "the mails sent after the restart")
        print(f"IMAP restart: the mails appended after it were answered and marked within {took:.1f}s")
        wait_until(lambda: readyz(http) == 200, 15, "/readyz 200 again")
        assert daemon.alive(), daemon.log_text()[-3000:]
        assert "connection lost" in daemon.log_text() or "cannot connect" in daemon.log_text()
        assert_nothing_lost_or_doubled(db, before_ids + after_ids, smtp_sink.delivered)
        db.dispose()
    finally:
        if daemon is not None:
            daemon.stop()
        dovecot.stop()


def test_smtp_relay_answers_4xx_then_refuses_then_returns(make_config: ConfigFactory, mailbox: Mailbox,
                                                          tmp_path: Path) -> None:
    port = free_port()
    relay = SmtpSink(port=port).start()
    relay.handler.fail_next = 10**9  # "451 try again later" to everything
    # The daemon's behaviour is the production one; only the retry span is seconds instead of minutes.
    http, http_section = endpoint()
    path, config = make_config(smtp={"url": f"smtp://127.0.0.1:{port}", "retry_base": 0.2, "max_attempts": 30},
                               spam=NO_CAP, http=http_section)
    prepared_app(config, tmp_path).close()
    db = Database(config.database_url)
    daemon = SupportdProcess(path, "run", log=tmp_path / "daemon.log")
    back: SmtpSink | None = None
    try:
        first_ids, first = mails(0, 5, "relay")
        mailbox.append(*first)

        def retried(error: str) -> bool:
            with db.reading() as session:
                rows = list(session.scalars(Outbox.__table__.select().with_only_columns(Outbox.last_error)))
            return len(rows) == 5 and all(e and error in e for e in rows)

        wait_until(lambda: finished(db) == 5 and retried("451"), 30, "every reply to be refused with 451")
        assert readyz(http) == 503, "replies cannot go out: not ready"
        relay.stop()  # now connections are refused
        wait_until(lambda: retried("Connection refused") or retried("ConnectionRefused"), 30,
                   "every reply to meet a refused connection")
        second_ids, second = mails(5, 5, "relay")
        mailbox.append(*second)
        wait_until(lambda: finished(db) == 10, 30, "the mails that came while the relay was down")
        assert not replies_settled(db)

        back = SmtpSink(port=port).start()
        took = wait_until(lambda: replies_settled(db), 60, "the replies to go out once the relay is back")
        print(f"SMTP relay back: all replies sent within {took:.1f}s")
        assert readyz(http) == 200
        assert daemon.alive(), daemon.log_text()[-3000:]
        assert relay.delivered == []
        assert_nothing_lost_or_doubled(db, first_ids + second_ids, back.delivered)
    finally:
        daemon.stop()
        if back is not None:
            back.stop()
        db.dispose()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not postgres_available():
        pytest.skip("needs PostgreSQL's initdb and root (to run it as the postgres user)")
    server = PrivatePostgres().start()
    yield server
    server.remove()


def test_postgresql_restarted_mid_batch(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink,
                                        private_postgres: PrivatePostgres, tmp_path: Path) -> None:
    count, later = 100, 20
    http, http_section = endpoint()
    path, config = make_config(database_url=private_postgres.url, broker={"worker_threads": 2}, spam=NO_CAP,
                               http=http_section)
    prepared_app(config, tmp_path).close()
    db = Database(config.database_url)
    daemon = SupportdProcess(path, "run", log=tmp_path / "daemon.log")
    try:
        ids, raws = mails(0, count, "pg")
        mailbox.append(*raws)
        wait_until(lambda: finished(db) >= 15, 60, "processing to be under way")
        private_postgres.stop("fast")  # terminates every session: batches in flight lose their connection
        wait_until(lambda: readyz(http) == 503, 15, "/readyz 503 while the database is away")
        time.sleep(2.0)
        private_postgres.start()
        later_ids, later_raws = mails(count, later, "pg")
        mailbox.append(*later_raws)
        ids += later_ids
        took = wait_until(lambda: all_done(db, count + later) and marked(mailbox) == count + later, 120,
                          "every mail processed, answered and marked after the restart")
        print(f"PostgreSQL restart: finished {took:.1f}s after the server was back")
        wait_until(lambda: readyz(http) == 200, 15, "/readyz 200 again")
        log = daemon.log_text()
        assert daemon.alive(), log[-3000:]
        assert "quarantined" not in log
        assert_nothing_lost_or_doubled(db, ids, smtp_sink.delivered)
    finally:
        daemon.stop()
        db.dispose()


def test_redis_restarted_with_work_queued(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink,
                                          tmp_path: Path) -> None:
    redis = PrivateRedis().start()
    # The daemon only fetches; a `supportd worker` process does the rest. Reconciling every second makes
    # the test short; the daemon's behaviour is the production one.
    http, http_section = endpoint()
    path, config = make_config(broker={"url": redis.url, "worker_threads": 0, "reconcile_interval": 1},
                               spam=NO_CAP, http=http_section)
    prepared_app(config, tmp_path).close()
    db = Database(config.database_url)
    daemon = SupportdProcess(path, "run", log=tmp_path / "daemon.log")
    worker: SupportdProcess | None = None
    try:
        first_ids, first = mails(0, 10, "redis")
        mailbox.append(*first)
        wait_until(lambda: stored(db) == 10 and redis.queued() > 0, 30, "the first mails to wait on the broker")
        redis.kill()  # the queued work dies with it (no persistence)
        wait_until(lambda: readyz(http) == 503, 15, "/readyz 503 while the broker is away")
        down_ids, down = mails(10, 5, "redis")
        mailbox.append(*down)
        wait_until(lambda: stored(db) == 15, 30, "mails fetched while the broker is down")
        redis.start()
        worker_config = tmp_path / "worker.toml"  # the same desk; its own port for its endpoint
        worker_config.write_text(path.read_text().replace(f":{http}", f":{free_port()}"))
        worker = SupportdProcess(worker_config, "worker", "--threads", "2", log=tmp_path / "worker.log")
        after_ids, after = mails(15, 5, "redis")
        mailbox.append(*after)
        took = wait_until(lambda: all_done(db, 20), 90, "every mail processed and answered")
        print(f"Redis restart: all work done {took:.1f}s after the broker was back")
        assert readyz(http) == 200
        assert daemon.alive(), daemon.log_text()[-3000:]
        assert worker.alive(), worker.log_text()[-3000:]
        assert "broker unreachable" in daemon.log_text()
        assert_nothing_lost_or_doubled(db, first_ids + down_ids + after_ids, smtp_sink.delivered)
    finally:
        daemon.stop()
        if worker is not None:
            worker.stop()
        redis.kill()
        db.dispose()
