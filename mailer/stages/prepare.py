"""Parse, redact and screen ahead of the write transaction, on every core: the CPU part of a mail's processing.

Parsing, redaction, the identifiers and the attachments' verdicts are pure functions of the raw bytes, so
they run before the pipeline takes the database's write lock and, in the embedded daemon, in a pool of
worker processes (`mailer.runtime.pool`). Each reads the raw mails it is given by id from a read snapshot
of its own and stores the accepted attachments in the content store itself, so that a mail's bytes
never travel between processes: what comes back is the parsed mail without its attachments' content.
The database writes stay in one place. The `parse` and `redact` stages take the prepared result when
there is one and do the work themselves otherwise: a mail that fails here fails there again, in its own
stage, and goes to quarantine with that stage's name.

A stored attachment whose mail never gets a ticket (spam, a duplicate, a crash before the commit) is a
file no row references; retention removes those (`mailer.ledger.retention`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mailer.ledger.crypto import Sealer
from mailer.ledger.store import ContentStore
from parsing.attachments import Limits, Verdict, screen
from parsing.identifiers import extract_identifiers
from parsing.language import load_models
from parsing.message import ParsedMail, parse, without_body
from parsing.normalize import content_hash
from parsing.secrets import redact

if TYPE_CHECKING:
    from mailer.config import Config
    from mailer.runtime.pool import LedgerSettings

ORDER_WAIT = 30.0  # seconds a batch waits at most for earlier ones to write first


@dataclass(frozen=True)
class Prepared:
    mail: ParsedMail  # already redacted; its attachments without their content (stored when accepted)
    secrets: tuple[str, ...]  # kinds of secret found (never the values)
    raw_without_secrets: bytes | None  # the raw mail to keep instead, when it held secrets and they are dropped
    verdicts: tuple[Verdict, ...]  # one per attachment: its type by content, and why it is refused


@dataclass(frozen=True)
class Rules:
    """What preparing follows from the config; sent with every batch, so a reload applies to the next one."""

    drop_raw_with_secrets: bool
    limits: Limits

    @classmethod
    def of(cls, config: Config) -> Rules:
        return cls(config.raw_with_secrets == "drop", config.attachments)


# (raw id, sealed bytes) of the given ids still pending and not above max_message_bytes, from one snapshot.
PendingRaws = Callable[[list[int]], AbstractContextManager[Iterable[tuple[int, bytes]]]]


@dataclass(frozen=True)
class Ledger:
    """Where preparing reads raw mail and stores attachments: the App's own parts, or a pool process's."""

    pending_raws: PendingRaws
    sealer: Sealer
    store: ContentStore

    @classmethod
    def opened(cls, settings: LedgerSettings) -> Ledger:
        """A pool process's own reader and store, built as `mailer.app.App` builds its own."""
        sealer = Sealer.from_env(settings.encryption_keys_env)
        return cls(DriverReader(settings.database_url, settings.max_message_bytes), sealer,
                   ContentStore(settings.storage_dir / "attachments", sealer))


def redact_mail(mail: ParsedMail) -> tuple[ParsedMail, tuple[str, ...]]:
    """The mail with passwords, seed phrases, keys and codes replaced, and the kinds that were found."""
    subject, text = redact(mail.subject), redact(mail.text)
    if not (subject.found or text.found):
        return mail, ()  # the new text is part of the whole text: nothing there either
    new_text = redact(mail.new_text)
    secrets = tuple(dict.fromkeys(subject.kinds + text.kinds + new_text.kinds))
    return replace(mail, subject=subject.text, text=text.text, new_text=new_text.text,
                   identifiers=extract_identifiers(subject.text + "\n" + new_text.text),
                   content_hash=content_hash(subject.text, new_text.text)), secrets


def prepare(raw: bytes, rules: Rules, keep: Callable[[bytes], object]) -> Prepared | None:
    """Parsed, redacted and its attachments screened (the accepted ones handed to `keep`, the content
    store), or None when that fails (the stages then report the failure)."""
    try:
        mail, secrets = redact_mail(parse(raw))
        stripped = without_body(raw, secrets) if secrets and rules.drop_raw_with_secrets else None
        verdicts = screen(mail.attachments, rules.limits, keep)
        return Prepared(shipped(mail), secrets, stripped, verdicts)
    except Exception:  # reported by the stage that meets it again
        return None


def shipped(mail: ParsedMail) -> ParsedMail:
    """The mail as the stages after redaction read it: without the attachments' content (stored already)
    and without the whole body, quoted history included (`text`: redaction read it, the stages read
    `new_text`). That body was 98 % of what a mail of the benchmark's sent back to the writing process."""
    attachments = tuple(replace(part, content=None) for part in mail.attachments)
    return replace(mail, text="", attachments=attachments)


def prepare_stored(ledger: Ledger, raw_ids: list[int], rules: Rules) -> list[tuple[int, Prepared]]:
    """`prepare` for each stored mail still pending, read by id in one query from a read snapshot. The rows
    are taken as the loop reaches them (SQLite steps its cursor), so a large mail's bytes are held once,
    while it is prepared. Mails too large, finished already or that fail are left out: their stages meet
    them and decide."""
    done: list[tuple[int, Prepared]] = []
    if not raw_ids:
        return done
    with ledger.pending_raws(raw_ids) as rows:
        for raw_id, raw in rows:
            try:
                raw = ledger.sealer.open(raw)  # rebound: the sealed copy goes at once
            except Exception:  # the parse stage meets it again and quarantines the mail
                continue
            result = prepare(raw, rules, ledger.store.put)
            del raw
            if result is not None:
                done.append((raw_id, result))
    return done


PENDING_RAWS = "SELECT id, raw FROM raw_messages WHERE id IN ({ids}) AND status = 'pending' AND size <= {max}"


class DriverReader:
    """How a pool process reads raw mail: with the database driver alone, so that no process imports
    SQLAlchemy (about 20 MB and 0.2 s of its start). One connection, kept; one that failed is dropped and
    the next batch opens a fresh one."""

    def __init__(self, database_url: str, max_message_bytes: int) -> None:
        self.database_url, self.max_message_bytes = database_url, max_message_bytes
        self.sqlite = database_url.startswith("sqlite")
        self._connection: Any = None

    @contextmanager
    def __call__(self, raw_ids: list[int]) -> Iterator[Iterable[tuple[int, bytes]]]:
        mark = "?" if self.sqlite else "%s"
        query = PENDING_RAWS.format(ids=", ".join([mark] * len(raw_ids)), max=mark)
        if self._connection is None:
            self._connection = self._connect()
        try:
            with closing(self._connection.cursor()) as cursor:  # closed: SQLite's read snapshot ends with it
                cursor.execute(query, [*raw_ids, self.max_message_bytes])
                yield ((raw_id, bytes(raw)) for raw_id, raw in cursor)
        except BaseException:
            self._connection.close()
            self._connection = None
            raise

    def _connect(self) -> Any:
        return _connect_sqlite(self.database_url) if self.sqlite else _connect_postgres(self.database_url)


def _connect_sqlite(database_url: str) -> Any:
    import sqlite3

    path = database_url.partition(":///")[2].partition("?")[0]
    if not path or path == ":memory:":
        raise ValueError(f"{database_url}: a database in memory cannot be read by another process")
    # Autocommit: the one SELECT is its own snapshot under WAL, beside the writer; query_only: it never writes.
    connection = sqlite3.connect(f"file:{quote(str(Path(path).absolute()))}", uri=True, timeout=60,
                                 isolation_level=None)
    connection.execute("PRAGMA query_only = ON")
    return connection


def _connect_postgres(database_url: str) -> Any:
    import psycopg

    where = database_url.partition("://")[2]  # postgresql+psycopg:// is SQLAlchemy's name, not libpq's
    return psycopg.connect(f"postgresql://{where}", autocommit=True)


_pool_ledger: Ledger | None = None  # in a pool process: its own connection and store (open_pool_ledger)


def open_pool_ledger(settings: LedgerSettings) -> None:
    global _pool_ledger
    _pool_ledger = Ledger.opened(settings)


def prepare_in_pool(raw_ids: list[int], rules: Rules) -> list[tuple[int, Prepared]]:
    """The task a process of the daemon's pool (`mailer.runtime.pool`) runs: ids in, prepared mails out."""
    if _pool_ledger is None:
        raise RuntimeError("the pool process has no ledger: its initializer did not run")
    return prepare_stored(_pool_ledger, raw_ids, rules)


_SAMPLE = (b"From: Customer <customer@example.net>\r\nTo: support@example.com\r\nSubject: Deposit not credited\r\n"
           b"Message-ID: <warm-up@example.net>\r\n\r\nHello, my deposit has not arrived yet.\r\n")


def warm_up() -> None:
    """Load the language models and parse one mail now, so that the first real mail pays for neither."""
    load_models()
    prepare(_SAMPLE, Rules(drop_raw_with_secrets=False, limits=Limits()), _nowhere)


def _nowhere(content: bytes) -> None:
    """The warm-up mail has no attachment: nothing is ever kept."""


class BatchOrder:
    """Batches of one process write in the order they were enqueued, whoever finished preparing first.

    Preparing runs outside the write lock and in parallel, but the ledger must see mails in arrival order:
    the first mail of a problem opens the ticket and gets the acknowledgement, a re-sent copy joins it.
    A batch counts from the moment this process enqueues it (`expect`), not from when a thread takes it
    up: a thread that takes up a later batch first still waits for the earlier one.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._keys: Counter[int] = Counter()  # batches enqueued or taken up, not yet written
        self._expected: Counter[int] = Counter()  # of those, enqueued here and not yet taken up

    def expect(self, key: int) -> None:
        """A batch (key: its first row id) is about to be enqueued for this process's own workers."""
        with self._changed:
            self._keys[key] += 1
            self._expected[key] += 1

    def idle(self) -> bool:
        """No batch enqueued or taken up that has not been written yet."""
        with self._changed:
            return not self._keys

    def forget(self, key: int) -> None:
        """An expected batch that was not enqueued after all."""
        with self._changed:
            if self._expected[key] > 0:
                self._expected[key] -= 1
                self._done(key)

    @contextmanager
    def taken_up(self, key: int) -> Iterator[Callable[[], None]]:
        """Register the batch; the callable waits until no earlier batch is left."""
        with self._changed:
            if self._expected[key] > 0:
                self._expected[key] -= 1
            else:
                self._keys[key] += 1
        try:
            yield lambda: self._wait(key)
        finally:
            with self._changed:
                self._done(key)

    def _done(self, key: int) -> None:
        self._keys[key] -= 1
        if self._keys[key] <= 0:
            del self._keys[key]
        self._changed.notify_all()

    def _wait(self, key: int) -> None:
        with self._changed:
            # Bounded: a stuck earlier batch delays this one, it never blocks it for good.
            self._changed.wait_for(lambda: min(self._keys, default=key) >= key, timeout=ORDER_WAIT)
