"""The servers supportd talks to: `[[mailboxes]]` (IMAP), `[smtp]`, `[database]`, `[broker]`, and the
listeners it opens itself: `[lmtp]` and `[http]`."""

from __future__ import annotations

from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from mailer.config.base import HostPort, Section, Text, require, split_host_port
from mailer.config.errors import KeyProblem
from mailer.config.transport import Endpoint, TransportKeys, parse_endpoint

DONE_ACTIONS = ("seen", "flagged", "move", "none")


def _imap_url(value: object) -> object:
    return parse_endpoint(value, {"imap": 143, "imaps": 993}) if isinstance(value, str) else value


def _smtp_url(value: object) -> object:
    return parse_endpoint(value, {"smtp": 25, "smtps": 465}) if isinstance(value, str) else value


class MailboxConfig(TransportKeys):
    """One `[[mailboxes]]` table: an IMAP folder read by its own intake loop."""

    name: Text = Field(description="required; unique; names the mailbox in the ledger")
    url: Annotated[Endpoint, BeforeValidator(_imap_url, json_schema_input_type=str)] = Field(
        description="required; imap://user@host/INBOX (plain or STARTTLS) or imaps://")
    auth: Literal["password", "xoauth2", "oauthbearer"] = Field(
        "password", description="password | xoauth2 | oauthbearer (then the URL names only the user)")
    folder: str = Field("INBOX", description="default: the URL's path, else INBOX")
    done_action: Literal["seen", "flagged", "move", "none"] = Field(
        "seen", description="after a mail's ticket is committed: seen | flagged | move | none")
    done_folder: str | None = Field(None, description='required with done_action = "move"; a name or a '
                                                      'special-use flag such as "\\\\All"')
    poll_interval: float = Field(30.0, ge=0.05, description="seconds between polls without IDLE")
    idle: bool = Field(True, description="use IMAP IDLE when the server offers it")
    idle_timeout: float = Field(300.0, ge=1, description="seconds before IDLE is renewed")
    batch_size: int = Field(200, ge=1, description="mails fetched and committed per batch")
    timeout: float = Field(60.0, ge=1, description="read time-out of every IMAP call, seconds")

    @model_validator(mode="before")
    @classmethod
    def _folder_from_url(cls, data: object) -> object:
        if isinstance(data, dict) and "folder" not in data and isinstance(data.get("url"), str):
            path = urlsplit(data["url"]).path.lstrip("/")
            return {**data, "folder": path} if path else data
        return data

    @model_validator(mode="after")
    def _sign_in_and_done(self) -> Self:
        self._resolve_endpoint(self.url)
        if self.auth == "password" and (not self.endpoint.username or not self.endpoint.password):
            raise KeyProblem("url", "needs a user and a password (imap://user:secret@host/INBOX, or password_env)")
        if self.done_action == "move" and not self.done_folder:
            raise KeyProblem("done_folder", 'is required when done_action = "move"')
        return self


def _bare_address(value: str) -> str:
    if "@" not in value or any(c in value for c in "\r\n <>"):
        raise ValueError(f"must be a bare address like support@example.com; got {value!r}")
    return value


class SmtpConfig(TransportKeys):
    """`[smtp]`: the relay every reply goes out through."""

    url: Annotated[Endpoint, BeforeValidator(_smtp_url, json_schema_input_type=str)] = Field(
        description="required; smtp:// (plain or STARTTLS) or smtps://")
    auth: Literal["password", "xoauth2"] = Field(
        "password", description="password | xoauth2 (with an [smtp.oauth] table like [mailboxes.oauth])")
    from_address: Annotated[Text, AfterValidator(_bare_address)] = Field(
        description="required; the address every reply comes from")
    from_name: str = Field("Support", description="display name on replies")
    timeout: float = Field(30.0, ge=1, description="seconds")
    max_attempts: int = Field(8, ge=1, description="temporary failures before a reply is marked failed")
    retry_base: float = Field(5.0, ge=0.01, description="seconds before the first retry; doubles each time")

    @model_validator(mode="after")
    def _sign_in(self) -> Self:
        self._resolve_endpoint(self.url)
        return self


def _database_url(value: str) -> str:
    if not value.startswith(("sqlite:", "postgresql:", "postgresql+")):
        raise ValueError(f"must be sqlite:///… or postgresql://…; got {value!r}")
    return value


class DatabaseSection(Section):
    """`[database]`: the ledger."""

    url: Annotated[str, AfterValidator(_database_url)] = Field(
        "sqlite:///supportd.db", description="sqlite:///supportd.db or postgresql://user:pass@host:5432/supportd")


def _broker_url(value: str) -> str:
    if value != "embedded" and urlsplit(value).scheme not in ("redis", "rediss", "amqp", "amqps"):
        raise ValueError(f'must be "embedded", redis://… or amqp://…; got {value!r}')
    return value


class BrokerConfig(Section):
    """`[broker]`: where the work queue lives; "embedded" runs it inside `supportd run`."""

    url: Annotated[str, AfterValidator(_broker_url)] = Field(
        "embedded", description="embedded | redis://host:6379/0 | amqp://guest:guest@host:5672/")
    worker_threads: int = Field(4, ge=0, description="worker threads inside `supportd run`; 0 = only `supportd worker`")
    namespace: str = Field("supportd", description="Redis key prefix")
    reconcile_interval: float = Field(
        30.0, ge=0.5, description="seconds between comparisons of the ledger with the broker; work unfinished "
                                  "after twice this is sent again")

    @property
    def embedded(self) -> bool:
        return self.url == "embedded"


class ListenSection(Section):
    """`[lmtp]` and `[http]`: a listener of our own, off unless `listen` is given."""

    listen: HostPort | None = Field(None, description='host:port such as "127.0.0.1:2424"')

    @property
    def address(self) -> tuple[str, int] | None:
        return split_host_port(self.listen)


class AccountsConfig(Section):
    """`[accounts]`: where verification looks accounts up: the imported table, or a live query
    (mailer.ledger.directory)."""

    source: Literal["table", "sql"] = Field("table", description="table | sql")
    url: str | None = Field(None, repr=False, description="sql: any SQLAlchemy URL; a read-only user on a replica")
    query: str | None = Field(None, description="sql: a SELECT with exactly one parameter, :email")
    cache_size: int = Field(100_000, ge=0, description="sql: answers kept in memory")
    cache_seconds: float = Field(300.0, ge=0, description="sql: how long a found account is trusted")
    negative_cache_seconds: float = Field(30.0, ge=0, description='sql: how long "no such account" is trusted')
    timeout: float = Field(2.0, ge=0.1, description="sql: seconds to connect and per query")

    @model_validator(mode="after")
    def _sql_needs_a_url_and_a_query(self) -> Self:
        if self.source == "table":
            for name in ("url", "query"):
                if getattr(self, name) is not None:
                    raise KeyProblem(name, 'is used only with source = "sql"')
            return self
        from mailer.ledger.directory import check_query, check_url

        require(self.url, "url")
        require(self.query, "query")
        for name, problem in (("url", check_url(self.url or "")), ("query", check_query(self.query or ""))):
            if problem:
                raise KeyProblem(name, problem)
        return self
