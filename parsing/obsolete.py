"""Repairs for RFC 5322 obsolete syntax (§4) where the `email` package does not read it by itself.

A receiver must accept obsolete syntax. The stdlib reads most of it (two-digit years, named zones,
routes, comments in addresses); three things it does not:

- whitespace between a header name and its colon (`From  : John`): the parser takes `From ` for an
  mbox separator and stops at the next line, so no header is read at all;
- comments and spaces inside a message identifier (`<1234 @ local(blah) .machine .example>`);
- comments and spaces inside a date (`Fri, 21 Nov 97 09(comment): 55 : 06 -0600`).

Each repair is applied only when the standard reading fails, so well-formed mail is untouched.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A header line whose name is followed by white space before the colon (obs-optional, RFC 5322 §4.5).
_SPACED_NAME = re.compile(rb"^([!-9;-~]+)[ \t]+:", re.MULTILINE)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_MSGID = re.compile(r"<[^<>\s]+>")
_SPACED_ANGLE = re.compile(r"<([^<>]{1,990})>")
MAX_MSGID = 990  # a header line's 998 characters less its name
_SPACE = re.compile(r"\s+")
_COLON_SPACE = re.compile(r"\s*:\s*")


def close_spaced_header_names(raw: bytes) -> bytes:
    """`Name  : value` -> `Name: value` in the header block only; the body is left as it is."""
    end = _BLANK_LINE.search(raw)
    head, rest = (raw[:end.start()], raw[end.start():]) if end else (raw, b"")
    if not _SPACED_NAME.search(head):
        return raw
    return _SPACED_NAME.sub(rb"\1:", head) + rest


def strip_comments(value: str) -> str:
    """Remove RFC 5322 comments (nested, with quoted pairs), leaving quoted strings alone."""
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
        elif quoted:
            quoted = ch != '"'
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0:
                out.append(" ")
        elif depth == 0:
            quoted = ch == '"'
            out.append(ch)
    return "".join(out)


def message_ids(value: str) -> list[str]:
    """Message identifiers in a header value, obsolete CFWS inside the brackets removed."""
    found = _MSGID.findall(value) or [f"<{_SPACE.sub('', inner)}>" for inner
                                      in _SPACED_ANGLE.findall(strip_comments(value)) if _SPACE.sub("", inner)]
    return [msgid for msgid in found if len(msgid) <= MAX_MSGID]


def parse_date(value: str | None) -> datetime | None:
    """A Date header as an aware datetime; obsolete comments and spacing repaired; unknown zones as UTC.

    RFC 5322 §4.3: an unknown zone name means the local time of an unknown zone, which is read as
    -0000 (UTC) rather than dropped.
    """
    if not value:
        return None
    parsed = _parse(value)
    if parsed is None:
        parsed = _parse(_COLON_SPACE.sub(":", _SPACE.sub(" ", strip_comments(value))).strip())
    if parsed is None:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse(value: str) -> datetime | None:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
