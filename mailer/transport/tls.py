"""TLS for the IMAP and SMTP connections: verified contexts, the plaintext rule, one-line failures.

Certificates and host names are always checked against the system's CAs, or against `ca_file` for a
server signed by an internal CA; `tls_verify = false` is the only way to skip that and it must be
written in the config. A connection that fails verification is reported as one line naming the
endpoint (`mailbox 'support': ...`, `smtp: ...`) and is never retried without TLS.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path


class LinkError(Exception):
    """A connection problem the operator must fix (certificate, host name, credentials), told in one line."""

    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint, self.reason = endpoint, reason
        super().__init__(f"{endpoint}: {reason}")


def client_context(ca_file: Path | None, verify: bool) -> ssl.SSLContext:
    """A client context that checks the chain and the host name; `ca_file` replaces the system's CAs."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: a password sent there never leaves the machine."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plaintext_refusal(host: str, encrypted: bool, allow_plaintext: bool, what: str) -> str | None:
    """Why credentials must not go to `host` over this connection, or None when they may."""
    if encrypted or allow_plaintext or is_loopback(host):
        return None
    return (f"would send the {what} unencrypted to {host}; use the TLS scheme or starttls = true, "
            "or set allow_plaintext = true if the network is trusted")


def describe(exc: BaseException, host: str) -> str:
    """A one-line reason for a failed TLS handshake, saying whether the name or the chain was wrong."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or str(exc)
        if "hostname" in message.lower() or "ip address mismatch" in message.lower():
            return f"TLS certificate does not match the host name {host!r} ({message})"
        return f"TLS certificate of {host} not trusted ({message}); give its CA as ca_file"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {host} failed ({exc.reason or exc})"
    if isinstance(exc, socket.timeout):
        return f"{host}: timed out"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `exc`, if a handshake is what failed (libraries wrap it in their own types)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return ssl.SSLCertVerificationError(text)
    return None
