"""One intake per mailbox: a lease row in the database, renewed while held.

A second daemon finds the lease held and waits as a hot standby. A lease whose holder is a dead
process on this host is taken over at once, so a restart after kill -9 does not wait for expiry.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from mailer.db import Database, Lease, utcnow

LEASE_TTL = timedelta(seconds=60)


def new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
    """Renews a lease when a third of its life has passed; called often, it writes seldom."""

    def __init__(self, db: Database, name: str, holder: str, ttl: timedelta = LEASE_TTL) -> None:
        self.db, self.name, self.holder, self.ttl = db, name, holder, ttl
        self._renewed_at = float("-inf")

    def __call__(self) -> bool:
        if time.monotonic() - self._renewed_at < self.ttl.total_seconds() / 3:
            return True
        if acquire(self.db, self.name, self.holder, self.ttl):
            self._renewed_at = time.monotonic()
            return True
        self._renewed_at = float("-inf")
        return False
