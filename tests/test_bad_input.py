"""Bad mail gets a clear outcome (a ticket with recorded defects, or quarantine with a reason) and the
mails after it are still processed."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.cli import main
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import mail_with_attachment, text_mail
from mailer.ledger.db import Attachment, Database, RawMessage, TicketEvent
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once, tickets

BROKEN_MIME = (b"From: omar@example.com\r\nSubject: broken mime\r\nMessage-ID: <broken@x>\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=\"never-closed\"\r\n\r\npreamble\r\n--never-closed\r\n"
               b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n"
               b"--never-closed\r\nContent-Type: image/png\r\n\r\n\x89PNG truncated")
BAD_CHARSET = (b"From: omar@example.com\r\nSubject: =?x-klingon?B?/////w==?=\r\nMessage-ID: <charset@x>\r\n"
               b"Content-Type: text/plain; charset=x-klingon\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
               b"my deposit \xff\xfe\xfd is missing\r\n")
NOT_A_MAIL = b"\x00\x01\x02 this is not a mail at all\r\n"


def _raw_rows(db_url: str) -> dict[str, RawMessage]:
    db = Database(db_url)
    with db.session() as session:
        rows = {r.message_id: r for r in session.scalars(select(RawMessage))}
    db.dispose()
    return rows


def test_broken_undecodable_huge_and_garbage_mails(make_config: ConfigFactory, mailbox: Mailbox,
                                                   smtp_sink: SmtpSink, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    huge_content = os.urandom(22 * 1024 * 1024)  # about 30 MB once base64-encoded
    huge = mail_with_attachment("anna.schmidt@example.de", "Withdrawal proof (video)", "see the recording",
                                "<huge@x>", "recording.mp4", "video/mp4", huge_content)
    assert len(huge) > 29_000_000
    after = text_mail("kenji@example.jp", "Deposit missing", "still missing", "<after@x>")
    mailbox.append(BROKEN_MIME, BAD_CHARSET, huge, NOT_A_MAIL, after)

    assert run_once(path) == 0
    rows = _raw_rows(config.database_url)
    assert {mid: r.status for mid, r in rows.items() if not mid.endswith("supportd.invalid>")} == {
        "<broken@x>": "done", "<charset@x>": "done", "<huge@x>": "done", "<after@x>": "done"}
    garbage = next(r for mid, r in rows.items() if mid.endswith("supportd.invalid>"))
    assert garbage.status == "quarantined" and garbage.stage == "parse"
    assert "no header" in (garbage.error or "")

    subjects = {t["subject"]: t for t in tickets(path, capsys)}
    assert set(subjects) >= {"broken mime", "Withdrawal proof (video)", "Deposit missing"}
    db = Database(config.database_url)
    with db.session() as session:
        defects = [e.detail for e in session.scalars(select(TicketEvent).where(TicketEvent.kind == "defects"))]
        attachment = session.scalar(select(Attachment).where(Attachment.filename == "recording.mp4"))
        assert attachment is not None
        stored = config.storage_dir / "attachments" / attachment.sha256[:2] / attachment.sha256[2:4] / attachment.sha256
        assert attachment.sha256 == hashlib.sha256(huge_content).hexdigest()
        assert stored.read_bytes() == huge_content
    db.dispose()
    assert any("x-klingon" in d for detail in defects for d in detail["defects"])

    capsys.readouterr()
    assert main(["quarantine", "list", "--config", str(path)]) == 0
    listing = capsys.readouterr().out
    assert "stage=parse" in listing and "1 quarantined" in listing


def test_oversized_mail_is_quarantined_at_intake(make_config: ConfigFactory, mailbox: Mailbox, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path, config = make_config(desk={"max_message_bytes": 1024 * 1024})
    prepared_app(config, tmp_path).close()
    big = text_mail("omar@example.com", "big", base64.b64encode(os.urandom(2 * 1024 * 1024)).decode(), "<big@x>")
    mailbox.append(big, text_mail("omar@example.com", "small", "fine", "<small@x>"))
    assert run_once(path) == 0
    rows = _raw_rows(config.database_url)
    assert rows["<big@x>"].status == "quarantined" and rows["<big@x>"].stage == "intake"
    assert "exceeds max_message_bytes" in (rows["<big@x>"].error or "")
    assert rows["<small@x>"].status == "done"
    assert all(b"\\Seen" in f for f in mailbox.flags().values())


def test_a_reply_that_cannot_be_composed_costs_not_the_ticket(make_config: ConfigFactory, mailbox: Mailbox,
                                                              smtp_sink: SmtpSink, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    overrides = tmp_path / "my-templates" / "ack"
    overrides.mkdir(parents=True)
    # A template that passes the start-up check (it parses, reads only what the pipeline gives) but fails
    # when it renders; one that does not parse would stop the daemon at start instead (tests/test_templates.py).
    (overrides / "en.txt.j2").write_text("Hello {{ ticket // 0 }}\n")
    path, config = make_config(paths={"templates": str(overrides.parent), "storage": str(tmp_path / "data")})
    prepared_app(config, tmp_path).close()
    mailbox.append(text_mail("omar@example.com", "Deposit missing", "missing", "<q1@x>"),
                   text_mail("stranger@else.example", "hello", "hi", "<q2@x>"))
    assert run_once(path) == 0
    rows = _raw_rows(config.database_url)
    assert rows["<q1@x>"].status == "done" and rows["<q1@x>"].ticket_id is not None
    assert rows["<q2@x>"].status == "done"  # the unverified template is not overridden
    assert [m.rcpt_tos for m in smtp_sink.delivered] == [["stranger@else.example"]]
    db = Database(config.database_url)
    with db.session() as session:
        failed = [e.detail for e in session.scalars(select(TicketEvent).where(
            TicketEvent.kind == "mail_failed", TicketEvent.ticket_id == rows["<q1@x>"].ticket_id))]
    db.dispose()
    assert len(failed) == 1 and failed[0]["purpose"] == "ack" and "ZeroDivisionError" in failed[0]["error"]

    capsys.readouterr()
    assert main(["outbox", "list", "--config", str(path)]) == 0
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert main(["outbox", "retry", "--config", str(path), "--all"]) == 0
    assert "0 mails back in the queue, 1 still failing" in capsys.readouterr().out  # still broken

    (overrides / "en.txt.j2").unlink()
    assert main(["outbox", "retry", "--config", str(path), "--all"]) == 0
    assert "1 mails back in the queue" in capsys.readouterr().out
    assert run_once(path) == 0
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.delivered) == ["omar@example.com", "stranger@else.example"]
    ack = next(m.message for m in smtp_sink.delivered if m.rcpt_tos == ["omar@example.com"])
    assert ack["In-Reply-To"] == "<q1@x>"
