"""No backscatter: spam and forged strangers get no ticket and no answer; customers still do.

Through the real pipeline (Dovecot or pymap, aiosmtpd, SQLite), plus the verdict rules on their own.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.cli import main
from mailer.config import ConfigError, SpamConfig, TrustConfig
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import mail_with_attachment, text_mail
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Database, Outbox, RawMessage, Ticket, TicketEvent
from routing.spam import FORGED, SPAM, judge, score_of
from routing.verify import UNREGISTERED, VERIFIED
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once

MTA = "mx.desk.example"
OUR_RECEIVED = f"Received: from mail.sender.example by {MTA} with ESMTPS; Mon, 23 Nov 2026 02:15:00 +0000\r\n"
PASS = "spf=pass smtp.mailfrom={domain}; dkim=pass header.d={domain}; dmarc=pass header.from={domain}"
FAIL = "spf=fail smtp.mailfrom={domain}; dkim=none; dmarc=fail header.from={domain}"
CUSTOMERS = 40  # registered; ten more customers write from addresses we do not know


def delivered(raw: bytes, domain: str, *, auth: str = PASS, ours: str = "", theirs: str = "") -> bytes:
    """As our MTA hands a mail over: its own headers on top, its Received line, then what came with the mail."""
    top = f"Authentication-Results: {MTA}; {auth.format(domain=domain)}\r\n{ours}{OUR_RECEIVED}"
    below = "Received: from client.sender.example by mail.sender.example; Mon, 23 Nov 2026 02:14:00 +0000\r\n"
    return (top + theirs + below).encode() + raw


def customer_address(i: int) -> str:
    return f"cust{i}@customers.example"


def customer_mails() -> list[tuple[str, bytes]]:
    """50 genuine requests; 15 carry spam headers someone else wrote below our Received line."""
    mails = []
    for i in range(50):
        registered = i < CUSTOMERS
        address = customer_address(i) if registered else f"someone{i}@gmail.example"
        domain = address.rpartition("@")[2]
        body = (f"Hello, my deposit of {100 + i} USDT has not arrived after two hours. My UID is {30_000_000 + i}. "
                "Could you please check?")
        raw = text_mail(address, f"Deposit question {i}", body, f"<customer-{i}@{domain}>")
        ours = "X-Spam-Status: No, score=0.4 required=5.0 tests=NONE\r\nX-Rspamd-Score: 1.20\r\n" if i % 2 else ""
        theirs = ("X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=31.0 required=5.0\r\nX-Spam: Yes\r\n"
                  "X-Spamd-Result: default: True [40.00 / 15.00]\r\n") if i % 10 in (3, 6, 9) else ""
        mails.append((address, delivered(raw, domain, ours=ours, theirs=theirs)))
    return mails


SPAM_KINDS = ("spamassassin flag", "spamassassin score", "rspamd score", "rspamd flag", "forged stranger")


def spam_mail(n: int) -> tuple[str, bytes]:
    """One of the 1,000: support-like lures from strangers (some impersonating a customer), five kinds."""
    kind = SPAM_KINDS[n % 5]
    impersonates = kind != "forged stranger" and n % 7 == 0
    address = customer_address(n % CUSTOMERS) if impersonates else f"promo{n}@bulk{n % 13}.example"
    domain = address.rpartition("@")[2]
    subject = ("URGENT: your account is frozen, verify now", "Deposit not credited", "You won 5 BTC",
               "Re: [#1] withdrawal", "充值未到账")[n % 5 if n % 3 else (n + 1) % 5]
    body = f"Click http://bulk{n}.example/claim to unlock your wallet. TxID 0x{n:064x}"
    mid = f"<spam-{n}@{domain}>"
    raw = (mail_with_attachment(address, subject, body, mid, "invoice.exe", "application/octet-stream", b"MZ" * 40)
           if n % 11 == 0 else text_mail(address, subject, body, mid))
    ours, auth = {
        "spamassassin flag": ("X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=15.2 required=5.0 tests=BAYES_99\r\n",
                              PASS),
        "spamassassin score": ("X-Spam-Status: Yes, score=6.1 required=5.0 tests=URIBL_BLACK\r\n", PASS),
        "rspamd score": ("X-Spamd-Result: default: False [8.40 / 15.00]; BAYES_SPAM(5.10)[99%]\r\n"
                         "X-Rspamd-Score: 8.40\r\n", PASS),
        "rspamd flag": ("X-Spam: Yes\r\n", PASS),
        "forged stranger": ("X-Spam-Status: No, score=1.1 required=5.0\r\n", FAIL),
    }[kind]
    # What a spammer writes to look clean never helps: it sits below our Received line.
    theirs = "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-5.0\r\n" if n % 4 == 0 else ""
    return address, delivered(raw, domain, auth=auth, ours=ours, theirs=theirs)


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def database_url(request: pytest.FixtureRequest, kind: str) -> str | None:
    return request.getfixturevalue("pg_url") if kind == "postgresql" else None


def append_in_one_command(mailbox: Mailbox, raws: list[bytes]) -> None:
    """MULTIAPPEND (RFC 3502) where the server has it: one command instead of a round trip per mail."""
    with mailbox.client() as client:
        if not client.has_capability("MULTIAPPEND"):
            client.logout()
            mailbox.append(*raws)
            return
        client.multiappend("INBOX", raws)


def setup_desk(make_config: ConfigFactory, tmp_path: Path, url: str | None = None,
               **sections: object) -> tuple[Path, Database]:
    path, config = make_config(url, trust={"authserv_id": MTA}, **sections)
    app = prepared_app(config, tmp_path)
    (tmp_path / "customers.csv").write_text("email,user_id,language,display_name\n" + "".join(
        f"{customer_address(i)},{30_000_000 + i},en,Customer {i}\n" for i in range(CUSTOMERS)))
    import_accounts(app.db, tmp_path / "customers.csv")
    app.close()
    return path, Database(config.database_url)


def test_a_thousand_spam_and_forged_mails_get_nothing_and_fifty_customers_get_answers(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, db = setup_desk(make_config, tmp_path)
    customers = customer_mails()
    spam = [spam_mail(n) for n in range(1000)]
    mixed = [raw for _, raw in spam]
    for k, (_, raw) in enumerate(customers):
        mixed.insert(k * 21, raw)  # spread the customers through the spam
    started = time.monotonic()
    append_in_one_command(mailbox, mixed)
    appended = time.monotonic()
    assert run_once(path) == 0
    finished = time.monotonic()

    with db.session() as session:
        statuses = Counter(session.scalars(select(RawMessage.status)))
        kinds = Counter(v["kind"] for v in session.scalars(select(RawMessage.verdict).where(
            RawMessage.status == "spam")))
        tickets = list(session.scalars(select(Ticket)))
        outbox = list(session.scalars(select(Outbox)))
    db.dispose()
    answered = Counter(to for m in smtp_sink.delivered for to in m.rcpt_tos)
    customer_addresses = {address for address, _ in customers}
    spam_only = {address for address, _ in spam} - customer_addresses
    capsys.readouterr()
    assert main(["spam", "list", "--config", str(path), "--json", "--limit", "0"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    with capsys.disabled():
        print(f"\nspam test: {len(mixed)} mails ({len(spam)} spam/forged, {len(customers)} customers), "
              f"append {appended - started:.1f}s, pipeline {finished - appended:.1f}s; raw statuses "
              f"{dict(statuses)}; verdicts {dict(kinds)}; tickets {len(tickets)}; answers {sum(answered.values())} "
              f"to {len(answered)} addresses, {sum(answered[a] for a in spam_only)} to spam senders")

    assert statuses == {"spam": 1000, "done": 50}
    assert kinds == {SPAM: 800, FORGED: 200}
    assert len(listed) == 1000 and {row["kind"] for row in listed} == {SPAM, FORGED}
    assert sorted(t.customer_email for t in tickets) == sorted(customer_addresses)
    assert all(answered[address] == 1 for address in customer_addresses)
    assert set(answered) == customer_addresses
    assert Counter(o.purpose for o in outbox) == {"ack": CUSTOMERS, "unverified": 50 - CUSTOMERS}
    assert all(o.unverified == (o.purpose == "unverified") for o in outbox)


@pytest.mark.parametrize("database", DATABASES)
def test_a_released_mail_becomes_the_ticket_it_would_have_been(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, database: str) -> None:
    path, db = setup_desk(make_config, tmp_path, database_url(request, database))
    raw = text_mail(customer_address(3), "Withdrawal pending", "My withdrawal has been pending since noon.",
                    "<false-positive@customers.example>")
    mailbox.append(delivered(raw, "customers.example", ours="X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=5.3\r\n"))
    assert run_once(path) == 0
    assert smtp_sink.delivered == []
    capsys.readouterr()
    assert main(["spam", "list", "--config", str(path)]) == 0
    listing = capsys.readouterr().out
    assert "our MTA flagged it as spam (x-spam-flag: YES)" in listing and "1 held as spam" in listing
    with db.session() as session:
        [held] = session.scalars(select(RawMessage))
        assert (held.status, held.ticket_id) == ("spam", None)

    assert main(["spam", "release", "--config", str(path), str(held.id), "999"]) == 1
    assert "not held as spam: 999" in capsys.readouterr().err
    assert run_once(path) == 0
    [ack] = smtp_sink.delivered
    assert ack.rcpt_tos == [customer_address(3)]
    with db.session() as session:
        [raw_row] = session.scalars(select(RawMessage))
        [ticket] = session.scalars(select(Ticket))
        assert raw_row.status == "done" and raw_row.ticket_id == ticket.id
        assert raw_row.verdict["kind"] == SPAM and raw_row.verdict["released_at"] and raw_row.verdict["released_by"]
        assert ticket.verified == VERIFIED
    assert main(["spam", "release", "--config", str(path), str(raw_row.id)]) == 1  # nothing held any more
    capsys.readouterr()
    assert main(["spam", "list", "--config", str(path), "--released", "--json"]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["status"], row["ticket_id"]) == ("done", ticket.id)
    db.dispose()


def test_copies_of_a_held_mail_are_held_apart_and_released_once(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, db = setup_desk(make_config, tmp_path)
    mail = text_mail(customer_address(4), "Card payment", "My card payment failed.", "<copy@customers.example>")
    raw = delivered(mail, "customers.example", ours="X-Spam: Yes\r\n")
    mailbox.append(raw, raw)
    assert run_once(path) == 0
    with db.session() as session:
        first, second = session.scalars(select(RawMessage.id).order_by(RawMessage.id))
        assert Counter(session.scalars(select(RawMessage.status))) == {"spam": 2}
    for raw_id, status in ((first, "done"), (second, "duplicate")):
        assert main(["spam", "release", "--config", str(path), str(raw_id)]) == 0
        assert run_once(path) == 0
        with db.session() as session:
            assert session.get(RawMessage, raw_id).status == status
    db.dispose()
    assert [m.rcpt_tos for m in smtp_sink.delivered] == [[customer_address(4)]]


def test_spam_headers_below_our_received_or_from_another_server_are_ignored(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, db = setup_desk(make_config, tmp_path)
    flagged = "X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=25.0\r\nX-Rspamd-Score: 30\r\n"
    below = text_mail(customer_address(1), "Deposit late", "Where is my deposit?", "<below@customers.example>")
    foreign = text_mail(customer_address(2), "KYC stuck", "My KYC is stuck.", "<foreign@customers.example>",
                        extra=flagged)  # written by the sender's side, and no Received line of ours at all
    mailbox.append(delivered(below, "customers.example", theirs=flagged), foreign)
    assert run_once(path) == 0
    with db.session() as session:
        assert Counter(session.scalars(select(RawMessage.status))) == {"done": 2}
        assert session.scalar(select(Ticket).where(Ticket.customer_email == customer_address(2))) is not None
    db.dispose()
    assert sorted(to for m in smtp_sink.delivered for to in m.rcpt_tos) == [customer_address(1), customer_address(2)]


@pytest.mark.parametrize("database", DATABASES)
def test_the_hourly_cap_stops_answers_to_unverified_senders_and_says_so(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path,
        request: pytest.FixtureRequest, database: str) -> None:
    path, db = setup_desk(make_config, tmp_path, database_url(request, database),
                          spam={"max_unverified_replies_per_hour": 3})
    strangers = [delivered(text_mail(f"new{i}@gmail.example", f"Question {i}", "How do I open an account?",
                                     f"<q{i}@gmail.example>"), "gmail.example") for i in range(5)]
    registered = delivered(text_mail(customer_address(0), "Fees", "What are the fees?", "<fees@customers.example>"),
                           "customers.example")
    mailbox.append(*strangers, registered)
    assert run_once(path) == 0
    assert len(smtp_sink.delivered) == 4  # three strangers, and the registered customer's acknowledgement
    with db.session() as session:
        assert session.scalar(select(Ticket).where(Ticket.customer_email == customer_address(0))) is not None
        refused = [e.detail for e in session.scalars(select(TicketEvent).where(TicketEvent.kind == "no_reply"))]
        assert len(session.scalars(select(Ticket)).all()) == 6
    db.dispose()
    assert len(refused) == 2
    assert all("desk-wide cap of 3" in d["reason"] and d["purpose"] == "unverified" for d in refused)
    assert customer_address(0) in {message_from_bytes(m.data)["To"] for m in smtp_sink.delivered}


# --- the verdict rules on their own --------------------------------------------------------------------

def trace(text: str) -> tuple[tuple[str, str], ...]:
    fields = [line.split(":", 1) for line in text.strip().splitlines()]
    return tuple((name.strip().lower(), value.strip()) for name, value in fields)


RECEIVED = f"Received: from a by {MTA}"
TRUST = TrustConfig(MTA)


@pytest.mark.parametrize(("label", "headers", "status", "hops", "kind"), [
    ("SpamAssassin flag", f"X-Spam-Flag: YES\n{RECEIVED}", VERIFIED, 0, SPAM),
    ("SpamAssassin score over", f"X-Spam-Status: Yes, score=5.0 required=5.0\n{RECEIVED}", VERIFIED, 0, SPAM),
    ("SpamAssassin score under", f"X-Spam-Status: No, score=4.9 required=5.0\n{RECEIVED}", VERIFIED, 0, None),
    ("SpamAssassin says no", f"X-Spam-Flag: NO\n{RECEIVED}", VERIFIED, 0, None),
    ("rspamd result", f"X-Spamd-Result: default: False [6.50 / 15.00]; X(1)\n{RECEIVED}", VERIFIED, 0, SPAM),
    ("rspamd score under", f"X-Rspamd-Score: 5.99\n{RECEIVED}", VERIFIED, 0, None),
    ("rspamd flag", f"X-Spam: Yes\n{RECEIVED}", VERIFIED, 0, SPAM),
    ("flag below our Received", f"{RECEIVED}\nX-Spam-Flag: YES", VERIFIED, 0, None),
    ("flag and no Received line at all", "X-Spam-Flag: YES", VERIFIED, 0, None),
    ("MTA writing below its Received (hops 1)", f"Received: from lmtp\nX-Spam-Flag: YES\n{RECEIVED}", VERIFIED, 1,
     SPAM),
    ("hops 1, flag below the second Received", f"Received: x\n{RECEIVED}\nX-Spam-Flag: YES", VERIFIED, 1, None),
    ("forged stranger", f"Authentication-Results: {MTA}; spf=fail; dmarc=fail\n{RECEIVED}", UNREGISTERED, 0,
     FORGED),
    ("stranger, SPF softfail only", f"Authentication-Results: {MTA}; spf=softfail; dmarc=fail\n{RECEIVED}",
     UNREGISTERED, 0, None),
    ("stranger, DMARC pass", f"Authentication-Results: {MTA}; spf=fail; dmarc=pass\n{RECEIVED}", UNREGISTERED, 0,
     None),
    ("registered sender failing both (the authenticate stage's case)",
     f"Authentication-Results: {MTA}; spf=fail; dmarc=fail\n{RECEIVED}", VERIFIED, 0, None),
    ("failing results from another server", f"Authentication-Results: mx.other.example; spf=fail; dmarc=fail\n"
     f"{RECEIVED}", UNREGISTERED, 0, None),
    ("failing results forged below", f"{RECEIVED}\nAuthentication-Results: {MTA}; spf=fail; dmarc=fail",
     UNREGISTERED, 0, None),
])
def test_verdicts(label: str, headers: str, status: str, hops: int, kind: str | None) -> None:
    verdict = judge(trace(headers), status, SpamConfig(), TrustConfig(MTA, received_hops=hops))
    assert (verdict.kind if verdict else None) == kind, label


def test_configured_names_and_thresholds() -> None:
    config = SpamConfig(flag_headers=("x-barracuda-spam-status",), scores={"x-spam-status": 10.0})
    assert judge(trace(f"X-Spam-Flag: YES\n{RECEIVED}"), VERIFIED, config, TRUST) is None
    assert judge(trace(f"X-Barracuda-Spam-Status: Yes\n{RECEIVED}"), VERIFIED, config, TRUST) is not None
    assert judge(trace(f"X-Spam-Status: Yes, score=9.9\n{RECEIVED}"), VERIFIED, config, TRUST) is None
    assert judge(trace(f"X-Spam-Flag: YES\n{RECEIVED}"), VERIFIED, SpamConfig(enabled=False), TRUST) is None
    assert [score_of(v) for v in ("Yes, score=15.2 required=5.0", "default: True [-1.5 / 15.00]", " 7 ", "n/a")] \
        == [15.2, -1.5, 7.0, None]


@pytest.mark.parametrize(("spam", "message"), [
    ({"scores": {"X Spam": 5}}, "spam.scores.X Spam: must be a header name"),
    ({"scores": {"X-Spam-Status": "high"}}, "spam.scores.X-Spam-Status: must be an integer or a number"),
    ({"flag_headers": "X-Spam-Flag"}, "spam.flag_headers: must be a list"),
    ({"max_unverified_replies_per_hour": -1}, "spam.max_unverified_replies_per_hour: must be at least 0"),
    ({"threshold": 5}, "spam.threshold: unknown key"),
])
def test_a_bad_spam_section_fails_at_start(make_config: ConfigFactory, spam: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(spam=spam)
