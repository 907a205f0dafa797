"""Ingest benchmark: N realistic mails through IMAP → pipeline → SMTP, against the fetch+parse floor.

    python bench/ingest.py [--mails 2000] [--database sqlite|postgres] [--threads 4] [--count]
    python bench/ingest.py --database postgres --broker redis --workers N   # N = 0: the intake alone
    python bench/ingest.py --observe both   # the cost of the [http] endpoint and JSON logs, in one run

Appends N customer mails of 5–50 KB (a fifth with a screenshot) to a real IMAP server (Dovecot when
installed and run as root, else the embedded pymap server). Then, in the same run and over the same
mailbox, measures the floor (imapclient FETCH in batches of 200 + `mailparser.parse_from_bytes`, nothing
else) and runs `supportd run --once` as a separate process against it and an aiosmtpd sink in this
process. Prints supportd's time as a multiple of the floor's, messages per second, the time to the first
acknowledgement, acknowledgements sent per 10 % of mails processed, and with `--count` SQL statements
and commits per mail (every process of supportd counted, `bench/count_sql.py`).

With `--broker redis --workers N`, `supportd run --once` is the intake only (no worker threads) and N
`supportd worker` processes do the pipeline and the sending; N = 0 times the intake alone (until every
mail is stored).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import tomli_w
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import bulk_mail
from mailer.ledger import migrate
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Database, Outbox, RawMessage, Ticket
from tests.servers import Dovecot, Mailbox, Pymap, dovecot_available

FLOOR_BATCH = 200
BENCH = Path(__file__).resolve().parent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")


def measure_floor(mailbox: Mailbox) -> float:
    """Seconds to fetch every mail in batches of 200 and parse each with mail-parser: nothing else."""
    import mailparser

    started = time.perf_counter()
    with mailbox.client() as client:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["ALL"]))
        for start in range(0, len(uids), FLOOR_BATCH):
            for data in client.fetch(uids[start:start + FLOOR_BATCH], ["BODY.PEEK[]"]).values():
                mailparser.parse_from_bytes(bytes(data[b"BODY[]"]))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--threads", type=int, default=4, help="worker threads in the daemon")
    parser.add_argument("--broker", choices=["embedded", "redis"], default="embedded")
    parser.add_argument("--workers", type=int, default=None, help="`supportd worker` processes (redis broker)")
    parser.add_argument("--count", action="store_true", help="count SQL statements and commits per mail")
    parser.add_argument("--observe", choices=["off", "on", "both"], default="off",
                        help="on: the [http] endpoint served and one JSON log line per mail (INFO); "
                             "both: a run without, then one with, each over its own mailbox and database")
    args = parser.parse_args()
    if args.broker == "redis" and args.workers is None:
        parser.error("--broker redis needs --workers N")
    if args.broker == "redis" and args.observe != "off":
        parser.error("--observe is for the embedded daemon (worker processes would share the endpoint's port)")

    backend = (Dovecot() if dovecot_available() else Pymap()).start()
    sink = SmtpSink().start()
    try:
        modes = {"off": [False], "on": [True], "both": [False, True]}[args.observe]
        figures = []
        for observe in modes:
            if len(modes) > 1:
                print(f"--- {'with' if observe else 'without'} the [http] endpoint and JSON logs (INFO) ---")
            result = _one_run(args, backend, sink, observe)
            if result is None:
                return 1
            figures.append(result)
        if len(figures) == 2:
            (off_ratio, off_cpu), (on_ratio, on_cpu) = figures
            print(f"metrics endpoint + JSON logs: CPU per mail {off_cpu * 1000:.2f} → {on_cpu * 1000:.2f} ms "
                  f"({(on_cpu - off_cpu) * 1000:+.2f} ms, {(on_cpu / off_cpu - 1) * 100:+.0f} %); "
                  f"× floor time {off_ratio:.1f} → {on_ratio:.1f}")
        return 0
    finally:
        sink.stop()
        backend.stop()


def _one_run(args: argparse.Namespace, backend: Dovecot | Pymap, sink: SmtpSink,
             observe: bool) -> tuple[float, float] | None:
    """One mailbox, one database, one daemon run; returns (× the floor's time, CPU seconds per mail)."""
    workdir = Path(tempfile.mkdtemp(prefix="supportd-bench-"))
    mailbox = backend.new_mailbox()
    delivered_before = len(sink.delivered)
    try:
        db_url = _database(args.database, workdir)
        broker: dict[str, object] = {"worker_threads": args.threads}
        if args.broker == "redis":
            broker = {"url": "redis://127.0.0.1:6379/0", "namespace": f"supportd-bench-{os.getpid()}-{observe}",
                      "worker_threads": 0}
        settings: dict[str, object] = {
            "mailboxes": [{"name": "bench", "url": mailbox.url(), "batch_size": 200}],
            "smtp": {"url": sink.url, "from_address": "support@desk.example"},
            "database": {"url": db_url},
            "broker": broker,
            "desk": {"once_timeout": 1800},
            "paths": {"storage": str(workdir / "data")},
        }
        if observe:
            settings["http"] = {"listen": f"127.0.0.1:{_free_port()}"}
        config_path = workdir / "supportd.toml"
        config_path.write_text(tomli_w.dumps(settings))
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

        cpu_started = time.process_time()
        floor = measure_floor(mailbox)
        floor_cpu = time.process_time() - cpu_started
        print(f"floor (FETCH in batches of {FLOOR_BATCH} + mailparser.parse_from_bytes): {floor:.2f}s = "
              f"{args.mails / floor:.0f} mails/s; {floor_cpu / args.mails * 1000:.2f} ms CPU per mail")

        counts = workdir / "counts.txt"
        children_cpu = _children_cpu()
        run_started = datetime.now(UTC)
        logging = ["--log-level", "INFO", "--log-format", "json"] if observe else ["--log-level", "WARNING"]
        if args.broker == "redis":
            elapsed, peak_rss_mb = _run_scaled(args, config_path, db, counts, logging)
        else:
            elapsed, peak_rss_mb = _run_daemon(args, config_path, counts, logging, extra=[])
        if elapsed is None:
            return None
        cpu = (_children_cpu() - children_cpu) / args.mails
        print(f"database: {args.database}; broker: {_broker_text(args)}; load average {os.getloadavg()[0]:.1f}")
        print(f"supportd: {args.mails} mails in {elapsed:.2f}s = {args.mails / elapsed:.0f} mails/s "
              f"(start-up included) = {elapsed / floor:.1f}× the floor's time; CPU of all its processes "
              f"{cpu * 1000:.2f} ms per mail = {cpu * args.mails / floor_cpu:.1f}× the floor's CPU")
        if args.broker == "redis" and args.workers == 0:
            return elapsed / floor, cpu
        _report_ledger(db, args.mails, run_started, len(sink.delivered) - delivered_before)
        if args.count and counts.exists():
            statements, commits = (sum(int(line.split()[i]) for line in counts.read_text().splitlines())
                                   for i in (0, 1))
            print(f"SQL per mail (all supportd processes, start-up included): {statements / args.mails:.1f} "
                  f"statements, {commits / args.mails:.3f} commits")
        print(f"daemon peak RSS: {peak_rss_mb:.0f} MB")
        db.dispose()
        return elapsed / floor, cpu
    finally:
        mailbox.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _supportd(args: argparse.Namespace, counts: Path) -> list[str]:
    prefix = os.environ.get("SUPPORTD_BENCH_WRAP", "").split()
    if args.count:
        return [*prefix, sys.executable, str(BENCH / "count_sql.py"), str(counts)]
    return [*prefix, sys.executable, "-m", "mailer"]


def _run_daemon(args: argparse.Namespace, config_path: Path, counts: Path, logging: list[str],
                extra: list[str]) -> tuple[float | None, float]:
    started = time.perf_counter()
    result = subprocess.run([*_supportd(args, counts), *logging, "run", "--config", str(config_path),
                             "--once", *extra], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return None, peak_rss_mb
    return elapsed, peak_rss_mb


def _run_scaled(args: argparse.Namespace, config_path: Path, db: Database,
                counts: Path, logging: list[str]) -> tuple[float | None, float]:
    """One intake (`run --once`, no worker threads) plus N `supportd worker` processes."""
    command = [*_supportd(args, counts), *logging]
    workers = [subprocess.Popen([*command, "worker", "--config", str(config_path), "--threads", str(args.threads)])
               for _ in range(args.workers)]
    try:
        if args.workers == 0:
            return _intake_alone(command, config_path, db, args.mails)
        return _run_daemon(args, config_path, counts, logging, extra=[])
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)


def _intake_alone(command: list[str], config_path: Path, db: Database, mails: int) -> tuple[float | None, float]:
    started = time.perf_counter()
    intake = subprocess.Popen([*command, "run", "--config", str(config_path), "--once"])
    try:
        while _stored(db) < mails:
            if intake.poll() is not None:
                return None, 0.0
            time.sleep(0.05)
        return time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    finally:
        intake.terminate()
        intake.wait(60)


def _children_cpu() -> float:
    """User + system seconds of the finished child processes (and theirs), e.g. supportd and its pool."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stored(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(RawMessage)) or 0


def _report_ledger(db: Database, mails: int, run_started: datetime, delivered: int) -> None:
    with db.reading() as session:
        processed = sorted(at for at in session.scalars(select(RawMessage.processed_at)) if at)
        statuses = dict(session.execute(select(RawMessage.status, func.count()).group_by(RawMessage.status)).all())
        tickets = session.scalar(select(func.count()).select_from(Ticket)) or 0
        sent = sorted(at for at in session.scalars(select(Outbox.sent_at).where(Outbox.status == "sent")) if at)
        arrivals = dict(session.execute(select(RawMessage.ticket_id, RawMessage.received_at)).all())
        pairs = session.execute(select(Outbox.ticket_id, Outbox.sent_at)).all()
    latencies = [(sent_at - arrivals[ticket]).total_seconds() for ticket, sent_at in pairs if sent_at]
    print(f"ledger: {statuses}; {tickets} tickets; {len(sent)} replies marked sent; {delivered} received by the sink")
    if not sent or not processed:
        return
    print(f"first acknowledgement sent {(sent[0] - run_started).total_seconds():.2f}s after the daemon started; "
          f"arrival to reply sent: p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
          f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms")
    curve, worst = [], 0.0
    for tenth in range(1, 11):
        moment = processed[min(len(processed), round(len(processed) * tenth / 10)) - 1]
        share = sum(1 for at in sent if at <= moment) / len(sent)
        curve.append(f"{share * 100:.0f}")
        worst = max(worst, tenth / 10 - share)
    print(f"acknowledgements sent (% of all) when 10, 20 … 100 % of mails were processed: {' '.join(curve)}; "
          f"furthest below the diagonal: {worst * 100:.0f} points")


def _broker_text(args: argparse.Namespace) -> str:
    if args.broker == "redis":
        return f"redis, one intake + {args.workers} `supportd worker` processes × {args.threads} threads"
    return f"embedded, {args.threads} worker threads"


def _database(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    import psycopg

    name = f"supportd_bench_{int(time.time())}_{os.getpid()}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


if __name__ == "__main__":
    sys.exit(main())
