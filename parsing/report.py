"""Delivery status notifications (RFC 3464): which of our mails bounced, to whom, and why."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

_MSGID = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True)
class DeliveryReport:
    original_message_id: str | None
    action: str  # failed | delayed | delivered | relayed | expanded | unknown
    status: str
    recipient: str
    diagnostic: str


def delivery_report(message: Message) -> DeliveryReport | None:
    """The report carried by a multipart/report; report-type=delivery-status mail, else None."""
    if message.get_content_type() != "multipart/report":
        return None
    if (message.get_param("report-type") or "").lower() != "delivery-status":
        return None
    fields: dict[str, str] = {}
    original: str | None = None
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            fields.update(_status_fields(part))
        elif kind in ("message/rfc822", "text/rfc822-headers") and original is None:
            original = _original_message_id(part)
    return DeliveryReport(
        original_message_id=original,
        action=fields.get("action", "unknown").lower(),
        status=fields.get("status", ""),
        recipient=fields.get("final-recipient", fields.get("original-recipient", "")).split(";")[-1].strip(),
        diagnostic=fields.get("diagnostic-code", "")[:500],
    )


def _status_fields(part: Message) -> dict[str, str]:
    """The per-message and per-recipient field groups of message/delivery-status, flattened."""
    fields: dict[str, str] = {}
    payload = part.get_payload()
    groups = payload if isinstance(payload, list) else []
    for group in groups:
        for name, value in group.items():
            fields.setdefault(name.lower(), " ".join(str(value).split()))
    if not groups and isinstance(payload, str):
        for line in payload.splitlines():
            name, sep, value = line.partition(":")
            if sep:
                fields.setdefault(name.strip().lower(), value.strip())
    return fields


def _original_message_id(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        found = _MSGID.search(str(payload[0].get("Message-ID", "")))
        return found.group() if found else None
    text = payload if isinstance(payload, str) else ""
    match = re.search(r"^Message-ID:\s*(<[^<>\s]+>)", text, re.IGNORECASE | re.MULTILINE)
    return match.group(1) if match else None
