"""Servers of a test's own that it may stop and start (PostgreSQL, Redis), daemons as processes, and the
ledger assertions every outage test ends with: each mail one ticket entry, each ticket one acknowledgement.

The machine's PostgreSQL and Redis serve other tests; an outage test never touches them.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from email import message_from_bytes
from pathlib import Path

from sqlalchemy import func, select

from mailer.demo.embedded import Delivered, free_port
from mailer.ledger.db import Database, Outbox, RawMessage, TicketMessage
from tests.servers import Dovecot

SUPPORTD = str(Path(sys.executable).parent / "supportd")


def readyz(port: int) -> int:
    """The status /readyz answers (0: no answer at all), asked with a real HTTP client."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    """Seconds it took; fails the test with `what` if the condition does not come true in time."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


class SupportdProcess:
    """`supportd <command>` as a child process, its log kept in a file for the failure message."""

    def __init__(self, config: Path, *args: str, log: Path) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.process = subprocess.Popen([SUPPORTD, "--log-level", "INFO", *args, "--config", str(config)],
                                        stdout=self.handle, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 60) -> int:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.handle.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or the OOM killer would do it."""
        self.process.kill()
        self.process.wait()
        self.handle.close()


def stop_dovecot(dovecot: Dovecot) -> None:
    """Stop a Dovecot of the test's own as a crash or a restart would: its sessions die with it.

    The master's SIGTERM leaves running IMAP sessions alone (they finish on their own), which is not
    the outage under test; those processes (named after this instance) are ended by pid.
    """
    assert dovecot.process is not None
    instance = re.search(r"^instance_name = (\S+)$", dovecot.conf.read_text(), re.M)
    assert instance is not None
    dovecot.process.terminate()
    dovecot.process.wait(10)
    prefix = f"dovecot-{instance.group(1)}/".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "cmdline").read_bytes().startswith(prefix):
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            pass  # gone meanwhile


def _as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=120)


def postgres_available() -> bool:
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")) and os.geteuid() == 0 and shutil.which("runuser")


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory on a free port, run as the postgres OS user."""

    def __init__(self) -> None:
        self.bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="supportd-pg-"))
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        _as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                     "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PrivatePostgres:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        _as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                     str(self.dir / "server.log"), "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A redis-server without persistence on a free port: a restart empties it, as a crash would."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), 10, "redis-server to answer")
        client.close()
        return self

    def queued(self) -> int:
        """Messages waiting in every queue of the instance (dramatiq keeps them in lists)."""
        import redis

        client = redis.Redis(port=self.port)
        try:
            return sum(client.llen(key) for key in client.keys("*") if client.type(key) == b"list")
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _pings(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:
        return False


# --- the ledger -----------------------------------------------------------------------------------------

def finished(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).where(RawMessage.status != "pending")) or 0


def stored(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(RawMessage)) or 0


def replies_settled(db: Database) -> bool:
    with db.reading() as session:
        return not session.scalar(select(func.count()).where(Outbox.status.in_(("pending", "sending"))))


def acknowledgements(deliveries: Iterable[Delivered]) -> dict[str, set[str]]:
    """Message-IDs of the answers per mail answered (In-Reply-To)."""
    acks: dict[str, set[str]] = {}
    for mail in deliveries:
        msg = message_from_bytes(mail.data)
        acks.setdefault(msg["In-Reply-To"], set()).add(msg["Message-ID"])
    return acks


def assert_nothing_lost_or_doubled(db: Database, sent_ids: list[str], deliveries: list[Delivered]) -> None:
    with db.reading() as session:
        statuses = Counter(session.scalars(select(RawMessage.status)))
        recorded = Counter(session.scalars(select(TicketMessage.message_id).where(TicketMessage.direction == "in")))
        per_ticket = Counter(session.scalars(select(TicketMessage.ticket_id).where(TicketMessage.direction == "in")))
        outbox = Counter(session.scalars(select(Outbox.status)))
    assert statuses == {"done": len(sent_ids)}, statuses
    assert sorted(recorded) == sorted(sent_ids), "every mail must be exactly one ticket entry"
    assert set(recorded.values()) == {1}
    assert set(per_ticket.values()) == {1}, "each test mail opens a ticket of its own"
    assert outbox == {"sent": len(sent_ids)}, outbox
    acks = acknowledgements(deliveries)
    assert sorted(acks) == sorted(sent_ids), "every ticket gets an acknowledgement"
    assert all(len(ids) == 1 for ids in acks.values()), "a customer got two different acknowledgements"
