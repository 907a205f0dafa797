"""TLS against real servers: Dovecot (IMAPS, STARTTLS) and aiosmtpd (SMTPS, STARTTLS), with a test CA.

Each way in must work with the CA given as ca_file and fail, in one line naming the endpoint, for a
host name the certificate does not carry and for a certificate from a CA nobody trusts.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trustme
from sqlalchemy import select

from mailer.cli import main
from mailer.config import ConfigError, config_from_dict
from mailer.demo.embedded import SinkHandler
from mailer.demo.samples import text_mail
from mailer.ledger.db import Database, Outbox
from mailer.transport.intake import MailboxIntake, connect
from mailer.transport.links import Links
from mailer.transport.smtp import SendError, SmtpClient
from mailer.transport.tls import LinkError
from tests.conftest import ConfigFactory, prepared_app, service_missing
from tests.secure_servers import LocalCA, smtp_server
from tests.servers import Dovecot, Mailbox, dovecot_available


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA.make(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that did not sign the servers' certificates."""
    path = tmp_path_factory.mktemp("other") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def dovecot_tls(test_ca: LocalCA) -> Iterator[Dovecot]:
    if not dovecot_available():
        service_missing("Dovecot (for IMAP over TLS)")
    server = Dovecot(tls=(test_ca.cert_file, test_ca.key_file), users=20).start()
    yield server
    server.stop()


def _smtp(**smtp: Any) -> dict[str, Any]:
    return {"smtp": {"from_address": "support@desk.example", "timeout": 10, **smtp}}


def _imap_config(box: Mailbox, port: int, scheme: str, host: str = "127.0.0.1", **keys: Any) -> Any:
    mailbox = {"name": "support", "url": f"{scheme}://{box.user}:{box.password}@{host}:{port}/INBOX", **keys}
    return config_from_dict({"mailboxes": [mailbox], **_smtp(url="smtp://127.0.0.1:25")})


WAYS_IN = {"imaps": ("imaps", {}), "starttls": ("imap", {"starttls": True})}


@pytest.mark.parametrize("way", WAYS_IN)
def test_imap_over_tls_with_the_test_ca(dovecot_tls: Dovecot, test_ca: LocalCA, way: str) -> None:
    box = dovecot_tls.new_mailbox()
    box.append(text_mail("omar@example.com", "Over TLS", "hello", "<tls@x>"))
    scheme, keys = WAYS_IN[way]
    port = dovecot_tls.imaps_port if scheme == "imaps" else dovecot_tls.port
    config = _imap_config(box, port, scheme, ca_file=str(test_ca.ca_file), **keys).mailboxes[0]
    client = connect(config)
    try:
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
        assert client.socket().version() in ("TLSv1.2", "TLSv1.3")  # encrypted, not downgraded
    finally:
        client.logout()


@pytest.mark.parametrize("way", WAYS_IN)
def test_imap_wrong_host_name_or_untrusted_ca_is_one_line(dovecot_tls: Dovecot, test_ca: LocalCA, other_ca: Path,
                                                         way: str) -> None:
    box = dovecot_tls.new_mailbox()
    scheme, keys = WAYS_IN[way]
    port = dovecot_tls.imaps_port if scheme == "imaps" else dovecot_tls.port
    # The certificate names 127.0.0.1; "localhost" reaches the same server under a name it does not carry.
    wrong_name = _imap_config(box, port, scheme, host="localhost", ca_file=str(test_ca.ca_file), **keys)
    with pytest.raises(LinkError) as caught:
        connect(wrong_name.mailboxes[0])
    assert str(caught.value).startswith("mailbox 'support': TLS certificate does not match the host name 'localhost'")
    untrusted = _imap_config(box, port, scheme, ca_file=str(other_ca), **keys)
    links = Links()
    intake = MailboxIntake(None, untrusted.mailboxes[0], 1 << 20, lambda ids: None, links=links)  # type: ignore[arg-type]
    with pytest.raises(LinkError, match=r"^mailbox 'support': TLS certificate of 127\.0\.0\.1 not trusted .*ca_file"):
        intake.connect()
    assert "not trusted" in links.problems()["mailbox 'support'"]
    assert "\n" not in str(caught.value)


SMTP_WAYS = {"smtps": ("smtps", {}), "starttls": ("smtp", {"starttls": True})}


def _smtp_server(way: str, test_ca: LocalCA) -> tuple[Any, SinkHandler]:
    handler = SinkHandler()
    context = test_ca.server_context()
    server = smtp_server(handler, implicit=context) if way == "smtps" else smtp_server(handler, starttls=context)
    server.start()
    return server, handler


@pytest.mark.parametrize("way", SMTP_WAYS)
def test_smtp_over_tls_with_the_test_ca(test_ca: LocalCA, other_ca: Path, way: str) -> None:
    server, handler = _smtp_server(way, test_ca)
    scheme, keys = SMTP_WAYS[way]
    try:
        def client(host: str, ca_file: Path) -> SmtpClient:
            config = config_from_dict({"mailboxes": [], **_smtp(url=f"{scheme}://{host}:{server.port}",
                                                                ca_file=str(ca_file), **keys)})
            return SmtpClient(config.smtp)

        good = client("127.0.0.1", test_ca.ca_file)
        good.send("support@desk.example", "omar@example.com", text_mail("support@desk.example", "Hi", "b", "<s@x>"))
        good.close()
        assert [d.rcpt_tos for d in handler.delivered] == [["omar@example.com"]]

        wrong_name = client("localhost", test_ca.ca_file)
        with pytest.raises(SendError) as caught:
            wrong_name.send("support@desk.example", "omar@example.com", b"Subject: x\r\n\r\nx\r\n")
        assert str(caught.value).startswith("smtp: TLS certificate does not match the host name 'localhost'")
        assert not caught.value.permanent  # the mail waits for the operator's fix, it is not failed

        untrusted = client("127.0.0.1", other_ca)
        with pytest.raises(SendError, match=r"^smtp: TLS certificate of 127\.0\.0\.1 not trusted"):
            untrusted.send("support@desk.example", "omar@example.com", b"Subject: x\r\n\r\nx\r\n")
        assert "not trusted" in untrusted.links.problems()["smtp"]
        assert len(handler.delivered) == 1  # nothing went out over an unverified connection
    finally:
        server.stop()


def test_run_once_stops_with_one_line_for_an_untrusted_certificate(dovecot_tls: Dovecot, other_ca: Path,
                                                                   tmp_path: Path) -> None:
    box = dovecot_tls.new_mailbox()
    data = {"mailboxes": [{"name": "support", "url": f"imaps://{box.user}:{box.password}@127.0.0.1:"
                                                     f"{dovecot_tls.imaps_port}/INBOX", "ca_file": str(other_ca)}],
            **_smtp(url="smtp://127.0.0.1:25"), "database": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
            "paths": {"storage": str(tmp_path / "data")}}
    path = tmp_path / "supportd.toml"
    path.write_text(tomli_w.dumps(data))
    result = subprocess.run([sys.executable, "-m", "mailer", "run", "--once", "--config", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("supportd: mailbox 'support': TLS certificate of 127.0.0.1 not trusted")
    assert "Traceback" not in result.stderr


REMOTE = {"mailboxes": [{"name": "support", "url": "imap://support:secret@mail.example.net/INBOX"}],
          **_smtp(url="smtp://127.0.0.1:25")}


def test_a_password_never_goes_in_clear_to_a_remote_host(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.url: would send the password unencrypted to "
                                          r"mail\.example\.net; use the TLS scheme or starttls = true"):
        config_from_dict(REMOTE)
    relay = {"mailboxes": [], **_smtp(url="smtp://relay:secret@smtp.example.net:587")}
    with pytest.raises(ConfigError, match=r"smtp\.url: would send the password unencrypted to smtp\.example\.net"):
        config_from_dict(relay)
    # Said explicitly, on a network the operator trusts; or encrypted; or with no password at all.
    config_from_dict({**REMOTE, "mailboxes": [{**REMOTE["mailboxes"][0], "allow_plaintext": True}]})
    config_from_dict({**REMOTE, "mailboxes": [{**REMOTE["mailboxes"][0], "starttls": True}]})
    config_from_dict({"mailboxes": [], **_smtp(url="smtp://smtp.example.net:25")})
    path = tmp_path / "supportd.toml"
    path.write_text(tomli_w.dumps(REMOTE))
    result = subprocess.run([sys.executable, "-m", "mailer", "check-config", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "would send the password unencrypted" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ca_file_must_exist(tmp_path: Path) -> None:
    mailbox = {"name": "support", "url": "imaps://support:secret@127.0.0.1/INBOX", "ca_file": "nope.pem"}
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.ca_file: no such file: .*nope\.pem"):
        config_from_dict({"mailboxes": [mailbox], **_smtp(url="smtp://127.0.0.1:25")}, base_dir=tmp_path)


def test_run_once_stops_with_one_line_when_the_relay_is_not_trusted(make_config: ConfigFactory, mailbox: Mailbox,
                                                                    test_ca: LocalCA, other_ca: Path,
                                                                    tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    server, handler = _smtp_server("smtps", test_ca)
    try:
        path, config = make_config(smtp={"url": f"smtps://127.0.0.1:{server.port}", "ca_file": str(other_ca)})
        prepared_app(config, tmp_path).close()
        mailbox.append(text_mail("omar@example.com", "Deposit missing", "where is it", "<relay-tls@x>"))
        assert main(["run", "--once", "--config", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("supportd: smtp: TLS certificate of 127.0.0.1 not trusted")
        assert handler.delivered == []
        db = Database(config.database_url)
        with db.reading() as session:
            statuses = list(session.scalars(select(Outbox.status)))
        db.dispose()
        assert statuses == ["pending"]  # waits for the operator's fix; not failed
    finally:
        server.stop()
