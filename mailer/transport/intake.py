"""IMAP intake for one mailbox: fetch what is new, store it, and only then mark it on the server.

What counts as new is decided by the checkpoint (the highest UID committed for the folder's
UIDVALIDITY), never by sequence numbers or the \\Seen flag. Mails are fetched in batches and each batch
is stored with the checkpoint in one transaction. The done action (flag or move) is applied only to
mails whose processing has committed, so a mail marked on the server is always a ticket or a
quarantine entry in the ledger. A UIDVALIDITY change means the server renumbered the folder: the
folder is read again from the start and duplicate detection makes that harmless.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from email.parser import BytesHeaderParser
from email.policy import compat32

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.imapclient import SocketTimeout
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailer.config import MailboxConfig
from mailer.ledger.crypto import Sealer
from mailer.ledger.db import Checkpoint, Database, RawMessage, utcnow
from mailer.runtime import metrics
from mailer.transport.links import Links
from mailer.transport.oauth import TokenCache
from mailer.transport.providers import is_special_use, resolve_folder, throttle_delay
from mailer.transport.tls import LinkError, client_context, describe, tls_failure
from parsing.message import message_id_or_derived
from parsing.obsolete import close_spaced_header_names

log = logging.getLogger(__name__)

NETWORK_ERRORS = (IMAPClientError, OSError, socket.timeout, ssl.SSLError, EOFError)
DONE_FLAGS = {"seen": b"\\Seen", "flagged": b"\\Flagged"}
MARK_CHUNK = 500
MAX_BACKOFF = 60.0
DB_RETRY = 2.0
HEADER_LIMIT = 64 * 1024
BLOB_SLICE = 1024 * 1024  # SQLite: a raw mail larger than this is written into its row in slices of this size
FETCH_BYTES = 32 * 1024 * 1024  # a batch is fetched and stored in parts of at most this much mail (or one mail)

_headers = BytesHeaderParser(policy=compat32)


def raw_row(mailbox: str, uid: int, raw: bytes, sealer: Sealer) -> RawMessage:
    """A ledger row for mail as received: Message-ID (or one derived from the bytes), hash, sealed bytes."""
    sha = hashlib.sha256(raw).hexdigest()
    try:
        header_value = _headers.parsebytes(close_spaced_header_names(_header_block(raw))).get("Message-ID")
    except Exception:  # an unreadable header block still gets stored; parsing will record why
        header_value = None
    message_id, _ = message_id_or_derived(header_value, sha)
    return RawMessage(mailbox=mailbox, uidvalidity=0, uid=uid, message_id=message_id, sha256=sha, size=len(raw),
                      raw=sealer.seal(raw), received_at=utcnow())


def insert_raw_rows(session: Session, rows: list[RawMessage]) -> None:
    """Add and flush raw mail rows. On SQLite a large mail's row is inserted with a zero-filled blob of its
    size and the mail written into it a slice at a time: bound as a parameter, the whole mail was copied
    once more by SQLite, about twice its size at the daemon's peak."""
    held = []
    if session.get_bind().dialect.name == "sqlite":
        for row in rows:
            if len(row.raw) > BLOB_SLICE:
                held.append((row, row.raw))
                row.raw = func.zeroblob(len(row.raw))
    session.add_all(rows)
    session.flush()
    if held:
        driver = session.connection().connection.driver_connection
        for row, content in held:
            view = memoryview(content)
            with driver.blobopen("raw_messages", "raw", row.id) as blob:
                for start in range(0, len(view), BLOB_SLICE):
                    blob.write(view[start:start + BLOB_SLICE])


def _header_block(raw: bytes) -> bytes:
    """The bytes up to the first empty line: the header parser would otherwise decode the whole mail."""
    crlf = raw.find(b"\r\n\r\n")
    # A bare-LF blank line counts only before the first CRLF one: no second search through the body.
    lf = raw.find(b"\n\n", 0, crlf if crlf >= 0 else len(raw))
    end = min((at for at in (crlf, lf) if at >= 0), default=len(raw))
    return raw[:end + 2]


def chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def endpoint_name(config: MailboxConfig) -> str:
    return f"mailbox {config.name!r}"


def tokens_for(config: MailboxConfig) -> TokenCache | None:
    oauth = config.security.oauth
    return TokenCache(oauth, endpoint_name(config)) if oauth else None


def connect(config: MailboxConfig, tokens: TokenCache | None = None) -> IMAPClient:
    """Connect (TLS verified as configured) and sign in; every call on the connection has a read time-out.

    A certificate or sign-in the operator must fix raises LinkError; other failures are network errors.
    """
    endpoint = config.endpoint
    context = client_context(config.security.ca_file, config.tls_verify)
    try:
        client = IMAPClient(endpoint.host, port=endpoint.port, ssl=endpoint.implicit_tls, ssl_context=context,
                            timeout=SocketTimeout(connect=min(config.timeout, 15.0), read=config.timeout))
        # Small commands back to back: without this, Nagle's algorithm adds ~40 ms to each.
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        quiet_protocol_log(client)
        if config.starttls:
            client.starttls(context)
    except NETWORK_ERRORS as exc:
        failure = tls_failure(exc)
        if failure is None:
            raise
        raise LinkError(endpoint_name(config), describe(failure, endpoint.host)) from None
    try:
        sign_in(client, config, tokens or tokens_for(config))
    except LinkError:
        _logout(client)
        raise
    return client


def quiet_protocol_log(client: IMAPClient) -> None:
    """Stop imaplib formatting every response for a protocol log nobody reads.

    IMAPClient turns imaplib's debug level up to 5 and sends its messages to the `imapclient.imaplib`
    logger, so imaplib renders each fetched literal with %r before the logger drops it: two transient
    copies of every mail (60 MB for a 30 MB mail). Left as it is when that logger is enabled for DEBUG."""
    if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        client._imap.debug = 0  # imaplib formats messages only from level 4 up


def sign_in(client: IMAPClient, config: MailboxConfig, tokens: TokenCache | None) -> None:
    """LOGIN with the password, or AUTHENTICATE with an access token, refreshed once if refused."""
    user, auth = config.endpoint.username or "", config.security.auth
    if tokens is None:
        try:
            client.login(user, config.endpoint.password or "")
        except LoginError as exc:
            raise LinkError(endpoint_name(config), f"the server refused the password for {user} ({exc})") from None
        return
    token = tokens.token()
    for attempt in (1, 2):
        try:
            if auth == "oauthbearer":
                client.oauthbearer_login(user, token)
            else:
                client.oauth2_login(user, token)
            return
        except LoginError as exc:
            if attempt == 2:
                raise LinkError(endpoint_name(config), f"the server refused a fresh OAuth2 token for {user} "
                                                       f"({exc}); is the grant revoked?") from None
        token = tokens.refused(token)


class MailboxIntake:
    def __init__(self, db: Database, config: MailboxConfig, max_message_bytes: int,
                 on_stored: Callable[[list[int]], None], sealer: Sealer | None = None,
                 links: Links | None = None, fetch_bytes: int = FETCH_BYTES) -> None:
        self.db, self.config, self.max_message_bytes = db, config, max_message_bytes
        self.fetch_bytes = fetch_bytes
        self.on_stored = on_stored
        self.sealer = sealer or Sealer([])
        self.links = links or Links()
        self.tokens = tokens_for(config)  # one per mailbox: a token outlives the connection it signed in
        self.uidvalidity: int | None = None

    def connect(self) -> IMAPClient:
        """Connect and sign in; the outcome is recorded in `links` for health checks."""
        try:
            client = connect(self.config, self.tokens)
        except LinkError as exc:
            self.links.failed(endpoint_name(self.config), exc.reason)
            raise
        self.links.ok(endpoint_name(self.config))
        return client

    # --- fetching -------------------------------------------------------------------------------

    def sync(self, client: IMAPClient) -> list[int]:
        """Store every mail above the checkpoint; returns the new raw row ids, in UID order."""
        selected = client.select_folder(self.config.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        last_uid = self._checkpoint(uidvalidity)
        self.uidvalidity = uidvalidity
        uids = sorted(uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)
        if not uids:
            metrics.mailbox_synced(self.config.name)
            return []
        stored: list[int] = []
        for batch in chunks(uids, self.config.batch_size):
            # Sizes a batch at a time: the UIDs of a whole backlog make a command line servers refuse
            # (Dovecot: "Too long argument" past 64 KB, about 10,000 UIDs), and the mailbox is never read.
            sizes = {uid: int(data.get(b"RFC822.SIZE", 0))
                     for uid, data in client.fetch(batch, ["RFC822.SIZE"]).items()}
            # Bounded by bytes too: 200 mails of 30 MB would otherwise all be held at once.
            for part in self._bounded(batch, sizes):
                ids = self._take(client, uidvalidity, part, sizes)
                stored += ids
                self.on_stored(ids)
            metrics.mails_fetched(self.config.name, len(batch))
        metrics.mailbox_synced(self.config.name)
        log.info("%s: stored %d new mails (UID %d..%d)", self.config.name, len(stored), uids[0], uids[-1])
        return stored

    def _take(self, client: IMAPClient, uidvalidity: int, uids: list[int], sizes: dict[int, int]) -> list[int]:
        """Fetch and store these mails; their bytes are let go on return, before the next part is fetched."""
        return self._store(uidvalidity, self._fetch_batch(client, uids, sizes), max(uids))

    def _bounded(self, batch: list[int], sizes: dict[int, int]) -> Iterator[list[int]]:
        """The batch in UID order, cut where the next mail would pass `fetch_bytes` (a mail too large to
        take in counts as its header)."""
        part: list[int] = []
        total = 0
        for uid in batch:
            size = sizes.get(uid, 0)
            size = size if size <= self.max_message_bytes else HEADER_LIMIT
            if part and total + size > self.fetch_bytes:
                yield part
                part, total = [], 0
            part.append(uid)
            total += size
        if part:
            yield part

    def _fetch_batch(self, client: IMAPClient, batch: list[int], sizes: dict[int, int]) -> list[RawMessage]:
        small = [uid for uid in batch if sizes.get(uid, 0) <= self.max_message_bytes]
        large = [uid for uid in batch if uid not in small]
        rows = []
        for uid, data in client.fetch(small, ["BODY.PEEK[]"]).items() if small else ():
            rows.append(self._row(uid, bytes(data.get(b"BODY[]") or b"")))
        # Too large to take in: keep the headers so the quarantine entry says what it was.
        for uid, data in client.fetch(large, ["BODY.PEEK[HEADER]"]).items() if large else ():
            row = self._row(uid, bytes(data.get(b"BODY[HEADER]") or b"")[:HEADER_LIMIT])
            row.size, row.status, row.stage = sizes[uid], "quarantined", "intake"
            row.error = f"message of {sizes[uid]} bytes exceeds max_message_bytes ({self.max_message_bytes})"
            rows.append(row)
        return sorted(rows, key=lambda r: r.uid)

    def _row(self, uid: int, raw: bytes) -> RawMessage:
        return raw_row(self.config.name, uid, raw, self.sealer)

    def _checkpoint(self, uidvalidity: int) -> int:
        with self.db.session() as session:
            checkpoint = session.get(Checkpoint, self.config.name)
            if checkpoint is None:
                session.add(Checkpoint(mailbox=self.config.name, uidvalidity=uidvalidity, last_uid=0))
                return 0
            if checkpoint.uidvalidity != uidvalidity:
                log.warning("%s: UIDVALIDITY changed (%s -> %s); reading the folder again",
                            self.config.name, checkpoint.uidvalidity, uidvalidity)
                checkpoint.uidvalidity, checkpoint.last_uid, checkpoint.updated_at = uidvalidity, 0, utcnow()
                return 0
            return checkpoint.last_uid

    def _store(self, uidvalidity: int, rows: list[RawMessage], high_uid: int) -> list[int]:
        """Insert the batch and move the checkpoint in one transaction."""
        with self.db.session() as session:
            known = set(session.scalars(select(RawMessage.uid).where(
                RawMessage.mailbox == self.config.name, RawMessage.uidvalidity == uidvalidity,
                RawMessage.uid.in_([r.uid for r in rows]))))
            fresh = [r for r in rows if r.uid not in known]
            for row in fresh:
                row.uidvalidity = uidvalidity
            insert_raw_rows(session, fresh)
            checkpoint = session.get(Checkpoint, self.config.name, with_for_update=True)
            assert checkpoint is not None
            checkpoint.last_uid, checkpoint.updated_at = max(checkpoint.last_uid, high_uid), utcnow()
            return [r.id for r in fresh if r.status == "pending"]

    # --- marking --------------------------------------------------------------------------------

    def unmarked(self) -> list[int]:
        """UIDs whose processing has committed but which are not yet marked on the server."""
        if self.uidvalidity is None:
            return []
        with self.db.reading() as session:
            return list(session.scalars(select(RawMessage.uid).where(
                RawMessage.mailbox == self.config.name, RawMessage.uidvalidity == self.uidvalidity,
                RawMessage.server_state == "pending", RawMessage.status != "pending").order_by(RawMessage.uid)))

    def mark_done(self, client: IMAPClient) -> int:
        uids = self.unmarked()
        action = self.config.done_action
        for batch in chunks(uids, MARK_CHUNK):
            if action in DONE_FLAGS:
                client.add_flags(batch, [DONE_FLAGS[action]], silent=True)
            elif action == "move":
                self._move(client, batch)
            with self.db.session() as session:
                session.execute(update(RawMessage).where(
                    RawMessage.mailbox == self.config.name, RawMessage.uidvalidity == self.uidvalidity,
                    RawMessage.uid.in_(batch)).values(server_state="marked"))
        return len(uids)

    def _move(self, client: IMAPClient, uids: list[int]) -> None:
        folder = self.config.done_folder or "Processed"
        if is_special_use(folder):  # Gmail's \All (archive), Microsoft 365's \Archive: exists, never created
            folder = resolve_folder(client, folder, endpoint_name(self.config))
        elif not client.folder_exists(folder):
            client.create_folder(folder)
        if client.has_capability("MOVE"):
            client.move(uids, folder)
            return
        client.copy(uids, folder)
        client.delete_messages(uids, silent=True)
        # UID EXPUNGE removes only these; a plain EXPUNGE would also take what a person deleted.
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            client.expunge()

    # --- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event, keep_lease: Callable[[], bool]) -> None:
        """Serve the mailbox until `stop` is set or the lease is lost; reconnect with backoff on errors."""
        delay = 1.0
        while not stop.is_set() and keep_lease():
            try:
                client = self.connect()
            except LinkError as exc:  # the operator must act; keep trying slowly meanwhile
                metrics.mailbox_failed(self.config.name, exc)
                log.error("%s; retrying in %.0fs", exc, MAX_BACKOFF)
                stop.wait(MAX_BACKOFF)
                continue
            except NETWORK_ERRORS as exc:
                metrics.mailbox_failed(self.config.name, exc)
                delay = max(delay, throttle_delay(exc) or 0)
                log.warning("%s: cannot connect (%s); retrying in %.0fs", self.config.name, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            delay = 1.0
            try:
                self._serve(client, stop, keep_lease)
            except LinkError as exc:
                self.links.failed(endpoint_name(self.config), exc.reason)
                metrics.mailbox_failed(self.config.name, exc)
                log.error("%s", exc)
                stop.wait(MAX_BACKOFF)
            except NETWORK_ERRORS as exc:
                metrics.mailbox_failed(self.config.name, exc)
                log.warning("%s: connection lost (%s); reconnecting", self.config.name, exc)
                stop.wait(max(delay, throttle_delay(exc) or 0))
            except SQLAlchemyError as exc:
                # Nothing is marked on the server before its row commits: fetching again later is safe.
                log.warning("%s: database unavailable (%s); retrying in %.0fs", self.config.name,
                            type(exc).__name__, DB_RETRY)
                stop.wait(DB_RETRY)
            finally:
                _logout(client)

    def _serve(self, client: IMAPClient, stop: threading.Event, keep_lease: Callable[[], bool]) -> None:
        idle = self.config.idle and client.has_capability("IDLE")
        while not stop.is_set() and keep_lease():
            self.sync(client)
            self.mark_done(client)
            if idle:
                self._wait_idle(client, stop)
            else:
                self._wait_poll(stop)

    def _wait_idle(self, client: IMAPClient, stop: threading.Event) -> None:
        """IDLE until the server reports a change, processed mails wait to be marked, or time is up."""
        client.idle()
        try:
            deadline = time.monotonic() + self.config.idle_timeout
            empty_at_once = 0
            while not stop.is_set() and time.monotonic() < deadline:
                asked = time.monotonic()
                if client.idle_check(timeout=1.0) or self.unmarked():
                    return
                # imapclient answers [] at once, forever, when the server has closed the connection (EOF
                # is swallowed): without this the loss shows only at the end of the IDLE round.
                empty_at_once = empty_at_once + 1 if time.monotonic() - asked < 0.1 else 0
                if empty_at_once >= 3:
                    raise ConnectionResetError("the server closed the connection during IDLE")
        finally:
            client.idle_done()

    def _wait_poll(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + self.config.poll_interval
        while not stop.is_set() and time.monotonic() < deadline:
            if self.unmarked():
                return
            stop.wait(min(1.0, self.config.poll_interval))


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except NETWORK_ERRORS:
        with suppress(*NETWORK_ERRORS):
            client.shutdown()
