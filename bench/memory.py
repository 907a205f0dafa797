"""Memory benchmark: the daemon's RSS over a long run, and what one 30 MB mail costs at the peak.

    python bench/memory.py [--mails 100000] [--every 10000] [--part flat|large|both] [--attachment-mb 22]

`flat`: N customer mails (`bulk_mail`, 5–50 KB, a fifth with a screenshot) through one `supportd run`
(SQLite, embedded broker, its parse pool), acknowledgements to an aiosmtpd sink in this process. Every
K mails processed (raw rows no longer pending), the RSS of the daemon and of each of its child
processes (the parse pool; the resource tracker multiprocessing starts beside it) is read from
/proc/<pid>/status and printed as a table, with the daemon's growth from the first sample to the last.

`large`: one mail with a PDF-like attachment of `--attachment-mb` MB (base64, about 30 MB of mail)
through a fresh daemon, against a fresh daemon given one small mail: the peak RSS (VmHWM) of each
process in both runs, and its rise as a multiple of the mail's size.

With Dovecot, the mailbox is filled by writing the mails into its Maildir (new/), as a local delivery
agent would: 100,000 IMAP APPENDs take minutes, and the intake fetches the same mails either way.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailer.config.records import MB
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import bulk_mail, mail_with_attachment
from mailer.ledger import migrate
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Database
from tests.servers import Dovecot, Mailbox, Pymap, dovecot_available

DOVECOT_UID = 65534
POLL = 0.2
MAX_MESSAGE_BYTES = 50 * MB  # the default of [desk] max_message_bytes, written out so the run says it


# --- processes --------------------------------------------------------------------------------------

def status_kb(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in kB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def children(pid: int) -> dict[int, str]:
    """The direct child processes of `pid`, each named by what it runs."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = "tracker" if "resource_tracker" in cmdline else "pool"
    return found


class Daemon:
    """`supportd run` as a child process, its children found by their parent pid."""

    def __init__(self, config: Path, mmap_threshold: int | None) -> None:
        env = dict(os.environ)
        if mmap_threshold:  # a fixed threshold: glibc no longer raises it after freeing a large block
            env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
        self.process = subprocess.Popen([sys.executable, "-m", "mailer", "--log-level", "WARNING", "run",
                                         "--config", str(config)], env=env)

    def pids(self) -> dict[int, str]:
        """The daemon first, then its pool processes, then anything else it started."""
        named = sorted(children(self.process.pid).items(), key=lambda item: (item[1] != "pool", item[0]))
        return {self.process.pid: "daemon", **dict(named)}

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the world: mailbox, database, config -----------------------------------------------------------

@dataclass
class Setup:
    workdir: Path
    mailbox: Mailbox
    config: Path
    db_path: Path


def prepare(backend: Dovecot | Pymap, sink: SmtpSink, customers: int, args: argparse.Namespace) -> Setup:
    workdir = Path(tempfile.mkdtemp(prefix="supportd-memory-"))
    mailbox = backend.new_mailbox()
    db_path = workdir / "bench.db"
    db_url = f"sqlite:///{db_path}"
    settings = {
        "mailboxes": [{"name": "bench", "url": mailbox.url(), "batch_size": 200}],
        "smtp": {"url": sink.url, "from_address": "support@desk.example"},
        "database": {"url": db_url},
        "broker": {"worker_threads": args.threads, "reconcile_interval": args.reconcile_interval},
        "desk": {"max_message_bytes": MAX_MESSAGE_BYTES},
        "paths": {"storage": str(workdir / "data")},
    }
    config = workdir / "supportd.toml"
    config.write_text(tomli_w.dumps(settings))
    migrate.upgrade(db_url)
    accounts = workdir / "accounts.csv"
    with accounts.open("w") as out:
        out.write("email,user_id,language,display_name\n")
        out.writelines(f"customer{i}@example.net,{10_000_000 + i},{'zh' if i % 3 == 0 else 'en'},Customer {i}\n"
                       for i in range(customers))
    db = Database(db_url)
    import_accounts(db, accounts)
    db.dispose()
    return Setup(workdir, mailbox, config, db_path)


def fill(backend: Dovecot | Pymap, mailbox: Mailbox, raws: Iterable[bytes]) -> tuple[int, int, str]:
    """Put the mails in the mailbox; returns (count, bytes, how)."""
    if isinstance(backend, Dovecot):
        return (*write_maildir(backend.dir / "mail" / mailbox.user, raws), "written into the Maildir")
    count = size = 0
    with mailbox.client() as client:
        for raw in raws:
            client.append("INBOX", raw)
            count, size = count + 1, size + len(raw)
    return count, size, "IMAP APPEND"


def write_maildir(root: Path, raws: Iterable[bytes]) -> tuple[int, int]:
    """Deliver into Maildir new/ (tmp/ first, then renamed, as a delivery agent does).

    The names carry the size and the size with CRLF line ends (S=, W=), so Dovecot answers RFC822.SIZE
    without reading each file; names sort in delivery order."""
    for sub in ("", "tmp", "new", "cur"):
        (root / sub).mkdir(exist_ok=True)
        os.chown(root / sub, DOVECOT_UID, DOVECOT_UID)
    started, count, size = int(time.time()) - 1_000_000, 0, 0
    for count, raw in enumerate(raws, 1):
        virtual = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")
        name = f"{started + count}.M{count:07d}P{os.getpid()}.bench,S={len(raw)},W={virtual}"
        tmp = root / "tmp" / name
        tmp.write_bytes(raw)
        os.chown(tmp, DOVECOT_UID, DOVECOT_UID)
        tmp.rename(root / "new" / name)
        size += len(raw)
    return count, size


def customer_mails(count: int) -> Iterator[bytes]:
    rng = random.Random(2026)
    for i in range(count):
        yield bulk_mail(i, f"Customer {i} <customer{i}@example.net>", rng)


class Ledger:
    """Counts read straight from the SQLite file, beside the daemon's writes (WAL)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def count(self, sql: str) -> int:
        for _ in range(50):
            try:
                return int(self.conn.execute(sql).fetchone()[0])
            except sqlite3.OperationalError:  # busy for a moment
                time.sleep(0.1)
        raise RuntimeError(f"ledger unreadable: {sql}")

    def stored(self) -> int:
        return self.count("SELECT count(*) FROM raw_messages")

    def processed(self) -> int:
        return self.stored() - self.count("SELECT count(*) FROM raw_messages WHERE status = 'pending'")

    def replies_waiting(self) -> int:
        return self.count("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')")

    def close(self) -> None:
        self.conn.close()


def wait_until_done(daemon: Daemon, ledger: Ledger, mails: int, timeout: float) -> bool:
    """Until every mail is processed and every reply sent (or the daemon died, or time ran out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and daemon.alive():
        if ledger.processed() >= mails and ledger.replies_waiting() == 0:
            return True
        time.sleep(POLL)
    return False


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


# --- flat: RSS over a long run ----------------------------------------------------------------------

def run_flat(args: argparse.Namespace, backend: Dovecot | Pymap, sink: SmtpSink) -> bool:
    setup = prepare(backend, sink, args.mails, args)
    started = time.perf_counter()
    count, size, how = fill(backend, setup.mailbox, customer_mails(args.mails))
    print(f"IMAP server: {backend.kind}; {count} mails ({size / 1e6:.0f} MB, mean {size / count / 1e3:.1f} KB) "
          f"{how} in {time.perf_counter() - started:.0f}s")
    delivered_before = len(sink.delivered)
    daemon, ledger = Daemon(setup.config, args.mmap_threshold), Ledger(setup.db_path)
    rows: list[tuple[str, float, int, dict[int, tuple[str, int]]]] = []
    try:
        started = time.perf_counter()
        while daemon.alive() and len(daemon.pids()) < 2:  # the pool is up: the first row shows it loaded
            time.sleep(POLL)
        next_mark = 0
        while daemon.alive():
            processed = ledger.processed()
            if processed >= next_mark:
                rows.append((str(processed), time.perf_counter() - started, ledger.stored(), rss_now(daemon)))
                print_row(rows[-1], header=len(rows) == 1)
                if processed >= args.mails:
                    break
                next_mark = (processed // args.every + 1) * args.every
            time.sleep(POLL)
        done = wait_until_done(daemon, ledger, args.mails, timeout=600)
        rows.append(("sent", time.perf_counter() - started, ledger.stored(), rss_now(daemon)))
        print_row(rows[-1], header=False)
        peaks = {pid: (name, status_kb(pid, "VmHWM")) for pid, name in daemon.pids().items()}
    finally:
        ledger.close()
        daemon.stop()
        shutil.rmtree(setup.workdir, ignore_errors=True)
    if not done:
        print("the daemon did not finish (died or timed out)", file=sys.stderr)
        return False
    elapsed = rows[-1][1]
    print(f"{args.mails} mails processed in {elapsed:.0f}s ({args.mails / elapsed:.0f} mails/s); "
          f"{len(sink.delivered) - delivered_before} acknowledgements received by the sink")
    print("peak RSS (VmHWM), MB: " + ", ".join(f"{name} {mb(kb)}" for name, kb in peaks.values()))
    summarize_growth(rows)
    return True


def rss_now(daemon: Daemon) -> dict[int, tuple[str, int]]:
    return {pid: (name, status_kb(pid, "VmRSS")) for pid, name in daemon.pids().items()}


def print_row(row: tuple[str, float, int, dict[int, tuple[str, int]]], header: bool) -> None:
    processed, elapsed, stored, rss = row
    if header:
        names = [f"{name} {pid}" for pid, (name, _) in rss.items()]
        print(f"{'processed':>9} {'seconds':>7} {'stored':>7} " + " ".join(f"{n:>14}" for n in names)
              + f" {'sum':>6}   (RSS, MB)")
    print(f"{processed:>9} {elapsed:7.0f} {stored:7d} " + " ".join(f"{mb(kb):>14}" for _, kb in rss.values())
          + f" {mb(sum(kb for _, kb in rss.values())):>6}")


def summarize_growth(rows: list[tuple[str, float, int, dict[int, tuple[str, int]]]]) -> None:
    """The daemon's RSS from the first sample after the first mails to the last: what a long run adds."""
    daemon = [(row[0], next(kb for name, kb in row[3].values() if name == "daemon")) for row in rows]
    measured = daemon[1:] if len(daemon) > 2 else daemon
    (first_at, first), (_, last) = measured[0], measured[-1]
    highest = max(kb for _, kb in measured)
    print(f"daemon RSS: {mb(first)} MB at {first_at} processed, {mb(last)} MB at the end "
          f"({(last - first) / 1024:+.0f} MB), highest {mb(highest)} MB")


# --- large: the peak with one 30 MB mail ------------------------------------------------------------

def large_mail(attachment_mb: float) -> bytes:
    content = b"%PDF-1.7\n" + random.Random(7).randbytes(int(attachment_mb * 1_000_000))
    return mail_with_attachment("Customer 1 <customer1@example.net>", "Statement for my withdrawal",
                                "Hello, the bank statement is attached.\n\nRegards", "<large-1@mail.example.net>",
                                "statement.pdf", "application/pdf", content)


def small_mail() -> bytes:
    return bulk_mail(1, "Customer 1 <customer1@example.net>", random.Random(1), 20_000, 20_000)


def peak_of_one(args: argparse.Namespace, backend: Dovecot | Pymap, sink: SmtpSink, raw: bytes) -> dict[str, int]:
    """A fresh daemon given one mail: each process's VmHWM (kB) once it is processed and answered."""
    setup = prepare(backend, sink, 2, args)
    fill(backend, setup.mailbox, [raw])
    daemon, ledger = Daemon(setup.config, args.mmap_threshold), Ledger(setup.db_path)
    try:
        if not wait_until_done(daemon, ledger, 1, timeout=600):
            raise RuntimeError("the daemon did not process the mail")
        peaks = {f"{name} {i}" if name != "daemon" else name: status_kb(pid, "VmHWM")
                 for i, (pid, name) in enumerate(daemon.pids().items())}
        outcome = ledger.conn.execute("SELECT status, stage, error FROM raw_messages").fetchone()
        stored = ledger.conn.execute("SELECT size, refused_reason FROM attachments").fetchall()
    finally:
        ledger.close()
        daemon.stop()
        shutil.rmtree(setup.workdir, ignore_errors=True)
    print(f"  mail of {len(raw) / 1e3:,.0f} KB: ledger {outcome}; attachments (size, refused): {stored}")
    return peaks


def run_large(args: argparse.Namespace, backend: Dovecot | Pymap, sink: SmtpSink) -> bool:
    big, small = large_mail(args.attachment_mb), small_mail()
    if args.mmap_threshold:
        print(f"daemon run with MALLOC_MMAP_THRESHOLD_={args.mmap_threshold}")
    print(f"[desk] max_message_bytes = {MAX_MESSAGE_BYTES} (the default): the {len(big) / 1e6:.1f} MB mail fits")
    base = peak_of_one(args, backend, sink, small)
    peaks = peak_of_one(args, backend, sink, big)
    print(f"{'process':<10} {'small mail':>10} {'large mail':>10} {'rise':>6}  rise / mail size  (VmHWM, MB)")
    for name in peaks:
        rise = peaks[name] - base.get(name, 0)
        print(f"{name:<10} {mb(base.get(name, 0)):>10} {mb(peaks[name]):>10} {mb(rise):>6}  "
              f"{rise * 1024 / len(big):.2f}×")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000, help="sample every K mails processed")
    parser.add_argument("--part", choices=["flat", "large", "both"], default="both")
    parser.add_argument("--attachment-mb", type=float, default=22.0)
    parser.add_argument("--threads", type=int, default=4, help="worker threads in the daemon")
    parser.add_argument("--reconcile-interval", type=float, default=30.0, metavar="SECONDS",
                        help="[broker] reconcile_interval (default 30, the default); mails pending for twice "
                             "this are enqueued again, so a backlog longer than that is enqueued every round")
    parser.add_argument("--mmap-threshold", type=int, default=None, metavar="BYTES",
                        help="run the daemon with MALLOC_MMAP_THRESHOLD_=BYTES (glibc)")
    args = parser.parse_args()

    backend = (Dovecot() if dovecot_available() else Pymap()).start()
    sink = SmtpSink().start()
    try:
        ok = True
        if args.part in ("large", "both"):
            print("--- one large mail against one small mail, each through a fresh daemon ---")
            ok = run_large(args, backend, sink) and ok
        if args.part in ("flat", "both"):
            print(f"--- RSS every {args.every} of {args.mails} mails; [broker] reconcile_interval = "
                  f"{args.reconcile_interval:g} s ---")
            ok = run_flat(args, backend, sink) and ok
        return 0 if ok else 1
    finally:
        sink.stop()
        backend.stop()


if __name__ == "__main__":
    sys.exit(main())
