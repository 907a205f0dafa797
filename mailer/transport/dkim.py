"""DKIM signatures on outgoing mail (dkimpy), made once when an outbox row's bytes are fixed.

Signing when the row is written, not when it is sent, keeps a re-sent mail byte-identical to the first
attempt. relaxed/relaxed canonicalization survives the header refolding and whitespace changes relays
make. The signed header list names the headers that carry meaning for the reader and for threading;
a listed header the mail lacks is signed as absent, so nobody can add one on the way.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from mailer.config import DkimConfig

# dkimpy (and the DNS resolver it imports) and cryptography load only where a key is read or a mail
# signed: a daemon without [dkim] starts without them.

SIGNED_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "MIME-Version",
                  "Content-Type", "Auto-Submitted", "Reply-To")
MIN_BITS = 1024


def _load(path: Path) -> rsa.RSAPrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"is a {type(key).__name__}, not an RSA key")
    return key


def key_problem(path: Path) -> str | None:
    """Why `path` cannot sign (unreadable, not an RSA PEM key, too short), or None."""
    try:
        key = _load(path)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    except (ValueError, TypeError) as exc:
        return f"{path} is not an unencrypted RSA private key in PEM: {str(exc).splitlines()[0]}"
    if key.key_size < MIN_BITS:
        return f"{path} holds a {key.key_size}-bit key; receivers ignore keys under {MIN_BITS} bits (use 2048)"
    return None


def public_key_b64(path: Path) -> str:
    """The `p=` value: the public key as DER SubjectPublicKeyInfo, base64."""
    from cryptography.hazmat.primitives import serialization

    der = _load(path).public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def txt_record(config: DkimConfig) -> str:
    """The DNS record to publish, in zone-file form."""
    assert config.key_file is not None
    return f'{config.selector}._domainkey.{config.domain}. IN TXT "v=DKIM1; k=rsa; p={public_key_b64(config.key_file)}"'


@dataclass(frozen=True)
class DkimSigner:
    domain: str
    selector: str
    key_pem: bytes

    @classmethod
    def from_config(cls, config: DkimConfig) -> DkimSigner:
        assert config.key_file is not None
        # dkimpy parses PKCS#1 and PKCS#8; the key was checked when the config was read.
        return cls(config.domain, config.selector, config.key_file.read_bytes())

    def sign(self, raw: bytes) -> bytes:
        """`raw` with a DKIM-Signature header in front."""
        import dkim as dkimpy

        signature = dkimpy.sign(raw, self.selector.encode(), self.domain.encode(), self.key_pem,
                                canonicalize=(b"relaxed", b"relaxed"),
                                include_headers=[h.encode() for h in SIGNED_HEADERS])
        return signature.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + raw
