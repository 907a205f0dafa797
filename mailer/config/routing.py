"""Deciding: `[queues.NAME]`, `[[rules]]`, `[trust]` (sender authentication), `[spam]` and `[dedup]`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic.json_schema import SkipJsonSchema

from mailer.config.base import Items, Section, Text

PRIORITIES = ("low", "normal", "high", "urgent")
Priority = Literal["low", "normal", "high", "urgent"]


class QueueConfig(Section):
    """One `[queues.NAME]` table; the table's name is the queue's name."""

    name: SkipJsonSchema[str] = ""  # set from the table's name, never written in the file
    title_en: str | None = Field(None, description="the queue's name shown to customers; default NAME")
    title_zh: str | None = Field(None, description="the same in Chinese; default NAME")
    specialists: Items = Field((), description="addresses of the specialists who answer this queue's tickets")
    lead: str | None = Field(None, description="address warned before an SLA target is missed")
    auth_policy: Literal["none", "aligned", "dmarc"] = Field(
        "none", description="what our MTA must report for a sender to count as verified: none | aligned | dmarc")

    @property
    def title(self) -> dict[str, str]:
        return {"en": self.title_en or self.name, "zh": self.title_zh or self.name}


class RuleConfig(Section):
    """One routing rule: any matching condition selects the rule; scores pick between rules."""

    name: Text = Field(description="required")
    queue: Text = Field(description="required; a queue of [queues]")
    priority: Priority = Field("normal", description="low | normal | high | urgent")
    subject: Items = Field((), description="keywords (case-insensitive; Latin ones as whole words)")
    body: Items = Field((), description="keywords in the body")
    sender: Items = Field((), description="shell-style patterns on the sender address")
    identifiers: Items = Field((), description="txid | user_id | order_id | coin | chain | amount")
    attachment_types: Items = Field((), description='content types such as "image/*"')


class TrustConfig(Section):
    """`[trust]`: whose Authentication-Results header counts. Without it, senders are not authenticated."""

    authserv_id: Annotated[Text, AfterValidator(str.lower)] = Field(
        description="required; the authserv-id our MTA writes in Authentication-Results")
    received_hops: int = Field(0, ge=0, description="our Received lines allowed above our A-R header")

    def __init__(self, authserv_id: str | None = None, /, **data: Any) -> None:
        super().__init__(**({"authserv_id": authserv_id} if authserv_id is not None else {}), **data)


class DedupConfig(Section):
    """`[dedup]`: repeats, near duplicates and loop protection."""

    window_days: float = Field(7.0, ge=0, description="a re-sent complaint joins an open ticket this recent")
    similarity: float = Field(0.30, ge=0.01, le=1,
                              description="Jaccard similarity of character shingles for a reworded repeat")
    max_auto_replies_per_day: int = Field(10, ge=1, description="automatic mails to one address in 24 hours")


def _header_name(name: str) -> str:
    if not name or any(not (33 <= ord(ch) <= 126) or ch == ":" for ch in name):
        raise ValueError(f"must be a header name such as X-Spam-Flag; got {name!r}")
    return name.lower()


HeaderName = Annotated[str, AfterValidator(_header_name)]

# Scores at or above which our MTA's verdict means spam: SpamAssassin's own default (5.0) and rspamd's
# "add header" action (6.0), the score at which rspamd itself writes "X-Spam: Yes".
DEFAULT_SPAM_SCORES = {"x-spam-status": 5.0, "x-spamd-result": 6.0, "x-rspamd-score": 6.0}


class SpamConfig(Section):
    """`[spam]`: which of our MTA's headers say spam (see routing.spam), and the cap on answers to strangers."""

    enabled: bool = True
    flag_headers: tuple[HeaderName, ...] = Field(
        ("x-spam-flag", "x-spam"), description='a value of Yes/True means spam; [] turns flags off')
    scores: dict[HeaderName, Annotated[float, Field(ge=-1000)]] = Field(
        default_factory=lambda: dict(DEFAULT_SPAM_SCORES),
        description="header = threshold; giving the table replaces the shipped ones")
    forged_unregistered: bool = Field(True, description="hold an unregistered sender failing both SPF and DMARC")
    max_unverified_replies_per_hour: int = Field(
        60, ge=0, description="desk-wide: automatic answers to senders not verified")
