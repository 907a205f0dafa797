"""Sending one rendered mail over SMTP, with connections kept open per worker thread.

Errors are sorted for the outbox: a 5xx answer is permanent (the row fails), anything else (4xx,
refused or dropped connections, time-outs) is transient and the row is tried again later.
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
        for attempt in (1, 2):
            try:
                refused = self._connection().sendmail(from_address, [to_address], raw)
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


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()
