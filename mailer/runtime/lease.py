"""One intake per mailbox: a lease row in the database, renewed while held.

A second daemon finds the lease held and waits as a hot standby. A lease whose holder is a dead
process on this host is taken over at once, so a restart after kill -9 does not wait for expiry.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mailer.ledger.db import Database, Lease, utcnow

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(seconds=60)
# How often a standby asks for the lease: a dead holder on this host is replaced within this time.
STANDBY_POLL = 2.0

_process: tuple[int, str] | None = None


def new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def process_id() -> str:
    """This process's name in the ledger (outbox claims), in the holder format; new after a fork."""
    global _process
    if _process is None or _process[0] != os.getpid():
        _process = (os.getpid(), new_holder())
    return _process[1]


def holder_is_dead(holder: str) -> bool:
    """True only for a process of this host that no longer exists; anything else may be alive."""
    return _holder_is_dead(holder)


def _holder_is_dead(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def acquire(db: Database, name: str, holder: str, ttl: timedelta = LEASE_TTL) -> bool:
    """Take or renew the lease; False if someone else holds it."""
    now = utcnow()
    try:
        with db.session() as session:
            lease = session.get(Lease, name, with_for_update=True)
            if lease is None:
                session.add(Lease(name=name, holder=holder, expires_at=now + ttl))
                return True
            if lease.holder == holder or lease.expires_at < now or _holder_is_dead(lease.holder):
                lease.holder, lease.expires_at = holder, now + ttl
                return True
            return False
    except IntegrityError:  # another daemon inserted the row first
        return False


def release(db: Database, name: str, holder: str) -> None:
    with db.session() as session:
        lease = session.get(Lease, name, with_for_update=True)
        if lease is not None and lease.holder == holder:
            session.delete(lease)


class LeaseKeeper:
    """Renews a lease when a third of its life has passed; called often, it writes seldom.

    `on_acquired` runs each time the lease becomes ours after someone else held it (a standby taking
    over): the work the previous holder had in hand is re-derived from the ledger then. With the database
    away the lease counts as lost: serving without being able to renew could overlap a successor.
    """

    def __init__(self, db: Database, name: str, holder: str, ttl: timedelta = LEASE_TTL,
                 on_acquired: Callable[[], None] | None = None) -> None:
        self.db, self.name, self.holder, self.ttl = db, name, holder, ttl
        self.on_acquired = on_acquired
        self._renewed_at = float("-inf")
        self.held = False
        self._was_refused = False

    def __call__(self) -> bool:
        if time.monotonic() - self._renewed_at < self.ttl.total_seconds() / 3:
            return True
        try:
            acquired = acquire(self.db, self.name, self.holder, self.ttl)
        except SQLAlchemyError as exc:
            log.warning("lease %s: database unavailable (%s)", self.name, type(exc).__name__)
            acquired = False
        if acquired:
            self._renewed_at = time.monotonic()
            if not self.held:
                log.info("lease %s acquired by %s", self.name, self.holder)
                self.held = True
                if self._was_refused and self.on_acquired is not None:
                    self.on_acquired()
            return True
        self._renewed_at = float("-inf")
        self.held, self._was_refused = False, True
        return False
