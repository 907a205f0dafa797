"""Fixtures: real IMAP (Dovecot or pymap), aiosmtpd, SQLite or PostgreSQL, Redis; and config files."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from mailer.app import App
from mailer.config import Config, load_config
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import ACCOUNTS_CSV
from mailer.ledger import migrate
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Database
from tests.servers import Dovecot, Mailbox, Pymap, dovecot_available

PG_HOST = os.environ.get("SUPPORTD_TEST_PG", "127.0.0.1:5432")
REDIS_HOST = os.environ.get("SUPPORTD_TEST_REDIS", "127.0.0.1:6379")
REQUIRE_SERVICES = bool(os.environ.get("SUPPORTD_REQUIRE_SERVICES"))


def service_missing(what: str) -> None:
    """Skip on a laptop without the service; in CI (SUPPORTD_REQUIRE_SERVICES=1) that is a failure."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required in CI but not reachable")
    pytest.skip(f"{what} not reachable")


def reachable(hostport: str) -> bool:
    host, _, port = hostport.partition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def imap_backend() -> Iterator[Dovecot | Pymap]:
    backend: Dovecot | Pymap = Dovecot() if dovecot_available() else Pymap()
    backend.start()
    yield backend
    backend.stop()


@pytest.fixture
def mailbox(imap_backend: Dovecot | Pymap) -> Iterator[Mailbox]:
    box = imap_backend.new_mailbox()
    yield box
    box.close()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'supportd.db'}"


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server, dropped afterwards."""
    if not reachable(PG_HOST):
        service_missing(f"PostgreSQL at {PG_HOST}")
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://postgres@{PG_HOST}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{PG_HOST}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    with scratch_database("supportd_t") as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    if not reachable(REDIS_HOST):
        service_missing(f"Redis at {REDIS_HOST}")
    return f"redis://{REDIS_HOST}/0"


ConfigFactory = Callable[..., tuple[Path, Config]]


@pytest.fixture
def make_config(tmp_path: Path, mailbox: Mailbox, smtp_sink: SmtpSink, sqlite_url: str) -> ConfigFactory:
    """Write a supportd.toml for this test's servers; keyword arguments replace or add sections."""

    def factory(database_url: str | None = None, **sections: Any) -> tuple[Path, Config]:
        data: dict[str, Any] = {
            "mailboxes": [{"name": "support", "url": mailbox.url(), "poll_interval": 0.2, "idle_timeout": 5}],
            "smtp": {"url": smtp_sink.url, "from_address": "support@desk.example", "retry_base": 0.05},
            "database": {"url": database_url or sqlite_url},
            "desk": {"once_timeout": 60},
            "paths": {"storage": str(tmp_path / "data")},
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        path = tmp_path / "supportd.toml"
        path.write_text(tomli_w.dumps(data), encoding="utf-8")
        return path, load_config(path)

    return factory


def prepared_app(config: Config, tmp_path: Path) -> App:
    """Migrate the database and load the sample accounts."""
    migrate.upgrade(config.database_url)
    (tmp_path / "accounts.csv").write_text(ACCOUNTS_CSV, encoding="utf-8")
    app = App.from_config(config)
    import_accounts(app.db, tmp_path / "accounts.csv")
    return app


@pytest.fixture
def accounts_csv(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.csv"
    path.write_text(ACCOUNTS_CSV, encoding="utf-8")
    return path


def open_db(config: Config) -> Database:
    return Database(config.database_url)
