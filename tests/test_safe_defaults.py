"""Safe defaults: the warning without [trust], DMARC failures refused even then, the shipped 24x7 security
SLA, staffing a shipped queue without losing the others, and production installs naming their extras."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.cli import main
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import text_mail
from mailer.ledger.db import Database, Ticket
from routing.authresults import reported_dmarc_failures
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once

HACKED = "Account hacked", "Someone logged in and withdrew my funds, please freeze my account"


def test_check_config_warns_without_trust(make_config: ConfigFactory, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = make_config()
    assert main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "trust: not configured, so any sender can claim a registered address" in err
    path, _ = make_config(trust={"authserv_id": "mx.desk.example"})
    assert main(["check-config", str(path)]) == 0
    assert "trust" not in capsys.readouterr().err


def test_a_reported_dmarc_failure_is_never_verified_without_trust(make_config: ConfigFactory, mailbox: Mailbox,
                                                                  smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config()
    assert config.trust is None
    prepared_app(config, tmp_path).close()
    failing = (b"Authentication-Results: mx.anywhere.example; spf=fail smtp.mailfrom=evil.example; "
               b"dmarc=fail (p=reject) header.from=example.com\r\n")
    other_domain = b"Authentication-Results: mx.anywhere.example; dmarc=fail header.from=elsewhere.example\r\n"
    mailbox.append(failing + text_mail("omar@example.com", *HACKED, "<forged@x>"),
                   other_domain + text_mail("li.wei@example.cn", "KYC question", "How long?", "<kyc@x>"))
    assert run_once(path) == 0
    db = Database(config.database_url)
    with db.session() as session:
        verified = {t.customer_email: t.verified for t in session.scalars(select(Ticket))}
    db.dispose()
    assert verified == {"omar@example.com": "spoofed", "li.wei@example.cn": "verified"}
    assert [m.rcpt_tos for m in smtp_sink.delivered] == [["li.wei@example.cn"]]  # no answer to a forger


def test_reported_dmarc_failures_compare_organizational_domains() -> None:
    trace = (("received", "from a by b"),
             ("authentication-results", "mx.a.example; dmarc=fail header.from=mail.example.co.uk"),
             ("authentication-results", "mx.b.example; dmarc=pass header.from=example.co.uk"))
    assert reported_dmarc_failures(trace, "example.co.uk") == ["mx.a.example"]
    assert reported_dmarc_failures(trace, "other.co.uk") == []
    assert reported_dmarc_failures((("authentication-results", "mx; dmarc=fail"),), "x.example") == ["mx"]


def test_shipped_security_policy_answers_in_hours_around_the_clock(make_config: ConfigFactory, mailbox: Mailbox,
                                                                    smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config()
    assert "24x7" in config.calendars
    urgent = config.sla.policy_for("security", "urgent")
    assert urgent.calendar == "24x7" and urgent.first_response == "2 hours"
    assert config.sla.policy_for("kyc", "normal").first_response == "2 business days"
    prepared_app(config, tmp_path).close()
    mailbox.append(text_mail("omar@example.com", *HACKED, "<hacked@x>"))
    assert run_once(path) == 0
    db = Database(config.database_url)
    with db.session() as session:
        ticket = session.scalars(select(Ticket)).one()
    db.dispose()
    assert (ticket.queue, ticket.priority, ticket.sla_calendar) == ("security", "urgent", "24x7")
    assert ticket.first_response_due is not None
    assert ticket.first_response_due - ticket.created_at == timedelta(hours=2)  # even at night or on a Sunday


def test_staffing_a_shipped_queue_keeps_the_shipped_queues_and_rules(make_config: ConfigFactory) -> None:
    _, shipped = make_config()
    _, staffed = make_config(queues={"deposits": {"specialists": ["ana@desk.example"], "lead": "lead@desk.example"}})
    assert set(staffed.queues) == set(shipped.queues) and staffed.rules == shipped.rules
    assert staffed.queues["deposits"].specialists == ("ana@desk.example",)
    assert staffed.queues["deposits"].lead == "lead@desk.example"
    assert staffed.queues["deposits"].auth_policy == "dmarc"  # the shipped settings stay
    assert staffed.sla.policies == shipped.sla.policies
    # A queue of the desk's own still replaces the shipped set, as before (rules must then name it).
    _, own = make_config(queues={"vip": {"title_en": "VIP"}},
                         rules=[{"name": "vip", "queue": "vip", "subject": ["vip"]}])
    assert set(own.queues) == {"vip"} and not own.sla.policies


@pytest.mark.parametrize(("sections", "blocked", "extras"), [
    ({"database_url": "postgresql://postgres@127.0.0.1/none"}, ["psycopg"], "supportd[postgres]"),
    ({"broker": {"url": "redis://127.0.0.1:6379/0"}}, ["redis"], "supportd[redis]"),
    ({"database_url": "postgresql://postgres@127.0.0.1/none", "broker": {"url": "amqp://guest:guest@127.0.0.1/"}},
     ["psycopg", "pika"], "supportd[postgres,rabbitmq]"),
])
def test_a_base_install_names_the_extras_it_lacks(make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], sections: dict[str, object],
                                                  blocked: list[str], extras: str) -> None:
    path, _ = make_config(**sections)
    for module in blocked:  # as on an install without the extra: the driver cannot be imported
        monkeypatch.setitem(sys.modules, module, None)
    for argv in (["check-config", str(path)], ["run", "--once", "--config", str(path)],
                 ["tickets", "list", "--config", str(path)], ["db", "upgrade", "--config", str(path)]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"pip install '{extras}'" in err, err
        assert all(module in err for module in blocked)
