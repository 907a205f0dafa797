"""DKIM: every kind of outgoing mail, captured at a real SMTP server, verifies with dkimpy against our key.

DNS is the one thing answered by the test: dkimpy's `dnsfunc` returns the TXT record that
`check-config` tells the operator to publish.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import dkim
import pytest
import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from mailer.app import App
from mailer.config import ConfigError, config_from_dict, default_routing, load_config
from mailer.demo.samples import BTC_TXID, text_mail
from mailer.ledger.db import Outbox, Ticket
from mailer.stages.escalate import escalate
from tests.conftest import prepared_app
from tests.servers import Dovecot, Mailbox, Pymap
from tests.test_pipeline import run_once
from tests.test_specialists import PEOPLE, Relay, answer, inbox

SELECTOR, DOMAIN = "s2026", "desk.example"
REQUIRED = {b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to", b"references", b"mime-version",
            b"content-type", b"auto-submitted"}


def make_key(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return path


class RecordingRelay(Relay):
    """The specialists' test MTA, keeping the bytes of every mail as they arrived."""

    def __init__(self, boxes: dict[str, Mailbox]) -> None:
        super().__init__(boxes)
        self.received: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return await super().handle_DATA(server, session, envelope)


def published_record(config_path: Path) -> bytes:
    """What `supportd check-config` says to publish, as a resolver would return it."""
    done = subprocess.run([sys.executable, "-m", "mailer", "check-config", str(config_path)], capture_output=True,
                          text=True, timeout=60, check=True)
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith(f'{SELECTOR}._domainkey.{DOMAIN}. IN TXT "v=DKIM1; k=rsa; p=')
    return line.split('"')[1].encode()


def test_every_kind_of_outgoing_mail_is_signed_and_verifies(tmp_path: Path, imap_backend: Dovecot | Pymap) -> None:
    boxes = {name: imap_backend.new_mailbox() for name in PEOPLE}
    relay = RecordingRelay(boxes)
    relay.controller.start()
    queues = default_routing()["queues"]
    queues["deposits"] = {**queues["deposits"], "specialists": ["dana@desk.example"], "lead": "lead@desk.example"}
    path = tmp_path / "supportd.toml"
    path.write_text(tomli_w.dumps({
        "mailboxes": [{"name": "support", "url": boxes["desk"].url()}],
        "smtp": {"url": f"smtp://127.0.0.1:{relay.controller.port}", "from_address": "support@desk.example",
                 "retry_base": 0.05},
        "dkim": {"domain": DOMAIN, "selector": SELECTOR, "key_file": str(make_key(tmp_path / "dkim.pem"))},
        "database": {"url": f"sqlite:///{tmp_path / 'supportd.db'}"},
        "desk": {"once_timeout": 30}, "paths": {"storage": str(tmp_path / "data")}, "queues": queues}))
    config = load_config(path)
    prepared_app(config, tmp_path).close()
    record = published_record(path)
    try:
        # The customer's mail: an acknowledgement to them, a forward to the specialist.
        boxes["desk"].append(text_mail("Omar Haddad <omar@example.com>", "Deposit not credited",
                                       f"My BTC deposit is missing. TxID {BTC_TXID}", "<omar-1@example.com>"))
        assert run_once(path) == 0
        # The first-response target long past: an SLA alert to the queue's lead.
        app = App.from_config(config)
        with app.db.reading() as session:
            created = session.scalars(select(Ticket.created_at)).one()
        assert escalate(app, created + timedelta(days=30))
        app.close()
        assert run_once(path) == 0
        # The specialist answers: relayed to the customer.
        [forward] = inbox(boxes["dana"])
        relay.send(answer(forward, "dana@desk.example", "Hello Omar, your deposit is credited."))
        assert run_once(path) == 0
    finally:
        relay.controller.stop()
        for box in boxes.values():
            box.close()

    app = App.from_config(config)
    with app.db.reading() as session:
        rows = list(session.scalars(select(Outbox)))
    app.close()
    assert {"ack", "forward", "sla_alert", "reply"} <= {row.purpose for row in rows}
    sent = {row.message_id: row for row in rows}
    ours = [(rcpts, data) for rcpts, data in relay.received if b"\r\nFrom: Support <support@desk.example>" in data]
    assert len(ours) == len(rows) and all(data.startswith(b"DKIM-Signature: ") for _, data in ours)

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    for _rcpts, data in ours:
        assert dkim.verify(data, dnsfunc=dns), data[:600]
        tags = dict(t.strip().split(b"=", 1) for t in dkim.DKIM(data).headers[0][1].split(b";") if b"=" in t)
        assert tags[b"d"] == DOMAIN.encode() and tags[b"c"] == b"relaxed/relaxed"
        assert {h.strip().lower() for h in tags[b"h"].replace(b"\r\n", b"").split(b":")} >= REQUIRED
        message_id = next(line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
                          if line.lower().startswith(b"message-id:"))
        assert data == sent[message_id.decode()].raw  # signed once, in the row: a re-send is the same bytes
        # The rest of what receivers weigh: Message-ID on our domain, no bulk headers, a plain-text part.
        assert message_id.endswith(b"@desk.example>")
        mail = message_from_bytes(data, policy=policy.default)
        assert mail["Precedence"] is None and not [h for h in mail if h.lower().startswith("list-")]
        assert mail.get_body(("plain",)) is not None
    # Changing a signed header breaks the signature: the verifier really checks.
    tampered = ours[0][1].replace(b"Subject: ", b"Subject: FW: ", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_relay_signs_leaves_mail_unsigned(tmp_path: Path) -> None:
    config = config_from_dict({"mailboxes": [], "smtp": {"url": "smtp://127.0.0.1:25",
                                                         "from_address": "support@desk.example"},
                               "dkim": {"relay_signs": True}})
    assert App(config, None).sender.signer is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("dkim_table", "key", "reason"), [
    ({"domain": "other.example", "selector": "s1", "key_file": "k.pem"}, "dkim.domain",
     "other.example is not aligned with smtp.from_address (support@desk.example)"),
    ({"domain": DOMAIN, "selector": "s1", "key_file": "bad.pem"}, "dkim.key_file", "is not an unencrypted RSA"),
    ({"domain": DOMAIN, "selector": "s1", "key_file": "short.pem"}, "dkim.key_file", "holds a 512-bit key"),
    ({"domain": DOMAIN, "key_file": "k.pem"}, "dkim.selector", "is required"),
    ({"domain": DOMAIN, "selector": "s1"}, "dkim.key_file", "is required unless relay_signs = true"),
])
def test_dkim_config_mistakes(tmp_path: Path, dkim_table: dict[str, str], key: str, reason: str) -> None:
    make_key(tmp_path / "k.pem")
    (tmp_path / "bad.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    # cryptography will not make a key this short; openssl will, and operators do find old ones.
    subprocess.run(["openssl", "genrsa", "-out", str(tmp_path / "short.pem"), "512"], check=True, capture_output=True)
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"mailboxes": [], "dkim": dkim_table,
                          "smtp": {"url": "smtp://127.0.0.1:25", "from_address": "support@desk.example"}},
                         base_dir=tmp_path)
    assert caught.value.key == key and reason in caught.value.reason
