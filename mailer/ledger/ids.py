"""Row numbers handed out before the rows are written, so a batch writes each table in one statement.

A new ticket's number is needed at once (the acknowledgement's subject, Message-ID and reply address
carry it), and flushing each ticket to learn it cost a statement and a unit-of-work round per mail.
PostgreSQL hands out values of the table's own sequence, as the INSERT would have, a few at a time.

SQLite's writing transaction holds the database's write lock from its BEGIN IMMEDIATE (mailer.ledger.db),
so the highest number written plus what this transaction already handed out cannot be taken by anyone
else. There, every new row of the tables below is numbered at the flush too: SQLite's RETURNING gives
the rows in no promised order, so rows the database numbers are inserted one statement each, while rows
that carry their numbers go in one executemany. Every row of these tables that the ORM adds is numbered
here, so a number handed out can never meet one SQLite chose; TicketEvent rows, written in bulk by Core
statements without numbers, are not among them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, SessionTransaction

from mailer.ledger.db import Attachment, Outbox, Rating, RawMessage, Review, Ticket, TicketMessage

_NUMBERS = "supportd_numbers"  # session.info key: this transaction's `_Numbers`
_PG_NEXT = text("SELECT nextval(pg_get_serial_sequence('tickets', 'id')) FROM generate_series(1, :count)")
PG_MAX_BLOCK = 32
NUMBERED_AT_FLUSH = (RawMessage, TicketMessage, Outbox, Attachment, Rating, Review, Ticket)


@dataclass
class _Numbers:
    """What one transaction has handed out; forgotten when it ends."""

    sqlite_next: dict[type[Any], int] = field(default_factory=dict)  # per table: the next free number
    postgres_held: list[int] = field(default_factory=list)  # ticket numbers taken and not yet used
    postgres_block: int = 1  # how many to take next time


def _numbers(session: Session) -> _Numbers:
    numbers: _Numbers = session.info.setdefault(_NUMBERS, _Numbers())
    return numbers


def new_ticket_id(session: Session) -> int | None:
    """The number for a ticket about to be added, or None where the database must assign it on flush."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return _next_postgres(session)
    if dialect != "sqlite":
        return None
    return _next_sqlite(session, Ticket)


def _next_postgres(session: Session) -> int:
    """From numbers taken in blocks that double within a transaction (1, 2, 4 … 32): one statement for
    several tickets, and at most as many numbers left unused as were used (a sequence has gaps anyway)."""
    numbers = _numbers(session)
    if not numbers.postgres_held:
        taken = session.scalars(_PG_NEXT, {"count": numbers.postgres_block})
        numbers.postgres_held = sorted(taken, reverse=True)
        numbers.postgres_block = min(PG_MAX_BLOCK, 2 * numbers.postgres_block)
    return int(numbers.postgres_held.pop())


def _next_sqlite(session: Session, model: type[Any]) -> int:
    following = _numbers(session).sqlite_next
    number = following.get(model)
    if number is None:
        # Rows already flushed in this transaction count: the maximum is read inside it.
        number = (session.connection().scalar(select(func.max(model.id))) or 0) + 1
    following[model] = number + 1
    return number


@event.listens_for(Session, "before_flush")
def _number_new_rows(session: Session, _context: Any, _instances: Any) -> None:
    if not session.new or session.get_bind().dialect.name != "sqlite":
        return
    for row in session.new:
        if isinstance(row, NUMBERED_AT_FLUSH) and row.id is None:
            row.id = _next_sqlite(session, type(row))


@event.listens_for(Session, "after_transaction_end")
def _forget_numbers(session: Session, transaction: SessionTransaction) -> None:
    """Outside the transaction (and its write lock) the numbers mean nothing: another writer may take them."""
    if transaction.parent is None:
        session.info.pop(_NUMBERS, None)
