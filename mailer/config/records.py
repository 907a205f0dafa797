"""The desk and its records: `[desk]`, `[paths]`, `[attachments]`, `[encryption]` and `[retention]`."""

from __future__ import annotations

import os
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from mailer.config.base import Section
from mailer.config.errors import KeyProblem
from parsing.attachments import Limits as AttachmentLimits
from parsing.language import SHIPPED, normalize_tag

# Five years: the usual record-keeping duty of a financial firm for customer correspondence.
RETENTION_MINIMUM_DAYS = 5 * 365
MB = 1024 * 1024


def _secret_variable(variable: str) -> str:
    if len(os.environ.get(variable, "")) < 16:
        raise ValueError(f"environment variable {variable} must hold at least 16 characters")
    return variable


def _desk_language(value: str) -> str:
    tag = normalize_tag(value)
    if tag is None:
        raise ValueError(f"must be a language the desk answers in ({', '.join(SHIPPED)}); got {value!r}")
    return tag


class DeskSection(Section):
    """`[desk]`: who answers, in which language, and limits on what is taken in."""

    name: str = Field("Support", description="signs the replies")
    language: Annotated[str, AfterValidator(_desk_language)] = Field(
        "en", description=f"answers when neither the account nor the mail says: {' '.join(SHIPPED)} "
                          "(zh-TW and the like accepted)")
    once_timeout: float = Field(300.0, ge=1, description="`run --once`: give up waiting for replies after this")
    max_message_bytes: int = Field(50 * MB, ge=1024, description="larger mails are quarantined at intake")
    raw_with_secrets: Literal["drop", "keep"] = Field(
        "drop", description="drop: a raw mail that held a secret keeps only its headers | keep")
    secret_env: Annotated[str, AfterValidator(_secret_variable)] | None = Field(
        None, description="variable holding the ticket-address secret (at least 16 characters)")


class PathsSection(Section):
    """`[paths]`, relative to the config file."""

    storage: str = Field("supportd-data", description="attachments and raw mail, by SHA-256")
    templates: str | None = Field(None, description="overrides files of the shipped templates/ folder")


class AttachmentsSection(Section):
    """`[attachments]`: attachments are judged by content; refused ones are recorded but not stored."""

    max_mb: float = Field(25, ge=0.001, description="largest attachment, MB")
    max_count: int = Field(20, ge=0, description="attachments per mail")
    archive_depth: int = Field(2, ge=1, description="zip inside zip, at most")
    archive_entries: int = Field(1000, ge=1, description="entries of an archive, all levels together")
    archive_total_mb: float = Field(100, ge=0.001, description="unpacked size of an archive, all levels together")
    archive_ratio: int = Field(100, ge=2, description="unpacked/packed size of one entry (zip bombs)")

    def limits(self) -> AttachmentLimits:
        return AttachmentLimits(max_bytes=int(self.max_mb * MB), max_count=self.max_count,
                                archive_depth=self.archive_depth, archive_entries=self.archive_entries,
                                archive_total=int(self.archive_total_mb * MB), archive_ratio=self.archive_ratio)


def _fernet_keys(variable: str) -> str:
    from mailer.ledger.crypto import check_keys

    problem = check_keys(variable)
    if problem:
        raise ValueError(problem)
    return variable


class EncryptionSection(Section):
    """`[encryption]`: encryption at rest of raw mail and attachment files (Fernet)."""

    keys_env: Annotated[str, AfterValidator(_fernet_keys)] | None = Field(
        None, description="variable holding comma-separated keys, newest first (`supportd storage new-key`)")


class RetentionConfig(Section):
    """How long each kind of record is kept (None: for ever); `supportd purge` applies it (mailer.ledger.retention)."""

    raw_mail_days: int | None = Field(None, ge=1, description="fetched bytes of finished mail")
    attachments_days: int | None = Field(None, ge=1, description="files of messages in closed tickets")
    closed_tickets_days: int | None = Field(None, ge=1, description="closed tickets anonymised")
    minimum_days: int = Field(RETENTION_MINIMUM_DAYS, ge=0,
                              description="record-keeping floor: nothing may be configured to go sooner")

    @model_validator(mode="after")
    def _not_below_the_minimum(self) -> Self:
        for name in ("raw_mail_days", "attachments_days", "closed_tickets_days"):
            days = getattr(self, name)
            if days is not None and days < self.minimum_days:
                raise KeyProblem(name, f"{days} days is shorter than the record-keeping minimum of "
                                       f"{self.minimum_days} days (retention.minimum_days)")
        return self
