"""`parse(raw) -> ParsedMail`: the one place mail-parser's objects are touched.

mail-parser builds the MIME tree, records its defects and lists attachments. Text parts and headers
are decoded here, not by mail-parser, because its fallback for a wrong charset label silently drops
characters (see parsing.charset); everything it returns is turned into plain frozen values so the rest
of supportd never meets a dynamic attribute or a silent None.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

import mailparser

from parsing.charset import decode_bytes, decode_header_value
from parsing.html import html_to_text
from parsing.identifiers import Identifiers, extract_identifiers
from parsing.language import detect_language
from parsing.normalize import content_hash
from parsing.quotes import strip_quoted
from parsing.report import DeliveryReport, delivery_report

MAX_FILENAME = 200
_MSGID = re.compile(r"<[^<>\s]+>")


class UnreadableMail(Exception):
    """The bytes are not a mail at all (empty, or no header could be read)."""


@dataclass(frozen=True)
class Address:
    name: str
    address: str  # as written; routing.verify normalizes


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str  # for display only: directory parts and control characters removed
    content_type: str
    content: bytes = field(repr=False)
    sha256: str

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True)
class ParsedMail:
    message_id: str
    message_id_derived: bool
    sha256: str
    size: int
    subject: str
    from_: tuple[Address, ...]
    sender: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    date: datetime | None
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str  # the whole body as text (HTML converted when there is no text part)
    new_text: str  # without quoted replies and signature
    has_html: bool
    attachments: tuple[ParsedAttachment, ...]
    headers: dict[str, tuple[str, ...]]  # lower-case name -> decoded values, in order
    trace: tuple[tuple[str, str], ...]  # all header fields (lower-case name, value), top first
    defects: tuple[str, ...]
    language: str | None  # shipped BCP 47 tag (parsing.language); None when the text has no words
    identifiers: Identifiers
    content_hash: str  # of the normalized subject and new text: equal for a re-sent complaint
    report: DeliveryReport | None  # set for a delivery status notification (a bounce)

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def parse(raw: bytes) -> ParsedMail:
    if not raw.strip():
        raise UnreadableMail("empty message")
    sha = hashlib.sha256(raw).hexdigest()
    mail = mailparser.parse_from_bytes(raw)
    message: Message = mail.message
    if not message.keys():
        raise UnreadableMail("no header could be read")

    defects = [str(d) for d in _defects(mail)]
    text, html, text_defects = _body_text(message)
    defects += text_defects
    body = text if text.strip() else html_to_text(html)

    message_id, derived = message_id_or_derived(message.get("Message-ID"), sha)
    subject = decode_header_value(message.get("Subject"))
    new_text = strip_quoted(body)
    trace = tuple((name.lower(), decode_header_value(value)) for name, value in message.items())
    return ParsedMail(
        message_id=message_id,
        message_id_derived=derived,
        sha256=sha,
        size=len(raw),
        subject=subject,
        from_=_addresses(message.get_all("From", [])),
        sender=next(iter(_addresses(message.get_all("Sender", []))), None),
        reply_to=_addresses(message.get_all("Reply-To", [])),
        to=_addresses(message.get_all("To", []) + message.get_all("Cc", [])),
        date=_date(message.get("Date")),
        in_reply_to=next(iter(_MSGID.findall(str(message.get("In-Reply-To", "")))), None),
        references=tuple(_MSGID.findall(" ".join(str(v) for v in message.get_all("References", [])))),
        text=body,
        new_text=new_text,
        has_html=bool(html),
        attachments=_attachments(mail),
        headers=_headers(trace),
        trace=trace,
        defects=tuple(defects),
        language=detect_language(subject, new_text),
        identifiers=extract_identifiers(subject + "\n" + new_text),
        content_hash=content_hash(subject, new_text),
        report=delivery_report(message),
    )


def _defects(mail: mailparser.MailParser) -> list[str]:
    """MIME defects as mail-parser found them, less its charset complaints: _body_text decodes text parts
    again with repaired charsets and records its own defect only where that still fails."""
    found = []
    for entry in mail.defects or []:
        items = [f"{part}: {item}" for part, values in entry.items() for item in values] \
            if isinstance(entry, dict) else [str(entry)]
        found += [item for item in items if "CharsetDecodeDefect" not in item]
    return found


def message_id_or_derived(value: str | None, sha: str) -> tuple[str, bool]:
    """The mail's own Message-ID, or one derived from its SHA-256 so the same bytes get the same id."""
    match = _MSGID.search(str(value or ""))
    if match and len(match.group()) < 990:
        return match.group(), False
    return f"<{sha}@sha256.supportd.invalid>", True


def _body_text(message: Message) -> tuple[str, str, list[str]]:
    """Concatenate inline text/plain and text/html parts (not attachments), decoded with repaired charsets."""
    plain: list[str] = []
    html: list[str] = []
    defects: list[str] = []
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_filename() or str(part.get("Content-Disposition", "")).lower().startswith("attachment"):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        text, defect = decode_bytes(payload, part.get_content_charset())
        if defect:
            defects.append(f"{part.get_content_type()}: {defect}")
        (html if part.get_content_subtype() == "html" else plain).append(text.replace("\r\n", "\n"))
    return "\n".join(plain), "\n".join(html), defects


def _addresses(values: list[str]) -> tuple[Address, ...]:
    decoded = [decode_header_value(v) for v in values]
    return tuple(Address(name=name, address=addr) for name, addr in getaddresses(decoded) if addr)


def _date(value: str | None) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _headers(trace: tuple[tuple[str, str], ...]) -> dict[str, tuple[str, ...]]:
    headers: dict[str, list[str]] = {}
    for name, value in trace:
        headers.setdefault(name, []).append(value)
    return {name: tuple(values) for name, values in headers.items()}


def _attachments(mail: mailparser.MailParser) -> tuple[ParsedAttachment, ...]:
    found = []
    for item in mail.attachments:
        payload = item.get("payload") or ""
        if item.get("binary"):
            try:
                content = base64.b64decode(payload)
            except ValueError:
                content = payload.encode("ascii", errors="replace")
        else:
            content = payload.encode("utf-8", errors="surrogateescape")
        found.append(ParsedAttachment(
            filename=safe_display_name(decode_header_value(item.get("filename") or "")),
            content_type=str(item.get("mail_content_type") or "application/octet-stream").lower()[:255],
            content=content,
            sha256=hashlib.sha256(content).hexdigest(),
        ))
    return tuple(found)


def safe_display_name(name: str) -> str:
    """A filename fit to show a person: no directories, no control or bidi characters, bounded length."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".")
    return name[:MAX_FILENAME] or "attachment"


# Kept when a raw message must lose its body: what threading, deduplication and an audit need.
KEPT_HEADERS = ("from", "to", "cc", "date", "message-id", "in-reply-to", "references", "reply-to", "sender",
                "return-path", "auto-submitted", "authentication-results", "received")


def without_body(raw: bytes, kinds: tuple[str, ...]) -> bytes:
    """The raw mail reduced to its trace and address headers, for a mail that carried secrets."""
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    kept, keep = [], False
    for line in head.splitlines():
        if line[:1] in (b" ", b"\t"):
            if keep:
                kept.append(line)
            continue
        keep = line.split(b":", 1)[0].strip().lower().decode("ascii", "replace") in KEPT_HEADERS
        if keep:
            kept.append(line)
    note = f"X-Supportd-Redacted: body and subject removed, they contained: {', '.join(kinds)}"
    return b"\r\n".join([*kept, note.encode("ascii")]) + b"\r\n\r\n"
