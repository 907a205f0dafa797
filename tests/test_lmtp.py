"""Push delivery over LMTP: stored before the 250, then the same pipeline as IMAP intake."""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from mailer.app import App
from mailer.config import load_config
from mailer.demo.embedded import SmtpSink, free_port
from mailer.demo.samples import text_mail
from mailer.ledger.db import RawMessage, Ticket
from mailer.runtime.daemon import Daemon
from tests.conftest import ConfigFactory, prepared_app


def deliver_and_wait(port: int, raw: bytes, sink: SmtpSink) -> None:
    """Hand one mail over LMTP once the listener is up, then wait for the acknowledgement at the sink.

    One recipient: Python's LMTP client reads a single reply after DATA (see test_lmtp_answers_each_recipient).
    """
    for _ in range(200):
        try:
            client = smtplib.LMTP("127.0.0.1", port)
            break
        except OSError:
            time.sleep(0.05)
    with client:
        assert client.sendmail("omar@example.com", ["support@desk.example"], raw) == {}
    deadline = time.monotonic() + 30
    while not sink.delivered and time.monotonic() < deadline:
        time.sleep(0.05)


def test_lmtp_delivery_becomes_a_ticket_and_an_ack(make_config: ConfigFactory, smtp_sink: SmtpSink,
                                                   tmp_path: Path) -> None:
    port = free_port()
    path, config = make_config(mailboxes=[], lmtp={"listen": f"127.0.0.1:{port}"})
    prepared_app(config, tmp_path).close()
    daemon = Daemon(App.from_config(load_config(path)))
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        deliver_and_wait(port, text_mail("omar@example.com", "Deposit not credited", "missing", "<l1@x>"), smtp_sink)
    finally:
        daemon.stop()
        thread.join(timeout=30)
    assert [m.rcpt_tos for m in smtp_sink.delivered] == [["omar@example.com"]]
    app = App.from_config(config)
    with app.db.reading() as session:
        raw = session.scalar(select(RawMessage))
        ticket = session.scalar(select(Ticket))
        assert raw is not None and raw.mailbox == "lmtp" and raw.status == "done"
        assert ticket is not None and ticket.queue == "deposits"
    app.close()


@contextmanager
def listener(make_config: ConfigFactory, tmp_path: Path) -> Iterator[tuple[App, int, list[int]]]:
    """An LMTP listener without a full daemon: the app, its port, and the raw ids it stored."""
    from mailer.transport.lmtp import start_listener

    port = free_port()
    _, config = make_config(mailboxes=[], lmtp={"listen": f"127.0.0.1:{port}"})
    app = prepared_app(config, tmp_path)
    stored: list[int] = []
    controller = start_listener(app, "127.0.0.1", port, stored.extend)
    try:
        yield app, port, stored
    finally:
        controller.stop()
        app.close()


def test_lmtp_answers_each_recipient(make_config: ConfigFactory, tmp_path: Path) -> None:
    """LMTP wants one reply per recipient; a raw protocol check without a full daemon."""
    with listener(make_config, tmp_path) as (_app, port, stored):
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            reader = sock.makefile("rb")

            def say(line: bytes) -> bytes:
                sock.sendall(line + b"\r\n")
                return reader.readline()

            reader.readline()
            sock.sendall(b"LHLO mx\r\n")
            while not reader.readline().startswith(b"250 "):
                pass
            assert say(b"MAIL FROM:<a@b.example>").startswith(b"250")
            assert say(b"RCPT TO:<support@desk.example>").startswith(b"250")
            assert say(b"RCPT TO:<help@desk.example>").startswith(b"250")
            assert say(b"DATA").startswith(b"354")
            sock.sendall(text_mail("a@b.example", "hi", "hello", "<l2@x>") + b"\r\n.\r\n")
            replies = [reader.readline(), reader.readline()]
        assert all(r.startswith(b"250 2.0.0 stored as") for r in replies)
        assert len(stored) == 1


def test_supportd_lmtp_command_serves_until_sigterm(make_config: ConfigFactory, smtp_sink: SmtpSink,
                                                   tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    port = free_port()
    path, config = make_config(mailboxes=[])
    prepared_app(config, tmp_path).close()
    daemon = subprocess.Popen([sys.executable, "-m", "mailer", "--log-level", "WARNING", "lmtp", "--config",
                               str(path), "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE)
    try:
        deliver_and_wait(port, text_mail("omar@example.com", "Deposit not credited", "missing", "<l3@x>"), smtp_sink)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err.decode()
    assert [m.rcpt_tos for m in smtp_sink.delivered] == [["omar@example.com"]]


def test_a_large_lmtp_mail_is_stored_byte_for_byte(make_config: ConfigFactory, tmp_path: Path) -> None:
    """Over 1 MB the raw row is written in slices after a zero-filled INSERT (mailer.transport.intake)."""
    from tests.test_memory import large_mail

    raw = large_mail(2_500_000)
    with listener(make_config, tmp_path) as (app, port, stored):
        with smtplib.LMTP("127.0.0.1", port) as client:
            client.sendmail("anna@example.net", ["support@desk.example"], raw)
        with app.db.reading() as session:
            kept = session.scalar(select(RawMessage.raw).where(RawMessage.id == stored[0]))
    assert len(raw) > 3_000_000 and kept == raw
