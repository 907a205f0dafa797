"""A large mail costs a small multiple of its size: read from IMAP once, parsed without a copy per character;
a long backlog is read a batch at a time.

Python's own allocations are counted with tracemalloc (SQLite's are not), so the bounds are about our
code and the libraries it calls, not about the allocator. The daemon's figures are in bench/memory.py.
"""

from __future__ import annotations

import email
import logging
import random
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.policy import compat32

import pytest
from imapclient import IMAPClient
from sqlalchemy import select

from mailer.config import Config
from mailer.demo.samples import mail_with_attachment, text_mail
from mailer.ledger import migrate
from mailer.ledger.db import Database, RawMessage
from mailer.transport.intake import MailboxIntake
from parsing.mime import FEED_SLICE, message_from_bytes, read_mime
from tests.conftest import ConfigFactory
from tests.mutations import seed_mails
from tests.servers import Dovecot, Mailbox, dovecot_available


def large_mail(size: int) -> bytes:
    content = b"%PDF-1.7\n" + random.Random(size).randbytes(size)
    return mail_with_attachment("Anna <anna@example.net>", "statement", "The statement is attached.", "<large@x>",
                                "statement.pdf", "application/pdf", content)


def peak_of(work: Callable[[], object]) -> int:
    """Bytes allocated at the peak of `work`, above what was allocated before it."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        work()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _shape(message: email.message.Message) -> tuple[bytes, list[tuple[str, list[str]]]]:
    return message.as_bytes(), [(part.get_content_type(), [type(d).__name__ for d in part.defects])
                                for part in message.walk()]


SLICE_EDGES = [
    b"Subject: a CRLF across the slice edge\r\n\r\n" + b"x" * (FEED_SLICE - 42) + b"\r\nlast\r\n",
    b"Subject: a CR ending the slice\r\n\r\n" + b"x" * (FEED_SLICE - 35) + b"\rnext\r",
    b"Subject: bare CRs\r\n\r\n" + b"ab\r" * 9000,
    b"Subject: 8-bit across the edge\r\n\r\n" + "ü".encode() * FEED_SLICE,
    b"",
]


@pytest.mark.parametrize("index", range(len(seed_mails()) + len(SLICE_EDGES)))
def test_the_sliced_reader_builds_the_tree_email_builds(index: int) -> None:
    raw = (seed_mails() + SLICE_EDGES)[index]
    assert _shape(message_from_bytes(raw)) == _shape(email.message_from_bytes(raw, policy=compat32))


def test_reading_a_large_mail_costs_about_twice_its_size() -> None:
    raw = large_mail(6_000_000)
    tree = read_mime(raw)
    assert tree.attachments[0].content.startswith(b"%PDF-1.7\n") and len(tree.attachments[0].content) == 6_000_009
    # email.message_from_bytes held the mail at four bytes per character: more than 7x its size.
    assert peak_of(lambda: read_mime(raw)) < 3 * len(raw)


@contextmanager
def connected_intake(config: Config) -> Iterator[tuple[MailboxIntake, IMAPClient, list[int]]]:
    """The intake of the config's first mailbox on a migrated ledger, signed in; the raw ids it stored."""
    migrate.upgrade(config.database_url)
    db = Database(config.database_url)
    stored: list[int] = []
    intake = MailboxIntake(db, config.mailboxes[0], config.max_message_bytes, stored.extend)
    client = intake.connect()
    try:
        yield intake, client, stored
    finally:
        client.logout()
        db.dispose()


def test_intake_holds_one_copy_of_a_fetched_mail(make_config: ConfigFactory, mailbox: Mailbox) -> None:
    raw = large_mail(4_000_000)
    mailbox.append(raw)
    _, config = make_config()
    with connected_intake(config) as (intake, client, stored):
        # imaplib used to render the literal with %r for a debug log nobody had enabled: two more copies.
        assert peak_of(lambda: intake.sync(client)) < 1.5 * len(raw)
    assert len(stored) == 1


def test_the_imap_protocol_log_stays_when_asked_for(make_config: ConfigFactory, mailbox: Mailbox,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    mailbox.append(large_mail(1000))
    _, config = make_config()
    migrate.upgrade(config.database_url)
    db = Database(config.database_url)
    intake = MailboxIntake(db, config.mailboxes[0], config.max_message_bytes, lambda ids: None)
    caplog.set_level(logging.DEBUG, logger="imapclient.imaplib")
    client = intake.connect()
    try:
        intake.sync(client)
    finally:
        client.logout()
        db.dispose()
    assert any(r.name == "imapclient.imaplib" and "untagged_responses" in r.getMessage() for r in caplog.records)


def test_intake_takes_large_mails_a_few_at_a_time(make_config: ConfigFactory, mailbox: Mailbox) -> None:
    raws = [large_mail(1_500_000 + i) for i in range(4)]  # about 2 MB each
    mailbox.append(*raws)
    _, config = make_config()
    migrate.upgrade(config.database_url)
    db = Database(config.database_url)
    stored: list[list[int]] = []
    intake = MailboxIntake(db, config.mailboxes[0], config.max_message_bytes, stored.append, fetch_bytes=5_000_000)
    client = intake.connect()
    try:
        peak = peak_of(lambda: intake.sync(client))
        with db.reading() as session:  # written into their rows in slices (SQLite), byte for byte
            kept = session.execute(select(RawMessage.raw, RawMessage.size).order_by(RawMessage.uid)).all()
    finally:
        client.logout()
        db.dispose()
    assert [len(ids) for ids in stored] == [2, 2]  # one batch of the mailbox, fetched and stored in two parts
    assert peak < 1.5 * (len(raws[0]) + len(raws[1]))  # never all four at once
    assert [(raw, size) for raw, size in kept] == [(raw, len(raw)) for raw in raws]


@pytest.mark.skipif(not dovecot_available(), reason="needs Dovecot (a server with a short command line)")
def test_a_backlog_longer_than_the_servers_command_line_is_read(make_config: ConfigFactory) -> None:
    server = Dovecot(users=1, extra_conf="imap_max_line_length = 1k\n").start()
    try:
        mailbox = server.new_mailbox()
        mailbox.append(*(text_mail(f"c{i} <c{i}@example.net>", "hello", "hi", f"<m{i}@x>") for i in range(400)))
        _, config = make_config(mailboxes=[{"name": "support", "url": mailbox.url(), "batch_size": 100}])
        with connected_intake(config) as (intake, client, stored):
            intake.sync(client)  # 400 UIDs in one command line are more than 1 KB
    finally:
        server.stop()
    assert len(stored) == 400
