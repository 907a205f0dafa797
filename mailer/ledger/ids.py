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

from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, SessionTransaction

from mailer.ledger.db import Attachment, Outbox, Rating, RawMessage, Review, Ticket, TicketMessage

_NEXT = "supportd_next_ids"  # session.info key: SQLite's next free number per table in this transaction
_PG_HELD = "supportd_ticket_numbers"  # session.info key: PostgreSQL numbers taken and not yet used
_PG_BLOCKS = "supportd_ticket_blocks"  # session.info key: how many blocks this transaction took
_PG_NEXT = text("SELECT nextval(pg_get_serial_sequence('tickets', 'id')) FROM generate_series(1, :count)")
PG_MAX_BLOCK = 32
NUMBERED_AT_FLUSH = (RawMessage, TicketMessage, Outbox, Attachment, Rating, Review, Ticket)


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
    held: list[int] = session.info.setdefault(_PG_HELD, [])
    if not held:
        blocks = session.info.get(_PG_BLOCKS, 0)
        session.info[_PG_BLOCKS] = blocks + 1
        count = min(PG_MAX_BLOCK, 2 ** blocks)
        held.extend(sorted(session.scalars(_PG_NEXT, {"count": count}), reverse=True))
    return int(held.pop())


def _next_sqlite(session: Session, model: type[Any]) -> int:
    numbers: dict[type[Any], int] = session.info.setdefault(_NEXT, {})
    number = numbers.get(model)
    if number is None:
        # Rows already flushed in this transaction count: the maximum is read inside it.
        number = (session.connection().scalar(select(func.max(model.id))) or 0) + 1
    numbers[model] = number + 1
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
        for key in (_NEXT, _PG_HELD, _PG_BLOCKS):
            session.info.pop(key, None)
