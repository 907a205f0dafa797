"""Everything a stage needs, built once from the config: database, calendar, router, templates, SMTP."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from mailer.config import Config, SlaPolicy
from mailer.ledger.crypto import Sealer
from mailer.ledger.db import Database, Ticket
from mailer.ledger.directory import Directory, build_directory
from mailer.ledger.ids import NUMBERED_AT_FLUSH  # noqa: F401  (its flush hook numbers new rows on SQLite)
from mailer.ledger.store import ContentStore
from mailer.runtime.pool import PreparePool
from mailer.stages.compose import Sender
from mailer.stages.prepare import BatchOrder
from mailer.transport.dkim import DkimSigner
from mailer.transport.links import Links
from mailer.transport.sentlog import SentLog
from mailer.transport.smtp import SmtpClient
from routing.rules import Router
from sla.calendar import BusinessCalendar
from templates import Renderer

if TYPE_CHECKING:  # imported with the first [help] index: its BM25 library (and numpy) cost 0.1 s at start
    from routing.help import HelpIndex


@dataclass
class App:
    config: Config
    db: Database
    cpu: PreparePool | None = None  # worker processes for parsing and redaction (the embedded daemon's)

    @classmethod
    def from_config(cls, config: Config) -> App:
        return cls(config=config, db=Database(config.database_url))

    @cached_property
    def calendars(self) -> dict[str, BusinessCalendar]:
        configs = {"default": self.config.calendar, **self.config.calendars}
        return {name: BusinessCalendar.from_config(c) for name, c in configs.items()}

    @cached_property
    def calendar(self) -> BusinessCalendar:
        return self.calendars["default"]

    def sla_for(self, ticket: Ticket) -> tuple[BusinessCalendar, SlaPolicy]:
        """The policy for the ticket's queue and priority, and the calendar it counts in."""
        policy = self.config.sla.policy_for(ticket.queue, ticket.priority)
        return self.calendars[policy.calendar], policy

    @cached_property
    def directory(self) -> Directory:
        """Where verification looks accounts up: the imported table or the desk's live query."""
        return build_directory(self.config.accounts, self.db)

    @cached_property
    def batch_order(self) -> BatchOrder:
        return BatchOrder()

    @cached_property
    def router(self) -> Router:
        return Router(self.config.rules)

    @cached_property
    def help_index(self) -> HelpIndex | None:
        """The knowledge base's BM25 indexes, built once (the daemon builds them at start)."""
        help_config = self.config.help
        if help_config is None:
            return None
        from routing.help import HelpIndex

        return HelpIndex(help_config.articles, help_config.min_score, help_config.max_suggestions)

    @cached_property
    def renderer(self) -> Renderer:
        return Renderer(self.config.templates_dir)

    @cached_property
    def sealer(self) -> Sealer:
        return Sealer.from_env(self.config.encryption_keys_env)

    @cached_property
    def store(self) -> ContentStore:
        return ContentStore(self.config.storage_dir / "attachments", self.sealer)

    @cached_property
    def sent_log(self) -> SentLog:
        return SentLog(self.config.storage_dir)

    @cached_property
    def smtp(self) -> SmtpClient:
        return SmtpClient(self.config.smtp, self.links)

    @cached_property
    def links(self) -> Links:
        """Failing connections (mailboxes, smtp) with the reason: what a readiness check reports."""
        return Links()

    @cached_property
    def sender(self) -> Sender:
        # The loop token names this desk; another supportd (or this one) seeing it knows the mail is ours.
        token = hashlib.sha256(self.config.support_address.lower().encode()).hexdigest()[:16]
        dkim = self.config.dkim
        signer = DkimSigner.from_config(dkim) if dkim and not dkim.relay_signs else None
        return Sender(self.config.support_address, self.config.smtp.from_name, token, signer)

    @cached_property
    def secret(self) -> bytes:
        """The key of ticket-address tokens: from the environment if named, else a file made on first use."""
        if self.config.secret_env:
            return os.environ[self.config.secret_env].encode()
        path = self.config.storage_dir / "ticket-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode()

    def close(self) -> None:
        if self.cpu is not None:
            self.cpu.close()
        if "smtp" in self.__dict__:
            self.smtp.close()
        if "directory" in self.__dict__:
            self.directory.close()
        self.db.dispose()
