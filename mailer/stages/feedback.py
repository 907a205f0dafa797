"""Satisfaction surveys and quality reviews: what happens when a specialist closes a ticket, and the answers.

On `#close` the customer (verified only) gets a survey whose ratings are signed `mailto:` links, and a
share of each specialist's closings a week goes to the queue's lead with the whole transcript. A mail to
a rating address is the `rating` stage: checked (a survey was sent, the token is that ticket's and that
rating's, the sender is the ticket's customer), recorded, never a ticket of its own; refused ones are
quarantined with the reason. The lead scores a review with `#qa <1-5> <comment>` on the ticket address.
The decisions (tokens, which closings are sampled) are in routing/feedback.py.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy import func, select

from mailer.ledger.db import Rating, Review, Ticket, TicketEvent, TicketMessage
from mailer.stages.compose import schedule_reply
from mailer.stages.work import Work, common_context, event, first_from, need, queue_automatic
from routing.authresults import evaluate
from routing.feedback import (
    RATINGS,
    find_rating_address,
    iso_week,
    parse_score,
    rating_address,
    sampled,
    week_offset,
)
from routing.specialists import SpecialistReply, ticket_address
from routing.verify import VERIFIED, normalize_address

MAX_COMMENT = 4000


def after_close(work: Work, ticket: Ticket, closer: str) -> None:
    """A specialist closed the ticket: survey the customer, and maybe sample it for review."""
    send_survey(work, ticket, closer)
    sample_for_review(work, ticket, closer)


def send_survey(work: Work, ticket: Ticket, closer: str) -> None:
    """Once per ticket, to a verified customer only, through the one policy for automatic mail."""
    if ticket.verified != VERIFIED:
        return
    if work.session.scalar(select(Rating.id).where(Rating.ticket_id == ticket.id)) is not None:
        return
    app, nonce = work.app, secrets.token_hex(8)
    account = app.directory.find(ticket.customer_email, work.session)  # the imported table or the live source
    links = [{"value": r, "href": "mailto:" + rating_address(app.config.support_address, app.secret, ticket.id, r,
                                                             nonce) + "?subject=" + quote(f"[#{ticket.id}] {r}/5")}
             for r in RATINGS]
    context = {**common_context(work), "ratings": links,
               "anti_phishing_code": account.anti_phishing_code if account else None}
    before = len(work.outbox)
    queue_automatic(work, "survey", f"survey:{ticket.id}", ticket.customer_email, context,
                    replying_to=_last_customer_message(work, ticket), verified=True)
    if len(work.outbox) > before:
        work.session.add(Rating(ticket_id=ticket.id, queue=ticket.queue, specialist=closer, nonce=nonce))


def _last_customer_message(work: Work, ticket: Ticket) -> TicketMessage | None:
    return work.session.scalar(select(TicketMessage).where(
        TicketMessage.ticket_id == ticket.id, TicketMessage.direction == "in",
        TicketMessage.kind.in_(("customer", "repeat"))).order_by(TicketMessage.id.desc()).limit(1))


def record_rating(work: Work) -> bool:
    """A mail to a rating address records (or updates) the ticket's rating; it never opens a ticket."""
    mail, app = need(work.mail, "parse"), work.app
    recipients = [a.address for a in mail.to] + [v for n in ("delivered-to", "x-original-to")
                                                 for v in mail.headers.get(n, ())]
    found = find_rating_address(recipients, app.config.support_address)
    if found is None:
        return True
    ticket = work.session.get(Ticket, found.ticket_id)
    row = work.session.scalar(select(Rating).where(Rating.ticket_id == found.ticket_id))
    sender = normalize_address(first_from(mail)) or ""
    problem = _rating_problem(work, ticket, row, found.valid(app.secret, row.nonce) if row else False, sender)
    if problem or ticket is None or row is None:
        work.outcome, work.raw.stage, work.raw.error = "quarantined", "rating", problem
        if ticket is not None:
            work.raw.ticket_id = ticket.id
            event(work, ticket, "rating_refused", sender=sender, reason=problem)
        return False
    previous, words = row.rating, mail.new_text.strip()[:MAX_COMMENT]
    row.rating, row.rated_at = found.rating, work.raw.received_at
    row.comment = words or row.comment
    row.changes += int(previous is not None)
    work.session.add(TicketMessage(
        ticket=ticket, raw_message_id=work.raw.id, direction="in", kind="rating", message_id=mail.message_id,
        in_reply_to=mail.in_reply_to, references=list(mail.references[-20:]), from_address=sender,
        subject=mail.subject[:2000], body=mail.new_text))
    event(work, ticket, "rated" if previous is None else "rating_changed", actor=sender, rating=found.rating,
          previous=previous, with_words=bool(words))
    work.raw.ticket_id = ticket.id
    return False


def _rating_problem(work: Work, ticket: Ticket | None, row: Rating | None, token_valid: bool,
                    sender: str) -> str | None:
    if ticket is None or row is None:
        return "no survey was sent for this ticket"
    if not token_valid:
        return "the rating address carries a wrong token"
    if sender != normalize_address(ticket.customer_email):
        return f"{sender or 'the sender'} is not the customer of ticket #{ticket.id}"
    trust = work.app.config.trust
    if trust is not None:
        auth = evaluate(need(work.mail, "parse").trace, trust.authserv_id, trust.received_hops)
        if not auth.meets("aligned", sender.rpartition("@")[2]):
            return "our MTA's report does not show the customer's domain aligned"
    return None


# --- quality review ---------------------------------------------------------------------------------

def sample_for_review(work: Work, ticket: Ticket, closer: str) -> None:
    """The configured share of each specialist's closings this week goes to the queue's lead."""
    app, queue = work.app, work.app.config.queues[ticket.queue]
    if app.config.qa_share <= 0 or not queue.lead or closer == queue.lead.lower():
        return  # a lead does not review their own tickets
    if work.session.scalar(select(Review.id).where(Review.ticket_id == ticket.id)) is not None:
        return
    local = work.raw.received_at.astimezone(app.calendar.zone)
    week = iso_week(local)
    week_start = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    earlier = work.session.scalar(select(func.count(func.distinct(TicketEvent.ticket_id))).where(
        TicketEvent.kind == "closed", TicketEvent.actor == closer, TicketEvent.at >= week_start,
        TicketEvent.ticket_id != ticket.id)) or 0
    if not sampled(earlier + 1, app.config.qa_share, week_offset(app.secret, closer, week)):
        return
    work.session.add(Review(ticket_id=ticket.id, queue=ticket.queue, specialist=closer, week=week, lead=queue.lead))
    context = {**common_context(work), "queue": queue.name, "specialist": closer, "week": week,
               "customer": ticket.customer_email, "subject": ticket.subject, "transcript": _transcript(work, ticket)}
    row = schedule_reply(work.session, app.renderer, app.sender, ticket=ticket, purpose="qa_review",
                         key=f"qa_review:{ticket.id}", to_address=queue.lead,
                         replying_to=need(work.message, "record"), context=context,
                         auto_submitted="auto-generated", reply_to=ticket_address(
                             app.config.support_address, ticket.id, app.secret), language="en")
    work.outbox.append(row)
    event(work, ticket, "qa_sampled", specialist=closer, lead=queue.lead, week=week)


def _transcript(work: Work, ticket: Ticket) -> list[dict[str, str]]:
    zone = work.app.calendar.zone
    return [{"when": m.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M") if m.created_at else "",
             "direction": m.direction, "kind": m.kind, "from": m.from_address, "subject": m.subject,
             "body": m.body} for m in ticket.messages if m.kind not in ("forward", "qa_review")]


def review_problems(work: Work, ticket: Ticket, sender: str, reply: SpecialistReply) -> list[str]:
    """`#qa` is the lead's, and only for a ticket sampled for review."""
    if not any(c.name == "qa" for c in reply.commands):
        return []
    lead = work.app.config.queues[ticket.queue].lead
    if sender != (lead or "").lower():
        return [f"#qa is for the lead of queue {ticket.queue!r} ({lead or 'none set'})"]
    if work.session.scalar(select(Review.id).where(Review.ticket_id == ticket.id)) is None:
        return [f"ticket #{ticket.id} was not sampled for review"]
    return []


def record_review(work: Work, ticket: Ticket, sender: str, argument: str) -> None:
    parsed = parse_score(argument)
    review = work.session.scalar(select(Review).where(Review.ticket_id == ticket.id))
    if parsed is None or review is None:
        return  # refused before commands are applied (routing.specialists._check, review_problems)
    review.score, review.comment, review.scored_at = parsed[0], parsed[1][:MAX_COMMENT], work.raw.received_at
    event(work, ticket, "qa_scored", actor=sender, specialist=review.specialist, score=parsed[0],
          comment=parsed[1][:MAX_COMMENT])
