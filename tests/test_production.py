"""The production modes for real: PostgreSQL as the ledger, Redis as the broker with separate workers."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from email import message_from_bytes
from pathlib import Path

import pytest

from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import demo_mails
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once, tickets

EXPECTED_QUEUES = {"deposits": 3, "security": 2, "kyc": 1, "api": 1, "general": 1}


def _queues(rows: list[dict[str, object]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["queue"])] = counts.get(str(row["queue"]), 0) + 1
    return counts


@pytest.mark.postgres
def test_whole_flow_on_postgresql(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, pg_url: str,
                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, config = make_config(database_url=pg_url)
    prepared_app(config, tmp_path).close()
    mailbox.append(*(s.raw for s in demo_mails()))
    assert run_once(path) == 0
    rows = tickets(path, capsys)
    assert _queues(rows) == EXPECTED_QUEUES
    assert len(smtp_sink.delivered) == 8
    assert all(str(r["first_response_due"]).endswith("+00:00") for r in rows)
    assert run_once(path) == 0 and len(tickets(path, capsys)) == 8


@pytest.mark.postgres
@pytest.mark.redis
def test_redis_broker_with_a_separate_worker_process(make_config: ConfigFactory, mailbox: Mailbox,
                                                     smtp_sink: SmtpSink, pg_url: str, redis_url: str,
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The daemon runs no worker threads: every mail is processed by the `supportd worker` process.
    path, config = make_config(database_url=pg_url, broker={
        "url": redis_url, "worker_threads": 0, "namespace": f"supportd-test-{uuid.uuid4().hex[:8]}"})
    prepared_app(config, tmp_path).close()
    worker = subprocess.Popen([sys.executable, "-m", "mailer", "--log-level", "WARNING", "worker", "--config",
                               str(path), "--threads", "4"], stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        mailbox.append(*(s.raw for s in demo_mails()))
        assert run_once(path) == 0
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err.decode()
    rows = tickets(path, capsys)
    assert _queues(rows) == EXPECTED_QUEUES
    replies = smtp_sink.delivered
    assert len(replies) == 8
    assert len({message_from_bytes(m.data)["Message-ID"] for m in replies}) == 8
