"""Mail nobody on this project wrote, through the real pipeline (Dovecot or pymap, aiosmtpd, SQLite).

CPython's own test_email data and a corpus of RFC examples and client mails (tests/corpus/real): every
mail ends as a ticket (new or joined), a repeat, an automatic mail or a duplicate; only what is not
mail at all is quarantined, with its reason. Internationalized senders (RFC 6531/6532) are verified
and answered over SMTPUTF8 when the relay offers it; when it does not, the reply fails and the ticket
stands.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.cli import main
from mailer.config import Config
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import text_mail
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Database, Outbox, RawMessage, Ticket, TicketEvent, TicketMessage
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once

CORPUS = Path(__file__).parent / "corpus" / "real"

# file -> (outcome, customer address of the ticket or None, subject of the ticket or None)
# Outcomes: ticket (opened one), joined (a reply in an existing ticket), repeat, automatic, duplicate,
# quarantined. Files are appended in name order, which the joins and duplicates below rely on.
EXPECTED: dict[str, tuple[str, str | None, str | None]] = {
    "client_apple_mail.eml": ("ticket", "kenji@example.jp", "KYC documents rejected"),
    "client_foxmail_gb2312_gbk.eml": ("ticket", "li.wei@example.cn", "提现一直处理中"),
    "client_gmail.eml": ("ticket", "anna.schmidt@example.de", "Withdrawal not arrived – 1200 USDT"),
    "client_gmail_sent_again.eml": ("repeat", "anna.schmidt@example.de", "Withdrawal not arrived – 1200 USDT"),
    "client_netease163_gbk.eml": ("ticket", "zhang_san@163.com", "实名认证一直审核中"),
    "client_netease_big5.eml": ("ticket", "chen.mei@example.tw", "帳戶被盜，請立即凍結"),
    "client_outlook_out_of_office.eml": ("automatic", None, None),
    "client_outlook_related_tnef.eml": ("ticket", "lei.wang@contoso.example", "Deposit not credited"),
    "client_qqmail_gb18030.eml": ("ticket", "12345678@qq.com", "充值没有到账"),
    "obsolete_route_named_zone.eml": ("ticket", "kenji@example.jp", "Withdrawal pending since Monday"),
    "outlook_saved_message.msg": ("quarantined", None, None),
    "report_arf_rfc5965.eml": ("automatic", None, None),
    "report_dsn_rfc3464.eml": ("automatic", None, None),
    "report_mdn_rfc8098.eml": ("automatic", None, None),
    "rfc5322_a1_1_simple.eml": ("ticket", "jdoe@machine.example", "Saying Hello"),
    "rfc5322_a1_2_different_types.eml": ("ticket", "john.q.public@example.com", ""),
    "rfc5322_a1_3_group.eml": ("ticket", "pete@silly.example", ""),
    "rfc5322_a2_reply.eml": ("joined", "jdoe@machine.example", "Saying Hello"),  # In-Reply-To A.1.1
    "rfc5322_a3_resent.eml": ("duplicate", None, None),  # A.1.1 resent: same Message-ID
    "rfc5322_a4_trace.eml": ("ticket", "jdoe@node.example", "Saying Hello"),
    "rfc5322_a5_white_space_comments.eml": ("ticket", "pete@silly.test", ""),
    "rfc5322_a6_1_obsolete_addressing.eml": ("duplicate", None, None),  # A.1.2 in obsolete syntax
    "rfc5322_a6_2_obsolete_dates.eml": ("duplicate", None, None),  # A.1.1 with a two-digit year
    "rfc5322_a6_3_obsolete_white_space.eml": ("duplicate", None, None),  # A.1.1, spaced names, comments
    "rfc6532_utf8_chinese_name.eml": ("ticket", "李明@xn--fsqu00a.xn--4rr70v", "充值未到账"),
    "rfc6532_utf8_headers.eml": ("ticket", "jdöe@xn--mchine-bua.example",
                                 "Einzahlung nicht gutgeschrieben – bitte prüfen"),
}

# CPython's data holds one file that is not a mail: a mailing-list digest's text without any header.
CPYTHON_NOT_MAIL = {"msg_19.txt"}
# Delivery reports (05, 25, 43), a null return path (16) and Precedence: bulk (32, 33).
CPYTHON_AUTOMATIC = {"msg_05.txt", "msg_16.txt", "msg_25.txt", "msg_32.txt", "msg_33.txt", "msg_43.txt"}
# The same Message-ID as msg_01 or msg_04, in other MIME dress.
CPYTHON_DUPLICATES = {"msg_03.txt", "msg_14.txt", "msg_20.txt", "msg_29.txt", "msg_44.txt"}
# The same sender with the same text or subject again: the "Lyrics" mails (09, 10, 12, 12a after 08),
# the "dingus fish" (13, 17 after 07) and aperson's empty-subject mails (28, 30).
CPYTHON_REPEATS = {"msg_09.txt", "msg_10.txt", "msg_12.txt", "msg_12a.txt", "msg_13.txt", "msg_17.txt",
                   "msg_28.txt", "msg_30.txt"}


def cpython_email_data() -> Path:
    import test

    data = Path(os.path.dirname(test.__file__)) / "test_email" / "data"
    if not data.is_dir() or not any(data.glob("msg_*.txt")):
        pytest.skip("this Python distribution strips the test package's email data (test/test_email/data)")
    return data


def _outcomes(db_url: str, names: list[str]) -> dict[str, tuple[str, RawMessage, Ticket | None]]:
    """Each appended file's outcome, matched by IMAP UID order (files were appended in name order)."""
    db = Database(db_url)
    found: dict[str, tuple[str, RawMessage, Ticket | None]] = {}
    with db.session() as session:
        rows = list(session.scalars(select(RawMessage).order_by(RawMessage.uid)))
        assert len(rows) == len(names)
        for name, raw in zip(names, rows, strict=True):
            ticket = session.get(Ticket, raw.ticket_id) if raw.ticket_id else None
            found[name] = (_outcome(session, raw), raw, ticket)
            session.expunge_all()
    db.dispose()
    return found


def _outcome(session: Session, raw: RawMessage) -> str:
    if raw.status == "done":
        message = session.scalar(select(TicketMessage).where(TicketMessage.raw_message_id == raw.id))
        first = session.scalar(select(TicketMessage.raw_message_id).where(
            TicketMessage.ticket_id == raw.ticket_id, TicketMessage.direction == "in").order_by(TicketMessage.id))
        assert message is not None
        return "repeat" if message.kind == "repeat" else "ticket" if first == raw.id else "joined"
    return {"bounce": "automatic"}.get(raw.status, raw.status)


def _print_table(title: str, outcomes: dict[str, tuple[str, RawMessage, Ticket | None]]) -> None:
    counts: dict[str, int] = {}
    for outcome, _, _ in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"\n{title}: {len(outcomes)} files: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def test_own_corpus_through_the_pipeline(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink,
                                         tmp_path: Path) -> None:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    names = sorted(p.name for p in CORPUS.iterdir())
    assert set(names) == set(EXPECTED), "every corpus file has its expectation in the table"
    mailbox.append(*((CORPUS / name).read_bytes() for name in names))
    assert run_once(path) == 0

    outcomes = _outcomes(config.database_url, names)
    _print_table("tests/corpus/real", outcomes)
    for name, (want, customer, subject) in EXPECTED.items():
        got, raw, ticket = outcomes[name]
        assert got == want, f"{name}: {got} ({raw.stage}: {raw.error}), expected {want}"
        if customer is not None:
            assert ticket is not None and ticket.customer_email == customer, name
            assert ticket.subject == subject, name
    quarantined = outcomes["outlook_saved_message.msg"][1]
    assert quarantined.stage == "parse" and "no header could be read" in (quarantined.error or "")
    # The obsolete forms were read as the very same message, not as mails of their own.
    for name in ("rfc5322_a6_2_obsolete_dates.eml", "rfc5322_a6_3_obsolete_white_space.eml"):
        assert outcomes[name][1].message_id == "<1234@local.machine.example>", name
    # The classic relay cannot carry replies to the two internationalized senders: failed, tickets stand.
    db = Database(config.database_url)
    with db.session() as session:
        failed = {row.to_address: row.last_error for row in session.scalars(
            select(Outbox).where(Outbox.status == "failed"))}
    db.dispose()
    assert set(failed) == {"jdöe@xn--mchine-bua.example", "李明@xn--fsqu00a.xn--4rr70v"}
    assert all("SMTPUTF8" in (error or "") for error in failed.values())
    assert all(m.rcpt_tos[0].isascii() for m in smtp_sink.delivered) and smtp_sink.delivered


def test_cpython_email_data_through_the_pipeline(make_config: ConfigFactory, mailbox: Mailbox,
                                                 smtp_sink: SmtpSink, tmp_path: Path) -> None:
    data = cpython_email_data()
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    names = sorted(p.name for p in data.glob("msg_*.txt"))
    mailbox.append(*((data / name).read_bytes() for name in names))
    assert run_once(path) == 0

    outcomes = _outcomes(config.database_url, names)
    _print_table("CPython test_email data", outcomes)
    by_outcome: dict[str, set[str]] = {}
    for name, (outcome, _, _) in outcomes.items():
        by_outcome.setdefault(outcome, set()).add(name)
    assert by_outcome["quarantined"] == CPYTHON_NOT_MAIL
    for name in CPYTHON_NOT_MAIL:
        raw = outcomes[name][1]
        assert raw.stage == "parse" and "no header could be read" in (raw.error or "")
    assert by_outcome["automatic"] == CPYTHON_AUTOMATIC
    assert by_outcome["duplicate"] == CPYTHON_DUPLICATES
    assert by_outcome["repeat"] == CPYTHON_REPEATS
    others = CPYTHON_NOT_MAIL | CPYTHON_AUTOMATIC | CPYTHON_DUPLICATES | CPYTHON_REPEATS
    assert by_outcome["ticket"] == set(names) - others


INTERNATIONAL = "jdöe@mächine.example"


@pytest.fixture
def utf8_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(smtputf8=True).start()
    yield sink
    sink.stop()


def _with_international_account(config: Config, tmp_path: Path) -> None:
    app = prepared_app(config, tmp_path)
    # Written decomposed (o + combining diaeresis): the directory and the mail must still meet (NFC).
    extra = tmp_path / "more-accounts.csv"
    extra.write_text("email,user_id,language,display_name\n"
                     "jdo\u0308e@MA\u0308CHINE.example,10055501,en,Jöhn Doe\n", encoding="utf-8")
    import_accounts(app.db, extra)
    app.close()


def _international_mail(message_id: str) -> bytes:
    return text_mail(f'"Jöhn Doe" <{INTERNATIONAL}>', "Dépôt non crédité", "Mon dépôt de 200 USDT manque.",
                     message_id)


def test_internationalized_customer_is_verified_and_answered_over_smtputf8(
        make_config: ConfigFactory, mailbox: Mailbox, utf8_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config(smtp={"url": utf8_sink.url})
    _with_international_account(config, tmp_path)
    mailbox.append(_international_mail("<intl-1@mächine.example>"),
                   text_mail("omar@example.com", "Fees", "What are the fees?", "<ascii-1@x>"))
    assert run_once(path) == 0

    by_rcpt = {m.rcpt_tos[0]: m for m in utf8_sink.delivered}
    assert set(by_rcpt) == {"jdöe@xn--mchine-bua.example", "omar@example.com"}
    international, ascii_only = by_rcpt["jdöe@xn--mchine-bua.example"], by_rcpt["omar@example.com"]
    assert "SMTPUTF8" in international.mail_options and "SMTPUTF8" not in ascii_only.mail_options
    headers = message_from_bytes(international.data, policy=policy.default)  # RFC 6532: UTF-8 as is
    assert headers["To"] == "jdöe@xn--mchine-bua.example"
    assert headers["In-Reply-To"] == "<intl-1@mächine.example>"
    db = Database(config.database_url)
    with db.session() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.customer_email == "jdöe@xn--mchine-bua.example"))
        assert ticket is not None and ticket.verified == "verified" and ticket.account_id is not None
        assert session.scalar(select(Outbox.purpose).where(Outbox.ticket_id == ticket.id)) == "ack"
    db.dispose()


def test_relay_without_smtputf8_fails_the_reply_and_keeps_the_ticket(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, utf8_sink: SmtpSink,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, config = make_config()
    _with_international_account(config, tmp_path)
    mailbox.append(_international_mail("<intl-2@mächine.example>"),
                   text_mail("omar@example.com", "Fees", "What are the fees?", "<ascii-2@x>"))
    assert run_once(path) == 0
    assert [m.rcpt_tos for m in smtp_sink.delivered] == [["omar@example.com"]]
    db = Database(config.database_url)
    with db.session() as session:
        raw = session.scalar(select(RawMessage).where(RawMessage.message_id == "<intl-2@mächine.example>"))
        assert raw is not None and raw.status == "done"
        ticket = session.get(Ticket, raw.ticket_id)
        assert ticket is not None and ticket.verified == "verified"
        row = session.scalar(select(Outbox).where(Outbox.ticket_id == ticket.id))
        assert row is not None and row.status == "failed" and "SMTPUTF8" in (row.last_error or "")
        failed = session.scalar(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id,
                                                          TicketEvent.kind == "mail_failed"))
        assert failed is not None and "SMTPUTF8" in failed.detail["error"]
    db.dispose()

    # The relay is replaced by one that offers SMTPUTF8: the failed reply is retried and goes out.
    path, config = make_config(smtp={"url": utf8_sink.url})
    assert main(["outbox", "retry", "--config", str(path), "--all"]) == 0
    assert "1 mails back in the queue" in capsys.readouterr().out
    assert run_once(path) == 0
    assert [m.rcpt_tos for m in utf8_sink.delivered] == [["jdöe@xn--mchine-bua.example"]]


def test_a_from_that_decoded_to_a_replacement_character_keeps_its_ticket(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    mangled = (b"From: Somebody <jd\xffe@example.org>\r\nTo: support@desk.example\r\nSubject: help\r\n"
               b"Message-ID: <fffd-1@example.org>\r\n\r\nmy deposit is missing\r\n")
    mailbox.append(mangled)
    assert run_once(path) == 0
    assert smtp_sink.delivered == []
    db = Database(config.database_url)
    with db.session() as session:
        raw = session.scalar(select(RawMessage).where(RawMessage.message_id == "<fffd-1@example.org>"))
        assert raw is not None and raw.status == "done" and raw.ticket_id is not None
        reasons = [e.detail.get("reason") for e in session.scalars(select(TicketEvent).where(
            TicketEvent.ticket_id == raw.ticket_id, TicketEvent.kind == "no_reply"))]
    db.dispose()
    assert reasons == ["no usable sender address"]
