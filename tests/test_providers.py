"""Provider quirks: the example configs in docs/providers.md load, special-use folders, throttling answers."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from imapclient.exceptions import IMAPClientError

from mailer.config import config_from_dict, load_config
from mailer.demo.samples import text_mail
from mailer.transport.providers import THROTTLE_FLOOR, throttle_delay
from tests.conftest import prepared_app, service_missing
from tests.servers import Dovecot, dovecot_available
from tests.test_dkim import make_key
from tests.test_pipeline import run_once

DOCS = Path(__file__).resolve().parents[1] / "docs" / "providers.md"


def test_the_documented_provider_configs_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET", "GOOGLE_REFRESH_TOKEN", "M365_CLIENT_SECRET",
                     "SUPPORTD_IMAP_PASSWORD", "SUPPORTD_SMTP_PASSWORD"):
        monkeypatch.setenv(variable, "from-the-environment")
    (tmp_path / "internal-ca.pem").write_text("a CA certificate\n")
    make_key(tmp_path / "dkim.pem")
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 3
    configs = []
    for block in blocks:
        text = block.replace("/etc/ssl/", f"{tmp_path}/").replace("/etc/supportd/", f"{tmp_path}/")
        configs.append(config_from_dict(tomllib.loads(text), "docs/providers.md"))
    google, microsoft, own = configs
    assert google.mailboxes[0].endpoint.host == "imap.gmail.com"
    assert google.mailboxes[0].endpoint.username == "support@example.com"
    assert google.mailboxes[0].security.oauth is not None and google.smtp.security.auth == "xoauth2"
    oauth = microsoft.mailboxes[0].security.oauth
    assert oauth is not None and oauth.authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert own.dkim is not None and own.mailboxes[0].security.ca_file == tmp_path / "internal-ca.pem"


@pytest.mark.parametrize(("answer", "seconds"), [
    (b"NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: 18500 milliseconds", 18.5),
    (b"NO Server Unavailable. 15", None),
    (b"NO [LIMIT] Too many simultaneous connections", THROTTLE_FLOOR),
    (b"NO [AUTHENTICATIONFAILED] Authentication failed.", None),
])
def test_throttling_answers_set_the_wait(answer: bytes, seconds: float | None) -> None:
    assert throttle_delay(IMAPClientError(answer.decode())) == seconds


GMAIL_LIKE = r"""
namespace inbox {
  inbox = yes
  separator = /
  mailbox "[Google Mail]/All Mail" {
    special_use = \All
    auto = create
  }
}
"""


@pytest.fixture(scope="module")
def gmail_like() -> Iterator[Dovecot]:
    if not dovecot_available():
        service_missing("Dovecot (for special-use folders)")
    server = Dovecot(users=5, extra_conf=GMAIL_LIKE).start()
    yield server
    server.stop()


def test_done_folder_by_special_use_archives_out_of_inbox(gmail_like: Dovecot, tmp_path: Path) -> None:
    """`done_folder = "\\All"` finds the archive by its flag, whatever it is called, and never creates one."""
    box = gmail_like.new_mailbox()
    box.append(text_mail("omar@example.com", "Deposit missing", "where is it", "<g1@x>"))
    data = {"mailboxes": [{"name": "support", "url": box.url(), "done_action": "move", "done_folder": "\\All"}],
            "smtp": {"url": "smtp://127.0.0.1:1", "from_address": "support@desk.example", "max_attempts": 1},
            "database": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"}, "paths": {"storage": str(tmp_path / "d")},
            "desk": {"once_timeout": 30}}
    path = tmp_path / "supportd.toml"
    path.write_text(tomli_w.dumps(data))
    prepared_app(load_config(path), tmp_path).close()
    run_once(path)  # the acknowledgement cannot be sent (no relay): the mail is archived all the same
    assert box.flags("INBOX") == {}
    assert len(box.flags("[Google Mail]/All Mail")) == 1
    with box.client() as client:
        names = {str(name) for _flags, _sep, name in client.list_folders()}
    assert names == {"INBOX", "[Google Mail]", "[Google Mail]/All Mail"}  # nothing created
