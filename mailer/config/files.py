"""The whole `supportd.toml`: one model of every table, the shipped defaults, and the `Config` it yields.

`SupportdFile` is the schema (`supportd config schema` prints it as JSON Schema); `Config` is what the rest
of the code reads: the same tables, with `[database]`, `[paths]`, `[desk]` and the listeners flattened
into plain attributes and paths resolved against the config file's folder.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from mailer.config.answers import HelpConfig, QaSection
from mailer.config.base import Section, base_dir
from mailer.config.calendars import CalendarConfig, SlaConfig, always_open
from mailer.config.errors import ConfigError, KeyProblem, config_error
from mailer.config.records import (
    AttachmentLimits,
    AttachmentsSection,
    DeskSection,
    EncryptionSection,
    PathsSection,
    RetentionConfig,
)
from mailer.config.routing import DedupConfig, QueueConfig, RuleConfig, SpamConfig, TrustConfig
from mailer.config.servers import (
    AccountsConfig,
    BrokerConfig,
    DatabaseSection,
    ListenSection,
    MailboxConfig,
    SmtpConfig,
)
from mailer.config.transport import DkimConfig


class SupportdFile(Section):
    """supportd.toml: every key is optional unless marked "required"."""

    model_config = Section.model_config | {"title": "supportd.toml"}

    mailboxes: tuple[MailboxConfig, ...] = Field((), description="IMAP mailboxes to read, one intake loop each")
    smtp: SmtpConfig = Field(description="required; the relay replies go out through")
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    queues: dict[str, QueueConfig] = Field(default_factory=dict, min_length=1,
                                           description="default: the shipped queues (routing/default_rules.toml)")
    rules: tuple[RuleConfig, ...] = Field((), description="default: the shipped rules")
    paths: PathsSection = Field(default_factory=PathsSection)
    calendar: CalendarConfig = Field(default_factory=CalendarConfig,
                                     description='business hours of the "default" calendar')
    calendars: dict[str, CalendarConfig] = Field(default_factory=dict, description="more calendars, by name")
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    sla: SlaConfig = Field(default_factory=SlaConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    trust: TrustConfig | None = Field(None, description="without it, sender authentication is not checked")
    spam: SpamConfig = Field(default_factory=SpamConfig)
    attachments: AttachmentsSection = Field(default_factory=AttachmentsSection)
    encryption: EncryptionSection = Field(default_factory=EncryptionSection)
    lmtp: ListenSection = Field(default_factory=ListenSection, description="push delivery from an MTA")
    accounts: AccountsConfig = Field(default_factory=AccountsConfig)
    help: HelpConfig | None = Field(None, description="without it, acknowledgements suggest no articles")
    qa: QaSection = Field(default_factory=QaSection)
    http: ListenSection = Field(default_factory=ListenSection, description="/metrics, /healthz and /readyz")
    dkim: DkimConfig | None = Field(None, description="without it, outgoing mail is not signed")
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    desk: DeskSection = Field(default_factory=DeskSection)

    @field_validator("queues", mode="before")
    @classmethod
    def _queue_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: {**table, "name": name} if isinstance(table, dict) else table
                    for name, table in value.items()}
        return value

    @field_validator("trust", "dkim", "help", mode="before")
    @classmethod
    def _empty_table_is_none(cls, value: Any) -> Any:
        return None if value == {} else value

    @field_validator("paths")
    @classmethod
    def _templates_exist(cls, paths: PathsSection, info: ValidationInfo) -> PathsSection:
        folder = base_dir(info) / paths.templates if paths.templates else None
        if folder is not None and not folder.is_dir():
            raise KeyProblem("templates", f"no such directory: {folder}")
        return paths

    @model_validator(mode="after")
    def _names_refer_to_tables(self) -> Self:
        names = [m.name for m in self.mailboxes]
        if len(set(names)) != len(names):
            raise KeyProblem("mailboxes", "mailbox names must be unique")
        for i, rule in enumerate(self.rules):
            if rule.queue not in self.queues:
                raise KeyProblem(("rules", i, "queue"), f"names no queue in [queues]: {rule.queue!r} "
                                                        f"(known: {', '.join(self.queues)})")
        if "default" in self.calendars:
            raise KeyProblem(("calendars", "default"), "is the [calendar] table's name; choose another")
        calendars = self.all_calendars()
        for i, policy in enumerate(self.sla.policies):
            where = ("sla", "policies", i)
            if policy.queue is not None and policy.queue not in self.queues:
                raise KeyProblem((*where, "queue"), f"names no queue in [queues]: {policy.queue!r}")
            if policy.calendar not in calendars:
                raise KeyProblem((*where, "calendar"), f"names no calendar: {policy.calendar!r} "
                                                       f"(known: {', '.join(calendars)})")
        if self.dkim is not None:
            try:
                self.dkim.check_alignment(self.smtp.from_address)
            except KeyProblem as problem:
                raise KeyProblem(("dkim", *problem.path), str(problem)) from None
        return self

    def all_calendars(self) -> dict[str, CalendarConfig]:
        """[calendar] as "default", the named ones, and the shipped "24x7" unless one is defined."""
        return {"default": self.calendar, **self.calendars,
                **({} if "24x7" in self.calendars else {"24x7": always_open(self.calendar.time_zone)})}


@dataclass(frozen=True)
class Config:
    """The validated config as the rest of the code reads it; made only by `from_file`, so every default
    stays declared once, in the models."""

    source: str
    mailboxes: tuple[MailboxConfig, ...]
    smtp: SmtpConfig
    database_url: str
    broker: BrokerConfig
    queues: dict[str, QueueConfig]
    rules: tuple[RuleConfig, ...]
    calendar: CalendarConfig
    calendars: dict[str, CalendarConfig]  # named; "default" is [calendar]
    sla: SlaConfig
    dedup: DedupConfig
    trust: TrustConfig | None
    spam: SpamConfig
    templates_dir: Path | None
    storage_dir: Path
    default_language: str
    desk_name: str
    once_timeout: float
    max_message_bytes: int
    raw_with_secrets: str
    attachments: AttachmentLimits
    encryption_keys_env: str | None  # names the variable holding Fernet keys, newest first
    secret_env: str | None  # names the variable holding the ticket-address secret
    lmtp_listen: tuple[str, int] | None  # host and port of the LMTP listener, if any
    accounts: AccountsConfig
    help: HelpConfig | None
    qa_share: float  # [qa] share: the part of each specialist's closed tickets a week the lead reviews
    http_listen: tuple[str, int] | None  # host and port of /metrics, /healthz, /readyz, if any
    dkim: DkimConfig | None
    retention: RetentionConfig

    @property
    def support_address(self) -> str:
        return self.smtp.from_address

    @classmethod
    def from_file(cls, file: SupportdFile, source: str, folder: Path) -> Config:
        return cls(
            source=source, mailboxes=file.mailboxes, smtp=file.smtp, database_url=file.database.url,
            broker=file.broker, queues=file.queues, rules=file.rules, calendar=file.calendar,
            calendars=file.all_calendars(), sla=file.sla, dedup=file.dedup, trust=file.trust, spam=file.spam,
            templates_dir=folder / file.paths.templates if file.paths.templates else None,
            storage_dir=folder / file.paths.storage, default_language=file.desk.language,
            desk_name=file.desk.name, once_timeout=file.desk.once_timeout,
            max_message_bytes=file.desk.max_message_bytes, raw_with_secrets=file.desk.raw_with_secrets,
            attachments=file.attachments.limits(), encryption_keys_env=file.encryption.keys_env,
            secret_env=file.desk.secret_env, lmtp_listen=file.lmtp.address, http_listen=file.http.address,
            accounts=file.accounts, help=file.help, qa_share=file.qa.share,
            dkim=file.dkim, retention=file.retention)


STAFF_KEYS = {"specialists", "lead"}


def only_staffs_shipped_queues(given: Any, shipped: dict[str, Any]) -> bool:
    """True when [queues.NAME] tables only name people for shipped queues: the shipped set then stays."""
    return isinstance(given, dict) and bool(given) and all(
        name in shipped and isinstance(table, dict) and set(table) <= STAFF_KEYS for name, table in given.items())


def staffed_queues(shipped: dict[str, Any], staff: dict[str, Any]) -> dict[str, Any]:
    return {name: {**table, **staff.get(name, {})} for name, table in shipped.items()}


def with_shipped_policies(data: dict[str, Any], routing_data: dict[str, Any],
                          queues: dict[str, Any]) -> dict[str, Any]:
    """Without [[sla.policies]], the shipped ones apply to whichever of their queues exist."""
    sla = data.get("sla", {})
    if not isinstance(sla, dict) or "policies" in sla:
        return data
    shipped = [policy for policy in routing_data.get("policies", []) if policy.get("queue") in queues]
    return {**data, "sla": {**sla, "policies": shipped}}


def default_routing() -> dict[str, Any]:
    """The shipped queues and rules (routing/default_rules.toml), used when the config names none."""
    text = resources.files("routing").joinpath("default_rules.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def with_shipped_routing(data: dict[str, Any]) -> dict[str, Any]:
    """Fill in the shipped queues, rules and SLA policies where the file leaves them out."""
    routing_data = default_routing()
    if "queues" not in data or only_staffs_shipped_queues(data["queues"], routing_data["queues"]):
        data = {**data, "queues": staffed_queues(routing_data["queues"], data.get("queues", {}))}
    if "rules" not in data:
        data = {**data, "rules": routing_data["rules"]}
    queues = data["queues"] if isinstance(data["queues"], dict) else {}
    return with_shipped_policies(data, routing_data, queues)


def _tuples(value: Any) -> Any:
    """TOML arrays as tuples: the models are frozen all the way down."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


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
    folder = base_dir or Path.cwd()
    try:
        file = SupportdFile.model_validate(_tuples(with_shipped_routing(data)), context={"base_dir": folder})
    except ValidationError as exc:
        raise config_error(source, exc) from None
    except KeyProblem as problem:  # raised outside any one field, e.g. by the model's own checks
        raise ConfigError(source, ".".join(map(str, problem.path)), str(problem)) from None
    config = Config.from_file(file, source, folder)
    if config.templates_dir:
        _check_templates(config.templates_dir)
    return config


def _check_templates(directory: Path) -> None:
    """A template that does not parse or reads a variable nobody provides would fail every such reply."""
    from templates import check_override

    errors = [p for p in check_override(directory) if p.error]
    if errors:
        more = f" (and {len(errors) - 1} more: supportd check-config lists them)" if len(errors) > 1 else ""
        raise ConfigError(str(errors[0].path), errors[0].key, errors[0].reason + more)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of supportd.toml, for editors (taplo, Even Better TOML) to complete and check."""
    schema = SupportdFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
