"""Mutated mail for property-based tests: seeds from real corpora, damaged the ways mail is damaged in the wild.

Truncation, byte flips, a lost header/body separator, broken MIME boundaries, bogus charsets, deep
nesting, thousands of parts, huge header lines, CRLF smuggled through encoded words, and stray
headers that steer the pipeline (threading, automatic-mail signs, authentication results, the
specialists' plus address). Injected addresses all end in `evil.example`, so a test can check that
no reply ever goes there.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from pathlib import Path

from hypothesis import strategies as st

from mailer.demo.samples import demo_mails

CORPUS = Path(__file__).parent / "corpus" / "real"
INJECTED = b"evil.example"

Draw = st.DrawFn


def seed_mails() -> list[bytes]:
    """Our corpus, the demo mails and, where the distribution ships it, CPython's test_email data."""
    seeds = [p.read_bytes() for p in sorted(CORPUS.iterdir())] + [s.raw for s in demo_mails()]
    try:
        import test

        data = Path(os.path.dirname(test.__file__)) / "test_email" / "data"
        seeds += [p.read_bytes() for p in sorted(data.glob("msg_*.txt"))]
    except ImportError:
        pass
    return seeds


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(sep)
        if found:
            return head, sep, body
    return raw, b"", b""


def _eol(raw: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in raw[:2000] else b"\n"


def truncate(draw: Draw, raw: bytes) -> bytes:
    return raw[:draw(st.integers(0, len(raw)))]


def flip_bytes(draw: Draw, raw: bytes) -> bytes:
    data = bytearray(raw or b"x")
    for _ in range(draw(st.integers(1, 16))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def lose_separator(draw: Draw, raw: bytes) -> bytes:
    head, sep, body = _split(raw)
    return head + sep[: len(sep) // 2] + body


def break_boundary(draw: Draw, raw: bytes) -> bytes:
    found = re.findall(rb'boundary="?([^";\r\n]+)"?', raw, re.IGNORECASE)
    if not found:
        return raw
    boundary = draw(st.sampled_from(found))
    how = draw(st.sampled_from(["drop-close", "drop-first", "rename", "drop-param", "nest-same"]))
    if how == "drop-close":
        return raw.replace(b"--" + boundary + b"--", b"")
    if how == "drop-first":
        return raw.replace(b"--" + boundary, b"--", 1)
    if how == "rename":
        return raw.replace(boundary, boundary[:-1] + b"X", 1)
    if how == "drop-param":
        return re.sub(rb'boundary="?[^";\r\n]+"?', b"", raw, count=1, flags=re.IGNORECASE)
    return raw.replace(b"--" + boundary + b"--", b"--" + boundary + b"\r\nContent-Type: multipart/mixed; boundary=\""
                       + boundary + b"\"\r\n\r\n--" + boundary + b"--", 1)


BOGUS_CHARSETS = [b"x-klingon", b"utf-7", b"utf-16", b"utf-32-be", b"", b'"', b"gb2312\x00", b"unknown-8bit",
                  b"rot13", b"base64", b"hex", b"zlib", b"uu", b"punycode", b"idna", b"unicode_escape",
                  b"raw_unicode_escape", b"=?utf-8?q?x?=", b"cp1252;;;", b"iso-8859-1'en'", b"mbcs", b"undefined"]


def bogus_charset(draw: Draw, raw: bytes) -> bytes:
    charset = draw(st.sampled_from(BOGUS_CHARSETS))
    raw = re.sub(rb'charset="?[\w.:-]*"?', b"charset=" + charset, raw, flags=re.IGNORECASE)
    return re.sub(rb"=\?[\w-]+\?([bBqQ])\?", b"=?" + charset + rb"?\1?", raw)


def deep_nesting(draw: Draw, raw: bytes) -> bytes:
    depth = draw(st.integers(20, 400))
    eol = _eol(raw)
    head, _, body = _split(raw)
    head = re.sub(rb"(?im)^content-type:.*(\r?\n[ \t].*)*$", b"X-Was-Content-Type: moved", head)
    inner = b"Content-Type: text/plain" + eol + eol + body
    for level in range(depth):
        b = b"n%d" % level
        inner = (b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"" + eol + eol + b"--" + b + eol + inner
                 + eol + b"--" + b + b"--" + eol)
    return head + eol + inner


def many_parts(draw: Draw, raw: bytes) -> bytes:
    count = draw(st.integers(100, 3000))
    eol = _eol(raw)
    head, _, _ = _split(raw)
    head = re.sub(rb"(?im)^content-type:.*(\r?\n[ \t].*)*$", b"X-Was-Content-Type: moved", head)
    part = (b"--many" + eol + b"Content-Type: application/octet-stream; name=\"f.bin\"" + eol
            + b"Content-Disposition: attachment; filename=\"f.bin\"" + eol + b"Content-Transfer-Encoding: base64"
            + eol + eol + base64.b64encode(b"%d" % draw(st.integers(0, 9))) + eol)
    return (head + eol + b"Content-Type: multipart/mixed; boundary=\"many\"" + eol + eol
            + b"--many" + eol + b"Content-Type: text/plain" + eol + eol + b"see files" + eol
            + part * count + b"--many--" + eol)


def huge_header(draw: Draw, raw: bytes) -> bytes:
    name = draw(st.sampled_from([b"Subject", b"From", b"To", b"References", b"In-Reply-To", b"Message-ID",
                                 b"X-Filler", b"Content-Type", b"Reply-To", b"Date"]))
    size = draw(st.integers(1_000, 200_000))
    filler = draw(st.sampled_from([b"a", b"a@b.example, ", b"<x@y> ", b"=?utf-8?b?5Lit?= ", b"\xe4\xb8\xad",
                                   b"(", b"\"", b"\\"]))
    value = (filler * (size // len(filler) + 1))[:size]
    return name + b": " + value + _eol(raw) + raw


def crlf_in_encoded_words(draw: Draw, raw: bytes) -> bytes:
    evil = b"Bcc: victim@" + INJECTED
    word = draw(st.sampled_from([
        b"=?utf-8?q?hello=0D=0A" + evil.replace(b" ", b"_") + b"?=",
        b"=?utf-8?b?" + base64.b64encode(b"hello\r\n" + evil + b"\r\n\r\nbody") + b"?=",
        b"=?utf-8?q?x=0Aattacker@" + INJECTED + b",?=",
        b"=?utf-8?q?=22attacker@" + INJECTED + b"=22_<attacker@" + INJECTED + b">,?=",
    ]))
    where = draw(st.sampled_from([b"Subject: ", b"From: ", b"Reply-To: ", b"To: ", b"X-Note: "]))
    line = where + word + (b" <someone@example.org>" if where in (b"From: ", b"Reply-To: ") else b"")
    return line + _eol(raw) + raw


STEERING = [
    b"Auto-Submitted: auto-replied", b"Precedence: bulk", b"Return-Path: <>",
    b"In-Reply-To: <1234@local.machine.example>",
    b"References: <supportd.1.0000000000000000@desk.example>", b"Subject: Re: [#1] still waiting",
    b"Reply-To: other@example.org", b"Sender: someone@example.org", b"Content-Transfer-Encoding: base64",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=x",
    b"Content-Type: text/html; charset=utf-8", b"Content-Type: message/rfc822",
    b"Authentication-Results: mx.desk.example; spf=pass smtp.mailfrom=example.de; dmarc=pass header.from=example.de",
    b"Authentication-Results: mx.desk.example; dmarc=fail header.from=example.com",
    b"To: support+t1.0000000000@desk.example", b"From: dana@desk.example", b"From: anna.schmidt@example.de",
    b"From: <>", b"From: \"\" <@>", b"From: a@b@c", b"Message-ID: <>", b"Message-ID: <" + b"x" * 995 + b">",
    b"Date: Thu, 31 Feb 2026 25:61:61 +9999", b"X-Supportd-Loop: nope",
    b"X-Spam-Flag: YES", b"X-Spam-Status: Yes, score=15.2 required=5.0", b"X-Rspamd-Score: nan",
    b"Received: from mx.example.net by mx.desk.example; Tue, 24 Nov 2026 10:00:00 +0000",
]


def steering_header(draw: Draw, raw: bytes) -> bytes:
    return draw(st.sampled_from(STEERING)) + _eol(raw) + raw


def insert_bytes(draw: Draw, raw: bytes) -> bytes:
    at = draw(st.integers(0, len(raw)))
    return raw[:at] + draw(st.binary(min_size=1, max_size=64)) + raw[at:]


MUTATIONS: tuple[Callable[[Draw, bytes], bytes], ...] = (
    truncate, flip_bytes, lose_separator, break_boundary, bogus_charset, deep_nesting, many_parts, huge_header,
    crlf_in_encoded_words, steering_header, insert_bytes,
)


@st.composite
def mutated_mails(draw: Draw, seeds: list[bytes]) -> tuple[str, bytes]:
    """A seed with one to three mutations; returns a label naming them and the bytes."""
    raw = draw(st.sampled_from(seeds))
    names = []
    for _ in range(draw(st.integers(1, 3))):
        mutation = draw(st.sampled_from(MUTATIONS))
        raw = mutation(draw, raw)
        names.append(mutation.__name__)
    return "+".join(names), raw
