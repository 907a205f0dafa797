"""The operator's view: `supportd status`, `supportd tickets show`, progress, and the log lines."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from mailer.cli import main
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import demo_mails, text_mail
from mailer.ledger.db import Database, RawMessage
from mailer.runtime.progress import Progress, progress
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once, tickets


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_status_and_audit_trail_after_a_run(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    mailbox.append(*(s.raw for s in demo_mails()))
    assert run_once(path) == 0
    rows = tickets(path, capsys)
    db = Database(config.database_url)
    with db.session() as session:  # one mail that a stage could not handle
        session.execute(update(RawMessage).where(RawMessage.uid == 1).values(
            status="quarantined", stage="parse", error="ValueError: broken"))
    db.dispose()

    code, status = run_json(capsys, "status", "--config", str(path), "--json")
    assert code == 1  # problems: no daemon serves the mailbox now, one mail in quarantine
    [box] = status["mailboxes"]
    assert box["name"] == "support" and box["last_uid"] == 10 and box["uidvalidity"] and box["quarantined"] == 1
    assert box["lease_holder"] is None
    assert status["backlog"]["pending_mails"] == 0 and status["backlog"]["quarantined"] == 1
    queues = {q["queue"]: q for q in status["queues"]}
    assert sum(q["open"] for q in queues.values()) == len(rows)
    earliest = min(r["first_response_due"] for r in rows if r["queue"] == "deposits")
    assert datetime.fromisoformat(str(queues["deposits"]["first_response_due"])) \
        == datetime.fromisoformat(str(earliest))
    assert any("quarantine" in p for p in status["problems"])

    capsys.readouterr()
    assert main(["status", "--config", str(path)]) == 1
    text = capsys.readouterr().out
    assert "support" in text and "deposits" in text and "PROBLEM: 1 mails in quarantine" in text

    deposit = next(r for r in rows if r["subject"] == "Withdrawal not received after 6 hours")
    code, shown = run_json(capsys, "tickets", "show", str(deposit["id"]), "--config", str(path), "--json")
    assert code == 0 and shown["ticket"]["queue"] == "deposits"
    trail = shown["trail"]
    kinds = [entry["kind"] for entry in trail]
    for kind in ("mail_in", "created", "verified", "routed", "sla_started", "reply_scheduled", "mail_out", "mail_sent"):
        assert kind in kinds, kind
    assert [e["at"] for e in trail] == sorted(e["at"] for e in trail)  # in time order
    routed = next(e for e in trail if e["kind"] == "routed")
    assert routed["detail"]["queue"] == "deposits" and routed["detail"]["reasons"]
    inbound = next(e for e in trail if e["kind"] == "mail_in")
    outbound = next(e for e in trail if e["kind"] == "mail_out")
    assert inbound["detail"]["message_id"] and inbound["detail"]["mailbox"] == "support"
    assert outbound["detail"]["status"] == "sent" and outbound["detail"]["purpose"] == "ack"
    assert outbound["detail"]["message_id"] != inbound["detail"]["message_id"]

    capsys.readouterr()
    assert main(["tickets", "show", str(deposit["id"]), "--config", str(path)]) == 0
    text = capsys.readouterr().out
    assert "routed" in text and str(inbound["detail"]["message_id"]) in text
    assert main(["tickets", "show", "9999", "--config", str(path)]) == 2


def test_progress_shows_on_a_terminal_only(make_config: ConfigFactory, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    with Progress("rows", 3, stream=terminal) as shown:
        for _ in range(3):
            shown.advance()
    with Progress("rows", 3, stream=pipe) as shown:
        shown.advance(3)
    assert "rows: 3 / 3 (100 %)" in terminal.getvalue() and pipe.getvalue() == ""
    assert list(progress([1, 2, 3], "items")) == [1, 2, 3]

    path, config = make_config()
    prepared_app(config, tmp_path).close()
    capsys.readouterr()
    assert main(["quarantine", "retry", "--all", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "0 mails back in the queue" and "\r" not in err  # not a terminal: quiet


def test_json_log_lines_name_each_mail_and_never_its_secrets(make_config: ConfigFactory, mailbox: Mailbox,
                                                             smtp_sink: SmtpSink, tmp_path: Path) -> None:
    path, config = make_config()
    prepared_app(config, tmp_path).close()
    mailbox.append(text_mail("li.wei@example.cn", "Cannot log in, password: Hunter22xyz",
                             "Hello,\npassword: Tr0ub4dor&3\nMy deposit is missing.", "<pw-1@example.cn>"),
                   text_mail("anna.schmidt@example.de", "KYC question", "How long does it take?", "<kyc-1@x.de>"))
    done = subprocess.run([sys.executable, "-m", "mailer", "--log-level", "DEBUG", "run", "--once", "--config",
                           str(path)], capture_output=True, text=True, timeout=120)  # stderr is a pipe: JSON
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines and len(lines) == len([line for line in done.stderr.splitlines() if line.strip()])
    mails = [line for line in lines if line["logger"] == "supportd.mail" and "raw_id" in line]
    assert len(mails) == 2
    for line in mails:
        assert {"raw_id", "ticket", "mailbox", "uid", "stage", "duration_ms", "outcome"} <= set(line)
        assert line["mailbox"] == "support" and line["outcome"] == "ticket" and line["ticket"]
    assert {line["uid"] for line in mails} == {1, 2}
    for secret in ("Hunter22xyz", "Tr0ub4dor&3", "Cannot log in", "deposit is missing"):
        assert secret not in done.stderr

    text = subprocess.run([sys.executable, "-m", "mailer", "--log-format", "text", "run", "--once", "--config",
                           str(path)], capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and not any(line.startswith("{") for line in text.stderr.splitlines())


def test_an_endpoint_port_in_use_stops_the_daemon_in_one_line(make_config: ConfigFactory, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path, config = make_config(http={"listen": f"127.0.0.1:{port}"})
        prepared_app(config, tmp_path).close()
        done = subprocess.run([sys.executable, "-m", "mailer", "run", "--config", str(path)], capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("supportd: config error:") and f"http.listen: cannot listen on 127.0.0.1:{port}" in last
    assert "Traceback" not in done.stderr
