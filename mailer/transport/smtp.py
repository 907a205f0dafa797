"""Sending one rendered mail over SMTP, with connections kept open per worker thread.

Errors are sorted for the outbox: a 5xx answer is permanent (the row fails), anything else (4xx,
refused or dropped connections, time-outs) is transient and the row is tried again later. A relay whose
certificate does not verify, or that refuses our credentials, is the operator's to fix: the row waits
(transient) and the problem is recorded in `links` under "smtp" for health checks.

A mail to an internationalized address (RFC 6531) is sent with SMTPUTF8, and only such a mail: a
relay that does not offer the extension cannot carry it, which is a permanent failure of that row.
"""

from __future__ import annotations

import smtplib
import threading

from mailer.config import SmtpConfig
from mailer.transport.links import Links
from mailer.transport.oauth import TokenCache, xoauth2
from mailer.transport.tls import LinkError, client_context, describe, tls_failure

ENDPOINT = "smtp"


class SendError(Exception):
    def __init__(self, message: str, *, permanent: bool, link: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.link = link  # the relay's certificate or our credentials: not the mail's fault, never gives up


class SmtpClient:
    def __init__(self, config: SmtpConfig, links: Links | None = None) -> None:
        self.config = config
        self.links = links or Links()
        oauth = config.security.oauth
        self.tokens = TokenCache(oauth, ENDPOINT) if oauth else None
        self._local = threading.local()
        self._all: set[smtplib.SMTP] = set()
        self._lock = threading.Lock()

    def _connect(self) -> smtplib.SMTP:
        """A verified (as configured), signed-in connection; LinkError for what the operator must fix."""
        ep, cfg = self.config.endpoint, self.config
        context = client_context(cfg.security.ca_file, cfg.tls_verify)
        try:
            if ep.implicit_tls:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(ep.host, ep.port, timeout=cfg.timeout, context=context)
            else:
                conn = smtplib.SMTP(ep.host, ep.port, timeout=cfg.timeout)
                if cfg.starttls:
                    conn.starttls(context=context)
        except (OSError, smtplib.SMTPException) as exc:
            failure = tls_failure(exc)
            if failure is None:
                raise
            raise LinkError(ENDPOINT, describe(failure, ep.host)) from None
        try:
            self._sign_in(conn)
        except LinkError:
            _quietly_close(conn)
            raise
        return conn

    def _sign_in(self, conn: smtplib.SMTP) -> None:
        """AUTH with the password, or XOAUTH2 with an access token that is refreshed once if refused."""
        user, password = self.config.endpoint.username, self.config.endpoint.password
        try:
            if self.tokens is None:
                if user and password:
                    conn.login(user, password)
                return
            assert user is not None
            token = self.tokens.token()
            try:
                _xoauth2(conn, user, token)
            except smtplib.SMTPAuthenticationError:
                _xoauth2(conn, user, self.tokens.refused(token))
        except smtplib.SMTPAuthenticationError as exc:
            what = "password" if self.tokens is None else "fresh OAuth2 token (is the grant revoked?)"
            raise LinkError(ENDPOINT, f"the relay refused the {what} for {user}: {exc.smtp_code} "
                                      f"{exc.smtp_error.decode('utf-8', 'replace')}") from None

    def _connection(self) -> smtplib.SMTP:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._local.conn = self._connect()
            except LinkError as exc:
                self.links.failed(ENDPOINT, exc.reason)
                raise
            self.links.ok(ENDPOINT)
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
            except LinkError as exc:
                raise SendError(str(exc), permanent=False, link=True) from None
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


def _xoauth2(conn: smtplib.SMTP, user: str, token: str) -> None:
    """AUTH XOAUTH2 with the initial response; an empty line answers the server's error challenge."""
    answers = iter((xoauth2(user, token),))
    conn.ehlo_or_helo_if_needed()
    conn.auth("XOAUTH2", lambda _challenge=None: next(answers, ""), initial_response_ok=True)


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()
