"""SLA clocks through the real pipeline, with the clock driven by the test."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mailer.app import App
from mailer.cli import main
from mailer.config import default_routing
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import text_mail
from mailer.ledger.db import Ticket
from mailer.stages.escalate import escalate
from routing.specialists import ticket_address
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once

ALWAYS = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def sla_desk(make_config: ConfigFactory, tmp_path: Path) -> tuple[Path, App]:
    queues = default_routing()["queues"]
    queues["kyc"] = {**queues["kyc"], "specialists": ["kim@desk.example"], "lead": "lead@desk.example"}
    path, config = make_config(
        queues=queues,
        calendars={"always": {"time_zone": "UTC", "hours": ALWAYS}},
        sla={"warn_at": 0.75, "policies": [{"queue": "kyc", "calendar": "always", "first_response": "4 business hours",
                                            "resolution": "2 business days"}]})
    prepared_app(config, tmp_path).close()
    return path, App.from_config(config)


def ticket(app: App) -> Ticket:
    with app.db.reading() as session:
        row = session.scalar(select(Ticket))
        assert row is not None
        _ = [e.kind for e in row.events]
        return row


def alerts_sent(sink: SmtpSink) -> list[str]:
    return [str(message_from_bytes(m.data, policy=policy.default)["Subject"]) for m in sink.delivered
            if m.rcpt_tos == ["lead@desk.example"]]


def test_warning_once_breach_raises_priority(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink,
                                             tmp_path: Path) -> None:
    path, app = sla_desk(make_config, tmp_path)
    mailbox.append(text_mail("kenji@example.jp", "KYC verification problem", "selfie rejected", "<k1@x>"))
    assert run_once(path) == 0
    t = ticket(app)
    assert t.first_response_due == t.created_at + timedelta(hours=4)  # 24x7: business time is wall time
    ack = next(m for m in smtp_sink.delivered if m.rcpt_tos == ["kenji@example.jp"])
    assert "within 4 business hours" in message_from_bytes(ack.data, policy=policy.default) \
        .get_body(("plain",)).get_content().replace("\n", " ")

    assert escalate(app, t.created_at + timedelta(hours=2, minutes=59)) == []
    assert len(escalate(app, t.created_at + timedelta(hours=3))) == 1  # 75 % of four hours
    assert escalate(app, t.created_at + timedelta(hours=3, minutes=30)) == []  # exactly once
    assert len(escalate(app, t.created_at + timedelta(hours=4, minutes=1))) == 1  # the breach
    assert escalate(app, t.created_at + timedelta(hours=5)) == []
    t = ticket(app)
    assert t.priority == "high"  # was normal
    kinds = [e.kind for e in t.events if e.kind.startswith("sla_")]
    assert kinds.count("sla_warning") == 1 and kinds.count("sla_breach") == 1
    assert run_once(path) == 0
    assert sorted(s.split(":")[0] for s in alerts_sent(smtp_sink)) == [f"[#{t.id}] SLA BREACHED",
                                                                       f"[#{t.id}] SLA warning"]
    app.close()


def test_pending_pauses_resolution_and_the_customer_resumes_it(make_config: ConfigFactory, mailbox: Mailbox,
                                                               smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, app = sla_desk(make_config, tmp_path)
    mailbox.append(text_mail("kenji@example.jp", "KYC verification problem", "selfie rejected", "<k2@x>"))
    assert run_once(path) == 0
    t = ticket(app)
    address = ticket_address("support@desk.example", t.id, app.secret)
    specialist = text_mail("kim@desk.example", "Re: ticket", "#pending\nPlease send a clearer selfie.",
                           "<kim-1@desk.example>")
    mailbox.append(specialist.replace(b"To: support@desk.example", f"To: {address}".encode()))
    assert run_once(path) == 0
    t = ticket(app)
    assert t.status == "pending" and t.paused_at is not None and t.first_responded_at is not None
    due_before = t.resolution_due
    assert due_before is not None
    assert t.paused_at is not None
    with app.db.session() as session:  # the customer takes ten hours to answer
        session.execute(update(Ticket).values(paused_at=t.paused_at - timedelta(hours=10)))
    # While paused, no resolution alert comes however late it is; the first response was given.
    assert escalate(app, t.created_at + timedelta(days=3)) == []

    question = next(m for m in smtp_sink.delivered if m.rcpt_tos == ["kenji@example.jp"]
                    and "Re: your request" in m.message["Subject"])
    mailbox.append(text_mail("kenji@example.jp", "Re: KYC", "Here is a clearer selfie.", "<k3@x>",
                             extra=f"In-Reply-To: {question.message['Message-ID']}\r\n"))
    assert run_once(path) == 0
    t = ticket(app)
    assert t.status == "open" and t.paused_at is None
    assert timedelta(hours=10) <= t.resolution_due - due_before <= timedelta(hours=10, minutes=2)
    resumed = next(e for e in t.events if e.kind == "sla_resumed")
    assert 600 <= resumed.detail["paused_minutes"] <= 602
    app.close()


def test_report_counts_met_and_breached_and_draws_a_page(make_config: ConfigFactory, mailbox: Mailbox,
                                                         smtp_sink: SmtpSink, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path, app = sla_desk(make_config, tmp_path)
    customers = ("kenji@example.jp", "omar@example.com", "anna.schmidt@example.de")
    mailbox.append(*(text_mail(who, "KYC verification problem", "selfie rejected", f"<r{i}@x>")
                     for i, who in enumerate(customers)))
    assert run_once(path) == 0
    with app.db.session() as session:  # answered after 1 h, after 2 h, and after 5 h (late)
        for number, hours in zip(sorted(session.scalars(select(Ticket.id))), (1, 2, 5), strict=True):
            row = session.get(Ticket, number)
            assert row is not None
            row.first_responded_at = row.created_at + timedelta(hours=hours)
    capsys.readouterr()
    page = tmp_path / "sla.html"
    assert main(["sla", "report", "--config", str(path), "--json", "--html", str(page)]) == 0
    [kyc] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (kyc["queue"], kyc["tickets"], kyc["met"], kyc["breached"]) == ("kyc", 3, 2, 1)
    assert kyc["median_hours"] == 2.0 and kyc["p90_hours"] == 4.4
    assert kyc["histogram"] == [0, 1, 1, 1, 0, 0, 0]
    html = page.read_text()
    assert "<svg" in html and html.count("<rect") == 7 and "kyc (3 answered)" in html
    app.close()


def test_a_calendar_change_recomputes_open_tickets(make_config: ConfigFactory, mailbox: Mailbox,
                                                   smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config(calendar={"time_zone": "Asia/Singapore"})
    prepared_app(config, tmp_path).close()
    mailbox.append(text_mail("omar@example.com", "Question about fees", "what are the fees", "<c1@x>"))
    assert run_once(path) == 0
    app = App.from_config(config)
    before = ticket(app).first_response_due
    assert before is not None
    # The desk now also closes every day of the coming three weeks: the first reply moves beyond them.
    closed = [(before.date() + timedelta(days=d)).isoformat() for d in range(-2, 21)]
    path, config = make_config(calendar={"time_zone": "Asia/Singapore", "closed": closed})
    assert run_once(path) == 0
    app = App.from_config(config)
    after = ticket(app)
    assert after.first_response_due is not None and after.first_response_due > before + timedelta(days=14)
    assert [e.kind for e in after.events].count("sla_recomputed") == 1
    assert run_once(path) == 0  # unchanged config: nothing recomputed again
    assert [e.kind for e in ticket(app).events].count("sla_recomputed") == 1
    app.close()


def near(moment: datetime | None, expected: datetime) -> bool:
    """Equal but for float rounding of the warning share."""
    return moment is not None and abs(moment - expected) < timedelta(seconds=1)


def test_next_alert_at_follows_the_clocks_and_the_alerts_sent(make_config: ConfigFactory, mailbox: Mailbox,
                                                              smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, app = sla_desk(make_config, tmp_path)
    mailbox.append(text_mail("kenji@example.jp", "KYC verification problem", "selfie rejected", "<n1@x>"))
    assert run_once(path) == 0
    t = ticket(app)
    created = t.created_at
    assert near(t.next_alert_at, created + timedelta(hours=3))  # the first-response warning, 75 % of 4 h
    escalate(app, created + timedelta(hours=3))
    assert near(ticket(app).next_alert_at, created + timedelta(hours=4))  # warned: next is the breach
    escalate(app, created + timedelta(hours=4))
    assert near(ticket(app).next_alert_at, created + timedelta(hours=36))  # resolution warning: 75 % of 2 days

    # A ticket written without the column (an older writer, a bulk load) is looked at by the next check.
    with app.db.session() as session:
        session.execute(update(Ticket).values(next_alert_at=None))
    assert escalate(app, created + timedelta(days=5)) == []  # not selected: nothing is read
    with app.db.session() as session:
        session.execute(update(Ticket).values(next_alert_at=created))
    assert len(escalate(app, created + timedelta(days=5))) == 2  # resolution warning and breach, once each
    assert ticket(app).next_alert_at is None  # every alert sent
    assert escalate(app, created + timedelta(days=6)) == []

    # The specialist closes it: no alert is left to send.
    with app.db.session() as session:
        session.execute(update(Ticket).values(next_alert_at=created))
    address = ticket_address("support@desk.example", t.id, app.secret)
    specialist = text_mail("kim@desk.example", "Re: ticket", "#close\nDone.", "<kim-n@desk.example>")
    mailbox.append(specialist.replace(b"To: support@desk.example", f"To: {address}".encode()))
    assert run_once(path) == 0
    assert ticket(app).status == "closed" and ticket(app).next_alert_at is None
    app.close()


def test_at_risk_view_shows_waiting_tickets_by_time_left(make_config: ConfigFactory, mailbox: Mailbox,
                                                         smtp_sink: SmtpSink, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing answered yet: the page still shows what is overdue and what comes due soon, per queue."""
    path, app = sla_desk(make_config, tmp_path)  # kyc: 4 business hours on a 24x7 calendar
    customers = ("kenji@example.jp", "omar@example.com", "anna.schmidt@example.de", "li.wei@example.cn")
    mailbox.append(*(text_mail(who, "KYC verification problem", "selfie rejected", f"<risk{i}@x>")
                     for i, who in enumerate(customers)))
    assert run_once(path) == 0
    with app.db.session() as session:  # due: 1 h ago, in 2 h, in 10 h, in 3 days; the last waits on the customer
        ids = sorted(session.scalars(select(Ticket.id)))
        for number, hours in zip(ids, (-1, 2, 10, 72), strict=True):
            row = session.get(Ticket, number)
            assert row is not None
            row.first_response_due = row.created_at + timedelta(hours=hours)
        session.execute(update(Ticket).where(Ticket.id == ids[3]).values(status="pending"))
    capsys.readouterr()
    page = tmp_path / "sla.html"
    assert main(["sla", "report", "--config", str(path), "--json", "--html", str(page)]) == 0
    [kyc] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert kyc["responded"] == 0
    assert kyc["at_risk"] == {"overdue": 1, "within_4h": 1, "within_1d": 1, "later": 0}
    html = page.read_text()
    assert "At risk now" in html and 'title="overdue: 1"' in html and 'title="due within 4 business hours: 1"' in html
    assert main(["sla", "report", "--config", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Waiting tickets by business time left" in text
    assert [line.split() for line in text.splitlines() if line.startswith("kyc")][-1] == ["kyc", "1", "1", "1", "0"]
    app.close()
