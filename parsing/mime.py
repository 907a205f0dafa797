"""Bytes to a MIME tree with its defects and attachments: mail-parser first, the `email` package if it fails.

mail-parser is the primary reader (its defect list and attachment handling are what the rest was built
on), but on malformed mail it raises where `email` records a defect (a boundary it cannot find, a
charset label with a NUL byte, a charset that is not a text encoding). Then the same bytes are read
with `email` alone, and that is recorded as a defect: a mail is never lost to a reader's bug.

A mail whose first lines are damaged (stray bytes before the first header, a header name with a
flipped byte) would otherwise read as "no header": up to a few such lines are dropped, and recorded.

Both readers get the tree built by `message_from_bytes` below, which feeds the `email` parser in
slices: `email.message_from_bytes` reads the whole mail through a StringIO, which holds it as four
bytes per character, so a 30 MB mail cost about 200 MB at its peak instead of about 60.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import compat32

import mailparser
from mailparser.exceptions import MailParserRecursionError

from parsing.obsolete import close_spaced_header_names

# A header line (RFC 5322 field name and colon) or the mbox separator line.
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:|^From ")
MAX_GARBAGE_LINES = 3
MAX_GARBAGE_BYTES = 1024
FEED_SLICE = 8192  # what `email.parser.Parser` reads at a time: the parser sees the same pieces


@dataclass(frozen=True)
class RawAttachment:
    filename: str  # as written in the part (may hold RFC 2047 words)
    content_type: str
    content: bytes


@dataclass(frozen=True)
class MimeTree:
    message: Message
    defects: tuple[str, ...]
    attachments: tuple[RawAttachment, ...]


def read_mime(raw: bytes) -> MimeTree:
    raw = close_spaced_header_names(raw)
    tree = _read(raw)
    if not tree.message.keys():
        repaired, dropped = drop_leading_garbage(raw)
        if dropped:
            tree = _read(repaired)
            tree = MimeTree(tree.message, (*tree.defects, f"{dropped} unreadable line(s) before the header "
                                           "block dropped"), tree.attachments)
    return tree


def drop_leading_garbage(raw: bytes) -> tuple[bytes, int]:
    """The mail without the few damaged lines before its first readable header line, and how many.

    Only a short prefix goes (stray bytes, a damaged first header with its continuation lines), and
    only when a header line follows: a binary file or text without a header block stays unreadable.
    """
    offset = dropped = 0
    for line in raw[:MAX_GARBAGE_BYTES + 1000].splitlines(keepends=True):
        if _HEADER_LINE.match(line):
            return (raw[offset:], dropped) if dropped else (raw, 0)
        if not line.strip() or offset + len(line) > MAX_GARBAGE_BYTES:
            break
        if line[:1] not in (b" ", b"\t"):  # a continuation line belongs to the line it continues
            dropped += 1
            if dropped > MAX_GARBAGE_LINES:
                break
        offset += len(line)
    return raw, 0


def message_from_bytes(raw: bytes) -> Message:
    """What `email.message_from_bytes(raw)` returns (compat32), without a copy of the mail per character.

    Decoding is per byte (ASCII, surrogate escapes), so slices decode to the same text as the whole."""
    parser = BytesFeedParser(policy=compat32)
    view = memoryview(raw)
    for start in range(0, len(view), FEED_SLICE):
        parser.feed(view[start:start + FEED_SLICE].tobytes())
    return parser.close()


def _parse_with_mailparser(raw: bytes) -> mailparser.MailParser:
    """`mailparser.parse_from_bytes(raw)`, over the tree read by `message_from_bytes`."""
    try:
        return mailparser.MailParser(message_from_bytes(raw))
    except RecursionError as exc:  # as mail-parser reports it: one multipart level per recursion
        raise MailParserRecursionError("Message nesting too deep to parse") from exc


def _read(raw: bytes) -> MimeTree:
    try:
        mail = _parse_with_mailparser(raw)
        return MimeTree(mail.message, tuple(_mailparser_defects(mail)), _mailparser_attachments(mail))
    except Exception as exc:  # mail-parser's own fault on malformed mail; `email` records defects instead
        message = message_from_bytes(raw)
        note = f"mail-parser could not read this mail ({type(exc).__name__}); read with the email package"
        return MimeTree(message, (note, *_email_defects(message)), _email_attachments(message))


def _mailparser_defects(mail: mailparser.MailParser) -> list[str]:
    """MIME defects as mail-parser found them, less its charset complaints: parsing.message decodes text
    parts again with repaired charsets and records its own defect only where that still fails."""
    found = []
    for entry in mail.defects or []:
        items = [f"{part}: {item}" for part, values in entry.items() for item in values] \
            if isinstance(entry, dict) else [str(entry)]
        found += [item for item in items if "CharsetDecodeDefect" not in item]
    return found


def _mailparser_attachments(mail: mailparser.MailParser) -> tuple[RawAttachment, ...]:
    found = []
    for item in mail.attachments:
        payload = item.get("payload") or ""
        if item.get("binary"):
            try:
                # binascii reads the ASCII text in place; base64.b64decode would first copy it to bytes.
                content = binascii.a2b_base64(payload)
            except ValueError:
                content = payload.encode("ascii", errors="replace")
        else:
            content = payload.encode("utf-8", errors="surrogateescape")
        found.append(RawAttachment(str(item.get("filename") or ""),
                                   str(item.get("mail_content_type") or "application/octet-stream"), content))
    return tuple(found)


def _email_defects(message: Message) -> list[str]:
    return [f"{part.get_content_type()}: {type(defect).__name__}" for part in message.walk()
            for defect in part.defects]


def _email_attachments(message: Message) -> tuple[RawAttachment, ...]:
    """Parts with a file name or an attachment disposition, as mail-parser would list them."""
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename is None and not str(part.get("Content-Disposition", "")).lower().startswith("attachment"):
            continue
        payload = part.get_payload(decode=True)
        found.append(RawAttachment(str(filename or ""), part.get_content_type(),
                                   payload if isinstance(payload, bytes) else b""))
    return tuple(found)
