"""Which faults are transient (the database or the broker away for a while) and how to ride them out.

A transient fault is retried, never quarantined: the mail did nothing wrong. Permanent faults (a stage
that raises on this mail) keep going to quarantine. Retrying is always safe here because every step is
idempotent against the ledger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, PendingRollbackError

log = logging.getLogger(__name__)

T = TypeVar("T")

# A lost connection or a server shutting down (psycopg's AdminShutdown is an OperationalError), a closed
# connection handle, SQLite's "database is locked", or a session whose connection died mid-transaction.
DATABASE_TRANSIENT = (OperationalError, InterfaceError, PendingRollbackError)


class ServiceUnavailable(Exception):
    """A service besides the ledger is away or too slow for now (e.g. the live account directory)."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (*DATABASE_TRANSIENT, ServiceUnavailable)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def retrying(what: str, step: Callable[[], T], *, attempts: int = 8, first_delay: float = 0.5,
             max_delay: float = 15.0) -> T:
    """Run `step`, repeating it while the database is away (about a minute in all by default).

    For writes that must not be lost once their effect happened elsewhere, such as recording that the
    relay accepted a mail: giving up there would make the reconciler send it again.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts:
                raise
            log.warning("%s: database unavailable (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")
