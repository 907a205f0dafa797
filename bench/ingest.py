"""Ingest benchmark: N realistic mails through IMAP → pipeline → SMTP, end to end.

    python bench/ingest.py [--mails 2000] [--database sqlite|postgres] [--threads 4]

Appends N customer mails of 5–50 KB (a fifth with a screenshot) to a real IMAP server (Dovecot when
installed and run as root, else the embedded pymap server), then runs `supportd run --once` as a
separate process against it and an aiosmtpd sink in this process. Prints messages per second end to
end, p50/p95 of arrival-to-reply-sent (arrival = when intake committed the mail), and the daemon's
peak RSS.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailer import migrate
from mailer.accounts import import_accounts
from mailer.db import Database, Outbox, RawMessage
from mailer.embedded import SmtpSink
from mailer.samples import bulk_mail
from tests.servers import Dovecot, Pymap, dovecot_available


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--threads", type=int, default=4, help="worker threads in the daemon")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="supportd-bench-"))
    backend = (Dovecot() if dovecot_available() else Pymap()).start()
    sink = SmtpSink().start()
    mailbox = backend.new_mailbox()
    try:
        db_url = _database(args.database, workdir)
        config_path = workdir / "supportd.toml"
        config_path.write_text(tomli_w.dumps({
            "mailboxes": [{"name": "bench", "url": mailbox.url(), "batch_size": 200}],
            "smtp": {"url": sink.url, "from_address": "support@desk.example"},
            "database": {"url": db_url},
            "broker": {"worker_threads": args.threads},
            "desk": {"once_timeout": 1800},
            "paths": {"storage": str(workdir / "data")},
        }))
        migrate.upgrade(db_url)
        db = Database(db_url)
        accounts = workdir / "accounts.csv"
        accounts.write_text("email,user_id,language,display_name\n" + "".join(
            f"customer{i}@example.net,{10_000_000 + i},{'zh' if i % 3 == 0 else 'en'},Customer {i}\n"
            for i in range(args.mails)))
        import_accounts(db, accounts)

        rng = random.Random(2026)
        raws = [bulk_mail(i, f"Customer {i} <customer{i}@example.net>", rng) for i in range(args.mails)]
        started = time.perf_counter()
        with mailbox.client() as client:
            for raw in raws:
                client.append("INBOX", raw)
        appended = time.perf_counter() - started
        print(f"IMAP server: {backend.kind}; appended {args.mails} mails "
              f"({sum(map(len, raws)) / 1e6:.1f} MB, mean {statistics.mean(map(len, raws)) / 1e3:.1f} KB) "
              f"in {appended:.1f}s")

        started = time.perf_counter()
        prefix = os.environ.get("SUPPORTD_BENCH_WRAP", "").split()
        result = subprocess.run([*prefix, sys.executable, "-m", "mailer", "--log-level", "WARNING", "run", "--config",
                                 str(config_path), "--once"], capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return result.returncode

        with db.session() as session:
            arrivals = dict(session.execute(select(RawMessage.ticket_id, RawMessage.received_at)).all())
            sent = session.execute(select(Outbox.ticket_id, Outbox.sent_at)).all()
        db.dispose()
        latencies = [(sent_at - arrivals[ticket]).total_seconds() for ticket, sent_at in sent if sent_at]
        print(f"database: {args.database}; broker: embedded, {args.threads} worker threads")
        print(f"end to end: {args.mails} mails in {elapsed:.2f}s = {args.mails / elapsed:.0f} messages/s "
              f"(daemon start-up included)")
        print(f"replies received by SMTP sink: {len(sink.delivered)}")
        print(f"arrival to reply sent: p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
              f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms")
        print(f"daemon peak RSS: {peak_rss_mb:.0f} MB")
        return 0
    finally:
        mailbox.close()
        sink.stop()
        backend.stop()


def _database(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    import psycopg

    name = f"supportd_bench_{int(time.time())}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


if __name__ == "__main__":
    sys.exit(main())
