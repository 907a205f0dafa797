"""Attachments are judged by content; refused ones are recorded but never stored; the mail is a ticket anyway."""

from __future__ import annotations

import io
import zipfile
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import mail_with_attachment, tiny_png
from mailer.ledger.db import Attachment, Database, Ticket
from parsing.attachments import Limits, judge, sniff
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once

EXE = b"MZ\x90\x00" + b"\x00" * 200
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 200


def zipped(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def ooxml(with_macros: bool) -> bytes:
    files = {"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<doc/>"}
    if with_macros:
        files["word/vbaProject.bin"] = b"\x00" * 64
    return zipped(files)


@pytest.mark.parametrize(("name", "content", "refused"), [
    ("screenshot.png", tiny_png(), None),
    ("statement.pdf", b"%PDF-1.7\n...", None),
    ("notes.txt", "TxID 0xabc 充值未到账".encode(), None),
    ("report.docx", ooxml(with_macros=False), None),
    ("screenshots.zip", zipped({"a.png": tiny_png(), "b.pdf": b"%PDF-1.4"}), None),
    ("screenshot.png", EXE, "an executable program"),
    ("invoice.pdf", b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "an executable program"),
    ("run.sh", b"#!/bin/sh\nrm -rf /\n", "a file type that can run code"),
    ("photo.jpg.js", b"var a = 1;", "a file type that can run code"),
    ("report.docx", ooxml(with_macros=True), "an Office file with macros"),
    ("old.doc", OLE2, "an Office file of the kind that can carry macros"),
    ("page.txt", b"<html><script>steal()</script></html>", "an HTML document"),
    ("files.rar", b"Rar!\x1a\x07\x00" + b"\x00" * 50, "an archive type supportd does not open"),
    ("proof.zip", zipped({"docs/setup.exe": EXE}), "an archive holding a file that can run code (setup.exe)"),
    ("proof.zip", zipped({"inner.bin": EXE}), "an archive holding an executable program"),
    ("bomb.zip", zipped({"zeros.bin": b"\x00" * (30 * 1024 * 1024)}), "an archive that unpacks far beyond its size"),
    ("nest.zip", zipped({"1.zip": zipped({"2.zip": zipped({"3.png": tiny_png()})})}), "archives nested too deep"),
])
def test_verdicts(name: str, content: bytes, refused: str | None) -> None:
    verdict = judge(name, content, Limits())
    if refused is None:
        assert verdict.refused is None
    else:
        assert verdict.refused is not None and verdict.refused.startswith(refused)


def test_type_comes_from_content_not_name() -> None:
    assert sniff(tiny_png()) == "image/png" and sniff(EXE) == "application/x-msdownload"
    assert judge("big.png", tiny_png(), Limits(max_bytes=10)).refused == "larger than 0 MB"


def test_refused_attachment_is_recorded_not_stored_and_the_sender_told(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    raw = mail_with_attachment("omar@example.com", "Withdrawal proof", "see attached", "<att@x>",
                               "screenshot.png", "image/png", EXE)
    mailbox.append(raw)
    assert run_once(path) == 0
    db = Database(config.database_url)
    with db.session() as session:
        [attachment] = session.scalars(select(Attachment))
        assert session.scalar(select(Ticket.queue)) == "deposits"
        assert attachment.refused_reason == "an executable program"
        assert attachment.content_type == "application/x-msdownload" and attachment.declared_type == "image/png"
        sha = attachment.sha256
    db.dispose()
    assert not list((config.storage_dir / "attachments").rglob(sha))
    subjects = {str(message_from_bytes(m.data, policy=policy.default)["Subject"]): m for m in smtp_sink.delivered}
    notice = next(m for s, m in subjects.items() if "not accepted" in s)
    text = message_from_bytes(notice.data, policy=policy.default).get_body(("plain",)).get_content()
    assert "screenshot.png: an executable program" in text
    assert len(subjects) == 2  # the acknowledgement and the notice
