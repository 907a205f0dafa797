"""Is the sender the owner of a registered account?

`verified` needs exactly one From address that equals a registered address after normalization, and no
header that points the conversation elsewhere (a different Sender or Reply-To). The outcome and its
evidence are stored on the ticket; an unverified sender is answered identically whether or not the
address is registered, so nobody can probe the account directory by mail.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parsing.message import ParsedMail

VERIFIED, UNREGISTERED, MISMATCH, SPOOFED = "verified", "unregistered", "mismatch", "spoofed"
MAX_ADDRESS = 254  # the longest forward-path RFC 5321 allows, less its angle brackets


@dataclass(frozen=True)
class AccountRef:
    id: int | None  # the imported accounts row; None when the account comes from a live directory
    email: str
    user_id: str
    language: str
    display_name: str
    anti_phishing_code: str | None = None


@dataclass(frozen=True)
class Verification:
    status: str
    address: str | None  # the normalized From address, if there is exactly one usable
    account: AccountRef | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return self.status == VERIFIED


def normalize_address(address: str) -> str | None:
    """Lower-case, NFC local part, IDNA (punycode) domain, no surrounding space; None if not an address.

    The account import and the look-up of a sender both go through here, so an internationalized
    address (RFC 6531) matches however its client composed the accented letters. An address holding a
    replacement character (U+FFFD) is what undecodable bytes became: not an address anyone can own.
    """
    address = unicodedata.normalize("NFC", address.strip().strip("<>").strip())
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or len(address) > MAX_ADDRESS \
            or any(ch.isspace() or not ch.isprintable() for ch in address) or "\ufffd" in address:
        return None
    try:
        ascii_domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    return f"{local.lower()}@{ascii_domain}"


def verify_sender(mail: ParsedMail, find_account: Callable[[str], AccountRef | None]) -> Verification:
    from_addresses = [normalize_address(a.address) for a in mail.from_]
    if len(from_addresses) != 1 or from_addresses[0] is None:
        return Verification(MISMATCH if from_addresses else UNREGISTERED, None,
                            evidence={"reason": "the mail must have exactly one From address",
                                      "from": [a.address for a in mail.from_]})
    address = from_addresses[0]
    account = find_account(address)
    if account is None:
        return Verification(UNREGISTERED, address, evidence={"reason": "no account has this address"})
    conflicts = _conflicting_headers(mail, address)
    if conflicts:
        return Verification(MISMATCH, address, account, evidence={"reason": "headers point elsewhere", **conflicts})
    return Verification(VERIFIED, address, account, evidence={"reason": "From matches the registered address",
                                                              "user_id": account.user_id})


def _conflicting_headers(mail: ParsedMail, address: str) -> dict[str, str]:
    conflicts = {}
    if mail.sender and normalize_address(mail.sender.address) != address:
        conflicts["sender"] = mail.sender.address
    for reply_to in mail.reply_to:
        if normalize_address(reply_to.address) != address:
            conflicts["reply_to"] = reply_to.address
    return conflicts
