"""Latency under load: `supportd run` (IMAP IDLE) while mails arrive at a steady rate.

    python bench/latency.py [--rates 40 150] [--seconds 15] [--database sqlite|postgres]

For each rate, a fresh mailbox and database; `supportd run` (the long-running daemon, embedded broker)
is started and given time to start, then customer mails (the ingest benchmark's corpus) are appended
at the rate for the given time. Arrival is the moment the APPEND returned; the acknowledgement is the
moment the SMTP sink received the reply (matched by In-Reply-To). Prints p50, p95 and max of arrival to
acknowledgement, and how many mails were answered.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import _database, percentile
from mailer.demo.embedded import SinkHandler, SmtpSink
from mailer.demo.samples import bulk_mail
from mailer.ledger import migrate
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Database
from tests.servers import Dovecot, Pymap, dovecot_available

STARTUP = 4.0  # seconds the daemon gets to start and to go into IDLE before the first mail
DRAIN = 30.0  # seconds to wait for the last acknowledgements


class TimedSink(SinkHandler):
    """The sink, noting when each reply arrived, by the mail it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: dict[str, float] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        replying_to = BytesHeaderParser().parsebytes(bytes(envelope.content)).get("In-Reply-To")
        if replying_to:
            self.answered.setdefault(replying_to.strip(), time.monotonic())
        return answer


def run_rate(rate: float, seconds: float, database: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="supportd-latency-"))
    backend = (Dovecot() if dovecot_available() else Pymap()).start()
    sink = SmtpSink()
    handler = TimedSink()
    sink.handler = handler
    sink.controller.handler = handler
    sink.start()
    mailbox = backend.new_mailbox()
    count = int(rate * seconds)
    try:
        db_url = _database(database, workdir)
        config_path = workdir / "supportd.toml"
        config_path.write_text(tomli_w.dumps({
            "mailboxes": [{"name": "bench", "url": mailbox.url(), "batch_size": 200, "idle": True}],
            "smtp": {"url": sink.url, "from_address": "support@desk.example"},
            "database": {"url": db_url},
            "paths": {"storage": str(workdir / "data")},
        }))
        migrate.upgrade(db_url)
        db = Database(db_url)
        accounts = workdir / "accounts.csv"
        accounts.write_text("email,user_id,language,display_name\n" + "".join(
            f"customer{i}@example.net,{10_000_000 + i},en,Customer {i}\n" for i in range(count)))
        import_accounts(db, accounts)
        db.dispose()
        rng = random.Random(2026)
        raws = [bulk_mail(i, f"Customer {i} <customer{i}@example.net>", rng) for i in range(count)]
        ids = [BytesHeaderParser().parsebytes(raw)["Message-ID"].strip() for raw in raws]

        daemon = subprocess.Popen([sys.executable, "-m", "mailer", "--log-level", "WARNING", "run", "--config",
                                   str(config_path)])
        try:
            time.sleep(STARTUP)
            arrived = _append_steadily(mailbox, raws, ids, rate)
            deadline = time.monotonic() + DRAIN
            while len(handler.answered) < count and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
        latencies = [handler.answered[mid] - at for mid, at in arrived.items() if mid in handler.answered]
        print(f"{rate:g} mails/s for {seconds:g}s ({count} mails, {database}, load average "
              f"{os.getloadavg()[0]:.1f}): {len(latencies)} answered; arrival to acknowledgement "
              f"p50 {percentile(latencies, 0.5):.2f}s, p95 {percentile(latencies, 0.95):.2f}s, "
              f"max {max(latencies, default=float('nan')):.2f}s")
    finally:
        mailbox.close()
        sink.stop()
        backend.stop()


def _append_steadily(mailbox: Any, raws: list[bytes], ids: list[str], rate: float) -> dict[str, float]:
    arrived: dict[str, float] = {}
    lock = threading.Lock()
    with mailbox.client() as client:
        started = time.monotonic()
        for index, (raw, message_id) in enumerate(zip(raws, ids, strict=True)):
            wait = started + index / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            client.append("INBOX", raw)
            with lock:
                arrived[message_id] = time.monotonic()
        late = time.monotonic() - started - len(raws) / rate
        if late > 0.5:
            print(f"  (appending fell {late:.1f}s behind the schedule)")
    return arrived


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[40, 150])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    for rate in args.rates:
        run_rate(rate, args.seconds, args.database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
