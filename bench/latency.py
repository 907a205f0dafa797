"""Latency under load: `supportd run` (IMAP IDLE) while mails arrive at a steady rate.

    python bench/latency.py [--rates 40 150] [--seconds 15] [--database sqlite|postgres] [--connections 4]
                            [--delivery append|maildir]

For each rate, a fresh mailbox and database; `supportd run` (the long-running daemon, embedded broker)
is started and given time to start, then customer mails (the ingest benchmark's corpus) are appended
at the rate for the given time, each of several IMAP connections (a process each) appending its share
when due. On two cores the APPENDs compete with the daemon for CPU and fall behind at high rates; with
`--delivery maildir` (Dovecot only) the mails are delivered as an MDA does, written into the mailbox's
maildir `tmp/` and renamed into `new/`, which costs almost nothing. Arrival is the moment the APPEND
returned (or the rename was done); the acknowledgement is the moment the SMTP sink received the reply
(matched by In-Reply-To).
Prints the rate the mails really arrived at, p50, p95 and max of arrival to acknowledgement, how many
mails were answered, and where the median mail's time went, from the ledger's timestamps: waiting to
be fetched (IDLE wake-up, FETCH, storing), waiting to be processed (batching, parsing pool, writing),
waiting to be sent (the sending queue, claiming) and the SMTP hand-over. `SUPPORTD_BENCH_WRAP` is put
in front of the daemon's command line, as in bench/ingest.py (a profiler, say).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from itertools import pairwise
from pathlib import Path
from typing import Any

import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from bench.ingest import _database, percentile
from mailer.demo.embedded import SinkHandler, SmtpSink
from mailer.demo.samples import bulk_mail
from mailer.ledger import migrate
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Database, Outbox, RawMessage
from tests.servers import Dovecot, Mailbox, Pymap, dovecot_available

DOVECOT_UID = 65534  # tests/servers.py: Dovecot serves every mailbox as nobody
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
            self.answered.setdefault(replying_to.strip(), time.time())
        return answer


def run_rate(rate: float, seconds: float, database: str, connections: int, delivery: str) -> None:
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
        rng = random.Random(2026)
        raws = [bulk_mail(i, f"Customer {i} <customer{i}@example.net>", rng) for i in range(count)]
        ids = [BytesHeaderParser().parsebytes(raw)["Message-ID"].strip() for raw in raws]

        wrap = os.environ.get("SUPPORTD_BENCH_WRAP", "").split()
        daemon = subprocess.Popen([*wrap, sys.executable, "-m", "mailer", "--log-level", "WARNING", "run",
                                   "--config", str(config_path)])
        try:
            time.sleep(STARTUP)
            if delivery == "maildir" and isinstance(backend, Dovecot):
                arrived = _deliver_steadily(backend.dir / "mail" / mailbox.user, raws, ids, rate)
            else:
                arrived = _append_steadily(mailbox, raws, ids, rate, connections)
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
        _report_segments(db, arrived, handler.answered)
        db.dispose()
    finally:
        mailbox.close()
        sink.stop()
        backend.stop()


def _append_steadily(mailbox: Mailbox, raws: list[bytes], ids: list[str], rate: float,
                     connections: int) -> dict[str, float]:
    """Mail i is due at i/rate; connection k appends mails k, k + n, k + 2n … each when it is due.

    Each connection is a process of its own: threads of this one would share the interpreter with the SMTP
    sink, which at 150 replies a second is busy enough to make them late."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go, start_at = context.Event(), context.Value("d", 0.0)
    shares = [[(index, ids[index], raws[index]) for index in range(k, len(raws), connections)]
              for k in range(connections)]
    address = replace(mailbox, server=None)  # where to connect; an embedded server stays in this process
    appenders = [context.Process(target=_append_share, args=(address, share, rate, ready, go, start_at, results))
                 for share in shares]
    for appender in appenders:
        appender.start()
    for _ in appenders:
        ready.get(timeout=60)  # signed in
    start_at.value = time.time()
    go.set()
    arrived: dict[str, float] = {}
    for _ in appenders:
        arrived.update(results.get())
    for appender in appenders:
        appender.join()
    _print_arrivals(arrived, start_at.value, len(raws), rate, f"over {connections} IMAP connections")
    return arrived


def _print_arrivals(arrived: dict[str, float], started: float, count: int, rate: float, how: str) -> None:
    span = max(arrived.values()) - started
    late = span - (count - 1) / rate
    print(f"  delivered {count} mails {how} in {span:.1f}s: {count / span:.0f} mails/s arrived"
          + (f" ({late:.1f}s behind the schedule)" if late > 0.5 else ""))


def _append_share(mailbox: Mailbox, share: list[tuple[int, str, bytes]], rate: float, ready: Any, go: Any,
                  start_at: Any, results: Any) -> None:
    arrived = {}
    with mailbox.client() as client:
        ready.put(True)
        go.wait()
        for index, message_id, raw in share:
            wait = start_at.value + index / rate - time.time()
            if wait > 0:
                time.sleep(wait)
            client.append("INBOX", raw)
            arrived[message_id] = time.time()
    results.put(arrived)


def _deliver_steadily(maildir: Path, raws: list[bytes], ids: list[str], rate: float) -> dict[str, float]:
    """Mail i is due at i/rate; written into tmp/ and renamed into new/ (where IDLE sees it) when it is due."""
    arrived: dict[str, float] = {}
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    started = time.time()
    for index, (raw, message_id) in enumerate(zip(raws, ids, strict=True)):
        wait = started + index / rate - time.time()
        if wait > 0:
            time.sleep(wait)
        name = f"{int(time.time())}.M{index}P{os.getpid()}.latency-bench,S={len(raw)}"
        written = maildir / "tmp" / name
        written.write_bytes(raw)
        os.chown(written, DOVECOT_UID, DOVECOT_UID)  # the user Dovecot serves the mailbox as
        written.rename(maildir / "new" / name)
        arrived[message_id] = time.time()
    _print_arrivals(arrived, started, len(raws), rate, "into the maildir")
    return arrived


def _report_segments(db: Database, arrived: dict[str, float], answered: dict[str, float]) -> None:
    """Median seconds of each part of the way, for the mails that were answered."""
    with db.reading() as session:
        raws = session.execute(select(RawMessage.message_id, RawMessage.ticket_id, RawMessage.received_at,
                                      RawMessage.processed_at)).all()
        claims = dict(session.execute(select(Outbox.ticket_id, Outbox.claimed_at).where(Outbox.purpose == "ack")).all())
    parts: dict[str, list[float]] = {"fetched": [], "processed": [], "claimed": [], "handed over": []}
    for message_id, ticket_id, received_at, processed_at in raws:
        claimed_at = claims.get(ticket_id)
        if message_id not in arrived or message_id not in answered or None in (processed_at, claimed_at):
            continue
        moments = [arrived[message_id], *map(_epoch, (received_at, processed_at, claimed_at)), answered[message_id]]
        for name, (before, after) in zip(parts, pairwise(moments), strict=True):
            parts[name].append(after - before)
    print("  median from arrival: " + ", ".join(
        f"{name} +{percentile(values, 0.5) * 1000:.0f} ms" for name, values in parts.items()) +
        f" (p95 of each: {', '.join(f'{percentile(values, 0.95) * 1000:.0f}' for values in parts.values())} ms)")


def _epoch(moment: datetime) -> float:
    """SQLite gives the ledger's UTC moments back without their zone."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[40, 150])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--connections", type=int, default=4, help="IMAP connections appending at once")
    parser.add_argument("--delivery", choices=["append", "maildir"], default="append",
                        help="IMAP APPEND, or files renamed into the maildir as an MDA delivers (Dovecot only)")
    args = parser.parse_args()
    for rate in args.rates:
        run_rate(rate, args.seconds, args.database, args.connections, args.delivery)
    return 0


if __name__ == "__main__":
    sys.exit(main())
