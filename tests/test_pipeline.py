"""End to end on real servers: mails appended over IMAP come out as tickets and SMTP replies."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.cli import main
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import demo_mails, text_mail
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox


def run_once(path: Path) -> int:
    return main(["run", "--config", str(path), "--once"])


def tickets(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["tickets", "list", "--config", str(path), "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def subject_of(data: bytes) -> str:
    return str(make_header(decode_header(message_from_bytes(data)["Subject"])))


@pytest.fixture
def demo_run(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[dict[str, object]]]:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    mailbox.append(*(sample.raw for sample in demo_mails()))
    assert run_once(path) == 0
    return path, tickets(path, capsys)


def test_each_complaint_lands_in_the_right_queue(demo_run: tuple[Path, list[dict[str, object]]]) -> None:
    _, rows = demo_run
    by_subject = {row["subject"]: row for row in rows}
    expected = {
        "充值未到账，请尽快处理": ("deposits", "high", "verified"),
        "Withdrawal not received after 6 hours": ("deposits", "high", "verified"),
        "KYC verification stuck at selfie step": ("kyc", "normal", "verified"),
        "URGENT: account hacked, unauthorized withdrawal": ("security", "urgent", "verified"),
        "帳戶被盜，請立即凍結": ("security", "urgent", "verified"),
        "Deposit missing": ("deposits", "high", "unregistered"),
        "API key returns 401 on websocket": ("api", "normal", "verified"),
        "Question about trading fees": ("general", "normal", "verified"),
    }
    assert {s: (r["queue"], r["priority"], r["verified"]) for s, r in by_subject.items()} == expected
    assert all(row["message_count"] == 1 for row in rows)
    deposit = by_subject["充值未到账，请尽快处理"]
    assert deposit["identifiers"]["user_ids"] == ["10023345"]
    assert deposit["identifiers"]["chains"] == ["TRC20"]
    assert deposit["language"] == "zh-Hans"
    for row in rows:
        for key in ("id", "queue", "priority", "status", "customer_email", "verified", "subject", "message_count",
                    "first_response_due"):
            assert key in row


def test_every_new_ticket_gets_one_threaded_reply(demo_run: tuple[Path, list[dict[str, object]]],
                                                  smtp_sink: SmtpSink) -> None:
    _, rows = demo_run
    delivered = smtp_sink.delivered
    assert len(delivered) == len(rows) == 8  # the duplicate and the auto-reply get nothing
    by_ticket = {}
    for mail in delivered:
        msg = message_from_bytes(mail.data, policy=policy.default)
        number = int(subject_of(mail.data).split("]")[0].removeprefix("[#"))
        by_ticket[number] = (mail, msg)
        assert msg["Auto-Submitted"] == "auto-replied"
        assert msg["In-Reply-To"] and msg["In-Reply-To"] in msg["References"]
        assert msg["From"].addresses[0].addr_spec == "support@desk.example"
        assert msg.is_multipart() and {p.get_content_type() for p in msg.walk()} >= {"text/plain", "text/html"}
    assert sorted(by_ticket) == sorted(int(str(r["id"])) for r in rows)
    chinese = next(r for r in rows if r["subject"] == "充值未到账，请尽快处理")
    mail, msg = by_ticket[int(str(chinese["id"]))]
    assert mail.rcpt_tos == ["li.wei@example.cn"]
    assert msg["In-Reply-To"] == "<dep-zh-1@mail.example.cn>"
    text = msg.get_body(("plain",)).get_content()
    assert f"#{chinese['id']}" in text and "充值与提币" in text and "LW-7731" in text


def test_unregistered_sender_learns_nothing_about_accounts(demo_run: tuple[Path, list[dict[str, object]]],
                                                          smtp_sink: SmtpSink) -> None:
    to_stranger = [m for m in smtp_sink.delivered if m.rcpt_tos == ["stranger@elsewhere.example"]]
    assert len(to_stranger) == 1
    body = to_stranger[0].data.decode()
    assert "registered" in subject_of(to_stranger[0].data)
    assert "10023345" not in body and "Li" not in subject_of(to_stranger[0].data)


def test_processed_mails_are_marked_on_the_server_and_not_taken_again(
        demo_run: tuple[Path, list[dict[str, object]]], mailbox: Mailbox, smtp_sink: SmtpSink,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, rows = demo_run
    flags = mailbox.flags()
    assert len(flags) == 10 and all(b"\\Seen" in f for f in flags.values())
    sent = len(smtp_sink.delivered)
    assert run_once(path) == 0
    assert tickets(path, capsys) == rows
    assert len(smtp_sink.delivered) == sent


def test_customer_reply_joins_its_ticket_without_a_second_ack(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    first = text_mail("omar@example.com", "Deposit not credited", "My BTC deposit is missing.", "<t-1@x.example>")
    mailbox.append(first)
    assert run_once(path) == 0
    ack = message_from_bytes(smtp_sink.delivered[0].data)
    number = tickets(path, capsys)[0]["id"]

    threading = f"In-Reply-To: {ack['Message-ID']}\r\nReferences: {ack['Message-ID']}\r\n"
    reply = text_mail("omar@example.com", f"Re: {ack['Subject']}", "Here is more detail.\n\n> quoted",
                      "<t-2@x.example>", extra=threading)
    tagged = text_mail("Omar <OMAR@example.com>", f"more [#{number}]", "and another detail", "<t-3@x.example>")
    intruder = text_mail("anna.schmidt@example.de", f"hello [#{number}]", "let me in", "<t-4@x.example>")
    mailbox.append(reply, tagged, intruder)
    assert run_once(path) == 0
    rows = tickets(path, capsys)
    assert [(r["id"], r["message_count"]) for r in rows] == [(number, 3), (number + 1, 1)]
    assert rows[1]["customer_email"] == "anna.schmidt@example.de"
    # one ack for Omar's ticket, one for Anna's new one: the replies got none
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.delivered) == ["anna.schmidt@example.de", "omar@example.com"]


def test_same_message_in_two_mailboxes_is_one_ticket(
        make_config: ConfigFactory, mailbox: Mailbox, imap_backend: object, smtp_sink: SmtpSink, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    second = imap_backend.new_mailbox()  # type: ignore[attr-defined]
    try:
        path, config = make_config(mailboxes=[
            {"name": "support", "url": mailbox.url(), "poll_interval": 0.2},
            {"name": "security", "url": second.url(), "poll_interval": 0.2}])
        prepared_app(config, tmp_path).close()
        raw = text_mail("omar@example.com", "Account hacked", "Someone stole my funds", "<twice@x.example>")
        mailbox.append(raw)
        second.append(raw.replace(b"To: support@", b"To: security@"))
        assert run_once(path) == 0
        rows = tickets(path, capsys)
        assert len(rows) == 1 and rows[0]["message_count"] == 1
        assert len(smtp_sink.delivered) == 1
        assert all(b"\\Seen" in f for f in second.flags().values())
    finally:
        second.close()


def test_move_after_processing(make_config: ConfigFactory, mailbox: Mailbox, tmp_path: Path) -> None:
    path, config = make_config(mailboxes=[{"name": "support", "url": mailbox.url(), "done_action": "move",
                                           "done_folder": "Processed"}])
    prepared_app(config, tmp_path).close()
    mailbox.append(*(text_mail("omar@example.com", f"Question {i}", "fees?", f"<mv-{i}@x>") for i in range(3)))
    assert run_once(path) == 0
    assert mailbox.flags("INBOX") == {}
    assert len(mailbox.flags("Processed")) == 3


def test_uidvalidity_change_rereads_the_folder_and_changes_nothing(
        demo_run: tuple[Path, list[dict[str, object]]], smtp_sink: SmtpSink,
        capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import update

    from mailer.config import load_config
    from mailer.ledger.db import Checkpoint, Database, RawMessage

    path, rows = demo_run
    db = Database(load_config(path).database_url)
    with db.session() as session:  # as if the server had renumbered the folder since these were stored
        session.execute(update(Checkpoint).values(uidvalidity=Checkpoint.uidvalidity - 1))
        session.execute(update(RawMessage).values(uidvalidity=RawMessage.uidvalidity - 1))
    sent = len(smtp_sink.delivered)
    assert run_once(path) == 0
    assert tickets(path, capsys) == rows
    assert len(smtp_sink.delivered) == sent
    with db.session() as session:
        statuses = [r.status for r in session.scalars(select(RawMessage).order_by(RawMessage.id))]
    db.dispose()
    assert len(statuses) == 20 and statuses[10:] == ["duplicate"] * 10
