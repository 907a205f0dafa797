"""Signed plus-addresses: `support+<detail>.<token>@domain`, where the token is an HMAC of what it names.

Ticket addresses for specialists' replies and one-click rating addresses for surveys are both of this
form; only the text signed and the token's length differ.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign(secret: bytes, text: str, length: int) -> str:
    """A short, case-insensitive token (base32 of HMAC-SHA256) for `text`."""
    digest = hmac.new(secret, text.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:length]


def plus_address(support_address: str, detail: str) -> str:
    local, _, domain = support_address.partition("@")
    return f"{local}+{detail}@{domain}"
