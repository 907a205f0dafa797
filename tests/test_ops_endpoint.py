"""The HTTP endpoint of a running daemon, scraped with a real HTTP client while mail flows through
Dovecot and the aiosmtpd sink; /readyz follows the IMAP server going away and coming back."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailer.cli import main
from mailer.demo.embedded import SmtpSink, free_port
from mailer.demo.samples import demo_mails
from mailer.runtime.daemon import Daemon
from mailer.runtime.health import HEALTH
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Dovecot, Mailbox, dovecot_available
from tests.test_pipeline import run_once


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot of this test's own, so that stopping it disturbs no other test."""
    if not dovecot_available():
        pytest.skip("needs Dovecot and root (the outage is a real server stopping)")
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Mailbox:  # replaces conftest's, so make_config points at this Dovecot
    return dovecot.new_mailbox()


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = get(port, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def value(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def live_status(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    main(["status", "--config", str(path), "--json"])
    return dict(json.loads(capsys.readouterr().out))


def readiness(port: int) -> tuple[int, dict[str, dict[str, object]]]:
    status, body = get(port, "/readyz")
    return status, json.loads(body)["checks"]


@pytest.mark.slow
def test_metrics_move_and_readiness_follows_the_imap_server(make_config: ConfigFactory, mailbox: Mailbox,
                                                             dovecot: Dovecot, smtp_sink: SmtpSink,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    path, config = make_config(http={"listen": f"127.0.0.1:{port}"},
                            # a long IDLE round: a closed connection must be seen at once, not at its end
                            mailboxes=[{"name": "support", "url": mailbox.url(), "idle_timeout": 300, "timeout": 5}])
    app = prepared_app(config, tmp_path)
    daemon = Daemon(app)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert notify.recv(100) == b"READY=1"  # systemd's Type=notify: the endpoint is up by now
        wait_for(lambda: readiness(port)[0] == 200, 30, "/readyz 200 at start")
        status, body = get(port, "/healthz")
        assert status == 200 and json.loads(body)["checks"]["main"]["ok"]
        before = samples(port)

        mails = [s.raw for s in demo_mails()]
        mailbox.append(*mails)
        wait_for(lambda: value(samples(port), "supportd_replies_total", purpose="ack", outcome="sent")
                 - value(before, "supportd_replies_total", purpose="ack", outcome="sent") >= 5,
                 60, "acknowledgements sent")
        wait_for(lambda: value(samples(port), "supportd_pending_mails") == 0, 30, "an empty backlog")
        after = samples(port)
        fetched = value(after, "supportd_mails_fetched_total", mailbox="support")
        assert fetched - value(before, "supportd_mails_fetched_total", mailbox="support") == len(mails)
        outcomes = {labels: v - before.get((name, labels), 0.0) for (name, labels), v in after.items()
                    if name == "supportd_mails_processed_total"}
        assert sum(outcomes.values()) == len(mails)
        assert outcomes[(("outcome", "ticket"), ("stage", ""))] >= 7  # one demo mail is a duplicate
        acks = "supportd_arrival_to_ack_seconds_count"
        assert value(after, acks) > value(before, acks)
        assert value(after, "supportd_stage_duration_seconds_count", stage="parse") \
            - value(before, "supportd_stage_duration_seconds_count", stage="parse") == len(mails)
        assert value(after, "supportd_mailbox_lease_held", mailbox="support") == 1
        assert sum(v for (name, _), v in after.items() if name == "supportd_open_tickets") == 8
        assert value(after, "supportd_imap_last_sync_timestamp_seconds", mailbox="support") > time.time() - 60
        status = live_status(path, capsys)
        [box] = status["mailboxes"]
        assert status["daemon"] == "ready" and box["lease_holder"] and box["last_sync"] and box["error"] is None

        dovecot.halt(signal.SIGKILL)  # a crash: no BYE, the connection just closes in the middle of IDLE
        down = wait_for(lambda: readiness(port)[0] == 503, 10, "/readyz 503 with the IMAP server stopped")
        status, checks = readiness(port)
        assert not checks["mailbox:support"]["ok"] and checks["database"]["ok"]
        assert get(port, "/healthz")[0] == 200  # alive and retrying: not a reason to restart it
        reconnects = value(samples(port), "supportd_imap_reconnects_total", mailbox="support")
        assert reconnects >= 1
        status = live_status(path, capsys)
        assert status["mailboxes"][0]["error"] and any("mailbox support" in p for p in status["problems"])

        dovecot.start()
        back = wait_for(lambda: readiness(port)[0] == 200, 90, "/readyz 200 with the IMAP server back")
        print(f"/readyz: 503 after {down:.1f}s of outage, 200 again {back:.1f}s after the restart")
        mailbox.append(b"From: li.wei@example.cn\r\nTo: support@desk.example\r\nSubject: KYC question\r\n"
                       b"Message-ID: <after-outage@example.cn>\r\n\r\nHow long does verification take?\r\n")
        wait_for(lambda: value(samples(port), "supportd_mails_fetched_total", mailbox="support") == fetched + 1,
                 30, "the mail sent after the outage")
    finally:
        daemon.stop()
        thread.join(timeout=60)
        notify.close()
    assert not thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()  # the endpoint stopped with it


@pytest.mark.postgres
@pytest.mark.redis
def test_a_worker_process_serves_its_own_endpoint_with_multiprocess_metrics(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, pg_url: str, redis_url: str,
        tmp_path: Path) -> None:
    port = free_port()
    path, config = make_config(database_url=pg_url, http={"listen": f"127.0.0.1:{port}"}, broker={
        "url": redis_url, "worker_threads": 0, "namespace": f"supportd-test-{uuid.uuid4().hex[:8]}"})
    prepared_app(config, tmp_path).close()
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    worker = subprocess.Popen([sys.executable, "-m", "mailer", "--log-level", "WARNING", "worker", "--config",
                               str(path), "--threads", "2"], stderr=subprocess.PIPE, env=environment)
    try:
        wait_for(lambda: _answers(port), 30, "the worker's endpoint")
        status, body = get(port, "/healthz")
        assert status == 200 and json.loads(body)["checks"]["workers"]["ok"]
        status, body = get(port, "/readyz")
        checks = json.loads(body)["checks"]
        assert status == 200 and checks["broker"]["ok"] and checks["database"]["ok"]
        mailbox.append(*(s.raw for s in demo_mails()))
        assert run_once(path) == 0  # the daemon runs no worker threads: the worker process did the work
        scrape = samples(port)
        processed = sum(v for (name, _), v in scrape.items() if name == "supportd_mails_processed_total")
        assert processed == len(demo_mails())
        assert value(scrape, "supportd_replies_total", purpose="ack", outcome="sent") >= 5
        assert list(metrics_dir.glob("*.db"))  # the counters live in the shared directory
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err.decode()


def _answers(port: int) -> bool:
    try:
        return get(port, "/healthz")[0] in (200, 503)
    except OSError:
        return False


class CuttableProxy:
    """A TCP hop in front of the IMAP server that can drop every connection without a word (as a NAT
    gateway or load balancer does): the client sees the connection close, and no BYE."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_a_connection_dropped_during_idle_is_seen_at_once(mailbox: Mailbox, tmp_path: Path) -> None:
    from mailer.config import config_from_dict
    from mailer.ledger import migrate
    from mailer.ledger.db import Database
    from mailer.transport.intake import MailboxIntake

    proxy = CuttableProxy((mailbox.host, mailbox.port))
    url = f"imap://{mailbox.user}:{mailbox.password}@127.0.0.1:{proxy.port}/INBOX"
    config = config_from_dict({"mailboxes": [{"name": "cut", "url": url, "idle_timeout": 300, "timeout": 5}],
                               "smtp": {"url": "smtp://127.0.0.1:1", "from_address": "support@desk.example"},
                               "database": {"url": f"sqlite:///{tmp_path / 'cut.db'}"}})
    migrate.upgrade(config.database_url)
    db = Database(config.database_url)
    HEALTH.reset()
    HEALTH.watch_mailbox("cut", 300)
    intake = MailboxIntake(db, config.mailboxes[0], config.max_message_bytes, lambda ids: None)
    stop = threading.Event()
    thread = threading.Thread(target=intake.run, args=(stop, lambda: True), daemon=True)
    thread.start()
    try:
        wait_for(lambda: HEALTH.mailboxes["cut"].last_sync is not None, 20, "the first sync")
        time.sleep(1.5)  # in IDLE now
        proxy.cut()
        seen = wait_for(lambda: HEALTH.mailboxes["cut"].last_error is not None, 10, "the dropped connection")
        print(f"dropped connection seen after {seen:.1f}s (IDLE round of 300s)")
    finally:
        stop.set()
        thread.join(timeout=20)
        db.dispose()
        HEALTH.reset()
