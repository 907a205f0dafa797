"""No spoofed sender is treated as the account owner: the spoof suite through the real pipeline."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import encoded_word, text_mail
from mailer.ledger.db import Database, Ticket
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once

MTA = "mx.desk.example"


def delivered(raw: bytes, results: str | None, forged_below: str | None = None) -> bytes:
    """As our MTA hands it over: its Authentication-Results on top, its Received line, then the mail."""
    top = f"Authentication-Results: {MTA}; {results}\r\n" if results else ""
    top += f"Received: from mail.sender.example by {MTA} with ESMTPS; Mon, 23 Nov 2026 02:15:00 +0000\r\n"
    if forged_below:
        top += f"Authentication-Results: {MTA}; {forged_below}\r\n"
    return top.encode() + raw


PASS = "dkim=pass header.d=example.com; spf=pass smtp.mailfrom=bounces@example.com; dmarc=pass header.from=example.com"
HACKED = "Account hacked", "Someone logged in and withdrew my funds, please freeze my account"


def run_case(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path,
             raw: bytes) -> tuple[str, list[tuple[list[str], str]]]:
    path, config = make_config(trust={"authserv_id": MTA})
    prepared_app(config, tmp_path).close()
    mailbox.append(raw)
    assert run_once(path) == 0
    db = Database(config.database_url)
    with db.session() as session:
        [ticket] = session.scalars(select(Ticket))
        status = ticket.verified
    db.dispose()
    sent = [(m.rcpt_tos, message_from_bytes(m.data, policy=policy.default).get_body(("plain",)).get_content())
            for m in smtp_sink.delivered]
    return status, sent


@pytest.mark.parametrize(("label", "raw", "status", "recipients"), [
    ("genuine, DMARC pass", delivered(text_mail("omar@example.com", *HACKED, "<g@x>"), PASS),
     "verified", ["omar@example.com"]),
    ("mixed-case address", delivered(text_mail("Omar <OMAR@Example.COM>", *HACKED, "<m@x>"), PASS),
     "verified", ["omar@example.com"]),
    ("forged From, DMARC fail", delivered(text_mail("omar@example.com", *HACKED, "<f@x>"),
                                          "dkim=none; spf=fail smtp.mailfrom=evil.example; dmarc=fail "
                                          "header.from=example.com"), "spoofed", []),
    ("forged Authentication-Results below our Received", delivered(
        text_mail("omar@example.com", *HACKED, "<fa@x>"), "dmarc=none header.from=example.com",
        forged_below="dmarc=pass header.from=example.com"), "spoofed", []),
    ("Authentication-Results claiming another server", text_mail(
        "omar@example.com", *HACKED, "<other@x>",
        extra="Authentication-Results: mx.elsewhere.example; dmarc=pass header.from=example.com\r\n"),
     "spoofed", []),
    ("look-alike domain (Cyrillic a)", delivered(text_mail("omar@ex\u0430mple.com", *HACKED, "<h@x>"), PASS),
     "unregistered", ["omar@xn--exmple-4nf.com"]),
    ("several From addresses", delivered(text_mail("omar@example.com, evil@x.example", *HACKED, "<s@x>"), PASS),
     "mismatch", ["omar@example.com"]),
    ("Sender differs from From", delivered(text_mail("omar@example.com", *HACKED, "<sd@x>",
                                                     extra="Sender: evil@x.example\r\n"), PASS),
     "mismatch", ["omar@example.com"]),
    ("Reply-To hijack", delivered(text_mail("omar@example.com", *HACKED, "<rt@x>",
                                            extra="Reply-To: evil@x.example\r\n"), PASS),
     "mismatch", ["omar@example.com"]),
    ("display-name trick", delivered(text_mail('"omar@example.com" <evil@x.example>', *HACKED, "<dn@x>"), PASS),
     "unregistered", ["evil@x.example"]),
])
def test_spoof_suite(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path,
                     label: str, raw: bytes, status: str, recipients: list[str]) -> None:
    found, sent = run_case(make_config, mailbox, smtp_sink, tmp_path, raw)
    assert found == status, label
    assert [to for tos, _ in sent for to in tos] == recipients, label
    for _, body in sent:
        assert ("10066554" not in body and "OH-PHX" not in body) or status == "verified", label
        assert "evil@x.example" not in body


def test_unverified_answer_is_the_same_for_registered_and_unknown_addresses(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config(trust={"authserv_id": MTA})
    prepared_app(config, tmp_path).close()
    mailbox.append(delivered(text_mail("omar@example.com", "Question about fees", "fees?", "<r1@x>",
                                       extra="Reply-To: other@x.example\r\n"), PASS),
                   delivered(text_mail("nobody@example.com", "Question about fees", "fees?", "<u1@x>"), PASS))
    assert run_once(path) == 0
    bodies = [re.sub(r"#\d+", "#N", message_from_bytes(m.data, policy=policy.default)
                     .get_body(("plain",)).get_content()) for m in smtp_sink.delivered]
    assert len(bodies) == 2 and bodies[0] == bodies[1]


def test_aligned_policy_accepts_aligned_dkim_and_refuses_foreign_dkim(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    queues = {"general": {"title_en": "General", "auth_policy": "aligned"}}
    rules = [{"name": "all", "queue": "general"}]
    path, config = make_config(trust={"authserv_id": MTA}, queues=queues, rules=rules)
    prepared_app(config, tmp_path).close()
    mailbox.append(delivered(text_mail("omar@example.com", "fees", "a", "<a1@x>"),
                             "dkim=pass header.d=mail.example.com; dmarc=none"),
                   delivered(text_mail("anna.schmidt@example.de", "fees", "b", "<a2@x>"),
                             "dkim=pass header.d=evil.example; dmarc=none"))
    assert run_once(path) == 0
    db = Database(config.database_url)
    with db.session() as session:
        statuses = {t.customer_email: t.verified for t in session.scalars(select(Ticket))}
    db.dispose()
    assert statuses == {"omar@example.com": "verified", "anna.schmidt@example.de": "spoofed"}


def test_a_forged_sender_cannot_write_into_a_ticket_by_its_number(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config(trust={"authserv_id": MTA})
    prepared_app(config, tmp_path).close()
    mailbox.append(delivered(text_mail("omar@example.com", *HACKED, "<t1@x>"), PASS))
    assert run_once(path) == 0
    mailbox.append(delivered(text_mail("omar@example.com", "Re: [#1] send the funds to my new wallet",
                                       "new wallet 0xabc", "<t2@x>"), "dmarc=fail header.from=example.com"))
    assert run_once(path) == 0
    db = Database(config.database_url)
    with db.session() as session:
        tickets = {t.id: (t.verified, len(t.messages)) for t in session.scalars(select(Ticket))}
    db.dispose()
    assert tickets[1] == ("verified", 2)  # its message and our acknowledgement only
    assert tickets[2][0] == "spoofed"


def test_header_and_html_injection_stay_inert(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink,
                                              tmp_path: Path) -> None:
    path, config = make_config()
    app = prepared_app(config, tmp_path)
    (tmp_path / "evil.csv").write_text('email,user_id,language,display_name\n'
                                       'eve@example.org,1,en,"<script>alert(1)</script> Eve"\n')
    from mailer.ledger.accounts import import_accounts

    import_accounts(app.db, tmp_path / "evil.csv")
    app.close()
    subject = encoded_word("Help\r\nBcc: victim@x.example\r\nX-Evil: 1", "utf-8")
    mailbox.append(text_mail("eve@example.org", subject, "<img src=x onerror=alert(1)>", "<inj@x>"))
    assert run_once(path) == 0
    [mail] = smtp_sink.delivered
    assert mail.rcpt_tos == ["eve@example.org"]
    msg = message_from_bytes(mail.data, policy=policy.default)
    assert msg["Bcc"] is None and msg["X-Evil"] is None and "\n" not in str(msg["Subject"])
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; Eve" in html
