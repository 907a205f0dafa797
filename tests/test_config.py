"""The config file: the minimal example works on shipped defaults; every mistake names file and key."""

from __future__ import annotations

import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from mailer.config import ConfigError, load_config

MINIMAL = """
[[mailboxes]]
name = "support"
url = "imap://support:secret@127.0.0.1:14143/INBOX"

[smtp]
url = "smtp://127.0.0.1:10025"
from_address = "support@desk.example"

[database]
url = "sqlite:///supportd.db"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "supportd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_uses_shipped_queues_rules_and_calendar(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.mailboxes[0].endpoint.username == "support"
    assert config.mailboxes[0].folder == "INBOX" and config.mailboxes[0].endpoint.port == 14143
    assert set(config.queues) == {"security", "deposits", "kyc", "api", "general"}
    assert [r.name for r in config.rules][-1] == "general"
    assert config.broker.embedded and config.calendar.hours["mon"] and not config.calendar.hours["sat"]


def test_the_annotated_example_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTD_IMAP_PASSWORD", "from-the-environment")
    config = load_config(Path(__file__).resolve().parents[1] / "supportd.toml.example")
    assert config.mailboxes[0].endpoint.password == "from-the-environment"
    assert config.calendar.hours["fri"] == ((time(9), time(12)), (time(13), time(18)))


@pytest.mark.parametrize(("addition", "key", "reason"), [
    ('\n[desk]\nlanguag = "en"\n', "desk.languag", "unknown key"),
    ('\n[broker]\nurl = "kafka://x"\n', "broker.url", "must be"),
    ('\n[sla]\nfirst_response = "soon"\n', "sla.first_response", "must look like"),
    ('\n[calendar]\ntime_zone = "Mars/Olympus"\n', "calendar.time_zone", "unknown time zone"),
    ('\n[calendar.hours]\nmon = ["18:00-09:00"]\n', "calendar.hours.mon", "ends before it starts"),
    ('\n[[rules]]\nname = "x"\nqueue = "nowhere"\n', "rules[0].queue", "names no queue"),
])
def test_mistakes_name_the_key(tmp_path: Path, addition: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, MINIMAL + addition))
    assert caught.value.key == key and reason in caught.value.reason
    assert str(caught.value).startswith(str(tmp_path / "supportd.toml"))


def test_mistakes_in_the_mailbox_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.url: scheme must be one of imap://, imaps://"):
        load_config(write(tmp_path, MINIMAL.replace("imap://support", "http://support")))
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.batch_size: must be an integer"):
        load_config(write(tmp_path, MINIMAL.replace('name = "support"', 'name = "support"\nbatch_size = "ten"')))
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.poll_interval: must be an integer or a number, not a bool"):
        load_config(write(tmp_path, MINIMAL.replace('name = "support"', 'name = "support"\npoll_interval = true')))
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.password_env: environment variable NOPE_X is not set"):
        load_config(write(tmp_path, MINIMAL.replace('name = "support"', 'name = "support"\npassword_env = "NOPE_X"')))


def test_check_config_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[smtp_relay]\nurl = "x"\n')
    result = subprocess.run([sys.executable, "-m", "mailer", "check-config", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"supportd: config error: {path}: smtp_relay: unknown key (check the " \
                                    "spelling against supportd.toml.example)"
    assert "Traceback" not in result.stderr
    ok = subprocess.run([sys.executable, "-m", "mailer", "check-config", str(write(tmp_path, MINIMAL))],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(syntax\)"):
        load_config(write(tmp_path, "[[mailboxes]\n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("sqlite:///supportd.db", "postgresql://nobody@127.0.0.1:1/none"))
    result = subprocess.run([sys.executable, "-m", "mailer", "tickets", "list", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("supportd: database: ") and "Traceback" not in result.stderr
