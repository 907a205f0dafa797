"""Sending one rendered mail over SMTP, with connections kept open per worker thread.

Errors are sorted for the outbox: a 5xx answer is permanent (the row fails), anything else (4xx,
refused or dropped connections, time-outs) is transient and the row is tried again later.

A mail to an internationalized address (RFC 6531) is sent with SMTPUTF8, and only such a mail: a
relay that does not offer the extension cannot carry it, which is a permanent failure of that row.
"""

from __future__ import annotations

import smtplib
import ssl
import threading

from mailer.config import SmtpConfig


class SendError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class SmtpClient:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._all: set[smtplib.SMTP] = set()
        self._lock = threading.Lock()

    def _connect(self) -> smtplib.SMTP:
        ep, cfg = self.config.endpoint, self.config
        context = ssl.create_default_context()
        if not cfg.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if ep.implicit_tls:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(ep.host, ep.port, timeout=cfg.timeout, context=context)
        else:
            conn = smtplib.SMTP(ep.host, ep.port, timeout=cfg.timeout)
            if cfg.starttls:
                conn.starttls(context=context)
        if ep.username and ep.password:
            conn.login(ep.username, ep.password)
        return conn

    def _connection(self) -> smtplib.SMTP:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            with self._lock:
                self._all.add(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._all.discard(conn)
            _quietly_close(conn)

    def send(self, from_address: str, to_address: str, raw: bytes) -> None:
        """Deliver `raw`; returns only once the server has accepted it for the recipient."""
        utf8 = needs_smtputf8(from_address, to_address, raw)
        for attempt in (1, 2):
            try:
                conn = self._connection()
                refused = conn.sendmail(from_address, [to_address], raw, mail_options=_options(conn, utf8))
            except smtplib.SMTPServerDisconnected:
                self._drop()  # a kept connection the server closed meanwhile: one fresh try
                if attempt == 2:
                    raise SendError("server disconnected", permanent=False) from None
                continue
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                raise SendError(f"{code} {text!r}", permanent=code >= 500) from None
            except smtplib.SMTPResponseException as exc:
                self._drop()
                raise SendError(f"{exc.smtp_code} {exc.smtp_error!r}", permanent=exc.smtp_code >= 500) from None
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise SendError(f"{type(exc).__name__}: {exc}", permanent=False) from None
            if refused:
                raise SendError(f"recipient refused: {refused}", permanent=True)
            return

    def close(self) -> None:
        """Close every thread's connection (at shutdown, when the workers have stopped)."""
        with self._lock:
            conns, self._all = self._all, set()
        for conn in conns:
            _quietly_close(conn)


def needs_smtputf8(from_address: str, to_address: str, raw: bytes) -> bool:
    """True when the envelope or the header block is not ASCII (RFC 6531): only SMTPUTF8 can carry it."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    return not (from_address.isascii() and to_address.isascii() and head.isascii())


def _options(conn: smtplib.SMTP, utf8: bool) -> list[str]:
    if not utf8:
        return []
    conn.ehlo_or_helo_if_needed()
    if not conn.has_extn("smtputf8"):
        raise SendError("the relay does not offer SMTPUTF8, which an internationalized address needs "
                        "(RFC 6531); the reply cannot be sent through this relay", permanent=True)
    return ["SMTPUTF8"]


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()
