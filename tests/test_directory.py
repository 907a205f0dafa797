"""The live account directory: a desk's own query against its own database, cached, through the pipeline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from mailer.config import AccountsConfig, ConfigError, config_from_dict
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import text_mail
from mailer.ledger.db import RawMessage, Ticket
from mailer.ledger.directory import DirectoryUnavailable, SqlDirectory, TtlCache
from tests.conftest import ConfigFactory, open_db, prepared_app, scratch_database
from tests.servers import Mailbox
from tests.test_pipeline import run_once

QUERY = ("SELECT email, user_id, language, display_name, anti_phishing_code FROM users "
         "WHERE lower(email) = :email")
USERS = 1_000_000


def accounts_error(**accounts: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"smtp": {"url": "smtp://127.0.0.1:2525", "from_address": "support@desk.example"},
                          "accounts": accounts}, "supportd.toml")
    return str(caught.value)


def test_the_query_and_url_are_checked_at_start() -> None:
    sql = {"source": "sql", "url": "sqlite:///users.db"}
    assert accounts_error(**sql, query="SELECT email, user_id FROM users WHERE email = :address") == (
        "supportd.toml: accounts.query: must use the parameter :email (the sender's normalized address), "
        "e.g. WHERE lower(email) = :email")
    assert accounts_error(**sql, query="SELECT * FROM users WHERE email = :email AND tenant = :tenant") == (
        "supportd.toml: accounts.query: uses parameter(s) :tenant; only :email is given")
    assert accounts_error(**sql, query="DELETE FROM users WHERE email = :email") == (
        "supportd.toml: accounts.query: must be a SELECT (the directory only reads)")
    assert accounts_error(source="sql", url="sqlite:///users.db") == "supportd.toml: accounts.query: is required"
    assert accounts_error(source="sql", url="nosuchdb://h/x", query=QUERY) == (
        "supportd.toml: accounts.url: names a dialect SQLAlchemy does not know: 'nosuchdb'")
    assert accounts_error(query=QUERY) == 'supportd.toml: accounts.query: is used only with source = "sql"'
    assert accounts_error(**sql, query=QUERY, cache_seconds=-1) == (
        "supportd.toml: accounts.cache_seconds: must be at least 0, got -1")


def test_cache_is_bounded_and_entries_expire() -> None:
    now = [0.0]
    cache = TtlCache(2, clock=lambda: now[0])
    cache.put("a", "A", 10)
    cache.put("b", None, 1)  # a negative answer, kept for less time
    assert cache.get("a") == "A" and cache.get("b") is None
    now[0] = 1.5
    assert cache.get("b") is not None  # expired: missing, not a cached None
    cache.put("b", "B", 10)
    cache.put("c", "C", 10)  # a third entry pushes out the least recently used
    assert len(cache) == 2 and cache.get("a") not in ("A",) and cache.get("c") == "C"
    now[0] = 20
    assert cache.get("c") not in ("C",)


@pytest.fixture
def users_db() -> Iterator[str]:
    """A separate PostgreSQL database with a million users, made by the server in a few seconds."""
    with scratch_database("supportd_users") as url:
        _fill_users(url)
        yield url


def _fill_users(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (user_id bigint PRIMARY KEY, email text NOT NULL, language text, "
                     "display_name text, anti_phishing_code text)")
        conn.execute(f"INSERT INTO users SELECT g, 'Trader.' || g || '@Exchange.example', "
                     f"CASE WHEN g % 3 = 0 THEN 'zh' ELSE 'en' END, 'Trader ' || g, 'AP-' || g "
                     f"FROM generate_series(1, {USERS}) AS g")
        conn.execute("CREATE INDEX users_email ON users (lower(email))")
        conn.execute("ANALYZE users")


@pytest.fixture
def directory_queries(users_db: str) -> Iterator[list[str]]:
    """Every statement any engine sends to the users database (the directory's own engine among them)."""
    name = users_db.rsplit("/", 1)[1]
    seen: list[str] = []

    def record(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if conn.engine.url.database == name and "FROM users" in statement:
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def sent_to(sink: SmtpSink, address: str) -> list[Any]:
    return [message_from_bytes(m.data, policy=policy.default) for m in sink.delivered if m.rcpt_tos == [address]]


@pytest.mark.postgres
@pytest.mark.slow
def test_live_directory_of_a_million_users_through_the_pipeline(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path, users_db: str,
        directory_queries: list[str]) -> None:
    accounts = {"source": "sql", "query": QUERY, "cache_seconds": 600, "negative_cache_seconds": 60}
    # First the replica is down: the mail waits (pending, retried), it is neither quarantined nor answered.
    path, config = make_config(accounts={**accounts, "url": "postgresql://postgres@127.0.0.1:1/users",
                                         "timeout": 0.5}, desk={"once_timeout": 2})
    prepared_app(config, tmp_path).close()
    registered = "trader.777777@exchange.example"
    mailbox.append(text_mail("Trader 777777 <Trader.777777@EXCHANGE.example>", "Withdrawal stuck",
                             "My withdrawal has been pending for a day.", "<live-1@x.example>"))
    assert run_once(path) == 1
    db = open_db(config)
    with db.reading() as session:
        assert [r.status for r in session.scalars(select(RawMessage))] == ["pending"]
    assert smtp_sink.delivered == []

    # The replica is back: the same mail is verified against it and acknowledged with the user's code.
    path, config = make_config(accounts={**accounts, "url": users_db})
    mailbox.append(text_mail("Trader.777777@exchange.example", "Re: withdrawal", "Still waiting.",
                             "<live-2@x.example>"),
                   text_mail("nobody.here@exchange.example", "Withdrawal stuck", "Where is my money?",
                             "<live-3@x.example>"))
    assert run_once(path) == 0
    with db.reading() as session:
        tickets = {t.customer_email: t for t in session.scalars(select(Ticket))}
        verified = {e.detail.get("user_id") for t in tickets.values() for e in t.events if e.kind == "verified"}
    db.dispose()
    assert tickets[registered].verified == "verified" and tickets[registered].account_id is None
    assert tickets["nobody.here@exchange.example"].verified == "unregistered"
    assert "777777" in verified
    assert any("AP-777777" in m.get_body(("plain",)).get_content() for m in sent_to(smtp_sink, registered))
    [generic] = sent_to(smtp_sink, "nobody.here@exchange.example")
    assert "registered" in str(generic["Subject"]) and "AP-" not in generic.get_body(("plain",)).get_content()

    # Two mails from the registered user and one stranger: the cache answered the second look-up.
    assert len(directory_queries) == 2


@pytest.mark.postgres
def test_a_slow_replica_is_a_transient_error_not_an_answer(pg_url: str) -> None:
    config = AccountsConfig(source="sql", url=pg_url, timeout=0.3, query=(
        "SELECT 'slow@example.com' AS email, '1' AS user_id FROM pg_sleep(2) WHERE :email <> ''"))
    directory = SqlDirectory(config)
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable, match="statement timeout"):
        directory.find("slow@example.com")
    assert time.monotonic() - started < 1.5
    assert len(directory.cache) == 0  # nothing remembered: the next mail asks again
    directory.close()
