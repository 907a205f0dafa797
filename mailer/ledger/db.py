"""The ledger: every mail, ticket, decision and outgoing message is a row here first.

Work on the broker is always re-derivable from these tables (see `mailer.runtime.reconcile`), so losing the
broker's queue, or the whole process, loses nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalized, see routing.verify
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    display_name: Mapped[str] = mapped_column(String(200), default="")
    anti_phishing_code: Mapped[str | None] = mapped_column(String(64))


class RawMessage(Base):
    """One message as fetched from one mailbox: the bytes and where they came from."""

    __tablename__ = "raw_messages"
    __table_args__ = (
        UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_raw_mailbox_uid"),
        Index("ix_raw_status", "status"),
        Index("ix_raw_server_state", "mailbox", "server_state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(100))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # pending -> done | duplicate | automatic | bounce | spam | quarantined
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # pending -> marked: whether the done action (flag/move) was applied on the IMAP server
    server_state: Mapped[str] = mapped_column(String(16), default="pending")
    processed_at: Mapped[datetime | None]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    # Never read: it tells a flush to write new tickets before the rows that point at them.
    ticket: Mapped[Ticket | None] = relationship(lazy="raise")
    stage: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    # Why a mail was held as spam (routing.spam), and who released it: see mailer.stages.spam.
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # Set when retention dropped the bytes (mailer.ledger.retention); Message-ID and SHA-256 stay for dedup.
    purged_at: Mapped[datetime | None]


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (Index("ix_ticket_customer_status", "customer_email", "status"),
                      Index("ix_ticket_status_queue", "status", "queue"))  # open tickets per queue, at scrape time

    id: Mapped[int] = mapped_column(primary_key=True)  # the ticket number customers see as [#id]
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | pending | closed
    customer_email: Mapped[str] = mapped_column(String(320))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    verified: Mapped[str] = mapped_column(String(16))  # verified | unregistered | mismatch | spoofed
    language: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(Text)
    identifiers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    first_response_due: Mapped[datetime | None]
    resolution_due: Mapped[datetime | None]
    first_responded_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    sla_calendar: Mapped[str] = mapped_column(String(64), default="default")
    # The resolution clock: stopped while paused (waiting on the customer, or closed), in business time.
    paused_at: Mapped[datetime | None]
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)
    # The earliest SLA alert not yet sent (mailer.stages.escalate keeps it); the periodic check reads this index
    # only. A row inserted without it (or with None: inserts fill the default) is looked at by the next
    # check, which stores the real value; NULL, written by an update, means no alert is left.
    next_alert_at: Mapped[datetime | None] = mapped_column(default=utcnow, index=True)
    # Set when retention anonymised the closed ticket (mailer.ledger.retention): number and events stay.
    purged_at: Mapped[datetime | None]

    messages: Mapped[list[TicketMessage]] = relationship(back_populates="ticket", order_by="TicketMessage.id")
    events: Mapped[list[TicketEvent]] = relationship(back_populates="ticket", order_by="TicketEvent.id")


class TicketMessage(Base):
    """A mail that belongs to a ticket, inbound or outbound. Message-IDs are unique: one mail, one row."""

    __tablename__ = "ticket_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    raw_message_id: Mapped[int | None] = mapped_column(ForeignKey("raw_messages.id"))
    direction: Mapped[str] = mapped_column(String(8))  # in | out
    kind: Mapped[str] = mapped_column(String(32))  # customer | repeat | ack | unverified | repeat_notice | …
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[Any]] = mapped_column(default=list)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)  # parsing.normalize
    from_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(back_populates="message")


class Attachment(Base):
    """Metadata only; the content lives in the content-addressed store under its SHA-256."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("ticket_messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))  # display only; never a path
    content_type: Mapped[str] = mapped_column(String(255))  # from the content (parsing.attachments.sniff)
    declared_type: Mapped[str | None] = mapped_column(String(255))  # what the sender claimed
    refused_reason: Mapped[str | None] = mapped_column(String(300))  # set: content was not stored
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # index: is the content still referenced?
    # Set when retention released this reference to the content (mailer.ledger.retention); the file goes
    # once no reference is left.
    purged_at: Mapped[datetime | None]

    message: Mapped[TicketMessage] = relationship(back_populates="attachments")


class TicketEvent(Base):
    """The audit trail: every decision about a ticket and the reason for it."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(320), default="supportd")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    ticket: Mapped[Ticket] = relationship(back_populates="events")


class Rating(Base):
    """A satisfaction survey sent when a ticket closed, and the customer's answer (later clicks update it)."""

    __tablename__ = "ticket_ratings"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    queue: Mapped[str] = mapped_column(String(64), index=True)
    specialist: Mapped[str] = mapped_column(String(320), index=True)  # who closed the ticket
    nonce: Mapped[str] = mapped_column(String(32))  # part of the signed links: a survey must have been sent
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    rating: Mapped[int | None] = mapped_column(Integer)  # 1 (bad) … 5 (excellent)
    comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None]
    changes: Mapped[int] = mapped_column(Integer, default=0)  # how often the rating was given again


class Review(Base):
    """A closed ticket sampled for quality review: sent to the queue's lead, scored with `#qa <1-5>`."""

    __tablename__ = "ticket_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    queue: Mapped[str] = mapped_column(String(64), index=True)
    specialist: Mapped[str] = mapped_column(String(320), index=True)
    week: Mapped[str] = mapped_column(String(10))  # ISO week of the closing, e.g. 2026-W48
    lead: Mapped[str] = mapped_column(String(320))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    score: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    scored_at: Mapped[datetime | None]


class Outbox(Base):
    """A mail to send, rendered in full (Message-ID fixed) before any attempt is made."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status", "status", "next_attempt_at"),
                      Index("ix_outbox_recipient", "to_address", "created_at"),
                      Index("ix_outbox_unverified", "unverified", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    # Same key, same mail: scheduling a reply twice (after a crash) finds the first row.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    ticket: Mapped[Ticket | None] = relationship(lazy="raise")  # never read: the order of a flush's INSERTs
    purpose: Mapped[str] = mapped_column(String(32))
    to_address: Mapped[str] = mapped_column(String(320))
    unverified: Mapped[bool] = mapped_column(default=False)  # an automatic answer to a sender not verified
    from_address: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # pending -> sending -> sent | failed; sent -> bounced when a delivery report says so
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    # Which process claimed it (mailer.runtime.lease.process_id): a dead claimant's rows go back at once.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # Set only while composing failed: what `supportd outbox retry` needs to compose the mail again.
    compose: Mapped[dict[str, Any] | None]


class Checkpoint(Base):
    """The highest UID committed per mailbox, valid only while the folder's UIDVALIDITY holds."""

    __tablename__ = "imap_checkpoints"

    mailbox: Mapped[str] = mapped_column(String(100), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Setting(Base):
    """Small facts the daemon remembers, e.g. the fingerprint of the calendars the due dates were made with."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Lease(Base):
    """Who runs intake for a mailbox; a second daemon waits until the lease lapses (hot standby)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]


READONLY = "supportd_readonly"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
        _sqlite_tuning(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_tuning(engine: Engine) -> None:
    """WAL for concurrent readers; BEGIN IMMEDIATE so two writers queue instead of deadlocking."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        # Readers under WAL need no lock: a plain (deferred) BEGIN reads a snapshot beside the writer.
        readonly = connection.get_execution_options().get(READONLY, False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class WriterQueue:
    """SQLite's one writer at a time, taken in turn by this process's threads; priority turns go first.

    A mail that was accepted by the relay should be marked sent at once: its mark must not wait behind
    pipeline batches queued before it, or a kill in between sends the mail twice.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held = False
        self._priority_waiting = 0

    @contextmanager
    def turn(self, priority: bool) -> Iterator[None]:
        with self._changed:
            self._priority_waiting += priority
            try:
                while self._held or (not priority and self._priority_waiting):
                    self._changed.wait()
            finally:
                self._priority_waiting -= priority
            self._held = True
        try:
            yield
        finally:
            with self._changed:
                self._held = False
                self._changed.notify_all()


class Database:
    """An engine and its session factory; `session()` commits on success, rolls back on error."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        # SQLite has one writer at a time, and its busy handler polls with sleeps of up to 100 ms. Threads
        # of this process queue on a lock instead and start the moment the writer before them commits;
        # other processes still meet busy_timeout.
        self._writer: WriterQueue | None = WriterQueue() if url.startswith("sqlite") else None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # For the pipeline: it flushes where it needs ids, not before every query.
        self.batch_sessions = sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self.read_sessions = sessionmaker(self.engine.execution_options(**{READONLY: True}),
                                          expire_on_commit=False, autoflush=False)

    @contextmanager
    def session(self, *, autoflush: bool = True, priority: bool = False) -> Iterator[Session]:
        """A write transaction; `priority` ones (short: claiming and marking outbox rows) go first."""
        factory = self.sessions if autoflush else self.batch_sessions
        turn = self._writer.turn(priority) if self._writer else contextlib.nullcontext()
        with turn, factory() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only snapshot: no writer lock, so listing and waiting never hold up the pipeline.

        Ended by a rollback (closing the session): there is nothing to commit.
        """
        with self.read_sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
