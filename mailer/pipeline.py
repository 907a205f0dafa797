"""The flow of one stored mail, stage by stage, in one database transaction.

    parse -> redact -> bounce -> duplicate -> rating -> gateway -> verify -> spam -> screen -> thread -> route
          -> authenticate -> repeat -> automatic -> record -> reply -> warn -> refused -> forward

Each stage takes the `Work` and returns True to go on or False when the mail is fully handled. The
decisions live in parsing/ and routing/; this module strings them together and writes the ledger. The
stages kept in modules of their own (the specialists' two, spam, ratings, help articles) and the state
and helpers all stages share are in mailer/stages/. A stage that raises sends the mail to quarantine with
the stage's name; database trouble is transient and re-raised so the broker retries. Nothing here sends
mail: replies become outbox rows that the caller hands to the sender actor after the commit. Running the
stages over a batch of mails, one transaction each, is mailer/stages/runner.py.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select

from mailer.ledger.db import Outbox, Ticket, TicketEvent, TicketMessage, utcnow
from mailer.ledger.ids import new_ticket_id
from mailer.runtime import metrics
from mailer.stages.escalate import reschedule_alerts
from mailer.stages.feedback import record_rating
from mailer.stages.gateway import forward_to_specialists, handle_specialist_reply
from mailer.stages.prepare import redact_mail
from mailer.stages.spam import hold_spam
from mailer.stages.suggest import suggest_articles
from mailer.stages.work import (
    Stage,
    Work,
    common_context,
    event,
    first_from,
    need,
    queue_automatic,
    resume_clock,
    store_attachments,
)
from parsing.language import choose_language
from parsing.message import parse, without_body
from parsing.secrets import kind_names
from routing.authresults import evaluate, reported_dmarc_failures
from routing.autoreply import automatic_reason
from routing.dedup import find_exact_duplicate, find_repeat, find_thread
from routing.verify import SPOOFED, VERIFIED, AccountRef, Verification, verify_sender
from sla.calendar import parse_duration
from sla.clock import due_dates, format_local

log = logging.getLogger(__name__)


def parse_mail(work: Work) -> bool:
    if work.raw.size > work.app.config.max_message_bytes:
        raise ValueError(f"message of {work.raw.size} bytes exceeds max_message_bytes")
    # Prepared ahead (mailer/stages/prepare.py): already redacted, which the next stage then only records.
    work.mail = work.prepared.mail if work.prepared else parse(work.app.sealer.open(work.raw.raw))
    return True


def redact_secrets(work: Work) -> bool:
    """Replace passwords, seed phrases, keys and codes before anything below stores or shows the text."""
    if work.prepared is None:
        work.mail, work.secrets = redact_mail(need(work.mail, "parse"))
    else:
        work.secrets = work.prepared.secrets
    if work.secrets and work.app.config.raw_with_secrets == "drop":
        stripped = work.prepared.raw_without_secrets if work.prepared else None
        work.raw.raw = work.app.sealer.seal(
            stripped or without_body(work.app.sealer.open(work.raw.raw), work.secrets))
    return True


def match_bounce(work: Work) -> bool:
    """A delivery report about one of our mails marks that outbox row; it never becomes a ticket."""
    report = need(work.mail, "parse").report
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
        metrics.reply_bounced(row.purpose)
    if row.ticket_id:
        work.session.add(TicketEvent(ticket_id=row.ticket_id, kind="bounced" if report.action == "failed"
                                     else f"delivery_{report.action}", detail=detail))
    work.raw.ticket_id, work.outcome = row.ticket_id, "bounce"
    return False


def skip_exact_duplicate(work: Work) -> bool:
    mail, known = need(work.mail, "parse"), work.lookups
    reason = find_exact_duplicate(work.session, mail, work.raw.id,
                                  recorded=known.recorded(mail.message_id) if known else None,
                                  seen=known.seen_rows(mail.message_id, mail.sha256) if known else None)
    if reason is None:
        return True
    message_id = need(work.mail, "parse").message_id
    existing = work.session.scalar(select(TicketMessage).where(TicketMessage.message_id == message_id))
    if existing is not None:
        work.raw.ticket_id = existing.ticket_id
        event(work, existing.ticket, "duplicate", reason=reason, mailbox=work.raw.mailbox, uid=work.raw.uid)
    work.outcome = "duplicate"
    return False


def verify(work: Work) -> bool:
    directory, session, known = work.app.directory, work.session, work.lookups

    def find(address: str) -> AccountRef | None:
        if known is not None and address in known.accounts:  # looked up for the whole batch
            return known.accounts[address]
        return directory.find(address, session)

    work.verification = verify_sender(need(work.mail, "parse"), find)
    return True


def screen_automatic(work: Work) -> bool:
    work.automatic = automatic_reason(need(work.mail, "parse"), work.app.sender.loop_token)
    return True


def find_ticket(work: Work) -> bool:
    work.thread = find_thread(work.session, need(work.mail, "parse"), need(work.verification, "verify").address)
    return True


def find_repeated_complaint(work: Work) -> bool:
    if work.thread is None:
        verification, dedup = need(work.verification, "verify"), work.app.config.dedup
        now, window = work.raw.received_at, timedelta(days=dedup.window_days)
        known = work.lookups.open_tickets_of(verification.address, now - window) \
            if work.lookups and verification.address else None
        work.thread = find_repeat(work.session, need(work.mail, "parse"), verification.address, verification.verified,
                                  now=now, window=window, threshold=dedup.similarity, candidates=known)
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
    work.route = work.app.router.route(need(work.mail, "parse"), need(work.verification, "verify").address)
    return True


def authenticate(work: Work) -> bool:
    """A registered address counts only if our MTA's report meets the queue's policy; otherwise spoofed.

    Without [trust] no header can be told from a forged one; a reported DMARC failure for the From
    domain still makes the sender spoofed (believing a failure can only ever hurt the forger)."""
    trust, verification = work.app.config.trust, need(work.verification, "verify")
    if verification.status != VERIFIED or verification.address is None:
        return True
    if trust is None:
        return refuse_reported_dmarc_failure(work, verification)
    auth = evaluate(need(work.mail, "parse").trace, trust.authserv_id, trust.received_hops)
    queue = work.thread.ticket.queue if work.thread is not None else need(work.route, "route").queue
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


def refuse_reported_dmarc_failure(work: Work, verification: Verification) -> bool:
    domain = (verification.address or "").rpartition("@")[2]
    servers = reported_dmarc_failures(need(work.mail, "parse").trace, domain)
    if servers:
        work.verification = Verification(SPOOFED, verification.address, None, evidence={
            "reason": "an Authentication-Results header reports a DMARC failure for the From domain "
                      "(no [trust] configured: any such report counts)", "reported_by": servers[:5]})
        if work.thread is not None and work.thread.by_tag:
            work.thread = None
    return True


def record(work: Work) -> bool:
    """Write the ticket (new or joined), the message, its attachments and the events that explain them."""
    mail, verification = need(work.mail, "parse"), need(work.verification, "verify")
    if work.thread is not None:
        ticket = work.ticket = work.thread.ticket
        if ticket.status == "closed":
            ticket.status, ticket.closed_at, work.reopened = "open", None, True
            event(work, ticket, "reopened", reason="the customer wrote again")
            resume_clock(work, ticket, "reopened")
        elif ticket.status == "pending":
            ticket.status = "open"
            event(work, ticket, "customer_replied", reason="the ticket was waiting on the customer")
            resume_clock(work, ticket, "the customer replied")
        ticket.updated_at = utcnow()
    else:
        ticket = work.ticket = _new_ticket(work)
    repeat = work.thread is not None and work.thread.repeat
    message = work.message = TicketMessage(
        ticket=ticket, raw_message_id=work.raw.id, direction="in", kind="repeat" if repeat else "customer",
        message_id=mail.message_id, in_reply_to=mail.in_reply_to, references=list(mail.references[-20:]),
        content_hash=mail.content_hash,
        from_address=verification.address or first_from(mail), subject=mail.subject[:2000], body=mail.new_text)
    work.session.add(message)
    store_attachments(work, message)
    work.raw.ticket_id = ticket.id
    if work.thread is not None:
        event(work, ticket, "repeat" if repeat else "message", reason=work.thread.reason,
               message_id=mail.message_id, automatic=work.automatic)
    if mail.defects:
        event(work, ticket, "defects", defects=list(mail.defects)[:50])
    return True


def schedule_replies(work: Work) -> bool:
    """A new ticket gets one answer: the acknowledgement, or the generic note for an unverified sender.

    A repeat gets at most one short "we already have this" per ticket and day; a reply in the thread and
    any automatic mail get nothing.
    """
    ticket, verification = need(work.ticket, "record"), need(work.verification, "verify")
    if work.automatic or (work.thread is not None and not work.thread.repeat):
        return True
    if verification.status == SPOOFED:
        # Answering would mail the real owner of the address, who did not write.
        event(work, ticket, "no_reply", reason="sender authentication failed: not answering a forged sender")
        return True
    if work.thread is not None:
        day = work.raw.received_at.astimezone(work.app.calendar.zone).date().isoformat()
        queue_automatic(work, "repeat_notice", f"repeat_notice:{ticket.id}:{day}", ticket.customer_email,
                         common_context(work))
    elif verification.verified and verification.account is not None:
        queue_automatic(work, "ack", f"ack:{work.raw.message_id}", verification.account.email,
                         _ack_context(work, verification.account))
    else:
        # Same words whatever the reason, so the answer reveals nothing about the account directory.
        queue_automatic(work, "unverified", f"unverified:{work.raw.message_id}",
                         verification.address or first_from(need(work.mail, "parse")), common_context(work))
    return True


def warn_about_secrets(work: Work) -> bool:
    """Whoever pasted a secret is told to treat it as exposed: move funds, change passwords, rotate keys."""
    if work.secrets:
        ticket = need(work.ticket, "record")
        event(work, ticket, "secrets_redacted", kinds=list(work.secrets),
               raw=work.app.config.raw_with_secrets)
        if not work.automatic and need(work.verification, "verify").status != SPOOFED:
            to_address = need(work.verification, "verify").address or first_from(need(work.mail, "parse"))
            queue_automatic(work, "secret_warning", f"secret_warning:{work.raw.message_id}", to_address,
                             {**common_context(work), "kinds": kind_names(work.secrets, ticket.language)})
    return True


def tell_about_refused_attachments(work: Work) -> bool:
    """The mail is a ticket all the same; the sender learns which files were not taken, and why."""
    if work.refused:
        ticket = need(work.ticket, "record")
        event(work, ticket, "attachments_refused", files=[{"name": n, "reason": r} for n, r in work.refused])
        if not work.automatic and need(work.verification, "verify").status != SPOOFED:
            to_address = need(work.verification, "verify").address or first_from(need(work.mail, "parse"))
            queue_automatic(work, "attachment_refused", f"attachment_refused:{work.raw.message_id}", to_address,
                             {**common_context(work), "files": work.refused})
    return True


def _ack_context(work: Work, account: AccountRef) -> dict[str, object]:
    ticket, config = need(work.ticket, "record"), work.app.config
    due = ticket.first_response_due
    calendar, policy = work.app.sla_for(ticket)
    return {
        **common_context(work),
        "customer_name": account.display_name or None,
        "anti_phishing_code": account.anti_phishing_code,
        "queue_title": config.queues[ticket.queue].title_in(ticket.language),
        "due_text": format_local(due, calendar.zone, ticket.language) if due else "",
        "time_zone": calendar.zone.key,
        "first_response_target": parse_duration(policy.first_response).describe(ticket.language),
        "articles": suggest_articles(work),  # help articles that may answer the mail while it waits
    }


# The whole flow. Adding a stage means one function (here, or in its own module) and one line here.
STAGES: tuple[tuple[str, Stage], ...] = (
    ("parse", parse_mail),
    ("redact", redact_secrets),
    ("bounce", match_bounce),
    ("duplicate", skip_exact_duplicate),
    ("rating", record_rating),
    ("gateway", handle_specialist_reply),
    ("verify", verify),
    ("spam", hold_spam),
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


def _new_ticket(work: Work) -> Ticket:
    mail, verification = need(work.mail, "parse"), need(work.verification, "verify")
    route, app = need(work.route, "route"), work.app
    account = verification.account if verification.verified else None
    arrived = work.raw.received_at
    policy = app.config.sla.policy_for(route.queue, route.priority)
    due = due_dates(app.calendars[policy.calendar], policy, arrived)
    ticket = Ticket(
        id=new_ticket_id(work.session), queue=route.queue, priority=route.priority, status="open",
        customer_email=verification.address or first_from(mail).lower(),
        account_id=account.id if account else None, verified=verification.status,
        language=choose_language(account.language if account else None, mail.language, app.config.default_language),
        subject=mail.subject[:2000], identifiers=mail.identifiers.to_json(), created_at=arrived, updated_at=arrived,
        first_response_due=due.first_response, resolution_due=due.resolution, sla_calendar=policy.calendar,
        paused_seconds=0)
    reschedule_alerts(app, work.session, ticket, sent=())
    work.session.add(ticket)
    if ticket.id is None:
        work.session.flush()  # a database without numbers handed out ahead: the reply needs the number now
    event(work, ticket, "created", message_id=mail.message_id, mailbox=work.raw.mailbox)
    event(work, ticket, "verified", status=verification.status, **verification.evidence)
    event(work, ticket, "routed", queue=route.queue, priority=route.priority, rule=route.rule,
           score=route.score, reasons=list(route.reasons))
    event(work, ticket, "sla_started", policy=policy.name, calendar=policy.calendar,
           first_response_due=due.first_response.isoformat(), resolution_due=due.resolution.isoformat())
    return ticket
