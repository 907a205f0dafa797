"""What Gmail and Microsoft 365 do differently from a plain IMAP server, handled in one place.

- Folders named by special use: `done_folder = "\\All"` (Gmail's archive, `[Gmail]/All Mail`, or
  `[Google Mail]/All Mail` in some countries) or `"\\Archive"` (Microsoft 365's `Archive`, named in the
  mailbox's language) is looked up in the server's LIST answer instead of spelled out, and never created.
  On Gmail, moving a mail out of INBOX removes the Inbox label: that is Gmail's archive.
- Throttling: Exchange Online answers `NO ... Request is throttled. Suggested Backoff Time: N
  milliseconds` (and refuses connections for a while); the intake then waits at least that long.
"""

from __future__ import annotations

import re

from imapclient import IMAPClient

from mailer.transport.tls import LinkError

_SUGGESTED_BACKOFF = re.compile(rb"Suggested Backoff Time:\s*(\d+)\s*milli", re.IGNORECASE)
_THROTTLED = re.compile(rb"throttl|\[UNAVAILABLE\]|\[LIMIT\]", re.IGNORECASE)
THROTTLE_FLOOR = 30.0  # seconds, when a server says it throttles but not for how long


def throttle_delay(exc: BaseException) -> float | None:
    """Seconds to wait before the next attempt when `exc` is a throttling answer; None otherwise."""
    text = str(exc).encode("utf-8", "replace")
    suggested = _SUGGESTED_BACKOFF.search(text)
    if suggested:
        return int(suggested.group(1)) / 1000
    return THROTTLE_FLOOR if _THROTTLED.search(text) else None


def is_special_use(folder: str) -> bool:
    return folder.startswith("\\")


def resolve_folder(client: IMAPClient, folder: str, endpoint: str) -> str:
    """The server's name for `folder`: itself, or the folder LIST marks with that special-use flag."""
    if not is_special_use(folder):
        return folder
    for flags, _delimiter, name in client.list_folders():
        if any(flag.decode("ascii", "replace").lower() == folder.lower() for flag in flags):
            return str(name)
    raise LinkError(endpoint, f"done_folder: the server has no folder marked {folder} (LIST shows none)")
