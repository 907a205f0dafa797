"""`parse(raw) -> ParsedMail`: bytes to the frozen values the rest of supportd works with.

parsing.mime builds the MIME tree, records its defects and lists attachments. Text parts and headers
are decoded here, not by mail-parser, because its fallback for a wrong charset label silently drops
characters (see parsing.charset); everything it returns is turned into plain frozen values so the rest
of supportd never meets a dynamic attribute or a silent None.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.utils import getaddresses

from parsing.charset import address_header_text, decode_bytes, decode_header_value
from parsing.html import html_to_text
from parsing.identifiers import Identifiers, extract_identifiers
from parsing.language import detect_language
from parsing.mime import RawAttachment, read_mime
from parsing.normalize import content_hash
from parsing.obsolete import message_ids, parse_date, strip_comments
from parsing.quotes import strip_quoted
from parsing.report import DeliveryReport, delivery_report

MAX_FILENAME = 200


class UnreadableMail(Exception):
    """The bytes are not a mail at all (empty, or no header could be read)."""


@dataclass(frozen=True)
class Address:
    name: str
    address: str  # as written; routing.verify normalizes


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str  # for display only: directory parts and control characters removed
    content_type: str  # as declared by the sender
    content: bytes | None = field(repr=False)  # None once screened and stored (mailer/stages/prepare.py)
    sha256: str
    size: int


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
    text: str  # the whole body as text (HTML converted when there is no text part); "" once prepared ahead
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
    tree = read_mime(raw)
    message = tree.message
    if not message.keys():
        raise UnreadableMail("no header could be read")

    defects = list(tree.defects)
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
        date=parse_date(_text(message.get("Date"))),
        in_reply_to=next(iter(message_ids(_text(message.get("In-Reply-To")))), None),
        references=tuple(message_ids(" ".join(_text(v) for v in message.get_all("References", [])))),
        text=body,
        new_text=new_text,
        has_html=bool(html),
        attachments=_attachments(tree.attachments),
        headers=_headers(trace),
        trace=trace,
        defects=tuple(defects),
        language=detect_language(subject, new_text),
        identifiers=extract_identifiers(subject + "\n" + new_text),
        content_hash=content_hash(subject, new_text),
        report=delivery_report(message),
    )


def message_id_or_derived(value: str | None, sha: str) -> tuple[str, bool]:
    """The mail's own Message-ID, or one derived from its SHA-256 so the same bytes get the same id."""
    found = message_ids(_text(value))
    if found:
        return found[0], False
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
    """Parsed first, display names decoded after: an encoded word cannot smuggle in an address."""
    texts = [address_header_text(v) for v in values]
    try:
        pairs = getaddresses(texts)
    except RecursionError:  # thousands of nested comments; stripped without recursion, then parsed
        pairs = getaddresses([strip_comments(text) for text in texts])
    return tuple(Address(name=name, address=addr) for name, addr in pairs if addr)


def _text(value: object) -> str:
    """A raw header value as text: 8-bit bytes (surrogate escapes or a compat32 Header) read as UTF-8."""
    return decode_header_value(value) if value is not None else ""  # type: ignore[arg-type]


def _headers(trace: tuple[tuple[str, str], ...]) -> dict[str, tuple[str, ...]]:
    headers: dict[str, list[str]] = {}
    for name, value in trace:
        headers.setdefault(name, []).append(value)
    return {name: tuple(values) for name, values in headers.items()}


def _attachments(found: tuple[RawAttachment, ...]) -> tuple[ParsedAttachment, ...]:
    return tuple(ParsedAttachment(
        filename=safe_display_name(decode_header_value(item.filename)),
        content_type="".join(ch for ch in item.content_type.lower() if ch.isprintable())[:255],
        content=item.content,
        sha256=hashlib.sha256(item.content).hexdigest(),
        size=len(item.content),
    ) for item in found)


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
