"""A journal of mails the relay accepted, written the moment its 250 arrives.

The outbox marks a batch `sent` in one transaction after the batch has gone out: a kill -9 between a
relay's 250 and that commit leaves rows `sending`, and whoever takes the dead process's claims back would
send them again. One `write()` of the row id to a file of this thread's own closes that window to the
time between the 250 and the system call: a killed process's writes are already the kernel's. Whoever
gives back a dead process's claims (`mailer/runtime/reconcile.py`) first reads its journals and marks those rows
sent. A thread empties its journal once its batch is marked, so a journal holds at most one batch.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from mailer.ledger.db import Outbox, TicketEvent, utcnow
from mailer.runtime import lease

log = logging.getLogger(__name__)


def journal_dir(storage_dir: Path) -> Path:
    return storage_dir / "sent-journal"


def _file_stem(claimant: str) -> str:
    """A claimant (`host:pid:nonce`) as a file name; the same mapping finds the files again."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", claimant)


class SentLog:
    """This process's journals, one per sending thread (a thread empties its own without locks)."""

    def __init__(self, storage_dir: Path) -> None:
        self.directory = journal_dir(storage_dir)
        self._local = threading.local()

    def _fd(self) -> int:
        owner = (os.getpid(), threading.get_ident())
        if getattr(self._local, "owner", None) != owner:  # new thread, or a forked child
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{_file_stem(lease.process_id())}.{threading.get_ident()}.log"
            self._local.fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._local.owner = owner
        fd: int = self._local.fd
        return fd

    def accepted(self, outbox_id: int) -> None:
        """The relay said 250 for this row."""
        try:
            os.write(self._fd(), f"{outbox_id}\n".encode())
        except OSError as exc:  # a full or read-only disk costs the protection, never the sending
            log.warning("sent journal: %s", exc)

    def marked(self) -> None:
        """This thread's accepted rows are committed as sent: its journal is empty again."""
        if getattr(self._local, "owner", None) == (os.getpid(), threading.get_ident()):
            os.ftruncate(self._local.fd, 0)


def recover(session: Session, storage_dir: Path, dead_claimants: Iterable[str]) -> int:
    """Mark sent what dead processes' journals say the relay accepted; remove those journals."""
    directory = journal_dir(storage_dir)
    recovered = 0
    for claimant in dead_claimants:
        files = sorted(directory.glob(f"{_file_stem(claimant)}.*.log")) if directory.is_dir() else []
        ids = {int(line) for path in files for line in path.read_text().split() if line.isdigit()}
        if ids:
            recovered += _mark(session, claimant, ids)
        for path in files:
            path.unlink(missing_ok=True)
    return recovered


def _mark(session: Session, claimant: str, ids: set[int]) -> int:
    rows = session.execute(select(Outbox.id, Outbox.ticket_id, Outbox.purpose, Outbox.to_address,
                                  Outbox.message_id, Outbox.attempts).where(
        Outbox.id.in_(ids), Outbox.status == "sending", Outbox.claimed_by == claimant)).all()
    if not rows:
        return 0
    now = utcnow()
    session.execute(update(Outbox).where(Outbox.id.in_([row.id for row in rows]))
                    .values(status="sent", sent_at=now, last_error=None))
    events = [{"ticket_id": row.ticket_id, "kind": "mail_sent", "actor": "supportd", "at": now,
               "detail": {"purpose": row.purpose, "to": row.to_address, "message_id": row.message_id,
                          "attempts": row.attempts, "recorded_from": "sent journal"}}
              for row in rows if row.ticket_id]
    if events:
        session.execute(insert(TicketEvent), events)
    return len(rows)
