"""Decoding text with the charset a mail declares, repaired where senders routinely get it wrong.

Chinese mail labelled gb2312 very often holds GBK characters, and big5 mail holds HKSCS ones; decoding
with the superset codec reads every such mail and changes nothing for a correct one. Nothing here
touches global codec state: the mapping is applied per call.
"""

from __future__ import annotations

import codecs
import re
from email.header import Header, decode_header

# Declared charset -> codec that decodes everything the declared one does, and what senders really use.
SUPERSETS = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030", "cp936": "gb18030",
    "x-euc-cn": "gb18030", "hz-gb-2312": "hz",
    "big5": "big5hkscs", "x-big5": "big5hkscs", "cp950": "big5hkscs",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949",
    "shift_jis": "cp932", "x-sjis": "cp932",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "us-ascii": "utf-8", "ascii": "utf-8",
    "unknown-8bit": "utf-8", "x-unknown": "utf-8",
}

# Tried in order when the declared charset is missing, unknown or wrong.
FALLBACKS = ("utf-8", "gb18030", "big5hkscs")


def codec_for(charset: str | None) -> str | None:
    """The codec to use for a declared charset, or None if Python knows no such charset."""
    if not charset:
        return None
    name = charset.strip().strip('"').lower()
    name = SUPERSETS.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a NUL byte in the label
        return None
    # rot13, base64, zlib … are codecs too, but not text encodings: bytes.decode refuses them.
    return info.name if getattr(info, "_is_text_encoding", True) else None


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode `data`; returns the text and a defect description if anything had to be guessed or replaced.

    NUL characters become U+FFFD: no text column of PostgreSQL can hold them, and no mail means them.
    """
    text, defect = _decode(data, charset)
    return text.replace("\x00", "\ufffd"), defect


def _decode(data: bytes, charset: str | None) -> tuple[str, str | None]:
    codec = codec_for(charset)
    if codec:
        try:
            return data.decode(codec), None
        except (UnicodeError, ValueError):  # punycode and idna raise plain UnicodeError
            pass
    for fallback in FALLBACKS:
        try:
            text = data.decode(fallback)
        except UnicodeDecodeError:
            continue
        if charset and codec is None:
            return text, f"unknown charset {charset!r}; read as {fallback}"
        if charset:
            return text, f"text is not valid {charset}; read as {fallback}"
        return text, None
    try:
        text = data.decode(codec or "utf-8", errors="replace")
    except (UnicodeError, ValueError):  # punycode and idna cannot replace: they raise whatever the handler
        text = data.decode("utf-8", errors="replace")
    return text, f"undecodable bytes in {charset or 'unlabelled'} text replaced"


def _unescape_raw(text: str) -> str:
    """Headers with raw 8-bit bytes arrive as surrogate escapes; read those bytes as UTF-8 or GB18030."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    raw = text.encode("utf-8", errors="surrogateescape")
    return decode_bytes(raw, None)[0]


_FOLDING = re.compile(r"\r?\n[ \t]+")


def decode_header_value(value: str | Header | None) -> str:
    """Decode RFC 2047 encoded words in any charset; unfold; never raise.

    The compat32 parser hands a header with raw 8-bit bytes over as a `Header` whose str() would
    replace those bytes; its parts are decoded here instead, with the same charset repairs as bodies.
    """
    if value is None:
        return ""
    if isinstance(value, Header):
        return "".join(decode_bytes(chunk, charset)[0] if isinstance(chunk, bytes) else chunk
                       for chunk, charset in decode_header(value)).replace("\x00", "\ufffd").strip()
    value = _FOLDING.sub(" ", str(value)).replace("\x00", "\ufffd")
    try:
        parts = decode_header(value)
    except Exception:  # a malformed encoded word: keep the text as written
        return _unescape_raw(value).strip()
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(_unescape_raw(chunk))
        elif charset is None:
            out.append(_unescape_raw(chunk.decode("raw-unicode-escape", errors="replace")))
        else:
            out.append(decode_bytes(chunk, charset)[0])
    return "".join(out).strip()



def header_text(value: str | Header | None) -> str:
    """A header value unfolded and raw 8-bit bytes read as text, with RFC 2047 words left as written."""
    if value is None:
        return ""
    if isinstance(value, Header):
        return "".join(decode_bytes(chunk, charset)[0] if isinstance(chunk, bytes) else chunk
                       for chunk, charset in decode_header(value)).replace("\x00", "\ufffd").strip()
    return _unescape_raw(_FOLDING.sub(" ", str(value)).replace("\x00", "\ufffd")).strip()


# A run of encoded words; white space between adjacent words is not part of the text (RFC 2047 §6.2).
_ENCODED_RUN = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=(?:\s+=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)*")


def address_header_text(value: str | Header | None) -> str:
    """An address header ready for an address parser: every encoded word decoded into a quoted string.

    RFC 2047 words may stand only in display names. Decoded before the address list is parsed,
    `=?utf-8?q?evil@x.example,?= <a@b.example>` would add an address the sender never wrote; quoted,
    whatever a word holds stays part of a name.
    """
    text = header_text(value)
    if "=?" not in text:
        return text
    out: list[str] = []
    quoted, i = False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            out.append(text[i:i + 2])
            i += 2
            continue
        match = _ENCODED_RUN.match(text, i) if ch == "=" else None
        if match is None:
            quoted = quoted != (ch == '"')
            out.append(ch)
            i += 1
            continue
        decoded = " ".join(decode_header_value(match.group()).split()).replace("\\", "\\\\").replace('"', '\\"')
        out.append(decoded if quoted else f'"{decoded}"')
        i = match.end()
    return "".join(out)
