"""The one configuration file, `supportd.toml`, read and validated at start.

Every key is checked here, once: a wrong key or value raises `ConfigError` naming the file, the key and
the reason, and the CLI prints that line and exits 2. Nothing past this module sees raw TOML.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailer.config_transport import DkimConfig, TransportSecurity, dkim, transport_security
from parsing.attachments import Limits as AttachmentLimits
from parsing.language import SHIPPED, fallback_chain, normalize_tag

DONE_ACTIONS = ("seen", "flagged", "move", "none")
PRIORITIES = ("low", "normal", "high", "urgent")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ConfigError(Exception):
    """A configuration mistake, told as `file: key: reason`."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source}: {key}: {reason}")


@dataclass(frozen=True)
class Endpoint:
    """A server given as a URL: scheme, host, port, credentials and path."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = ""

    @property
    def implicit_tls(self) -> bool:
        return self.scheme in ("imaps", "smtps")


@dataclass(frozen=True)
class MailboxConfig:
    name: str
    endpoint: Endpoint
    folder: str = "INBOX"
    starttls: bool = False
    tls_verify: bool = True
    done_action: str = "seen"
    done_folder: str | None = None
    poll_interval: float = 30.0
    idle: bool = True
    idle_timeout: float = 300.0
    batch_size: int = 200
    timeout: float = 60.0
    security: TransportSecurity = field(default_factory=TransportSecurity)


@dataclass(frozen=True)
class SmtpConfig:
    endpoint: Endpoint
    from_address: str
    from_name: str = "Support"
    starttls: bool = False
    tls_verify: bool = True
    timeout: float = 30.0
    max_attempts: int = 8
    retry_base: float = 5.0
    security: TransportSecurity = field(default_factory=TransportSecurity)


@dataclass(frozen=True)
class BrokerConfig:
    url: str = "embedded"
    worker_threads: int = 4
    namespace: str = "supportd"
    # How often the ledger is compared with the broker; work is re-sent after twice this unfinished.
    reconcile_interval: float = 30.0

    @property
    def embedded(self) -> bool:
        return self.url == "embedded"


@dataclass(frozen=True)
class QueueConfig:
    name: str
    title: dict[str, str]
    specialists: tuple[str, ...] = ()
    lead: str | None = None
    auth_policy: str = "none"  # none | aligned | dmarc: what our MTA must report for a sender to count as verified


@dataclass(frozen=True)
class RuleConfig:
    """One routing rule: any matching condition selects the rule; scores pick between rules."""

    name: str
    queue: str
    priority: str = "normal"
    subject: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    sender: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    attachment_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class CalendarConfig:
    time_zone: str = "Asia/Singapore"
    hours: dict[str, tuple[tuple[time, time], ...]] = field(default_factory=dict)
    country: str | None = None
    subdivision: str | None = None
    closed: tuple[str, ...] = ()
    open: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlaPolicy:
    """Targets for tickets of a queue and priority (either may be None: any), on a named calendar."""

    first_response: str = "2 business days"
    resolution: str = "5 business days"
    queue: str | None = None
    priority: str | None = None
    calendar: str = "default"

    @property
    def name(self) -> str:
        return f"{self.queue or '*'}/{self.priority or '*'}"


@dataclass(frozen=True)
class SlaConfig:
    first_response: str = "2 business days"
    resolution: str = "5 business days"
    warn_at: float = 0.75  # share of a target after which the queue's lead is warned
    policies: tuple[SlaPolicy, ...] = ()

    def policy_for(self, queue: str, priority: str) -> SlaPolicy:
        """The most specific policy: queue and priority, then queue, then priority, then the default."""
        ranked = sorted((p for p in self.policies if p.queue in (None, queue) and p.priority in (None, priority)),
                        key=lambda p: (p.queue is not None, p.priority is not None), reverse=True)
        return ranked[0] if ranked else SlaPolicy(self.first_response, self.resolution)


@dataclass(frozen=True)
class TrustConfig:
    authserv_id: str
    received_hops: int = 0


@dataclass(frozen=True)
class DedupConfig:
    window_days: float = 7.0
    similarity: float = 0.30
    max_auto_replies_per_day: int = 10


# Scores at or above which our MTA's verdict means spam: SpamAssassin's own default (5.0) and rspamd's
# "add header" action (6.0), the score at which rspamd itself writes "X-Spam: Yes".
DEFAULT_SPAM_SCORES = {"x-spam-status": 5.0, "x-spamd-result": 6.0, "x-rspamd-score": 6.0}


@dataclass(frozen=True)
class SpamConfig:
    """Which of our MTA's headers say spam (see routing.spam), and the cap on answers to strangers."""

    enabled: bool = True
    flag_headers: tuple[str, ...] = ("x-spam-flag", "x-spam")  # lower-case; "Yes"/"True" means spam
    scores: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SPAM_SCORES))  # header -> threshold
    forged_unregistered: bool = True  # an unregistered sender failing SPF and DMARC is held like spam
    max_unverified_replies_per_hour: int = 60  # desk-wide, automatic answers to senders not verified


# Five years: the usual record-keeping duty of a financial firm for customer correspondence.
RETENTION_MINIMUM_DAYS = 5 * 365


@dataclass(frozen=True)
class RetentionConfig:
    """How long each kind of record is kept (None: for ever); `supportd purge` applies it (mailer.retention)."""

    raw_mail_days: int | None = None
    attachments_days: int | None = None
    closed_tickets_days: int | None = None
    minimum_days: int = RETENTION_MINIMUM_DAYS  # nothing may be configured to go sooner


@dataclass(frozen=True)
class AccountsConfig:
    """Where verification looks accounts up: the imported table, or a live query (mailer.directory)."""

    source: str = "table"  # table | sql
    url: str | None = field(default=None, repr=False)  # sql: any SQLAlchemy URL, e.g. a read replica
    query: str | None = None  # sql: a SELECT with the one parameter :email
    cache_size: int = 100_000
    cache_seconds: float = 300.0
    negative_cache_seconds: float = 30.0
    timeout: float = 2.0


@dataclass(frozen=True)
class HelpConfig:
    """The knowledge base suggested in acknowledgements (routing/help.py); loaded and checked at start."""

    articles: tuple[Any, ...]  # routing.help.Article
    folder: Path
    min_score: float = 3.5
    max_suggestions: int = 3


@dataclass(frozen=True)
class Config:
    source: str
    mailboxes: tuple[MailboxConfig, ...]
    smtp: SmtpConfig
    database_url: str = "sqlite:///supportd.db"
    broker: BrokerConfig = BrokerConfig()
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    rules: tuple[RuleConfig, ...] = ()
    calendar: CalendarConfig = CalendarConfig()
    calendars: dict[str, CalendarConfig] = field(default_factory=dict)  # named; "default" is [calendar]
    sla: SlaConfig = SlaConfig()
    dedup: DedupConfig = DedupConfig()
    trust: TrustConfig | None = None  # without it, sender authentication is not checked
    spam: SpamConfig = SpamConfig()
    templates_dir: Path | None = None
    storage_dir: Path = Path("supportd-data")
    default_language: str = "en"
    desk_name: str = "Support"
    once_timeout: float = 300.0
    max_message_bytes: int = 50 * 1024 * 1024
    raw_with_secrets: str = "drop"  # drop: keep only headers of a raw mail that held secrets | keep
    attachments: AttachmentLimits = field(default_factory=AttachmentLimits)
    encryption_keys_env: str | None = None  # names the variable holding Fernet keys, newest first
    secret_env: str | None = None  # names the variable holding the ticket-address secret
    lmtp_listen: tuple[str, int] | None = None  # host and port of the LMTP listener, if any
    accounts: AccountsConfig = AccountsConfig()
    help: HelpConfig | None = None  # without it, acknowledgements suggest no articles
    qa_share: float = 0.0  # [qa] share: the part of each specialist's closed tickets a week the lead reviews
    http_listen: tuple[str, int] | None = None  # host and port of /metrics, /healthz, /readyz, if any
    dkim: DkimConfig | None = None  # without it, outgoing mail is not signed
    retention: RetentionConfig = RetentionConfig()

    @property
    def support_address(self) -> str:
        return self.smtp.from_address


class _Section:
    """Reads one TOML table, remembering which keys were used so leftovers can be refused."""

    def __init__(self, source: str, path: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(source, path or "(top level)", "must be a table")
        self.source, self.path, self.data = source, path, data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), reason)

    def _get(self, name: str, kind: type | tuple[type, ...], default: Any, required: bool) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise self.fail(name, "is required")
            return default
        value = self.data[name]
        # TOML true/false are Python ints too; where a number is wanted they are a mistake, not 1 and 0.
        if isinstance(value, bool) and kind is not bool:
            raise self.fail(name, f"must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise self.fail(name, f"must be {_kind_name(kind)}, not {type(value).__name__} {value!r}")
        return value

    def str(self, name: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self._get(name, str, default, required)
        if value is not None and required and not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def bool(self, name: str, default: bool) -> bool:
        return bool(self._get(name, bool, default, False))

    def number(self, name: str, default: float, *, minimum: float = 0) -> float:
        value = self._get(name, (int, float), default, False)
        if value < minimum:
            raise self.fail(name, f"must be at least {minimum}, got {value}")
        return float(value)

    def int(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self._get(name, int, default, False)
        if value < minimum:
            raise self.fail(name, f"must be at least {minimum}, got {value}")
        return int(value)

    def strings(self, name: str) -> tuple[str, ...]:
        value = self._get(name, list, [], False)
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise ConfigError(self.source, f"{self.key(name)}[{i}]", "must be a non-empty string")
        return tuple(value)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.str(name, default)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def table(self, name: str) -> _Section:
        self.used.add(name)
        return _Section(self.source, self.key(name), self.data.get(name, {}))

    def tables(self, name: str) -> Iterator[_Section]:
        self.used.add(name)
        items = self.data.get(name, [])
        if not isinstance(items, list):
            raise self.fail(name, "must be an array of tables ([[...]])")
        for i, item in enumerate(items):
            yield _Section(self.source, f"{self.key(name)}[{i}]", item)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key (check the spelling against supportd.toml.example)")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
             list: "a list", dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_endpoint(section: _Section, name: str, schemes: dict[str, int]) -> Endpoint:
    """Parse a server URL such as `imaps://user:pass@host:993/INBOX`; `schemes` maps scheme to default port."""
    url = section.str(name, required=True)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise section.fail(name, f"not a valid URL: {exc}") from None
    if parts.scheme not in schemes:
        raise section.fail(name, f"scheme must be one of {', '.join(s + '://' for s in schemes)}; got {url!r}")
    if not parts.hostname:
        raise section.fail(name, f"has no host: {url!r}")
    return Endpoint(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or schemes[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        path=unquote(parts.path.lstrip("/")),
    )


def _password_from_env(section: _Section, endpoint: Endpoint) -> Endpoint:
    """`password_env = "NAME"` keeps the secret out of the file; the variable must then exist."""
    var = section.str("password_env")
    if var is None:
        return endpoint
    if var not in os.environ:
        raise section.fail("password_env", f"environment variable {var} is not set")
    return Endpoint(**{**endpoint.__dict__, "password": os.environ[var]})


def _mailbox(section: _Section, base_dir: Path) -> MailboxConfig:
    endpoint = _password_from_env(section, parse_endpoint(section, "url", {"imap": 143, "imaps": 993}))
    starttls = section.bool("starttls", False)
    security = transport_security(section, endpoint, tls=endpoint.implicit_tls or starttls,
                                  auth_choices=("password", "xoauth2", "oauthbearer"), base_dir=base_dir)
    if security.auth == "password" and (not endpoint.username or not endpoint.password):
        raise section.fail("url", "needs a user and a password (imap://user:secret@host/INBOX, or password_env)")
    done_action = section.choice("done_action", DONE_ACTIONS, "seen")
    done_folder = section.str("done_folder")
    if done_action == "move" and not done_folder:
        raise section.fail("done_folder", 'is required when done_action = "move"')
    mailbox = MailboxConfig(
        name=section.str("name", required=True),
        endpoint=endpoint,
        folder=section.str("folder", endpoint.path or "INBOX"),
        starttls=starttls,
        tls_verify=section.bool("tls_verify", True),
        done_action=done_action,
        done_folder=done_folder,
        poll_interval=section.number("poll_interval", 30.0, minimum=0.05),
        idle=section.bool("idle", True),
        idle_timeout=section.number("idle_timeout", 300.0, minimum=1),
        batch_size=section.int("batch_size", 200, minimum=1),
        timeout=section.number("timeout", 60.0, minimum=1),
        security=security,
    )
    section.done()
    return mailbox


def _smtp(section: _Section, base_dir: Path) -> SmtpConfig:
    endpoint = _password_from_env(section, parse_endpoint(section, "url", {"smtp": 25, "smtps": 465}))
    starttls = section.bool("starttls", False)
    security = transport_security(section, endpoint, tls=endpoint.implicit_tls or starttls,
                                  auth_choices=("password", "xoauth2"), base_dir=base_dir)
    from_address = section.str("from_address", required=True)
    if "@" not in from_address or any(c in from_address for c in "\r\n <>"):
        raise section.fail("from_address", f"must be a bare address like support@example.com; got {from_address!r}")
    smtp = SmtpConfig(
        endpoint=endpoint,
        from_address=from_address,
        from_name=section.str("from_name", "Support"),
        starttls=starttls,
        tls_verify=section.bool("tls_verify", True),
        timeout=section.number("timeout", 30.0, minimum=1),
        max_attempts=section.int("max_attempts", 8, minimum=1),
        retry_base=section.number("retry_base", 5.0, minimum=0.01),
        security=security,
    )
    section.done()
    return smtp


def _broker(section: _Section) -> BrokerConfig:
    url = section.str("url", "embedded")
    if url != "embedded" and urlsplit(url).scheme not in ("redis", "rediss", "amqp", "amqps"):
        raise section.fail("url", f'must be "embedded", redis://… or amqp://…; got {url!r}')
    broker = BrokerConfig(url=url, worker_threads=section.int("worker_threads", 4, minimum=0),
                          namespace=section.str("namespace", "supportd"),
                          reconcile_interval=section.number("reconcile_interval", 30.0, minimum=0.5))
    section.done()
    return broker


def _queues(section: _Section) -> dict[str, QueueConfig]:
    queues: dict[str, QueueConfig] = {}
    for name in section.data:
        sub = section.table(name)
        title = _titles(sub, name)
        queues[name] = QueueConfig(name=name, title=title, specialists=sub.strings("specialists"),
                                   lead=sub.str("lead"),
                                   auth_policy=sub.choice("auth_policy", ("none", "aligned", "dmarc"), "none"))
        sub.done()
    return queues


def _titles(section: _Section, name: str) -> dict[str, str]:
    """A queue's title in every shipped language: `title_<tag>` where given, else along the fallback chain."""
    given = {tag: section.str(f"title_{tag}") for tag in SHIPPED}
    given["zh-Hans"] = given["zh-Hans"] or section.str("title_zh")  # the key before there were two Chinese
    return {tag: next((given[t] for t in fallback_chain(tag) if given.get(t)), name) for tag in SHIPPED}


def _rule(section: _Section, queues: dict[str, QueueConfig]) -> RuleConfig:
    rule = RuleConfig(
        name=section.str("name", required=True),
        queue=section.str("queue", required=True),
        priority=section.choice("priority", PRIORITIES, "normal"),
        subject=section.strings("subject"),
        body=section.strings("body"),
        sender=section.strings("sender"),
        identifiers=section.strings("identifiers"),
        attachment_types=section.strings("attachment_types"),
    )
    if rule.queue not in queues:
        raise section.fail("queue", f"names no queue in [queues]: {rule.queue!r} (known: {', '.join(queues)})")
    section.done()
    return rule


def _clock(section: _Section, key: str, text: str) -> time:
    try:
        hour, minute = (int(p) for p in text.split(":"))
        return time(23, 59, 59, 999999) if (hour, minute) == (24, 0) else time(hour, minute)
    except ValueError:
        raise section.fail(key, f"times must look like 09:00; got {text!r}") from None


def _calendar(section: _Section) -> CalendarConfig:
    zone = section.str("time_zone", "Asia/Singapore")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise section.fail("time_zone", f"unknown time zone {zone!r} (use an IANA name such as Asia/Singapore)") \
            from None
    hours_section = section.table("hours")
    # No [calendar.hours] table means the usual office week; once given, unlisted days are closed.
    listed = hours_section.data or {day: ["09:00-18:00"] for day in WEEKDAYS[:5]}
    hours_section.data = listed
    hours: dict[str, tuple[tuple[time, time], ...]] = {}
    for day in WEEKDAYS:
        parsed = []
        for span in hours_section.strings(day):
            start_text, _, end_text = span.partition("-")
            start = _clock(hours_section, day, start_text.strip())
            end = _clock(hours_section, day, end_text.strip())
            if end <= start:
                raise hours_section.fail(day, f"span {span!r} ends before it starts")
            parsed.append((start, end))
        hours[day] = tuple(sorted(parsed))
    hours_section.done()
    calendar = CalendarConfig(
        time_zone=zone, hours=hours, country=section.str("country"), subdivision=section.str("subdivision"),
        closed=section.strings("closed"), open=section.strings("open"))
    section.done()
    return calendar


def _duration(section: _Section, key: str, default: str) -> str:
    from sla.calendar import parse_duration

    text = section.str(key, default)
    try:
        parse_duration(text)
    except ValueError as exc:
        raise section.fail(key, str(exc)) from None
    return text


def _sla(section: _Section, queues: dict[str, QueueConfig], calendars: dict[str, CalendarConfig]) -> SlaConfig:
    first, resolution = _duration(section, "first_response", "2 business days"), \
        _duration(section, "resolution", "5 business days")
    warn_at = section.number("warn_at", 0.75, minimum=0.01)
    if warn_at >= 1:
        raise section.fail("warn_at", f"is a share of the target below 1; got {warn_at}")
    policies = []
    for sub in section.tables("policies"):
        policy = SlaPolicy(first_response=_duration(sub, "first_response", first),
                           resolution=_duration(sub, "resolution", resolution),
                           queue=sub.str("queue"), priority=sub.str("priority"),
                           calendar=sub.str("calendar", "default"))
        if policy.queue is not None and policy.queue not in queues:
            raise sub.fail("queue", f"names no queue in [queues]: {policy.queue!r}")
        if policy.priority is not None and policy.priority not in PRIORITIES:
            raise sub.fail("priority", f"must be one of {', '.join(PRIORITIES)}; got {policy.priority!r}")
        if policy.calendar not in calendars:
            raise sub.fail("calendar", f"names no calendar: {policy.calendar!r} (known: {', '.join(calendars)})")
        sub.done()
        policies.append(policy)
    section.done()
    return SlaConfig(first, resolution, warn_at, tuple(policies))


def _dedup(section: _Section) -> DedupConfig:
    similarity = section.number("similarity", 0.30, minimum=0.01)
    if similarity > 1:
        raise section.fail("similarity", f"is a Jaccard similarity between 0 and 1; got {similarity}")
    dedup = DedupConfig(window_days=section.number("window_days", 7.0, minimum=0),
                        similarity=similarity,
                        max_auto_replies_per_day=section.int("max_auto_replies_per_day", 10, minimum=1))
    section.done()
    return dedup


def _attachments(section: _Section) -> AttachmentLimits:
    mb = 1024 * 1024
    limits = AttachmentLimits(
        max_bytes=int(section.number("max_mb", 25, minimum=0.001) * mb),
        max_count=section.int("max_count", 20, minimum=0),
        archive_depth=section.int("archive_depth", 2, minimum=1),
        archive_entries=section.int("archive_entries", 1000, minimum=1),
        archive_total=int(section.number("archive_total_mb", 100, minimum=0.001) * mb),
        archive_ratio=section.int("archive_ratio", 100, minimum=2),
    )
    section.done()
    return limits


def _language(section: _Section) -> str:
    tag = normalize_tag(section.str("language", "en"))
    if tag is None:
        raise section.fail("language", f"must be a language the desk answers in ({', '.join(SHIPPED)}); "
                                       f"got {section.data.get('language')!r}")
    return tag


def _check_templates(directory: Path) -> None:
    """A template that does not parse or reads a variable nobody provides would fail every such reply."""
    from templates import check_override

    errors = [p for p in check_override(directory) if p.error]
    if errors:
        more = f" (and {len(errors) - 1} more: supportd check-config lists them)" if len(errors) > 1 else ""
        raise ConfigError(str(errors[0].path), errors[0].key, errors[0].reason + more)


def _secret_env(section: _Section) -> str | None:
    variable = section.str("secret_env")
    if variable is not None and len(os.environ.get(variable, "")) < 16:
        raise section.fail("secret_env", f"environment variable {variable} must hold at least 16 characters")
    return variable


def _lmtp(section: _Section) -> tuple[str, int] | None:
    listen = section.str("listen")
    section.done()
    if listen is None:
        return None
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise section.fail("listen", f'must be host:port such as "127.0.0.1:2424"; got {listen!r}')
    return host.strip("[]"), int(port)


def _http(section: _Section) -> tuple[str, int] | None:
    """`[http] listen`: the same host:port form as `[lmtp] listen`; off unless given."""
    return _lmtp(section)


def _encryption(section: _Section) -> str | None:
    from mailer.crypto import check_keys

    variable = section.str("keys_env")
    if variable is not None:
        problem = check_keys(variable)
        if problem:
            raise section.fail("keys_env", problem)
    section.done()
    return variable


def _trust(section: _Section) -> TrustConfig | None:
    if not section.data:
        return None
    trust = TrustConfig(authserv_id=section.str("authserv_id", required=True).lower(),
                        received_hops=section.int("received_hops", 0, minimum=0))
    section.done()
    return trust


def _accounts(section: _Section) -> AccountsConfig:
    from mailer.directory import check_query, check_url

    source = section.choice("source", ("table", "sql"), "table")
    url, query = section.str("url"), section.str("query")
    if source == "table":
        for name, value in (("url", url), ("query", query)):
            if value is not None:
                raise section.fail(name, 'is used only with source = "sql"')
    else:
        url, query = section.str("url", required=True), section.str("query", required=True)
        for name, problem in (("url", check_url(url)), ("query", check_query(query))):
            if problem:
                raise section.fail(name, problem)
    accounts = AccountsConfig(source=source, url=url, query=query,
                              cache_size=section.int("cache_size", 100_000, minimum=0),
                              cache_seconds=section.number("cache_seconds", 300.0, minimum=0),
                              negative_cache_seconds=section.number("negative_cache_seconds", 30.0, minimum=0),
                              timeout=section.number("timeout", 2.0, minimum=0.1))
    section.done()
    return accounts


STAFF_KEYS = {"specialists", "lead"}


def only_staffs_shipped_queues(given: Any, shipped: dict[str, Any]) -> bool:
    """True when [queues.NAME] tables only name people for shipped queues: the shipped set then stays."""
    return isinstance(given, dict) and bool(given) and all(
        name in shipped and isinstance(table, dict) and set(table) <= STAFF_KEYS for name, table in given.items())


def staffed_queues(shipped: dict[str, Any], staff: dict[str, Any]) -> dict[str, Any]:
    return {name: {**table, **staff.get(name, {})} for name, table in shipped.items()}


def always_open(time_zone: str) -> CalendarConfig:
    """The shipped `24x7` calendar: every hour of every day, in the desk's time zone."""
    whole_day = ((time(0, 0), time(23, 59, 59, 999999)),)
    return CalendarConfig(time_zone=time_zone, hours={day: whole_day for day in WEEKDAYS})


def with_shipped_policies(data: dict[str, Any], routing_data: dict[str, Any],
                          queues: dict[str, QueueConfig]) -> dict[str, Any]:
    """Without [[sla.policies]], the shipped ones apply to whichever of their queues exist."""
    sla = data.get("sla", {})
    if not isinstance(sla, dict) or "policies" in sla:
        return data
    shipped = [policy for policy in routing_data.get("policies", []) if policy.get("queue") in queues]
    return {**data, "sla": {**sla, "policies": shipped}}


def _header_name(section: _Section, key: str, name: str) -> str:
    if not name or any(not (33 <= ord(ch) <= 126) or ch == ":" for ch in name):
        raise section.fail(key, f"must be a header name such as X-Spam-Flag; got {name!r}")
    return name.lower()


def _spam(section: _Section) -> SpamConfig:
    given = section.strings("flag_headers")  # an empty list turns flag headers off
    flags = tuple(_header_name(section, "flag_headers", name) for name in given) \
        if "flag_headers" in section.data else SpamConfig.flag_headers
    scores_section = section.table("scores")
    scores = {_header_name(scores_section, name, name): scores_section.number(name, 0, minimum=-1000)
              for name in scores_section.data} if scores_section.data else dict(DEFAULT_SPAM_SCORES)
    scores_section.done()
    spam = SpamConfig(enabled=section.bool("enabled", True), flag_headers=flags, scores=scores,
                      forged_unregistered=section.bool("forged_unregistered", True),
                      max_unverified_replies_per_hour=section.int("max_unverified_replies_per_hour", 60, minimum=0))
    section.done()
    return spam


def _help(section: _Section, base_dir: Path) -> HelpConfig | None:
    from routing.help import ArticleError, load_articles

    if not section.data:
        return None
    folder = base_dir / section.str("articles", required=True)
    try:
        articles = load_articles(folder)
    except ArticleError as exc:
        raise section.fail("articles", str(exc)) from None
    config = HelpConfig(articles, folder, min_score=section.number("min_score", 3.5, minimum=0.01),
                        max_suggestions=section.int("max_suggestions", 3, minimum=1))
    section.done()
    return config


def _qa_share(section: _Section) -> float:
    share = section.number("share", 0.0, minimum=0)
    if share > 1:
        raise section.fail("share", f"is the share of closed tickets to review, between 0 and 1; got {share}")
    section.done()
    return share


def _retention(section: _Section) -> RetentionConfig:
    minimum = section.int("minimum_days", RETENTION_MINIMUM_DAYS, minimum=0)
    kept: dict[str, int | None] = {}
    for name in ("raw_mail_days", "attachments_days", "closed_tickets_days"):
        days = section.int(name, 0, minimum=1) if name in section.data else None
        if days is not None and days < minimum:
            raise section.fail(name, f"{days} days is shorter than the record-keeping minimum of {minimum} days "
                                     f"({section.key('minimum_days')})")
        kept[name] = days
    section.done()
    return RetentionConfig(minimum_days=minimum, **kept)


def default_routing() -> dict[str, Any]:
    """The shipped queues and rules (routing/default_rules.toml), used when the config names none."""
    text = resources.files("routing").joinpath("default_rules.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raise ConfigError on any problem."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(source, "(file)", "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", str(exc)) from None
    return config_from_dict(data, source, base_dir=Path(path).resolve().parent)


def config_from_dict(data: dict[str, Any], source: str = "<config>", base_dir: Path | None = None) -> Config:
    base_dir = base_dir or Path.cwd()
    top = _Section(source, "", data)
    mailboxes = tuple(_mailbox(s, base_dir) for s in top.tables("mailboxes"))
    names = [m.name for m in mailboxes]
    if len(set(names)) != len(names):
        raise ConfigError(source, "mailboxes", "mailbox names must be unique")
    if "smtp" not in data:
        raise ConfigError(source, "smtp", "is required ([smtp] with url and from_address)")
    smtp = _smtp(top.table("smtp"), base_dir)

    database = top.table("database")
    database_url = database.str("url", "sqlite:///supportd.db")
    if not database_url.startswith(("sqlite:", "postgresql:", "postgresql+")):
        raise database.fail("url", f"must be sqlite:///… or postgresql://…; got {database_url!r}")
    database.done()

    routing_data = default_routing()
    if "queues" not in data or only_staffs_shipped_queues(data["queues"], routing_data["queues"]):
        data = {**data, "queues": staffed_queues(routing_data["queues"], data.get("queues", {}))}
        top.data = data
    queues = _queues(top.table("queues"))
    if not queues:
        raise ConfigError(source, "queues", "needs at least one queue")
    if "rules" not in data:
        top.data = {**top.data, "rules": routing_data["rules"]}
    rules = tuple(_rule(s, queues) for s in top.tables("rules"))

    paths = top.table("paths")
    templates_dir = paths.str("templates")
    storage_dir = paths.str("storage", "supportd-data")
    paths.done()

    calendars = {"default": _calendar(top.table("calendar"))}
    named = top.table("calendars")
    for name in named.data:
        if name == "default":
            raise named.fail(name, "is the [calendar] table's name; choose another")
        calendars[name] = _calendar(named.table(name))
    calendars.setdefault("24x7", always_open(calendars["default"].time_zone))
    top.data = with_shipped_policies(top.data, routing_data, queues)
    desk = top.table("desk")
    config = Config(
        source=source,
        mailboxes=mailboxes,
        smtp=smtp,
        database_url=database_url,
        broker=_broker(top.table("broker")),
        queues=queues,
        rules=rules,
        calendar=calendars["default"],
        calendars=calendars,
        sla=_sla(top.table("sla"), queues, calendars),
        dedup=_dedup(top.table("dedup")),
        trust=_trust(top.table("trust")),
        spam=_spam(top.table("spam")),
        attachments=_attachments(top.table("attachments")),
        encryption_keys_env=_encryption(top.table("encryption")),
        lmtp_listen=_lmtp(top.table("lmtp")),
        accounts=_accounts(top.table("accounts")),
        help=_help(top.table("help"), base_dir),
        qa_share=_qa_share(top.table("qa")),
        http_listen=_http(top.table("http")),
        dkim=dkim(top.table("dkim"), smtp.from_address, base_dir),
        retention=_retention(top.table("retention")),
        templates_dir=(base_dir / templates_dir) if templates_dir else None,
        storage_dir=base_dir / storage_dir,
        default_language=_language(desk),
        desk_name=desk.str("name", "Support"),
        once_timeout=desk.number("once_timeout", 300.0, minimum=1),
        max_message_bytes=desk.int("max_message_bytes", 50 * 1024 * 1024, minimum=1024),
        raw_with_secrets=desk.choice("raw_with_secrets", ("drop", "keep"), "drop"),
        secret_env=_secret_env(desk),
    )
    desk.done()
    if config.templates_dir and not config.templates_dir.is_dir():
        raise ConfigError(source, "paths.templates", f"no such directory: {config.templates_dir}")
    if config.templates_dir:
        _check_templates(config.templates_dir)
    top.done()
    return config
