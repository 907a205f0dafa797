"""The state one mail carries through the stages, and the helpers every stage module shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import and_, bindparam, func, insert, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from mailer.app import App
from mailer.ledger.db import Attachment, Outbox, RawMessage, Ticket, TicketEvent, TicketMessage, utcnow
from mailer.stages.compose import outbox_key, schedule_reply
from mailer.stages.escalate import reschedule_alerts
from mailer.stages.lookups import AUTOMATIC_PURPOSES, Lookups
from parsing.attachments import screen
from parsing.message import ParsedMail
from routing.dedup import ThreadMatch
from routing.rules import RouteDecision
from routing.verify import Verification, normalize_address
from sla.clock import pause, recompute, resume

if TYPE_CHECKING:
    from mailer.stages.prepare import Prepared

T = TypeVar("T")


@dataclass
class Work:
    app: App
    session: Session
    raw: RawMessage
    mail: ParsedMail | None = None
    verification: Verification | None = None
    automatic: str | None = None
    thread: ThreadMatch | None = None
    route: RouteDecision | None = None
    ticket: Ticket | None = None
    message: TicketMessage | None = None
    outbox: list[Outbox] = field(default_factory=list)
    secrets: tuple[str, ...] = ()  # kinds of secret found and redacted (never the values)
    refused: list[tuple[str, str]] = field(default_factory=list)  # attachments not stored: (name, reason)
    reopened: bool = False
    outcome: str = "done"
    prepared: Prepared | None = None  # parse and redact done ahead, outside the write transaction
    events: list[PendingEvent] = field(default_factory=list)  # written in bulk with the batch (event())
    lookups: Lookups | None = None  # the batch's look-ups made ahead, when still true for this mail


@dataclass(frozen=True)
class PendingEvent:
    ticket: Ticket
    kind: str
    at: datetime
    detail: dict[str, Any]


Stage = Callable[[Work], bool]


def pause_clock(work: Work, ticket: Ticket, reason: str) -> None:
    if pause(ticket, work.raw.received_at):
        event(work, ticket, "sla_paused", clock="resolution", reason=reason)
    reschedule_alerts(work.app, work.session, ticket)


def resume_clock(work: Work, ticket: Ticket, reason: str) -> None:
    calendar, policy = work.app.sla_for(ticket)
    stood = resume(ticket, calendar, policy, work.raw.received_at)
    event(work, ticket, "sla_resumed", clock="resolution", reason=reason,
           paused_minutes=round(stood.total_seconds() / 60),
           resolution_due=ticket.resolution_due.isoformat() if ticket.resolution_due else None)
    reschedule_alerts(work.app, work.session, ticket)


def recompute_clock(work: Work, ticket: Ticket, reason: str) -> None:
    calendar, policy = work.app.sla_for(ticket)
    before = ticket.first_response_due, ticket.resolution_due
    due = recompute(ticket, calendar, policy)
    ticket.sla_calendar = policy.calendar
    if (due.first_response, due.resolution) != before:
        event(work, ticket, "sla_recomputed", reason=reason, policy=policy.name,
               first_response_due=due.first_response.isoformat(), resolution_due=due.resolution.isoformat())
    reschedule_alerts(work.app, work.session, ticket)


def store_attachments(work: Work, message: TicketMessage) -> None:
    """Record the mail's attachments; the accepted ones' content is in the store already when the mail was
    prepared ahead (mailer/stages/prepare.py), and put there now otherwise."""
    mail = need(work.mail, "parse")
    verdicts = (work.prepared.verdicts if work.prepared is not None
                else screen(mail.attachments, work.app.config.attachments, work.app.store.put))
    for part, verdict in zip(mail.attachments, verdicts, strict=True):
        if verdict.refused is not None:
            work.refused.append((part.filename, verdict.refused))
        message.attachments.append(Attachment(filename=part.filename, content_type=verdict.detected_type,
                                              declared_type=part.content_type, size=part.size, sha256=part.sha256,
                                              refused_reason=verdict.refused))


def queue_automatic(work: Work, purpose: str, key: str, to_address: str, context: dict[str, object],
                    replying_to: TicketMessage | None = None, verified: bool | None = None) -> None:
    """The one outbound policy for automatic mail: a usable address, once per key, under the daily cap
    per address and, for senders not verified, under the desk-wide hourly cap (backscatter's ceiling).

    `replying_to` threads the mail on another message than the one being processed, and `verified` says
    whether the recipient is verified when the mail being processed is not theirs (a survey sent when a
    specialist closes the ticket)."""
    ticket = need(work.ticket, "record")
    if normalize_address(to_address) is None:
        event(work, ticket, "no_reply", purpose=purpose, reason="no usable sender address")
        return
    already, today = _earlier_replies(work, outbox_key(purpose, key), to_address)
    if already:
        event(work, ticket, "no_reply", purpose=purpose, reason="already sent")
        return
    if today >= work.app.config.dedup.max_auto_replies_per_day:
        event(work, ticket, "no_reply", purpose=purpose, reason=f"daily cap for {to_address} reached")
        return
    unverified = not (verified if verified is not None else need(work.verification, "verify").verified)
    hourly_cap = work.app.config.spam.max_unverified_replies_per_hour
    if unverified and unverified_replies_last_hour(work) >= hourly_cap:
        event(work, ticket, "no_reply", purpose=purpose,
              reason=f"desk-wide cap of {hourly_cap} automatic answers per hour to unverified senders reached")
        return
    row = schedule_reply(work.session, work.app.renderer, work.app.sender, ticket=ticket, purpose=purpose,
                         key=key, to_address=to_address, replying_to=replying_to or need(work.message, "record"),
                         context=context, known_new=True)
    row.unverified = unverified
    work.outbox.append(row)
    if row.status != "failed":  # a mail that could not be composed has its mail_failed event already
        event(work, ticket, "reply_scheduled", purpose=purpose, to=to_address, message_id=row.message_id)


def automatic_replies_today(work: Work, address: str) -> int:
    return _earlier_replies(work, "", address)[1]


def _earlier_replies_query() -> Select[tuple[bool, bool]]:
    """Built once: building and keying the statement for every mail cost more than running it. The purposes
    are bound one by one (an IN list would be re-rendered at every execution)."""
    key = bindparam("key", type_=Outbox.idempotency_key.type)
    address = bindparam("address", type_=Outbox.to_address.type)
    since = bindparam("since", type_=Outbox.created_at.type)
    today = and_(Outbox.to_address == address, or_(*(Outbox.purpose == purpose for purpose in AUTOMATIC_PURPOSES)),
                 Outbox.created_at >= since)
    return select(Outbox.idempotency_key == key, today).where(or_(Outbox.idempotency_key == key, today))


_EARLIER_REPLIES = _earlier_replies_query()


def _earlier_replies(work: Work, key: str, address: str) -> tuple[bool, int]:
    """In one query: whether a row with this idempotency key exists, and the automatic mails to `address`
    in the last 24 hours."""
    since = work.raw.received_at - timedelta(hours=24)
    known = work.lookups.earlier_replies(key, address, since) if work.lookups else None
    if known is not None:
        return known
    rows = work.session.execute(_EARLIER_REPLIES, {"key": key, "address": address, "since": since}).all()
    return any(same_key for same_key, _ in rows), sum(1 for _, counted in rows if counted)


def unverified_replies_last_hour(work: Work) -> int:
    """One range on ix_outbox_unverified, as long as the cap at most: cheap to ask for every mail."""
    if any(isinstance(row, Outbox) and row.unverified for row in work.session.new):
        work.session.flush()  # rows of the batch not flushed yet count too (mailer/stages/unflushed.py)
    since = utcnow() - timedelta(hours=1)
    return work.session.scalar(select(func.count()).where(
        Outbox.unverified == true(), Outbox.created_at >= since)) or 0


def common_context(work: Work) -> dict[str, object]:
    return {"desk_name": work.app.config.desk_name, "customer_name": None, "anti_phishing_code": None}


def event(work: Work, ticket: Ticket, kind: str, **detail: object) -> None:
    """Recorded with the batch: one bulk INSERT for every event of every mail that went through."""
    work.events.append(PendingEvent(ticket, kind, utcnow(), detail))


BATCH_EVENTS = "supportd_events"  # session.info key: events of the batch's finished mails, not yet written


def flush_events(session: Session) -> None:
    """Write the batch's pending events now (the ticket rows must have their ids: flushed before)."""
    pending: list[PendingEvent] = session.info.pop(BATCH_EVENTS, [])
    if pending:
        session.execute(insert(TicketEvent), [{"ticket_id": e.ticket.id, "kind": e.kind, "at": e.at,
                                               "detail": e.detail} for e in pending])


def keep_events(work: Work) -> None:
    """The mail went through: its events join the batch's (a failed mail's are dropped with its savepoint)."""
    work.session.info.setdefault(BATCH_EVENTS, []).extend(work.events)
    work.events = []


def first_from(mail: ParsedMail) -> str:
    """The first From address as written, bounded to what an address column holds."""
    return mail.from_[0].address[:320] if mail.from_ else ""


def need(value: T | None, stage: str) -> T:
    """A result an earlier stage must have produced; None here means the stage list is out of order."""
    assert value is not None, f"stage order: {stage} must come before this stage"
    return value
