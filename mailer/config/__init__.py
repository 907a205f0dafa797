"""The one configuration file, `supportd.toml`, read and validated at start.

Every key is declared once, in a pydantic model of its table, with its type, default, bounds and
description: `transport` (server URLs, TLS, OAuth2, DKIM), `servers` (mailboxes, SMTP, database, broker,
listeners), `routing` (queues, rules, trust, spam, dedup), `answers` (help articles, QA review),
`calendars` (calendars, SLA), `records` (desk, paths, attachments, encryption, retention) and `files` (the
whole file and the `Config` it yields). A wrong key or value raises `ConfigError` naming the file, the
key and the reason (`errors`), and the CLI prints that line and exits 2. Nothing past this package sees raw TOML.

Adding a key: one `Field(default, bounds, description=...)` in its table's model, and a line in
`supportd.toml.example` (tests/test_config_schema.py fails until both agree). Adding a table: a `Section`
model in the module of its group, a field of `SupportdFile`, and an attribute of `Config` if the code
should read it under another name. A check that needs the running system (a file, an environment
variable) is a validator raising ValueError with the reason; one about a key below the one it validates
raises `KeyProblem(key, reason)`.
"""

from mailer.config.answers import HelpConfig
from mailer.config.calendars import WEEKDAYS, CalendarConfig, SlaConfig, SlaPolicy, always_open
from mailer.config.errors import ConfigError
from mailer.config.files import (
                                 STAFF_KEYS,
                                 Config,
                                 SupportdFile,
                                 config_from_dict,
                                 default_routing,
                                 json_schema,
                                 load_config,
                                 only_staffs_shipped_queues,
                                 staffed_queues,
                                 with_shipped_policies,
)
from mailer.config.records import RETENTION_MINIMUM_DAYS, AttachmentLimits, RetentionConfig
from mailer.config.routing import (
                                 DEFAULT_SPAM_SCORES,
                                 PRIORITIES,
                                 DedupConfig,
                                 QueueConfig,
                                 RuleConfig,
                                 SpamConfig,
                                 TrustConfig,
)
from mailer.config.servers import DONE_ACTIONS, AccountsConfig, BrokerConfig, MailboxConfig, SmtpConfig
from mailer.config.transport import DkimConfig, Endpoint, OAuthConfig, TransportSecurity, parse_endpoint

__all__ = [
                                 "DEFAULT_SPAM_SCORES",
                                 "DONE_ACTIONS",
                                 "PRIORITIES",
                                 "RETENTION_MINIMUM_DAYS",
                                 "STAFF_KEYS",
                                 "WEEKDAYS",
                                 "AccountsConfig",
                                 "AttachmentLimits",
                                 "BrokerConfig",
                                 "CalendarConfig",
                                 "Config",
                                 "ConfigError",
                                 "DedupConfig",
                                 "DkimConfig",
                                 "Endpoint",
                                 "HelpConfig",
                                 "MailboxConfig",
                                 "OAuthConfig",
                                 "QueueConfig",
                                 "RetentionConfig",
                                 "RuleConfig",
                                 "SlaConfig",
                                 "SlaPolicy",
                                 "SmtpConfig",
                                 "SpamConfig",
                                 "SupportdFile",
                                 "TransportSecurity",
                                 "TrustConfig",
                                 "always_open",
                                 "config_from_dict",
                                 "default_routing",
                                 "json_schema",
                                 "load_config",
                                 "only_staffs_shipped_queues",
                                 "parse_endpoint",
                                 "staffed_queues",
                                 "with_shipped_policies",
]
