"""Hot standby: two `supportd run` on the same mailbox and PostgreSQL database; one serves, and when it
is killed mid-batch the other takes the mailbox lease over within the lease time and finishes its work.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from mailer.demo.embedded import SmtpSink
from mailer.ledger.db import Database, Lease
from mailer.runtime.lease import LEASE_TTL
from tests.conftest import ConfigFactory, prepared_app
from tests.outages import SupportdProcess, assert_nothing_lost_or_doubled, finished, replies_settled, wait_until
from tests.servers import Mailbox
from tests.test_outages import NO_CAP, mails, marked


def holder_pid(db: Database) -> int | None:
    with db.reading() as session:
        holder = session.scalar(select(Lease.holder).where(Lease.name == "intake:support"))
    return int(holder.split(":")[1]) if holder else None


def test_standby_takes_over_when_the_serving_daemon_is_killed(make_config: ConfigFactory, mailbox: Mailbox,
                                                             smtp_sink: SmtpSink, pg_url: str,
                                                             tmp_path: Path) -> None:
    count, later = 150, 10
    path, config = make_config(database_url=pg_url, broker={"worker_threads": 2}, spam=NO_CAP)
    prepared_app(config, tmp_path).close()
    db = Database(config.database_url)
    serving = SupportdProcess(path, "run", log=tmp_path / "serving.log")
    standby: SupportdProcess | None = None
    try:
        wait_until(lambda: holder_pid(db) == serving.pid, 30, "the first daemon to hold the lease")
        standby = SupportdProcess(path, "run", log=tmp_path / "standby.log")
        wait_until(lambda: "supportd running" in standby.log_text(), 30, "the second daemon to stand by")
        ids, raws = mails(0, count, "standby")
        mailbox.append(*raws)
        wait_until(lambda: finished(db) >= 20, 60, "the serving daemon to be at work")
        assert holder_pid(db) == serving.pid, "the standby must not serve while the lease is held"

        done_at_kill = finished(db)
        serving.kill()  # SIGKILL, mid-batch
        takeover = wait_until(lambda: holder_pid(db) == standby.pid, LEASE_TTL.total_seconds(),
                              "the standby to take the lease over")
        print(f"hot standby: lease taken over {takeover:.1f}s after SIGKILL (lease time "
              f"{LEASE_TTL.total_seconds():.0f}s), {done_at_kill} of {count} mails done at the kill")
        more_ids, more = mails(count, later, "standby")
        mailbox.append(*more)
        took = wait_until(lambda: finished(db) == count + later and replies_settled(db)
                          and marked(mailbox) == count + later, 120, "the standby to finish all the work")
        print(f"hot standby: all {count + later} mails answered and marked {took:.1f}s after the takeover")
        assert standby.alive(), standby.log_text()[-3000:]
        assert_nothing_lost_or_doubled(db, ids + more_ids, smtp_sink.delivered)
    finally:
        if serving.alive():
            serving.kill()
        if standby is not None:
            standby.stop()
        db.dispose()
