"""Specialists by mail: forwarding new tickets to a queue, and taking their answers back.

`forward_to_specialists` sends a new or reopened ticket to its queue's specialists with a ticket address
to reply to; `handle_specialist_reply` takes a mail sent to such an address out of the customer flow,
checks it (token, sender, authentication), applies its commands and relays the answer.
"""

from __future__ import annotations

from sqlalchemy import select

from mailer.ledger.db import Ticket, TicketMessage, utcnow
from mailer.stages.compose import OutgoingFile, schedule_reply
from mailer.stages.escalate import reschedule_alerts
from mailer.stages.feedback import after_close, record_review, review_problems
from mailer.stages.work import (
    Work,
    common_context,
    event,
    first_from,
    flush_events,
    need,
    pause_clock,
    recompute_clock,
    resume_clock,
    store_attachments,
)
from parsing.language import language_name
from routing.authresults import evaluate
from routing.specialists import SpecialistReply, find_ticket_address, parse_reply, ticket_address
from routing.verify import normalize_address
from sla.clock import format_local


def handle_specialist_reply(work: Work) -> bool:
    """A mail to a ticket address is a specialist's answer: checked, its commands applied, relayed.

    Refused (wrong token, not a specialist of the queue, failed authentication): quarantined with the
    reason, and the queue's lead is told. Unknown commands: nothing is applied or relayed, and the
    specialist gets the reason back.
    """
    mail, app = need(work.mail, "parse"), work.app
    recipients = [a.address for a in mail.to] + [v for n in ("delivered-to", "x-original-to")
                                                 for v in mail.headers.get(n, ())]
    found = find_ticket_address(recipients, app.config.support_address, app.secret)
    if found is None:
        return True
    sender = normalize_address(first_from(mail)) or ""
    ticket = work.session.get(Ticket, found.ticket_id)
    problem = _gateway_problem(work, found.token_valid, ticket, sender)
    if problem or ticket is None:
        work.outcome, work.raw.stage, work.raw.error = "quarantined", "gateway", problem
        if ticket is not None:
            work.ticket, work.raw.ticket_id = ticket, ticket.id
            _record_inbound(work, ticket, "refused", sender)
            event(work, ticket, "reply_refused", sender=sender, reason=problem)
            _tell_queue_lead(work, ticket, sender, problem or "")
        return False
    work.ticket, work.raw.ticket_id = ticket, ticket.id
    reply = parse_reply(mail.new_text, tuple(app.config.queues))
    message = _record_inbound(work, ticket, "specialist", sender)
    errors = [*reply.errors, *review_problems(work, ticket, sender, reply)]
    if errors:
        event(work, ticket, "commands_refused", actor=sender, errors=errors)
        _queue_internal(work, "command_error", sender, {"errors": errors})
        return False
    _apply_commands(work, ticket, reply, sender)
    if reply.internal and reply.text:
        event(work, ticket, "note", actor=sender, text=reply.text[:20_000])
    elif reply.text:
        _relay(work, ticket, reply.text, sender, message)
    if any(c.name == "close" for c in reply.commands):
        ticket.status, ticket.closed_at = "closed", work.raw.received_at
        event(work, ticket, "closed", actor=sender)
        pause_clock(work, ticket, "closed")
        after_close(work, ticket, sender)
    return False


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
        auth = evaluate(need(work.mail, "parse").trace, trust.authserv_id, trust.received_hops)
        policy = "dmarc" if queue.auth_policy == "dmarc" else "aligned"
        if not auth.meets(policy, sender.rpartition("@")[2]):
            return f"our MTA's report does not meet the {policy!r} policy for specialists"
    return None


def _record_inbound(work: Work, ticket: Ticket, kind: str, sender: str) -> TicketMessage:
    mail = need(work.mail, "parse")
    message = work.message = TicketMessage(
        ticket=ticket, raw_message_id=work.raw.id, direction="in", kind=kind, message_id=mail.message_id,
        in_reply_to=mail.in_reply_to, references=list(mail.references[-20:]), from_address=sender,
        subject=mail.subject[:2000], body=mail.new_text)
    work.session.add(message)
    if kind != "refused":
        store_attachments(work, message)
    return message


def _apply_commands(work: Work, ticket: Ticket, reply: SpecialistReply, sender: str) -> None:
    for command in reply.commands:
        if command.name == "assign" and command.argument != ticket.queue:
            event(work, ticket, "assigned", actor=sender, queue=command.argument, previous=ticket.queue)
            ticket.queue = command.argument
            recompute_clock(work, ticket, f"assigned to {command.argument}")
        elif command.name == "priority" and command.argument != ticket.priority:
            event(work, ticket, "priority", actor=sender, priority=command.argument, previous=ticket.priority)
            ticket.priority = command.argument
            recompute_clock(work, ticket, f"priority {command.argument}")
        elif command.name == "pending":
            ticket.status = "pending"
            event(work, ticket, "waiting_on_customer", actor=sender)
            pause_clock(work, ticket, "waiting on the customer")
        elif command.name == "merge":
            target = work.session.get(Ticket, int(command.argument.lstrip("#")))
            if target is not None and target.id != ticket.id:
                ticket.status, ticket.closed_at = "closed", work.raw.received_at
                pause_clock(work, ticket, f"merged into #{target.id}")
                event(work, ticket, "merged", actor=sender, into=target.id)
                event(work, target, "merged_in", actor=sender, from_ticket=ticket.id)
        elif command.name == "qa":
            record_review(work, ticket, sender, command.argument)


def _relay(work: Work, ticket: Ticket, text: str, sender: str, message: TicketMessage) -> None:
    """The answer goes to the customer from the support address, threaded on their last mail."""
    last = work.session.scalar(select(TicketMessage).where(
        TicketMessage.ticket_id == ticket.id, TicketMessage.direction == "in",
        TicketMessage.kind.in_(("customer", "repeat"))).order_by(TicketMessage.id.desc()).limit(1))
    account = work.app.directory.find(ticket.customer_email, work.session) if ticket.verified == "verified" else None
    files = tuple(OutgoingFile(a.filename, a.content_type, work.app.store.get(a.sha256))
                  for a in message.attachments if a.refused_reason is None)
    context = {**common_context(work), "text": text,
               "anti_phishing_code": account.anti_phishing_code if account else None,
               "queue_title": work.app.config.queues[ticket.queue].title_in(ticket.language)}
    row = schedule_reply(work.session, work.app.renderer, work.app.sender, ticket=ticket, purpose="reply",
                         key=f"reply:{work.raw.message_id}", to_address=ticket.customer_email,
                         replying_to=last or message, context=context, auto_submitted=None, attachments=files)
    work.outbox.append(row)
    flush_events(work.session)  # earlier mails of this batch may have answered it too
    work.session.expire(ticket, ["events"])
    earlier = [e.actor for e in ticket.events if e.kind == "answered" and e.actor != sender]
    event(work, ticket, "answered", actor=sender, message_id=row.message_id, files=len(files))
    if ticket.first_responded_at is None:
        ticket.first_responded_at = utcnow()
        event(work, ticket, "first_response", actor=sender)
        reschedule_alerts(work.app, work.session, ticket)  # the first-response alerts are off
    if ticket.status == "closed":
        ticket.status, ticket.closed_at = "open", None
        resume_clock(work, ticket, "answered after closing")
    if earlier:
        _queue_internal(work, "collision", sender, {"others": sorted(set(earlier))})


def _tell_queue_lead(work: Work, ticket: Ticket, sender: str, problem: str) -> None:
    queue = work.app.config.queues[ticket.queue]
    for person in [queue.lead] if queue.lead else list(queue.specialists):
        _queue_internal(work, "reply_refused", person, {"sender": sender, "reason": problem})


def _queue_internal(work: Work, purpose: str, to_address: str, context: dict[str, object]) -> None:
    """Mail to our own people: English, from the support address, never counted against a customer's cap."""
    row = schedule_reply(work.session, work.app.renderer, work.app.sender, ticket=need(work.ticket, "record"),
                         purpose=purpose,
                         key=f"{purpose}:{work.raw.message_id}:{to_address}", to_address=to_address,
                         replying_to=need(work.message, "record"), context={**common_context(work), **context},
                         auto_submitted="auto-generated", language="en")
    work.outbox.append(row)


def forward_to_specialists(work: Work) -> bool:
    """A new or reopened ticket goes to its queue's specialists, who answer through the ticket address."""
    ticket = need(work.ticket, "record")
    queue = work.app.config.queues[ticket.queue]
    if work.automatic or not queue.specialists or (work.thread is not None and not work.reopened):
        return True
    mail = need(work.mail, "parse")
    address = ticket_address(work.app.config.support_address, ticket.id, work.app.secret)
    message = need(work.message, "record")
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
        "language": ticket.language, "language_name": language_name(ticket.language),
    }
    for specialist in queue.specialists:
        row = schedule_reply(work.session, work.app.renderer, work.app.sender, ticket=ticket, purpose="forward",
                             key=f"forward:{work.raw.message_id}:{specialist}", to_address=specialist,
                             replying_to=message, context={**common_context(work), **context},
                             auto_submitted="auto-generated", reply_to=address, attachments=files, language="en")
        work.outbox.append(row)
    event(work, ticket, "forwarded", to=list(queue.specialists), reply_to=address.split("+")[0] + "+…")
    return True
