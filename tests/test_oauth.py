"""OAuth2 sign-in over real servers: Dovecot's oauth2 passdb and aiosmtpd's XOAUTH2, tokens from the test's provider.

Dovecot asks the provider's introspection endpoint whether a token is active and whose it is, as it
would ask Google's or Microsoft's; the SMTP server asks the same provider. Tokens expire, are expired
early by the provider, and are revoked with their grant; supportd must refresh in the first two cases
and say in one line what is wrong in the third.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from mailer.config import ConfigError, config_from_dict
from mailer.demo.samples import text_mail
from mailer.runtime.daemon import Daemon
from mailer.transport.intake import MailboxIntake, connect
from mailer.transport.links import Links
from mailer.transport.smtp import SendError, SmtpClient
from mailer.transport.tls import LinkError
from tests.conftest import prepared_app, service_missing
from tests.secure_servers import Grant, IdentityProvider, LocalCA, OAuthSink, smtp_server
from tests.servers import Dovecot, dovecot_available

CLIENT_ID, CLIENT_SECRET = "desk-client.apps.example", "desk-client-secret"


@pytest.fixture(scope="module")
def provider() -> Iterator[IdentityProvider]:
    idp = IdentityProvider()
    idp.register(CLIENT_ID, CLIENT_SECRET)
    yield idp
    idp.stop()


@pytest.fixture(scope="module")
def dovecot_oauth(provider: IdentityProvider) -> Iterator[Dovecot]:
    if not dovecot_available():
        service_missing("Dovecot (for its oauth2 passdb)")
    server = Dovecot(introspection_url=f"{provider.base}/introspect", users=20).start()
    yield server
    server.stop()


@pytest.fixture
def google_env(monkeypatch: pytest.MonkeyPatch, provider: IdentityProvider) -> Callable[[str], None]:
    """Puts a fresh grant for `user` in the environment, as an operator would after the consent screen."""
    monkeypatch.setenv("GOOGLE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("GOOGLE_CLIENT_SECRET", CLIENT_SECRET)

    def grant(user: str) -> None:
        monkeypatch.setenv("GOOGLE_REFRESH_TOKEN", provider.grant(user))

    return grant


def google(provider: IdentityProvider, **extra: Any) -> dict[str, Any]:
    return {"provider": "google", "token_url": f"{provider.base}/token", "client_id_env": "GOOGLE_CLIENT_ID",
            "client_secret_env": "GOOGLE_CLIENT_SECRET", "refresh_token_env": "GOOGLE_REFRESH_TOKEN", **extra}


def imap_config(dovecot: Dovecot, user: str, oauth: dict[str, Any], auth: str = "xoauth2", **extra: Any) -> Any:
    mailbox = {"name": "support", "url": f"imap://{user}@127.0.0.1:{dovecot.port}/INBOX", "auth": auth,
               "oauth": oauth, "poll_interval": 0.2, "idle_timeout": 2}
    return config_from_dict({"mailboxes": [mailbox],
                             "smtp": {"url": "smtp://127.0.0.1:25", "from_address": "support@desk.example"},
                             **extra})


@pytest.mark.parametrize("auth", ["xoauth2", "oauthbearer"])
def test_imap_signs_in_with_a_google_style_refresh_token(dovecot_oauth: Dovecot, provider: IdentityProvider,
                                                         google_env: Callable[[str], None], auth: str) -> None:
    box = dovecot_oauth.new_mailbox()
    box.append(text_mail("omar@example.com", "Hello", "body", "<o1@x>"))
    google_env(box.user)
    client = connect(imap_config(dovecot_oauth, box.user, google(provider), auth=auth).mailboxes[0])
    try:
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
    finally:
        client.logout()


def test_imap_token_refreshed_before_expiry_and_after_refusal_and_revocation_is_one_line(
        dovecot_oauth: Dovecot, provider: IdentityProvider, google_env: Callable[[str], None]) -> None:
    box = dovecot_oauth.new_mailbox()
    google_env(box.user)
    links = Links()
    config = imap_config(dovecot_oauth, box.user, google(provider, refresh_margin=2)).mailboxes[0]
    intake = MailboxIntake(None, config, 1 << 20, lambda ids: None, links=links)  # type: ignore[arg-type]
    assert intake.tokens is not None
    provider.lifetime = 3
    intake.connect().logout()
    first = intake.tokens.token()
    time.sleep(1.2)  # now within refresh_margin of expiry: replaced before it is used
    intake.connect().logout()
    assert intake.tokens.token() != first and intake.tokens.fetched == 2

    provider.lifetime = 3600
    provider.expire_access_tokens()  # the provider ends tokens early; the cache still thinks it is valid
    intake.connect().logout()
    assert intake.tokens.fetched == 3 and provider.user_of(intake.tokens.token()) == box.user

    provider.revoke(box.user)
    provider.expire_access_tokens()
    with pytest.raises(LinkError) as caught:
        intake.connect()
    assert str(caught.value) == ("mailbox 'support': no OAuth2 access token: token endpoint refused the refresh "
                                 "token: invalid_grant (Token has been expired or revoked.)")
    assert links.problems() == {"mailbox 'support'": caught.value.reason}


def test_a_failing_token_command_is_one_line(dovecot_oauth: Dovecot) -> None:
    box = dovecot_oauth.new_mailbox()
    config = imap_config(dovecot_oauth, box.user, {"provider": "command",
                                                   "command": ["sh", "-c", "echo 'vault sealed' >&2; exit 3"]})
    with pytest.raises(LinkError, match=r"^mailbox 'support': no OAuth2 access token: token command sh -c .* "
                                        r"failed \(exit 3\): vault sealed$"):
        connect(config.mailboxes[0])


def test_microsoft_client_credentials_through_msal(dovecot_oauth: Dovecot, provider: IdentityProvider,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """msal against the provider over HTTPS (it accepts nothing else), trusting the test CA via ca_file."""
    ca = LocalCA.make(tmp_path / "ca")
    base = provider.serve_tls(ca.server_context())
    box = dovecot_oauth.new_mailbox()
    provider.register("m365-app", "m365-secret")
    provider.app_users["m365-app"] = box.user  # the app's mailbox permission, as an Exchange admin grants it
    monkeypatch.setenv("M365_SECRET", "m365-secret")
    oauth = {"provider": "microsoft", "tenant": "contoso", "client_id": "m365-app", "client_secret_env": "M365_SECRET",
             "authority": f"{base}/contoso", "ca_file": str(ca.ca_file)}
    config = imap_config(dovecot_oauth, box.user, oauth).mailboxes[0]
    intake = MailboxIntake(None, config, 1 << 20, lambda ids: None)  # type: ignore[arg-type]
    intake.connect().logout()
    provider.expire_access_tokens()  # msal's own cache still holds the token: refusal must bypass it
    intake.connect().logout()
    assert intake.tokens is not None and intake.tokens.fetched == 2
    monkeypatch.setenv("M365_SECRET", "wrong")
    provider.expire_access_tokens()
    with pytest.raises(LinkError, match=r"^mailbox 'support': no OAuth2 access token: Microsoft identity platform "
                                        r"refused the client credentials: invalid_client"):
        intake.connect()


def smtp_oauth_config(port: int, provider: IdentityProvider, user: str) -> Any:
    return config_from_dict({"mailboxes": [], "smtp": {
        "url": f"smtp://{user}@127.0.0.1:{port}", "from_address": "support@desk.example", "auth": "xoauth2",
        "oauth": google(provider)}})


def test_smtp_xoauth2_refresh_after_refusal_and_revocation(provider: IdentityProvider,
                                                           google_env: Callable[[str], None]) -> None:
    sink = OAuthSink(provider=provider)
    server = smtp_server(sink, oauth=provider)
    server.start()
    google_env("support@desk.example")
    client = SmtpClient(smtp_oauth_config(server.port, provider, "support@desk.example").smtp)
    try:
        client.send("support@desk.example", "omar@example.com", text_mail("a@x", "One", "1", "<m1@x>"))
        client.close()
        provider.expire_access_tokens()
        client.send("support@desk.example", "omar@example.com", text_mail("a@x", "Two", "2", "<m2@x>"))
        assert len(sink.delivered) == 2
        assert sink.tokens_seen[1] == sink.tokens_seen[0] and sink.tokens_seen[2] != sink.tokens_seen[1]
        client.close()
        provider.revoke("support@desk.example")
        with pytest.raises(SendError, match=r"^smtp: no OAuth2 access token: token endpoint refused the refresh "
                                            r"token: invalid_grant"):
            client.send("support@desk.example", "omar@example.com", text_mail("a@x", "Three", "3", "<m3@x>"))
        assert "invalid_grant" in client.links.problems()["smtp"]
        assert len(sink.delivered) == 2
    finally:
        client.close()
        server.stop()


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_daemon_run_survives_token_expiry_on_imap_and_smtp(dovecot_oauth: Dovecot, provider: IdentityProvider,
                                                           google_env: Callable[[str], None],
                                                           tmp_path: Path) -> None:
    """`supportd run` signs in to both servers with OAuth2; mid-run the tokens die and are replaced."""
    box = dovecot_oauth.new_mailbox()
    google_env(box.user)
    sink = OAuthSink(provider=provider)
    server = smtp_server(sink, oauth=provider)
    server.start()
    smtp = {"url": f"smtp://{box.user}@127.0.0.1:{server.port}", "from_address": "support@desk.example",
            "auth": "xoauth2", "oauth": google(provider), "retry_base": 0.1}
    data = {"mailboxes": [{"name": "support", "url": f"imap://{box.user}@127.0.0.1:{dovecot_oauth.port}/INBOX",
                           "auth": "xoauth2", "oauth": google(provider), "poll_interval": 0.2, "idle_timeout": 2}],
            "smtp": smtp, "database": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
            "paths": {"storage": str(tmp_path / "data")}}
    (tmp_path / "supportd.toml").write_text(tomli_w.dumps(data))
    config = config_from_dict(data)
    app = prepared_app(config, tmp_path)
    daemon = Daemon(app)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        box.append(text_mail("omar@example.com", "Deposit missing", "where is it", "<run1@x>"))
        _wait_for(lambda: len(sink.delivered) == 1)
        provider.expire_access_tokens()
        # Both servers drop their sessions (a restart, a maintenance window): new sign-ins need new tokens.
        subprocess.run(["doveadm", "-c", str(dovecot_oauth.conf), "kick", box.user], check=True,
                       capture_output=True, timeout=30)
        server.stop()
        server = smtp_server(sink, oauth=provider, port=server.port)
        box.append(text_mail("anna.schmidt@example.de", "API key rejected", "403 on every call", "<run2@x>"))
        time.sleep(0.5)
        assert len(sink.delivered) == 1
        server.start()
        _wait_for(lambda: len(sink.delivered) == 2)
        assert app.links.problems() == {}
        assert provider.user_of(sink.tokens_seen[-1]) == box.user
        intake_tokens, smtp_tokens = daemon.intakes[0].tokens, app.smtp.tokens
        assert intake_tokens is not None and smtp_tokens is not None
        assert intake_tokens.fetched >= 2 and smtp_tokens.fetched >= 2  # each replaced its dead token
    finally:
        daemon.stop()
        thread.join(timeout=30)
        server.stop()


def test_a_token_for_another_mailbox_is_refused_in_one_line(dovecot_oauth: Dovecot, provider: IdentityProvider,
                                                            tmp_path: Path) -> None:
    box, other = dovecot_oauth.new_mailbox(), dovecot_oauth.new_mailbox()
    token_file = tmp_path / "token"
    token_file.write_text(provider.issue(Grant(other.user))["access_token"] + "\n")
    config = imap_config(dovecot_oauth, box.user, {"provider": "command", "command": ["cat", str(token_file)]})
    with pytest.raises(LinkError, match=rf"^mailbox 'support': the server refused a fresh OAuth2 token for "
                                        rf"{box.user} \(.*\); is the grant revoked\?$"):
        connect(config.mailboxes[0])


@pytest.mark.parametrize(("mailbox", "key", "reason"), [
    ({"auth": "xoauth2"}, "mailboxes[0].oauth.client_secret_env", "is required"),
    ({"oauth": {"provider": "command", "command": ["x"]}}, "mailboxes[0].oauth",
     'is only read with auth = "xoauth2" or "oauthbearer"'),
    ({"auth": "xoauth2", "oauth": {"provider": "command"}}, "mailboxes[0].oauth.command", "is required"),
    ({"auth": "xoauth2", "oauth": {"client_id_env": "GOOGLE_CLIENT_ID", "client_secret_env": "GOOGLE_CLIENT_ID"}},
     "mailboxes[0].oauth.client_secret_env", "environment variable GOOGLE_CLIENT_ID is not set"),
    ({"auth": "xoauth2", "oauth": {"provider": "microsoft", "tenant": "t", "client_id": "c"}},
     "mailboxes[0].oauth.client_secret_env", "or certificate_file is required"),
    ({"auth": "xoauth2", "oauth": {"provider": "command", "command": ["x"], "token_url": "http://idp.example/t"}},
     "mailboxes[0].oauth.token_url", "must be https:// (the client secret would go in clear to idp.example)"),
    ({"auth": "xoauth2", "url": "imap://127.0.0.1/INBOX", "oauth": {"provider": "command", "command": ["x"]}},
     "mailboxes[0].url", "needs the user to sign in as"),
])
def test_oauth_config_mistakes(monkeypatch: pytest.MonkeyPatch, mailbox: dict[str, Any], key: str,
                               reason: str) -> None:
    for variable in ("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET", "GOOGLE_REFRESH_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    table = {"name": "support", "url": "imap://support@127.0.0.1/INBOX", **mailbox}
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"mailboxes": [table], "smtp": {"url": "smtp://127.0.0.1:25",
                                                         "from_address": "support@desk.example"}})
    assert caught.value.key == key and reason in caught.value.reason
