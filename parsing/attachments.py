"""Which attachments may be stored and shown to a specialist, judged by their content.

The type comes from the first bytes (magic numbers), never from the name or the declared type, which a
sender controls. Refused: executables, scripts, Office files that can carry macros (legacy OLE2 files and
OOXML with a VBA project), HTML, archives we cannot open, and archives that hide any of these or
unpack beyond the limits (zip bombs, deep nesting). Names still count against the sender: a `.js` or
`.exe` name is refused whatever the bytes, because a person might double-click it.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parsing.message import ParsedAttachment

MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (8, b"WEBP", "image/webp"),
    (0, b"%PDF-", "application/pdf"),
    (4, b"ftyp", "video/mp4"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"PK\x05\x06", "application/zip"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
    (0, b"MZ", "application/x-msdownload"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (0, b"\xfe\xed\xfa\xce", "application/x-mach-binary"),
    (0, b"\xca\xfe\xba\xbe", "application/x-mach-binary"),
    (0, b"#!", "text/x-script"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"\x1f\x8b", "application/gzip"),
)
REFUSED_TYPES = {
    "application/x-msdownload": "an executable program",
    "application/x-executable": "an executable program",
    "application/x-mach-binary": "an executable program",
    "text/x-script": "a script",
    "application/x-ole-storage": "an Office file of the kind that can carry macros",
    "application/vnd.rar": "an archive type supportd does not open",
    "application/x-7z-compressed": "an archive type supportd does not open",
    "application/gzip": "an archive type supportd does not open",
    "text/html": "an HTML document",
}
DANGEROUS_NAMES = (".exe", ".com", ".scr", ".msi", ".bat", ".cmd", ".ps1", ".vbs", ".vbe", ".js", ".jse", ".wsf",
                   ".hta", ".lnk", ".jar", ".sh", ".apk", ".iso", ".img", ".dll", ".docm", ".xlsm", ".pptm")


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 25 * 1024 * 1024
    max_count: int = 20
    archive_depth: int = 2
    archive_entries: int = 1000
    archive_total: int = 100 * 1024 * 1024
    archive_ratio: int = 100


@dataclass(frozen=True)
class Verdict:
    detected_type: str
    refused: str | None  # the reason, in words a customer can read; None when accepted


def sniff(content: bytes) -> str:
    for offset, magic, kind in MAGIC:
        if content[offset:offset + len(magic)] == magic:
            if kind == "application/zip":
                return _zip_kind(content)
            return kind
    head = content[:4096]
    if b"\x00" not in head:
        try:
            text = head.decode("utf-8").lower()
        except UnicodeDecodeError:
            return "application/octet-stream"
        return "text/html" if "<html" in text or "<script" in text else "text/plain"
    return "application/octet-stream"


def _zip_kind(content: bytes) -> str:
    try:
        names = zipfile.ZipFile(io.BytesIO(content)).namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return "application/zip"
    if "[Content_Types].xml" in names:
        macro = any(n.lower().endswith("vbaproject.bin") for n in names)
        return "application/vnd.ms-office.macro" if macro else "application/vnd.openxmlformats-officedocument"
    return "application/zip"


def judge(filename: str, content: bytes, limits: Limits) -> Verdict:
    kind = sniff(content)
    if len(content) > limits.max_bytes:
        return Verdict(kind, f"larger than {limits.max_bytes // (1024 * 1024)} MB")
    if filename.lower().endswith(DANGEROUS_NAMES):
        return Verdict(kind, "a file type that can run code")
    if kind == "application/vnd.ms-office.macro":
        return Verdict(kind, "an Office file with macros")
    if kind in REFUSED_TYPES:
        return Verdict(kind, REFUSED_TYPES[kind])
    if kind == "application/zip":
        problem = _inspect_archive(content, limits, limits.archive_depth, [limits.archive_total])
        if problem:
            return Verdict(kind, problem)
    return Verdict(kind, None)


def screen(parts: Sequence[ParsedAttachment], limits: Limits, keep: Callable[[bytes], object]) -> tuple[Verdict, ...]:
    """Judge a mail's attachments and hand the content of each accepted one to `keep` (the content store).

    One verdict per attachment, in order; those past `limits.max_count` are refused whatever they hold."""
    verdicts = []
    for index, part in enumerate(parts):
        if part.content is None:
            raise ValueError(f"attachment {part.filename!r} was screened already: its content is gone")
        verdict = judge(part.filename, part.content, limits)
        if verdict.refused is None and index >= limits.max_count:
            verdict = Verdict(verdict.detected_type, f"more than {limits.max_count} attachments")
        if verdict.refused is None:
            keep(part.content)
        verdicts.append(verdict)
    return tuple(verdicts)


def _inspect_archive(content: bytes, limits: Limits, depth: int, budget: list[int]) -> str | None:
    """Why an archive must be refused, or None. `budget` is the bytes left to unpack, shared by all levels."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return "a damaged archive"
    if len(entries) > limits.archive_entries:
        return f"an archive with more than {limits.archive_entries} files"
    for entry in entries:
        if entry.is_dir():
            continue
        ratio_too_high = entry.file_size > limits.archive_ratio * max(entry.compress_size, 1)
        if entry.file_size > budget[0] or (ratio_too_high and entry.file_size > 1024 * 1024):
            return "an archive that unpacks far beyond its size (a zip bomb)"
        if entry.filename.lower().endswith(DANGEROUS_NAMES):
            return f"an archive holding a file that can run code ({entry.filename.rsplit('/', 1)[-1][:60]})"
        budget[0] -= entry.file_size
        try:
            inner = archive.read(entry)
        except (zipfile.BadZipFile, ValueError, OSError, NotImplementedError, RuntimeError):
            return "a damaged or encrypted archive"
        kind = sniff(inner)
        if kind in REFUSED_TYPES or kind == "application/vnd.ms-office.macro":
            return f"an archive holding {REFUSED_TYPES.get(kind, 'an Office file with macros')}"
        if kind == "application/zip":
            if depth <= 1:
                return "archives nested too deep"
            problem = _inspect_archive(inner, limits, depth - 1, budget)
            if problem:
                return problem
    return None
