"""Deciding: `[queues.NAME]`, `[[rules]]`, `[trust]` (sender authentication), `[spam]` and `[dedup]`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, create_model
from pydantic.json_schema import SkipJsonSchema

from mailer.config.base import Items, Section, Text
from parsing.language import SHIPPED, fallback_chain

PRIORITIES = ("low", "normal", "high", "urgent")
Priority = Literal["low", "normal", "high", "urgent"]


def _title_attribute(tag: str) -> str:
    return "title_" + tag.replace("-", "_")


# `title_<tag>` for every shipped language (`title_zh-Hans` in the file); declared from the list of shipped
# languages so that a language added there gets its key here.
_QueueTitles: type[Section] = create_model(  # type: ignore[call-overload]
    "_QueueTitles", __base__=Section,
    **{_title_attribute(tag): (str | None, Field(None, alias=f"title_{tag}",
                                                 description=f"the queue's name for customers writing in {tag}; "
                                                             "a missing one falls back like templates do"))
       for tag in SHIPPED},
    title_zh=(str | None, Field(None, description="the older name of title_zh-Hans")),
)


class QueueConfig(_QueueTitles):  # type: ignore[misc, valid-type]
    """One `[queues.NAME]` table; the table's name is the queue's name."""

    name: SkipJsonSchema[str] = ""  # set from the table's name, never written in the file
    specialists: Items = Field((), description="addresses of the specialists who answer this queue's tickets")
    lead: str | None = Field(None, description="address warned before an SLA target is missed")
    auth_policy: Literal["none", "aligned", "dmarc"] = Field(
        "none", description="what our MTA must report for a sender to count as verified: none | aligned | dmarc")

    @property
    def title(self) -> dict[str, str]:
        """The title in every shipped language: `title_<tag>` where given, else along the fallback chain."""
        return {tag: self.title_in(tag) for tag in SHIPPED}

    def title_in(self, tag: str) -> str:
        """The title for one language (asked for every acknowledgement); the queue's name outside SHIPPED."""
        if tag not in SHIPPED:
            return self.name
        return next((title for title in map(self._given_title, fallback_chain(tag)) if title), self.name)

    def _given_title(self, tag: str) -> str | None:
        if tag not in SHIPPED:
            return None
        given = getattr(self, _title_attribute(tag))
        if tag == "zh-Hans" and not given:
            return self.title_zh  # the key before there were two Chinese
        return given


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
