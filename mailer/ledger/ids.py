"""Ticket numbers handed out before the row is written, so a batch writes its new tickets in one INSERT.

A new ticket's number is needed at once (the acknowledgement's subject, Message-ID and reply address
carry it), but flushing each ticket to learn it cost a statement and a unit-of-work round per mail.
PostgreSQL hands out the next value of the table's own sequence, as the INSERT would have; SQLite's
writing transaction holds the database's write lock from its BEGIN IMMEDIATE (mailer.ledger.db), so
the highest number written plus what this transaction already handed out cannot be taken by anyone else.
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mailer.ledger.db import Ticket

_NEXT = "supportd_next_ticket_id"  # session.info key: SQLite's next free number in this transaction
_PG_NEXT = text("SELECT nextval(pg_get_serial_sequence('tickets', 'id'))")


def new_ticket_id(session: Session) -> int | None:
    """The number for a ticket about to be added, or None where the database must assign it on flush."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return int(session.scalar(_PG_NEXT))
    if dialect != "sqlite":
        return None
    number = session.info.get(_NEXT)
    if number is None:
        session.flush()  # a ticket added without a number by someone else in this transaction counts too
        number = (session.scalar(select(func.max(Ticket.id))) or 0) + 1
    session.info[_NEXT] = number + 1
    return number
