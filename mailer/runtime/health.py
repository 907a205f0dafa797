"""What this process knows about itself: its loops' heartbeats and each mailbox's last sync or error.

`/healthz` asks "is the process alive and are its loops turning" (each loop promises its next beat
within some time; a promise broken means a stuck loop). `/readyz` asks "can it do its work": the
database and broker answer, every mailbox this process serves synced recently and is not failing,
no reply has failed after its retries lately, and the oldest waiting mail is not growing old. These are
the conditions a mail operator pages on: a silent mailbox, failed sends, a growing backlog.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, text

from mailer.ledger.db import Database, Lease, Outbox, RawMessage, utcnow

# A reply that failed after its retries within this window keeps /readyz at 503 (someone must look).
FAILED_REPLY_WINDOW = timedelta(hours=1)
# A claim older than this means a sender died mid-conversation and the reconciler has not caught up.
STUCK_SENDING = timedelta(minutes=10)
# The oldest pending mail may wait this long before the backlog counts as growing.
BACKLOG_BOUND = timedelta(minutes=10)


@dataclass
class MailboxState:
    bound: float  # seconds between successful syncs beyond which the mailbox counts as silent
    last_sync: float | None = None  # time.time() of the last successful sync
    last_error: str | None = None  # set by a failure, cleared by the next successful sync
    reconnects: int = 0


@dataclass
class Check:
    ok: bool
    detail: str
    data: dict[str, object] = field(default_factory=dict)  # facts for `supportd status`

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail, **self.data}


@dataclass
class Health:
    """Process-wide state; the loops write it (cheap dict updates), the HTTP handlers read it."""

    holder: str | None = None  # this process's lease holder id, when it runs intake
    relay_error: str | None = None  # the last transient SMTP failure of this process, until a send succeeds
    mailboxes: dict[str, MailboxState] = field(default_factory=dict)
    _beats: dict[str, float] = field(default_factory=dict)  # loop name -> monotonic deadline
    _liveness: dict[str, Callable[[], Check]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- written by the loops ------------------------------------------------------------------

    def beat(self, loop: str, within: float) -> None:
        """The loop is turning and promises its next beat within `within` seconds."""
        self._beats[loop] = time.monotonic() + within

    def forget(self, loop: str) -> None:
        self._beats.pop(loop, None)

    def watch(self, name: str, check: Callable[[], Check]) -> None:
        """A liveness check of a part that cannot beat itself (dramatiq's worker threads)."""
        self._liveness[name] = check

    def watch_mailbox(self, name: str, bound: float) -> None:
        with self._lock:
            self.mailboxes.setdefault(name, MailboxState(bound))

    def synced(self, mailbox: str) -> None:
        state = self.mailboxes.get(mailbox)
        if state is not None:
            state.last_sync, state.last_error = time.time(), None
        self.turning(mailbox)

    def turning(self, mailbox: str) -> None:
        state = self.mailboxes.get(mailbox)
        self.beat(f"intake:{mailbox}", state.bound if state else 600.0)

    def failed(self, mailbox: str, error: str) -> None:
        state = self.mailboxes.get(mailbox)
        if state is not None:
            state.last_error = error
            state.reconnects += 1
        self.turning(mailbox)  # a failing loop still turns: it retries within the backoff cap

    def relay(self, error: str | None) -> None:
        """After each SMTP attempt: the relay's transient failure (4xx, refused, timed out) or None."""
        self.relay_error = error

    def reset(self) -> None:
        """Forget everything (a process that starts a second daemon, as the tests do)."""
        with self._lock:
            self.holder = None
            self.relay_error = None
            self.mailboxes.clear()
            self._beats.clear()
            self._liveness.clear()

    # --- read by /healthz and /readyz ----------------------------------------------------------

    def liveness(self) -> dict[str, Check]:
        now = time.monotonic()
        checks = {loop: Check(now <= deadline, "turning" if now <= deadline else
                              f"no heartbeat for {now - deadline:.0f}s past its promise")
                  for loop, deadline in sorted(self._beats.items())}
        for name, check in sorted(self._liveness.items()):
            checks[name] = check()
        return checks

    def readiness(self, db: Database, broker_url: str) -> dict[str, Check]:
        checks = {"database": database_check(db), "broker": broker_check(broker_url)}
        if self.relay_error is not None:  # replies wait in the outbox and are retried; someone should know
            checks["relay"] = Check(False, f"failing: {self.relay_error}")
        if checks["database"].ok:
            held = self.leases_held(db)
            for name, state in sorted(self.mailboxes.items()):
                if name in held:
                    checks[f"mailbox:{name}"] = mailbox_check(state)
            checks["replies"] = replies_check(db)
            checks["backlog"] = backlog_check(db)
        return checks

    def leases_held(self, db: Database) -> set[str]:
        """Mailboxes whose lease this process holds now."""
        if self.holder is None:
            return set()
        with db.reading() as session:
            names = session.scalars(select(Lease.name).where(Lease.holder == self.holder,
                                                             Lease.expires_at > utcnow()))
            return {name.removeprefix("intake:") for name in names}


HEALTH = Health()


def database_check(db: Database) -> Check:
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure is the answer: not reachable
        return Check(False, f"unreachable: {_first_line(exc)}")
    return Check(True, "reachable")


def broker_check(url: str) -> Check:
    if url == "embedded":
        return Check(True, "embedded (in this process)")
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        try:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            return Check(False, f"unreachable: {_first_line(exc)}")
        return Check(True, "answers PING")
    # AMQP: a TCP connection that the server accepts; a full handshake per scrape would be heavy.
    try:
        socket.create_connection((parts.hostname or "localhost", parts.port or 5672), timeout=2).close()
    except OSError as exc:
        return Check(False, f"unreachable: {exc}")
    return Check(True, "accepts connections")


def mailbox_check(state: MailboxState) -> Check:
    facts: dict[str, object] = {"last_sync": state.last_sync, "last_error": state.last_error,
                                "reconnects": state.reconnects}
    if state.last_error is not None:
        return Check(False, f"failing: {state.last_error}", facts)
    if state.last_sync is None:
        return Check(False, "not synced yet", facts)
    age = time.time() - state.last_sync
    if age > state.bound:
        return Check(False, f"last sync {age:.0f}s ago (bound {state.bound:.0f}s)", facts)
    return Check(True, f"synced {age:.0f}s ago", facts)


def replies_check(db: Database) -> Check:
    now = utcnow()
    with db.reading() as session:
        failed = session.scalar(select(func.count()).where(
            Outbox.status == "failed", Outbox.claimed_at > now - FAILED_REPLY_WINDOW)) or 0
        stuck = session.scalar(select(func.count()).where(
            Outbox.status == "sending", Outbox.claimed_at < now - STUCK_SENDING)) or 0
    if failed or stuck:
        return Check(False, f"{failed} replies failed after their retries in the last hour, "
                            f"{stuck} stuck in sending")
    return Check(True, "none failed or stuck")


def backlog_check(db: Database) -> Check:
    with db.reading() as session:
        oldest = session.scalar(select(func.min(RawMessage.received_at)).where(RawMessage.status == "pending"))
    if oldest is None:
        return Check(True, "no mail waiting")
    age = utcnow() - oldest
    if age > BACKLOG_BOUND:
        return Check(False, f"oldest pending mail waits {age.total_seconds():.0f}s")
    return Check(True, f"oldest pending mail waits {age.total_seconds():.0f}s")


def _first_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
