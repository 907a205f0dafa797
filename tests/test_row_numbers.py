"""Row numbers handed out before the flush (mailer/ledger/ids.py): unique, and written in one statement."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, func, select

import mailer.ledger.ids  # noqa: F401  (registers the flush hook, as the App does)
from mailer.ledger.db import Base, Database, Outbox, Ticket, TicketMessage, utcnow
from mailer.ledger.ids import new_ticket_id


def _database(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Database:
    url = request.getfixturevalue("pg_url") if kind == "postgresql" else f"sqlite:///{tmp_path / 'ledger.db'}"
    db = Database(url)
    Base.metadata.create_all(db.engine)
    return db


def _ticket(number: int | None) -> Ticket:
    now = utcnow()
    return Ticket(id=number, queue="general", priority="normal", status="open", customer_email="a@example.net",
                  verified="verified", language="en", subject="s", identifiers={}, created_at=now, updated_at=now,
                  first_response_due=now, resolution_due=now, paused_seconds=0)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_ticket_numbers_are_unique_across_transactions(request: pytest.FixtureRequest, kind: str,
                                                       tmp_path: Path) -> None:
    db = _database(request, kind, tmp_path)
    numbers: list[int] = []
    for size in (7, 1, 40):
        with db.session(autoflush=False) as session:
            for _ in range(size):
                number = new_ticket_id(session)
                assert number is not None
                numbers.append(number)
                session.add(_ticket(number))
    assert len(set(numbers)) == len(numbers) == 48
    with db.reading() as session:
        assert sorted(session.scalars(select(Ticket.id))) == sorted(numbers)
    db.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_postgresql_takes_numbers_in_blocks(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> None:
    db = _database(request, kind, tmp_path)
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with db.session(autoflush=False) as session:
        for _ in range(40):
            session.add(_ticket(new_ticket_id(session)))
    taken = [s for s in statements if "nextval" in s]
    if kind == "postgresql":
        assert len(taken) == 6  # blocks of 1, 2, 4, 8, 16 and 32 numbers
    else:
        assert taken == []
    db.dispose()


def test_sqlite_writes_new_rows_of_a_table_in_one_statement(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    Base.metadata.create_all(db.engine)
    inserts: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.startswith("INSERT"):
            inserts.append(statement.split("(")[0])

    event.listen(db.engine, "before_cursor_execute", seen)
    with db.session(autoflush=False) as session:
        for _ in range(20):
            ticket = _ticket(new_ticket_id(session))
            session.add(ticket)
            session.add(TicketMessage(ticket=ticket, direction="in", kind="customer", message_id=f"<{ticket.id}@x>",
                                      references=[], from_address="a@example.net", subject="s", body="b"))
            session.add(Outbox(idempotency_key=f"ack:{ticket.id}", ticket_id=ticket.id, purpose="ack",
                               to_address="a@example.net", from_address="desk@example.com",
                               message_id=f"<out{ticket.id}@x>", raw=b""))
    assert sorted(inserts) == ["INSERT INTO outbox ", "INSERT INTO ticket_messages ", "INSERT INTO tickets "]
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(TicketMessage)) == 20
        assert session.scalar(select(func.count()).select_from(Outbox)) == 20
    db.dispose()
