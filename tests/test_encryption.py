"""Encryption at rest: raw mail and attachment files are unreadable on disk, and keys rotate."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from mailer.cli import main
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import mail_with_attachment, tiny_png
from mailer.ledger.db import Database, RawMessage, TicketMessage
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once


def stored(config_db: str) -> tuple[bytes, str]:
    db = Database(config_db)
    with db.session() as session:
        raw = session.scalar(select(RawMessage.raw))
        body = session.scalar(select(TicketMessage.body).where(TicketMessage.direction == "in"))
    db.dispose()
    assert raw is not None and body is not None
    return raw, body


def test_sealed_on_disk_readable_in_tickets_and_rotated(make_config: ConfigFactory, mailbox: Mailbox,
                                                        smtp_sink: SmtpSink, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("SUPPORTD_TEST_KEYS", old)
    path, config = make_config(encryption={"keys_env": "SUPPORTD_TEST_KEYS"})
    prepared_app(config, tmp_path).close()
    mailbox.append(mail_with_attachment("omar@example.com", "Withdrawal proof", "My withdrawal is missing",
                                        "<enc@x>", "screenshot.png", "image/png", tiny_png()))
    assert run_once(path) == 0
    raw, body = stored(config.database_url)
    assert raw.startswith(b"SDENC1:") and b"withdrawal" not in raw.lower()
    assert body == "My withdrawal is missing"
    [file] = [p for p in (config.storage_dir / "attachments").rglob("*") if p.is_file()]
    assert b"PNG" not in file.read_bytes()

    # Rotation: the new key first, both present; rotate; then the old key can go.
    monkeypatch.setenv("SUPPORTD_TEST_KEYS", f"{new},{old}")
    assert main(["storage", "rotate", "--config", str(path)]) == 0
    monkeypatch.setenv("SUPPORTD_TEST_KEYS", new)
    path, config = make_config(encryption={"keys_env": "SUPPORTD_TEST_KEYS"})
    from mailer.app import App

    app = App.from_config(config)
    assert app.sealer.open(stored(config.database_url)[0]).startswith(b"From: omar@example.com")
    assert app.store.get(file.name) == tiny_png()
    app.close()


def test_a_bad_key_fails_at_start(make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailer.config import ConfigError

    monkeypatch.setenv("SUPPORTD_TEST_KEYS", "not-a-key")
    with pytest.raises(ConfigError, match=r"encryption\.keys_env: key 1 in SUPPORTD_TEST_KEYS is not a Fernet key"):
        make_config(encryption={"keys_env": "SUPPORTD_TEST_KEYS"})
