"""Retention through the real parts: tickets made by the pipeline from a Dovecot mailbox, then aged in the
database, then `supportd purge` (dry run and --apply) on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from mailer.cli import main
from mailer.config import RETENTION_MINIMUM_DAYS, ConfigError, RetentionConfig, config_from_dict
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import as_delivered, mail_with_attachment, text_mail, tiny_png
from mailer.ledger.crypto import Sealer
from mailer.ledger.db import Attachment, Database, Outbox, RawMessage, Ticket, TicketEvent, TicketMessage, utcnow
from mailer.ledger.store import ContentStore
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once

MTA = "mx.desk.example"
SHARED = tiny_png(6, 6)  # the same screenshot sent by two customers
ONLY_OMAR = b"%PDF-1.7\nreceipt 4471\n"
ONLY_CHEN = b"%PDF-1.7\nstatement 9902\n"
RULES = {"raw_mail_days": 400, "attachments_days": 800, "closed_tickets_days": 2000, "minimum_days": 365}

# Message-ID -> (received days ago, closed days ago or None for a ticket left open)
MAILS: dict[str, tuple[bytes, int, int | None]] = {
    "<anna@x>": (mail_with_attachment("anna.schmidt@example.de", "Deposit missing", "Sent 2 BTC, not credited.",
                                      "<anna@x>", "proof.png", "image/png", SHARED), 3000, 2500),
    "<omar@x>": (mail_with_attachment("omar@example.com", "Withdrawal stuck", "Pending for a week.",
                                      "<omar@x>", "receipt.pdf", "application/pdf", ONLY_OMAR), 900, 850),
    "<kenji@x>": (mail_with_attachment("kenji@example.jp", "Same problem", "My deposit is missing too.",
                                       "<kenji@x>", "screen.png", "image/png", SHARED), 3000, None),
    "<li@x>": (text_mail("li.wei@example.cn", "KYC question", "Which documents do you need?", "<li@x>"), 500, 450),
    "<chen@x>": (mail_with_attachment("chen.mei@example.tw", "Statement", "Please check my statement.",
                                      "<chen@x>", "statement.pdf", "application/pdf", ONLY_CHEN), 500, 480),
}
AUTOMATIC = text_mail("stranger@elsewhere.example", "Out of office", "I am away until Monday.", "<ooo@x>",
                      extra="Auto-Submitted: auto-replied\r\n")
SPAM = b"X-Spam-Flag: YES\r\n" + as_delivered(text_mail("promo@spam.example", "Win", "Claim it now.", "<spam@x>"))
HUGE = text_mail("omar@example.com", "Big", "x" * 40_000, "<huge@x>")
OLD = 3000


def _database_url(request: pytest.FixtureRequest, kind: str) -> str | None:
    return request.getfixturevalue("pg_url") if kind == "postgresql" else None


def _desk(make_config: ConfigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mailbox: Mailbox,
          url: str | None = None) -> tuple[Path, Database, ContentStore]:
    """A desk with encryption at rest, its mails processed, then aged as MAILS says."""
    monkeypatch.setenv("SUPPORTD_TEST_KEYS", Fernet.generate_key().decode())
    path, config = make_config(url, trust={"authserv_id": MTA}, retention=RULES,
                               encryption={"keys_env": "SUPPORTD_TEST_KEYS"}, desk={"max_message_bytes": 20_000})
    prepared_app(config, tmp_path).close()
    mailbox.append(*(as_delivered(raw) for raw, _, _ in MAILS.values()), as_delivered(AUTOMATIC), SPAM,
                   as_delivered(HUGE))
    assert run_once(path) == 0
    db = Database(config.database_url)
    now = utcnow()
    with db.session() as session:
        for message_id, (_, received, closed) in {**MAILS, "<ooo@x>": (b"", OLD, None), "<spam@x>": (b"", OLD, None),
                                                  "<huge@x>": (b"", OLD, None)}.items():
            at = now - timedelta(days=received)
            session.execute(update(RawMessage).where(RawMessage.message_id == message_id).values(received_at=at))
            message = session.scalar(select(TicketMessage).where(TicketMessage.message_id == message_id))
            if message is None:
                continue
            message.created_at = at
            ticket = message.ticket
            ticket.created_at = at
            if closed is not None:
                ticket.status, ticket.closed_at = "closed", now - timedelta(days=closed)
    store = ContentStore(config.storage_dir / "attachments", Sealer.from_env("SUPPORTD_TEST_KEYS"))
    for file in store.paths():  # files age too: the store keeps what was used within the hour
        os.utime(file, (file.stat().st_atime, file.stat().st_mtime - 7200))
    return path, db, store


def _snapshot(db: Database) -> dict[str, Any]:
    with db.reading() as session:
        return {
            "raw": sorted(session.execute(select(RawMessage.id, RawMessage.status, RawMessage.raw,
                                                 RawMessage.purged_at)).all()),
            "attachments": sorted(session.execute(select(Attachment.id, Attachment.filename,
                                                         Attachment.purged_at)).all()),
            "tickets": sorted(session.execute(select(Ticket.id, Ticket.customer_email, Ticket.subject,
                                                     Ticket.purged_at)).all()),
            "messages": sorted(session.execute(select(TicketMessage.id, TicketMessage.body)).all()),
            "events": session.scalar(select(TicketEvent.id).order_by(TicketEvent.id.desc()).limit(1)),
            "outbox": sorted(session.execute(select(Outbox.id, Outbox.raw)).all()),
        }


def _counts(output: str) -> dict[str, int]:
    found = {kind: int(n) for kind, n in re.findall(r"(raw mail|attachments|closed tickets):\s+(\d+)", output)}
    found["files"] = int(re.search(r"files (?:would be )?removed: (\d+)", output).group(1))  # type: ignore[union-attr]
    return found


def _ticket_of(db: Database, message_id: str) -> Ticket:
    with db.reading() as session:
        ticket = session.scalar(select(Ticket).join(TicketMessage).where(TicketMessage.message_id == message_id))
        assert ticket is not None
        return ticket


def _purge_events(db: Database, message_id: str) -> list[dict[str, Any]]:
    ticket_id = _ticket_of(db, message_id).id
    with db.reading() as session:
        return [e.detail | {"actor": e.actor} for e in session.scalars(
            select(TicketEvent).where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "purged"))]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_purge_removes_what_the_rules_say_and_nothing_else(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest,
        database: str) -> None:
    path, db, store = _desk(make_config, tmp_path, monkeypatch, mailbox, _database_url(request, database))
    with db.reading() as session:
        statuses = dict(session.execute(select(RawMessage.message_id, RawMessage.status)).all())
        assert (statuses["<ooo@x>"], statuses["<spam@x>"], statuses["<huge@x>"]) == \
            ("automatic", "spam", "quarantined")
    before = _snapshot(db)
    files_before = {p.name for p in store.paths()}
    shared, only_omar, only_chen = (hashlib.sha256(c).hexdigest() for c in (SHARED, ONLY_OMAR, ONLY_CHEN))
    assert {shared, only_omar, only_chen} <= files_before

    # The dry run counts, in batches of two, and changes nothing.
    capsys.readouterr()
    assert main(["purge", "--config", str(path), "--batch-size", "2"]) == 0
    out, err = capsys.readouterr()
    assert "dry run" in out and err == ""  # stderr is no terminal here: no progress
    # raw: anna, omar, li, chen (their tickets closed), the automatic mail; kenji's ticket is open
    assert _counts(out) == {"raw mail": 5, "attachments": 2, "files": 1, "closed tickets": 1}
    assert _snapshot(db) == before and {p.name for p in store.paths()} == files_before

    assert main(["purge", "--config", str(path), "--apply", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert _counts(out) == {"raw mail": 5, "attachments": 2, "files": 1, "closed tickets": 1}

    with db.reading() as session:
        raws = {r.message_id: r for r in session.scalars(select(RawMessage))}
    for gone in ("<anna@x>", "<omar@x>", "<li@x>", "<chen@x>", "<ooo@x>"):
        assert raws[gone].raw == b"" and raws[gone].purged_at is not None
        assert len(raws[gone].sha256) == 64 and raws[gone].status in ("done", "automatic")
    for kept in ("<kenji@x>", "<spam@x>", "<huge@x>"):
        assert raws[kept].purged_at is None
        assert kept.encode() in Sealer.from_env("SUPPORTD_TEST_KEYS").open(raws[kept].raw)  # still opens

    # Files: the shared screenshot stays while kenji's open ticket holds it; omar's receipt goes;
    # chen's statement is younger than attachments_days.
    assert store.get(shared) == SHARED and store.get(only_chen) == ONLY_CHEN
    assert not store.path_for(only_omar).exists()
    with db.reading() as session:
        purged = dict(session.execute(select(TicketMessage.message_id, Attachment.purged_at).join(Attachment)).all())
    assert purged["<anna@x>"] and purged["<omar@x>"] and not purged["<kenji@x>"] and not purged["<chen@x>"]

    # Anna's ticket (closed 2500 days ago) is anonymised; the others keep their words.
    anna = _ticket_of(db, "<anna@x>")
    assert (anna.customer_email, anna.subject, anna.status) == ("", "", "closed") and anna.purged_at is not None
    with db.reading() as session:
        messages = list(session.scalars(select(TicketMessage).where(TicketMessage.ticket_id == anna.id)))
        assert {m.message_id for m in messages} >= {"<anna@x>"}  # Message-IDs stay for deduplication
        assert all(m.body == "" and m.subject == "" for m in messages)
        assert all(row.raw == b"" for row in session.scalars(select(Outbox).where(Outbox.ticket_id == anna.id)))
        details = [e.detail for e in session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == anna.id))]
    assert "anna.schmidt@example.de" not in repr(details) and len(details) > 3  # the trail stays, scrubbed
    for keeps, address in (("<omar@x>", "omar@example.com"), ("<kenji@x>", "kenji@example.jp"),
                           ("<chen@x>", "chen.mei@example.tw")):
        ticket = _ticket_of(db, keeps)
        assert ticket.customer_email == address and ticket.purged_at is None

    # One event per ticket and rule, naming the rule.
    anna_rules = {(e["what"], e["rule"]) for e in _purge_events(db, "<anna@x>")}
    assert anna_rules == {("raw_mail", "retention.raw_mail_days = 400"),
                          ("attachments", "retention.attachments_days = 800"),
                          ("ticket", "retention.closed_tickets_days = 2000")}
    assert {(e["what"], e["rule"], e["actor"]) for e in _purge_events(db, "<omar@x>")} == {
        ("raw_mail", "retention.raw_mail_days = 400", "retention"),
        ("attachments", "retention.attachments_days = 800", "retention")}
    assert [e["what"] for e in _purge_events(db, "<chen@x>")] == ["raw_mail"]
    assert _purge_events(db, "<kenji@x>") == []

    # Applying again finds nothing: every step is idempotent.
    assert main(["purge", "--config", str(path), "--apply"]) == 0
    assert _counts(capsys.readouterr().out) == {"raw mail": 0, "attachments": 0, "files": 0, "closed tickets": 0}

    # What stays is still sealed and still opens, also under a rotated key.
    old_key, new_key = os.environ["SUPPORTD_TEST_KEYS"], Fernet.generate_key().decode()
    monkeypatch.setenv("SUPPORTD_TEST_KEYS", f"{new_key},{old_key}")
    assert main(["storage", "rotate", "--config", str(path)]) == 0
    assert "re-encrypted 3 raw mails and 2 attachment files" in capsys.readouterr().out  # kenji, spam, huge
    monkeypatch.setenv("SUPPORTD_TEST_KEYS", new_key)
    rotated = ContentStore(store.root, Sealer([new_key.encode()]))
    assert rotated.get(shared) == SHARED and rotated.get(only_chen) == ONLY_CHEN

    # The same mails fetched again are still recognised, though their bytes (and Anna's words) are gone.
    with db.reading() as session:
        tickets_before = len(list(session.scalars(select(Ticket.id))))
    sent_before = len(smtp_sink.delivered)
    mailbox.append(as_delivered(MAILS["<anna@x>"][0]), as_delivered(MAILS["<omar@x>"][0]), as_delivered(AUTOMATIC))
    assert run_once(path) == 0
    with db.reading() as session:
        again = session.scalars(select(RawMessage.status).where(RawMessage.purged_at.is_(None),
                                                                RawMessage.message_id.in_(["<anna@x>", "<omar@x>",
                                                                                           "<ooo@x>"]))).all()
        assert sorted(again) == ["duplicate"] * 3
        assert len(list(session.scalars(select(Ticket.id)))) == tickets_before
        dup_events = session.scalars(select(TicketEvent.kind).where(TicketEvent.ticket_id == anna.id,
                                                                    TicketEvent.kind == "duplicate")).all()
        assert dup_events == ["duplicate"]
    assert len(smtp_sink.delivered) == sent_before

    # A closed ticket past its rule stays whole while one of its mails waits in quarantine; once that is
    # settled it goes, and takes its attachment (younger than attachments_days) with it.
    chen = _ticket_of(db, "<chen@x>")
    with db.session() as session:
        session.execute(update(Ticket).where(Ticket.id == chen.id).values(closed_at=utcnow() - timedelta(days=2100)))
        session.execute(update(RawMessage).where(RawMessage.message_id == "<huge@x>").values(ticket_id=chen.id))
    assert main(["purge", "--config", str(path)]) == 0
    # raw: the copy of Anna's mail just fetched again belongs to her anonymised ticket; Chen's file was
    # rewritten by `storage rotate` just now, so it (and its reference) waits for a later run
    out = capsys.readouterr().out
    assert _counts(out) == {"raw mail": 1, "attachments": 0, "files": 0, "closed tickets": 0}
    assert "(1 kept: written within the hour, for a later run)" in out
    with db.session() as session:
        session.execute(update(RawMessage).where(RawMessage.message_id == "<huge@x>").values(ticket_id=None))
    assert main(["purge", "--config", str(path), "--apply"]) == 0
    out = capsys.readouterr().out  # `storage rotate` rewrote the file just now: it waits for the next run
    assert _counts(out) == {"raw mail": 1, "attachments": 0, "files": 0, "closed tickets": 1}
    assert "(1 kept: written within the hour, for a later run)" in out and store.path_for(only_chen).exists()
    file = store.path_for(only_chen)
    os.utime(file, (file.stat().st_atime, file.stat().st_mtime - 7200))
    assert main(["purge", "--config", str(path), "--apply"]) == 0
    assert _counts(capsys.readouterr().out) == {"raw mail": 0, "attachments": 1, "files": 1, "closed tickets": 0}
    assert {(e["what"], e["rule"]) for e in _purge_events(db, "<chen@x>")} >= {
        ("attachments", "retention.closed_tickets_days = 2000"), ("ticket", "retention.closed_tickets_days = 2000")}
    assert not store.path_for(only_chen).exists() and _ticket_of(db, "<chen@x>").customer_email == ""
    db.dispose()


def _config(**retention: object) -> dict[str, object]:
    return {"smtp": {"url": "smtp://127.0.0.1:2525", "from_address": "support@desk.example"},
            "retention": retention}


def test_the_record_keeping_minimum_is_enforced_in_the_config(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert RetentionConfig().minimum_days == RETENTION_MINIMUM_DAYS == 1825
    assert config_from_dict(_config()).retention == RetentionConfig()  # nothing goes unless configured
    with pytest.raises(ConfigError) as caught:
        config_from_dict(_config(raw_mail_days=90), "desk.toml")
    assert str(caught.value) == ("desk.toml: retention.raw_mail_days: 90 days is shorter than the record-keeping "
                                 "minimum of 1825 days (retention.minimum_days)")
    with pytest.raises(ConfigError, match=r"retention.closed_tickets_days: 30 days is shorter .* of 60 days"):
        config_from_dict(_config(minimum_days=60, closed_tickets_days=30))
    with pytest.raises(ConfigError, match=r"retention.attachments_days: must be at least 1, got 0"):
        config_from_dict(_config(minimum_days=0, attachments_days=0))
    with pytest.raises(ConfigError, match=r"retention.keep_days: unknown key"):
        config_from_dict(_config(keep_days=3000))
    allowed = config_from_dict(_config(minimum_days=0, raw_mail_days=1, closed_tickets_days=1825)).retention
    assert (allowed.raw_mail_days, allowed.attachments_days, allowed.closed_tickets_days) == (1, None, 1825)

    toml = tmp_path / "supportd.toml"
    toml.write_text('[smtp]\nurl = "smtp://127.0.0.1:2525"\nfrom_address = "support@desk.example"\n'
                    "[retention]\nattachments_days = 365\n", encoding="utf-8")
    assert main(["check-config", str(toml)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"supportd: config error: {toml}: retention.attachments_days: 365 days is shorter than the record-keeping "
        "minimum of 1825 days (retention.minimum_days)")


def test_purge_without_rules_keeps_everything(make_config: ConfigFactory, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    assert main(["purge", "--config", str(path), "--apply"]) == 0
    assert "no [retention] rule configured; everything is kept but attachment files no message references" \
        in capsys.readouterr().out


def test_purge_shows_progress_on_a_terminal_only(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink,
                                                 tmp_path: Path) -> None:
    path, config = make_config(retention={"raw_mail_days": 30, "minimum_days": 30})
    prepared_app(config, tmp_path).close()
    mailbox.append(AUTOMATIC)
    assert run_once(path) == 0
    db = Database(config.database_url)
    with db.session() as session:
        session.execute(update(RawMessage).values(received_at=utcnow() - timedelta(days=31)))
    db.dispose()
    command = [sys.executable, "-m", "mailer", "purge", "--config", str(path)]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == "" and re.search(r"raw mail:\s+1 would be removed", quiet.stdout)

    leader, follower = pty.openpty()
    with subprocess.Popen([*command, "--apply"], stdout=subprocess.PIPE, stderr=follower) as process:
        os.close(follower)
        out, _ = process.communicate(timeout=60)
        terminal = b""
        with contextlib.suppress(OSError):  # EIO once the child has closed its end
            while chunk := os.read(leader, 4096):
                terminal += chunk
        os.close(leader)
    assert process.returncode == 0 and re.search(rb"raw mail:\s+1 removed", out)
    assert b"\rpurge: raw mail: 1" in terminal
