"""The flow of one stored mail, stage by stage, in one database transaction.

    parse -> redact -> bounce -> duplicate -> gateway -> verify -> screen -> thread -> route -> authenticate
          -> repeat -> automatic -> record -> reply -> warn -> refused -> forward

Each stage takes the `Work` and returns True to go on or False when the mail is fully handled. The
decisions live in parsing/ and routing/; this module only strings them together and writes the ledger.
A stage that raises sends the mail to quarantine with the stage's name; database trouble is transient
and re-raised so the broker retries. Nothing here sends mail: replies become outbox rows that the
caller hands to the sender actor after the commit. Mails are processed in batches, one transaction
each, with a savepoint per mail: commits are the costly part on every database.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from mailer.app import App
from mailer.compose import OutgoingFile, schedule_reply
from mailer.db import Account, Attachment, Outbox, RawMessage, Ticket, TicketEvent, TicketMessage, utcnow
from parsing.attachments import judge
from parsing.identifiers import extract_identifiers
from parsing.message import ParsedMail, parse, without_body
from parsing.normalize import content_hash
from parsing.secrets import kind_names, redact
from routing.authresults import evaluate
from routing.autoreply import automatic_reason
from routing.dedup import ThreadMatch, find_exact_duplicate, find_repeat, find_thread
from routing.rules import RouteDecision
from routing.specialists import SpecialistReply, find_ticket_address, parse_reply, ticket_address
from routing.verify import SPOOFED, VERIFIED, AccountRef, Verification, normalize_address, verify_sender
from sla.calendar import parse_duration
from sla.clock import due_dates, format_local, pause, recompute, resume

log = logging.getLogger(__name__)


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


Stage = Callable[[Work], bool]


def parse_mail(work: Work) -> bool:
    if work.raw.size > work.app.config.max_message_bytes:
        raise ValueError(f"message of {work.raw.size} bytes exceeds max_message_bytes")
    work.mail = parse(work.app.sealer.open(work.raw.raw))
    return True


def redact_secrets(work: Work) -> bool:
    """Replace passwords, seed phrases, keys and codes before anything below stores or shows the text."""
    mail = _mail(work)
    subject, text = redact(mail.subject), redact(mail.text)
    if not (subject.found or text.found):
        return True  # the new text is part of the whole text: nothing there either
    new_text = redact(mail.new_text)
    work.secrets = tuple(dict.fromkeys(subject.kinds + text.kinds + new_text.kinds))
    work.mail = replace(mail, subject=subject.text, text=text.text, new_text=new_text.text,
                        identifiers=extract_identifiers(subject.text + "\n" + new_text.text),
                        content_hash=content_hash(subject.text, new_text.text))
    if work.app.config.raw_with_secrets == "drop":
        work.raw.raw = work.app.sealer.seal(without_body(work.app.sealer.open(work.raw.raw), work.secrets))
    return True


def match_bounce(work: Work) -> bool:
    """A delivery report about one of our mails marks that outbox row; it never becomes a ticket."""
    report = _mail(work).report
    if report is None:
        return True
    row = None
    if report.original_message_id:
        row = work.session.scalar(select(Outbox).where(Outbox.message_id == report.original_message_id))
    if row is None:
        work.outcome, work.raw.error = "automatic", "delivery report for a mail we did not send"
        return False
    detail = {"message_id": row.message_id, "to": row.to_address, "action": report.action,
              "status": report.status, "diagnostic": report.diagnostic}
    if report.action == "failed":
        row.status, row.last_error = "bounced", f"{report.status} {report.diagnostic}".strip()[:2000]
    if row.ticket_id:
        work.session.add(TicketEvent(ticket_id=row.ticket_id, kind="bounced" if report.action == "failed"
                                     else f"delivery_{report.action}", detail=detail))
    work.raw.ticket_id, work.outcome = row.ticket_id, "bounce"
    return False


def skip_exact_duplicate(work: Work) -> bool:
    reason = find_exact_duplicate(work.session, _mail(work), work.raw.id)
    if reason is None:
        return True
    existing = work.session.scalar(select(TicketMessage).where(TicketMessage.message_id == _mail(work).message_id))
    if existing is not None:
        work.raw.ticket_id = existing.ticket_id
        _event(work, existing.ticket, "duplicate", reason=reason, mailbox=work.raw.mailbox, uid=work.raw.uid)
    work.outcome = "duplicate"
    return False


def handle_specialist_reply(work: Work) -> bool:
    """A mail to a ticket address is a specialist's answer: checked, its commands applied, relayed.

    Refused (wrong token, not a specialist of the queue, failed authentication): quarantined with the
    reason, and the queue's lead is told. Unknown commands: nothing is applied or relayed, and the
    specialist gets the reason back.
    """
    mail, app = _mail(work), work.app
    recipients = [a.address for a in mail.to] + [v for n in ("delivered-to", "x-original-to")
                                                 for v in mail.headers.get(n, ())]
    found = find_ticket_address(recipients, app.config.support_address, app.secret)
    if found is None:
        return True
    sender = normalize_address(_first_from(mail)) or ""
    ticket = work.session.get(Ticket, found.ticket_id)
    problem = _gateway_problem(work, found.token_valid, ticket, sender)
    if problem or ticket is None:
        work.outcome, work.raw.stage, work.raw.error = "quarantined", "gateway", problem
        if ticket is not None:
            work.ticket, work.raw.ticket_id = ticket, ticket.id
            _record_inbound(work, ticket, "refused", sender)
            _event(work, ticket, "reply_refused", sender=sender, reason=problem)
            _tell_queue_lead(work, ticket, sender, problem or "")
        return False
    work.ticket, work.raw.ticket_id = ticket, ticket.id
    reply = parse_reply(mail.new_text, tuple(app.config.queues))
    message = _record_inbound(work, ticket, "specialist", sender)
    if reply.errors:
        _event(work, ticket, "commands_refused", actor=sender, errors=list(reply.errors))
        _queue_internal(work, "command_error", sender, {"errors": list(reply.errors)})
        return False
    _apply_commands(work, ticket, reply, sender)
    if reply.internal:
        _event(work, ticket, "note", actor=sender, text=reply.text[:20_000])
    elif reply.text:
        _relay(work, ticket, reply.text, sender, message)
    if any(c.name == "close" for c in reply.commands):
        ticket.status, ticket.closed_at = "closed", work.raw.received_at
        _event(work, ticket, "closed", actor=sender)
        _pause_clock(work, ticket, "closed")
    return False


def _pause_clock(work: Work, ticket: Ticket, reason: str) -> None:
    if pause(ticket, work.raw.received_at):
        _event(work, ticket, "sla_paused", clock="resolution", reason=reason)


def _resume_clock(work: Work, ticket: Ticket, reason: str) -> None:
    calendar, policy = work.app.sla_for(ticket)
    stood = resume(ticket, calendar, policy, work.raw.received_at)
    _event(work, ticket, "sla_resumed", clock="resolution", reason=reason,
           paused_minutes=round(stood.total_seconds() / 60),
           resolution_due=ticket.resolution_due.isoformat() if ticket.resolution_due else None)


def _recompute_clock(work: Work, ticket: Ticket, reason: str) -> None:
    calendar, policy = work.app.sla_for(ticket)
    before = ticket.first_response_due, ticket.resolution_due
    due = recompute(ticket, calendar, policy)
    ticket.sla_calendar = policy.calendar
    if (due.first_response, due.resolution) != before:
        _event(work, ticket, "sla_recomputed", reason=reason, policy=policy.name,
               first_response_due=due.first_response.isoformat(), resolution_due=due.resolution.isoformat())


def _gateway_problem(work: Work, token_valid: bool, ticket: Ticket | None, sender: str) -> str | None:
    if not token_valid:
        return "the ticket address carries a wrong token"
    if ticket is None:
        return "no such ticket"
    queue = work.app.config.queues[ticket.queue]
    if sender not in {a.lower() for a in (*queue.specialists, queue.lead or "")}:
        return f"{sender or 'the sender'} is not a specialist of queue {ticket.queue!r}"
    trust = work.app.config.trust
    if trust is not None:
        auth = evaluate(_mail(work).trace, trust.authserv_id, trust.received_hops)
        policy = "dmarc" if queue.auth_policy == "dmarc" else "aligned"
        if not auth.meets(policy, sender.rpartition("@")[2]):
            return f"our MTA's report does not meet the {policy!r} policy for specialists"
    return None


def _record_inbound(work: Work, ticket: Ticket, kind: str, sender: str) -> TicketMessage:
    mail = _mail(work)
    message = work.message = TicketMessage(
        ticket=ticket, raw_message_id=work.raw.id, direction="in", kind=kind, message_id=mail.message_id,
        in_reply_to=mail.in_reply_to, references=list(mail.references[-20:]), from_address=sender,
        subject=mail.subject[:2000], body=mail.new_text)
    work.session.add(message)
    if kind != "refused":
        _store_attachments(work, message)
    return message


def _apply_commands(work: Work, ticket: Ticket, reply: SpecialistReply, sender: str) -> None:
    for command in reply.commands:
        if command.name == "assign" and command.argument != ticket.queue:
            _event(work, ticket, "assigned", actor=sender, queue=command.argument, previous=ticket.queue)
            ticket.queue = command.argument
            _recompute_clock(work, ticket, f"assigned to {command.argument}")
        elif command.name == "priority" and command.argument != ticket.priority:
            _event(work, ticket, "priority", actor=sender, priority=command.argument, previous=ticket.priority)
            ticket.priority = command.argument
            _recompute_clock(work, ticket, f"priority {command.argument}")
        elif command.name == "pending":
            ticket.status = "pending"
            _event(work, ticket, "waiting_on_customer", actor=sender)
            _pause_clock(work, ticket, "waiting on the customer")
        elif command.name == "merge":
            target = work.session.get(Ticket, int(command.argument.lstrip("#")))
            if target is not None and target.id != ticket.id:
                ticket.status, ticket.closed_at = "closed", work.raw.received_at
                _pause_clock(work, ticket, f"merged into #{target.id}")
                _event(work, ticket, "merged", actor=sender, into=target.id)
                _event(work, target, "merged_in", actor=sender, from_ticket=ticket.id)


def _relay(work: Work, ticket: Ticket, text: str, sender: str, message: TicketMessage) -> None:
    """The answer goes to the customer from the support address, threaded on their last mail."""
    last = work.session.scalar(select(TicketMessage).where(
        TicketMessage.ticket_id == ticket.id, TicketMessage.direction == "in",
        TicketMessage.kind.in_(("customer", "repeat"))).order_by(TicketMessage.id.desc()).limit(1))
    account = work.session.get(Account, ticket.account_id) if ticket.account_id else None
    files = tuple(OutgoingFile(a.filename, a.content_type, work.app.store.get(a.sha256))
                  for a in message.attachments if a.refused_reason is None)
    context = {**_common_context(work), "text": text,
               "anti_phishing_code": account.anti_phishing_code if account else None,
               "queue_title": work.app.config.queues[ticket.queue].title.get(ticket.language, ticket.queue)}
    row = schedule_reply(work.session, work.app.renderer, work.app.sender, ticket=ticket, purpose="reply",
                         key=f"reply:{work.raw.message_id}", to_address=ticket.customer_email,
                         replying_to=last or message, context=context, auto_submitted=None, attachments=files)
    work.outbox.append(row)
    earlier = [e.actor for e in ticket.events if e.kind == "answered" and e.actor != sender]
    _event(work, ticket, "answered", actor=sender, message_id=row.message_id, files=len(files))
    if ticket.first_responded_at is None:
        ticket.first_responded_at = utcnow()
        _event(work, ticket, "first_response", actor=sender)
    if ticket.status == "closed":
        ticket.status, ticket.closed_at = "open", None
        _resume_clock(work, ticket, "answered after closing")
    if earlier:
        _queue_internal(work, "collision", sender, {"others": sorted(set(earlier))})


def _tell_queue_lead(work: Work, ticket: Ticket, sender: str, problem: str) -> None:
    queue = work.app.config.queues[ticket.queue]
    for person in [queue.lead] if queue.lead else list(queue.specialists):
        _queue_internal(work, "reply_refused", person, {"sender": sender, "reason": problem})


def _queue_internal(work: Work, purpose: str, to_address: str, context: dict[str, object]) -> None:
    """Mail to our own people: English, from the support address, never counted against a customer's cap."""
    row = schedule_reply(work.session, work.app.renderer, work.app.sender, ticket=_ticket(work), purpose=purpose,
                         key=f"{purpose}:{work.raw.message_id}:{to_address}", to_address=to_address,
                         replying_to=_message(work), context={**_common_context(work), **context},
                         auto_submitted="auto-generated", language="en")
    work.outbox.append(row)


def forward_to_specialists(work: Work) -> bool:
    """A new or reopened ticket goes to its queue's specialists, who answer through the ticket address."""
    ticket = _ticket(work)
    queue = work.app.config.queues[ticket.queue]
    if work.automatic or not queue.specialists or (work.thread is not None and not work.reopened):
        return True
    mail, address = _mail(work), ticket_address(work.app.config.support_address, ticket.id, work.app.secret)
    message = _message(work)
    files = tuple(OutgoingFile(a.filename, a.content_type, work.app.store.get(a.sha256))
                  for a in message.attachments if a.refused_reason is None)
    due = ticket.first_response_due
    context = {
        "queue": queue.name, "queue_title": queue.title.get("en", queue.name), "priority": ticket.priority,
        "customer": ticket.customer_email, "verified": ticket.verified, "subject": ticket.subject,
        "identifiers": ticket.identifiers, "text": mail.new_text, "reopened": work.reopened,
        "attachments": [(a.filename, a.content_type, a.size, a.refused_reason) for a in message.attachments],
        "due_text": format_local(due, work.app.calendar.zone, "en") if due else "",
        "time_zone": work.app.config.calendar.time_zone, "secrets": list(work.secrets),
    }
    for specialist in queue.specialists:
        row = schedule_reply(work.session, work.app.renderer, work.app.sender, ticket=ticket, purpose="forward",
                             key=f"forward:{work.raw.message_id}:{specialist}", to_address=specialist,
                             replying_to=message, context={**_common_context(work), **context},
                             auto_submitted="auto-generated", reply_to=address, attachments=files, language="en")
        work.outbox.append(row)
    _event(work, ticket, "forwarded", to=list(queue.specialists), reply_to=address.split("+")[0] + "+…")
    return True


def verify(work: Work) -> bool:
    work.verification = verify_sender(_mail(work), lambda address: _find_account(work.session, address))
    return True


def screen_automatic(work: Work) -> bool:
    work.automatic = automatic_reason(_mail(work), work.app.sender.loop_token)
    return True


def find_ticket(work: Work) -> bool:
    work.thread = find_thread(work.session, _mail(work), _verification(work).address)
    return True


def find_repeated_complaint(work: Work) -> bool:
    if work.thread is None:
        verification, dedup = _verification(work), work.app.config.dedup
        work.thread = find_repeat(work.session, _mail(work), verification.address, verification.verified,
                                  now=work.raw.received_at, window=timedelta(days=dedup.window_days),
                                  threshold=dedup.similarity)
    return True


def drop_unthreaded_automatic(work: Work) -> bool:
    """An out-of-office or bounce that joins no ticket is kept in the ledger but opens no ticket."""
    if work.automatic and work.thread is None:
        work.outcome = "automatic"
        work.raw.error = f"automatic mail that joins no ticket: {work.automatic}"
        return False
    return True


def route(work: Work) -> bool:
    """Routed even when threaded: the queue's policy decides how much authentication the sender needs."""
    work.route = work.app.router.route(_mail(work), _verification(work).address)
    return True


def authenticate(work: Work) -> bool:
    """A registered address counts only if our MTA's report meets the queue's policy; otherwise spoofed."""
    trust, verification = work.app.config.trust, _verification(work)
    if trust is None or verification.status != VERIFIED or verification.address is None:
        return True
    auth = evaluate(_mail(work).trace, trust.authserv_id, trust.received_hops)
    queue = work.thread.ticket.queue if work.thread is not None else _route(work).queue
    policy = work.app.config.queues[queue].auth_policy
    domain = verification.address.rpartition("@")[2]
    if auth.dmarc == "fail" or not auth.meets(policy, domain):
        work.verification = Verification(SPOOFED, verification.address, None, evidence={
            "reason": f"our MTA's report does not meet the {policy!r} policy of queue {queue!r}",
            "authentication": auth.evidence})
        if work.thread is not None and work.thread.by_tag:
            work.thread = None  # a forged sender cannot write into a ticket by quoting its number
    else:
        work.verification = replace(verification, evidence={**verification.evidence, "policy": policy,
                                                            "authentication": auth.evidence})
    return True


def record(work: Work) -> bool:
    """Write the ticket (new or joined), the message, its attachments and the events that explain them."""
    mail, verification = _mail(work), _verification(work)
    if work.thread is not None:
        ticket = work.ticket = work.thread.ticket
        if ticket.status == "closed":
            ticket.status, ticket.closed_at, work.reopened = "open", None, True
            _event(work, ticket, "reopened", reason="the customer wrote again")
            _resume_clock(work, ticket, "reopened")
        elif ticket.status == "pending":
            ticket.status = "open"
            _event(work, ticket, "customer_replied", reason="the ticket was waiting on the customer")
            _resume_clock(work, ticket, "the customer replied")
        ticket.updated_at = utcnow()
    else:
        ticket = work.ticket = _new_ticket(work)
    repeat = work.thread is not None and work.thread.repeat
    message = work.message = TicketMessage(
        ticket=ticket, raw_message_id=work.raw.id, direction="in", kind="repeat" if repeat else "customer",
        message_id=mail.message_id, in_reply_to=mail.in_reply_to, references=list(mail.references[-20:]),
        content_hash=mail.content_hash,
        from_address=verification.address or _first_from(mail), subject=mail.subject[:2000], body=mail.new_text)
    work.session.add(message)
    _store_attachments(work, message)
    work.raw.ticket_id = ticket.id
    if work.thread is not None:
        _event(work, ticket, "repeat" if repeat else "message", reason=work.thread.reason,
               message_id=mail.message_id, automatic=work.automatic)
    if mail.defects:
        _event(work, ticket, "defects", defects=list(mail.defects)[:50])
    return True


def _store_attachments(work: Work, message: TicketMessage) -> None:
    limits = work.app.config.attachments
    for index, part in enumerate(_mail(work).attachments):
        verdict = judge(part.filename, part.content, limits)
        refused = verdict.refused or (f"more than {limits.max_count} attachments" if index >= limits.max_count
                                      else None)
        if refused is None:
            work.app.store.put(part.content)
        else:
            work.refused.append((part.filename, refused))
        message.attachments.append(Attachment(filename=part.filename, content_type=verdict.detected_type,
                                              declared_type=part.content_type, size=part.size, sha256=part.sha256,
                                              refused_reason=refused))


def schedule_replies(work: Work) -> bool:
    """A new ticket gets one answer: the acknowledgement, or the generic note for an unverified sender.

    A repeat gets at most one short "we already have this" per ticket and day; a reply in the thread and
    any automatic mail get nothing.
    """
    ticket, verification = _ticket(work), _verification(work)
    if work.automatic or (work.thread is not None and not work.thread.repeat):
        return True
    if verification.status == SPOOFED:
        # Answering would mail the real owner of the address, who did not write.
        _event(work, ticket, "no_reply", reason="sender authentication failed: not answering a forged sender")
        return True
    if work.thread is not None:
        day = work.raw.received_at.astimezone(work.app.calendar.zone).date().isoformat()
        _queue_automatic(work, "repeat_notice", f"repeat_notice:{ticket.id}:{day}", ticket.customer_email,
                         _common_context(work))
    elif verification.verified and verification.account is not None:
        _queue_automatic(work, "ack", f"ack:{work.raw.message_id}", verification.account.email,
                         _ack_context(work, verification.account))
    else:
        # Same words whatever the reason, so the answer reveals nothing about the account directory.
        _queue_automatic(work, "unverified", f"unverified:{work.raw.message_id}",
                         verification.address or _first_from(_mail(work)), _common_context(work))
    return True


def warn_about_secrets(work: Work) -> bool:
    """Whoever pasted a secret is told to treat it as exposed: move funds, change passwords, rotate keys."""
    if work.secrets:
        ticket = _ticket(work)
        _event(work, ticket, "secrets_redacted", kinds=list(work.secrets),
               raw=work.app.config.raw_with_secrets)
        if not work.automatic and _verification(work).status != SPOOFED:
            to_address = _verification(work).address or _first_from(_mail(work))
            _queue_automatic(work, "secret_warning", f"secret_warning:{work.raw.message_id}", to_address,
                             {**_common_context(work), "kinds": kind_names(work.secrets, ticket.language)})
    return True


def tell_about_refused_attachments(work: Work) -> bool:
    """The mail is a ticket all the same; the sender learns which files were not taken, and why."""
    if work.refused:
        ticket = _ticket(work)
        _event(work, ticket, "attachments_refused", files=[{"name": n, "reason": r} for n, r in work.refused])
        if not work.automatic and _verification(work).status != SPOOFED:
            to_address = _verification(work).address or _first_from(_mail(work))
            _queue_automatic(work, "attachment_refused", f"attachment_refused:{work.raw.message_id}", to_address,
                             {**_common_context(work), "files": work.refused})
    return True


def _queue_automatic(work: Work, purpose: str, key: str, to_address: str, context: dict[str, object]) -> None:
    """The one outbound policy for automatic mail: a usable address, once per key, under the daily cap."""
    ticket = _ticket(work)
    if normalize_address(to_address) is None:
        _event(work, ticket, "no_reply", purpose=purpose, reason="no usable sender address")
        return
    if work.session.scalar(select(Outbox.id).where(Outbox.idempotency_key == key)):
        _event(work, ticket, "no_reply", purpose=purpose, reason="already sent")
        return
    if _automatic_replies_today(work, to_address) >= work.app.config.dedup.max_auto_replies_per_day:
        _event(work, ticket, "no_reply", purpose=purpose, reason=f"daily cap for {to_address} reached")
        return
    row = schedule_reply(work.session, work.app.renderer, work.app.sender, ticket=ticket, purpose=purpose,
                         key=key, to_address=to_address, replying_to=_message(work), context=context)
    work.outbox.append(row)
    _event(work, ticket, "reply_scheduled", purpose=purpose, to=to_address, message_id=row.message_id)


AUTOMATIC_PURPOSES = ("ack", "unverified", "repeat_notice", "secret_warning", "attachment_refused")


def _automatic_replies_today(work: Work, address: str) -> int:
    since = work.raw.received_at - timedelta(hours=24)
    return work.session.scalar(select(func.count()).where(
        Outbox.to_address == address, Outbox.purpose.in_(AUTOMATIC_PURPOSES), Outbox.created_at >= since)) or 0


def _common_context(work: Work) -> dict[str, object]:
    return {"desk_name": work.app.config.desk_name, "customer_name": None, "anti_phishing_code": None}


def _ack_context(work: Work, account: AccountRef) -> dict[str, object]:
    ticket, config = _ticket(work), work.app.config
    due = ticket.first_response_due
    calendar, policy = work.app.sla_for(ticket)
    return {
        **_common_context(work),
        "customer_name": account.display_name or None,
        "anti_phishing_code": account.anti_phishing_code,
        "queue_title": config.queues[ticket.queue].title.get(ticket.language, ticket.queue),
        "due_text": format_local(due, calendar.zone, ticket.language) if due else "",
        "time_zone": calendar.zone.key,
        "first_response_target": parse_duration(policy.first_response).describe(ticket.language),
    }


# The whole flow. Adding a stage means one function above and one line here.
STAGES: tuple[tuple[str, Stage], ...] = (
    ("parse", parse_mail),
    ("redact", redact_secrets),
    ("bounce", match_bounce),
    ("duplicate", skip_exact_duplicate),
    ("gateway", handle_specialist_reply),
    ("verify", verify),
    ("screen", screen_automatic),
    ("thread", find_ticket),
    ("route", route),
    ("authenticate", authenticate),
    ("repeat", find_repeated_complaint),
    ("automatic", drop_unthreaded_automatic),
    ("record", record),
    ("reply", schedule_replies),
    ("warn", warn_about_secrets),
    ("refused", tell_about_refused_attachments),
    ("forward", forward_to_specialists),
)

TRANSIENT = (OperationalError,)


class StageFailed(Exception):
    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage}: {type(cause).__name__}: {cause}")
        self.stage, self.cause = stage, cause


@dataclass(frozen=True)
class Result:
    raw_id: int
    outcome: str  # done | duplicate | automatic | bounce | quarantined | skipped
    ticket_id: int | None = None
    outbox_ids: tuple[int, ...] = ()


def process(app: App, raw_ids: list[int]) -> list[Result]:
    """Run the stages for stored mails, in one transaction with a savepoint per mail.

    Safe to call again for the same ids: a finished mail is skipped. A mail whose stage fails is
    quarantined alone; a database fault is re-raised for the broker to retry the whole batch.
    """
    results: list[Result] = []
    collided: list[int] = []
    with app.db.session(autoflush=False) as session:
        for raw_id in raw_ids:
            try:
                with session.begin_nested():
                    results.append(_run_stages(app, session, raw_id))
            except IntegrityError:
                collided.append(raw_id)  # another worker recorded the same Message-ID meanwhile
            except StageFailed as failure:
                if isinstance(failure.cause, TRANSIENT):
                    raise failure.cause from None
                _quarantine(session, raw_id, failure.stage, failure.cause)
                results.append(Result(raw_id, "quarantined"))
    for raw_id in collided:
        # Alone and after the other worker's commit, the mail is now seen as a duplicate.
        results += process(app, [raw_id]) if len(raw_ids) > 1 else [_quarantine_alone(app, raw_id)]
    return results


def _run_stages(app: App, session: Session, raw_id: int) -> Result:
    raw = session.get(RawMessage, raw_id, with_for_update=True)
    if raw is None or raw.status != "pending":
        return Result(raw_id, "skipped")
    work = Work(app, session, raw)
    for name, stage in STAGES:
        try:
            if not stage(work):
                break
        except Exception as exc:
            raise StageFailed(name, exc) from exc
    raw.status, raw.processed_at = work.outcome, utcnow()
    session.flush()
    return Result(raw_id, work.outcome, raw.ticket_id, tuple(row.id for row in work.outbox))


def _quarantine(session: Session, raw_id: int, stage: str, cause: BaseException) -> None:
    log.warning("quarantined message %s at stage %s: %s", raw_id, stage, cause)
    log.debug("".join(traceback.format_exception(cause)))
    raw = session.get(RawMessage, raw_id)
    if raw is not None and raw.status == "pending":
        raw.status, raw.stage, raw.processed_at = "quarantined", stage, utcnow()
        raw.error = f"{type(cause).__name__}: {cause}"[:4000]


def _quarantine_alone(app: App, raw_id: int) -> Result:
    with app.db.session() as session:
        _quarantine(session, raw_id, "record", RuntimeError("unique constraint violated twice"))
    return Result(raw_id, "quarantined")


def _new_ticket(work: Work) -> Ticket:
    mail, verification, route, app = _mail(work), _verification(work), _route(work), work.app
    account = verification.account if verification.verified else None
    arrived = work.raw.received_at
    policy = app.config.sla.policy_for(route.queue, route.priority)
    due = due_dates(app.calendars[policy.calendar], policy, arrived)
    ticket = Ticket(
        queue=route.queue, priority=route.priority, status="open",
        customer_email=verification.address or _first_from(mail).lower(),
        account_id=account.id if account else None, verified=verification.status,
        language=(account.language if account and account.language in ("en", "zh") else mail.language),
        subject=mail.subject[:2000], identifiers=mail.identifiers.to_json(), created_at=arrived, updated_at=arrived,
        first_response_due=due.first_response, resolution_due=due.resolution, sla_calendar=policy.calendar)
    work.session.add(ticket)
    work.session.flush()  # the ticket number is needed for the reply and the events
    _event(work, ticket, "created", message_id=mail.message_id, mailbox=work.raw.mailbox)
    _event(work, ticket, "verified", status=verification.status, **verification.evidence)
    _event(work, ticket, "routed", queue=route.queue, priority=route.priority, rule=route.rule,
           score=route.score, reasons=list(route.reasons))
    _event(work, ticket, "sla_started", policy=policy.name, calendar=policy.calendar,
           first_response_due=due.first_response.isoformat(), resolution_due=due.resolution.isoformat())
    return ticket


def _find_account(session: Session, address: str) -> AccountRef | None:
    account = session.scalar(select(Account).where(Account.email == address))
    if account is None:
        return None
    return AccountRef(account.id, account.email, account.user_id, account.language, account.display_name,
                      account.anti_phishing_code)


def _event(work: Work, ticket: Ticket, kind: str, **detail: object) -> None:
    work.session.add(TicketEvent(ticket=ticket, kind=kind, detail=detail))


def _first_from(mail: ParsedMail) -> str:
    return mail.from_[0].address if mail.from_ else ""


def _mail(work: Work) -> ParsedMail:
    assert work.mail is not None, "stage order: parse comes first"
    return work.mail


def _verification(work: Work) -> Verification:
    assert work.verification is not None, "stage order: verify comes before this stage"
    return work.verification


def _ticket(work: Work) -> Ticket:
    assert work.ticket is not None, "stage order: record comes before this stage"
    return work.ticket


def _route(work: Work) -> RouteDecision:
    assert work.route is not None, "stage order: route comes before this stage"
    return work.route


def _message(work: Work) -> TicketMessage:
    assert work.message is not None, "stage order: record comes before this stage"
    return work.message
