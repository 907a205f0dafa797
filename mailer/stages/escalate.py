"""The periodic SLA check: warn the queue's lead before a breach, tell them when it happens.

Run by a dramatiq actor that the daemon sends every minute. Each alert (clock and kind) is sent at most
once per ticket, remembered as a ticket event in the same transaction as its outbox row; a breach also
raises the ticket's priority one step. Each ticket stores when its next alert falls due (`next_alert_at`,
indexed), kept by `reschedule_alerts` wherever its status, clocks or alerts change; the check reads only
the tickets whose moment has come.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection
from datetime import datetime

import holidays
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.app import App
from mailer.ledger.db import Setting, Ticket, TicketEvent, TicketMessage
from mailer.runtime import metrics
from mailer.stages.compose import schedule_reply
from sla.clock import format_local, recompute
from sla.escalation import PRIORITY_AFTER_BREACH, Alert, alerts, next_alert

ALERT_EVENTS = ("sla_warning", "sla_breach")

log = logging.getLogger(__name__)


def escalate(app: App, now: datetime) -> list[int]:
    """Record and queue the alerts due at `now`; returns the new outbox ids.

    Only tickets whose stored next alert has come are read (an index range), so the check costs the
    same with a hundred or a hundred thousand open tickets.
    """
    outbox_ids: list[int] = []
    with app.db.session() as session:
        due_tickets = list(session.scalars(select(Ticket).where(Ticket.next_alert_at <= now)
                                           .order_by(Ticket.next_alert_at)))
        sent = sent_alerts(session, [t.id for t in due_tickets])
        for ticket in due_tickets:
            calendar, policy = app.sla_for(ticket)
            already = sent.setdefault(ticket.id, set())
            for alert in alerts(ticket, calendar, policy, app.config.sla.warn_at, now):
                if alert.key not in already:
                    outbox_ids += _raise(app, session, ticket, alert, now)
                    already.add(alert.key)
            reschedule_alerts(app, session, ticket, already)
        session.flush()
    return outbox_ids


def sent_alerts(session: Session, ticket_ids: Collection[int]) -> dict[int, set[str]]:
    """The alert keys already sent, per ticket: remembered as events, read in one query."""
    sent: dict[int, set[str]] = {}
    for start in range(0, len(ticket_ids), 500):
        chunk = list(ticket_ids)[start:start + 500]
        for ticket_id, detail in session.execute(select(TicketEvent.ticket_id, TicketEvent.detail).where(
                TicketEvent.ticket_id.in_(chunk), TicketEvent.kind.in_(ALERT_EVENTS))):
            sent.setdefault(ticket_id, set()).add(str(detail.get("alert")))
    return sent


def reschedule_alerts(app: App, session: Session, ticket: Ticket, sent: Collection[str] | None = None) -> None:
    """Store when the check must next look at the ticket; call after its status, clocks or alerts change."""
    if ticket.status == "closed":
        ticket.next_alert_at = None
        return
    if sent is None:
        sent = sent_alerts(session, [ticket.id]).get(ticket.id, set()) if ticket.id is not None else set()
    calendar, policy = app.sla_for(ticket)
    ticket.next_alert_at = next_alert(ticket, calendar, policy, app.config.sla.warn_at, sent)


def sla_fingerprint(app: App) -> str:
    """Everything due dates depend on besides the ticket: calendars, policies, the holidays data version."""
    text = repr((sorted(app.config.calendars.items()), app.config.calendar, app.config.sla, holidays.__version__))
    return hashlib.sha256(text.encode()).hexdigest()


def recompute_if_changed(app: App) -> int:
    """At start: if calendars or policies changed since last time, recompute open tickets' due dates."""
    fingerprint = sla_fingerprint(app)
    changed = 0
    with app.db.session() as session:
        stored = session.get(Setting, "sla_fingerprint")
        if stored is not None and stored.value != fingerprint:
            open_tickets = list(session.scalars(select(Ticket).where(Ticket.status != "closed")))
            sent = sent_alerts(session, [t.id for t in open_tickets])
            for ticket in open_tickets:
                calendar, policy = app.sla_for(ticket)
                before = ticket.first_response_due, ticket.resolution_due
                due = recompute(ticket, calendar, policy)
                reschedule_alerts(app, session, ticket, sent.get(ticket.id, set()))  # warn_at may have changed
                if (due.first_response, due.resolution) != before:
                    changed += 1
                    session.add(TicketEvent(ticket=ticket, kind="sla_recomputed", detail={
                        "reason": "the calendars or SLA policies changed", "policy": policy.name,
                        "first_response_due": due.first_response.isoformat(),
                        "resolution_due": due.resolution.isoformat(),
                        "previous": [d.isoformat() if d else None for d in before]}))
        if stored is None:
            session.add(Setting(name="sla_fingerprint", value=fingerprint))
        else:
            stored.value = fingerprint
    if changed:
        log.info("calendars or SLA policies changed: due dates of %d open tickets recomputed", changed)
    return changed


def _raise(app: App, session: Session, ticket: Ticket, alert: Alert, now: datetime) -> list[int]:
    detail: dict[str, object] = {"alert": alert.key, "clock": alert.clock, "due": alert.due.isoformat()}
    if alert.kind == "breach":
        previous, ticket.priority = ticket.priority, PRIORITY_AFTER_BREACH[ticket.priority]
        detail.update(priority=ticket.priority, previous_priority=previous)
    session.add(TicketEvent(ticket=ticket, kind=f"sla_{alert.kind}", at=now, detail=detail))
    metrics.sla_alert(alert.kind, alert.clock, ticket.queue)
    lead = app.config.queues[ticket.queue].lead
    last = session.scalar(select(TicketMessage).where(TicketMessage.ticket_id == ticket.id)
                          .order_by(TicketMessage.id.desc()).limit(1))
    if lead is None or last is None:
        log.warning("ticket %s: SLA %s for %s, but queue %s has no lead to tell", ticket.id, alert.kind,
                    alert.clock, ticket.queue)
        return []
    calendar, _ = app.sla_for(ticket)
    row = schedule_reply(session, app.renderer, app.sender, ticket=ticket, purpose="sla_alert",
                         key=f"sla:{ticket.id}:{alert.key}", to_address=lead, replying_to=last,
                         context={"desk_name": app.config.desk_name, "customer_name": None,
                                  "anti_phishing_code": None, "alert": alert.kind,
                                  "clock": alert.clock.replace("_", " "), "queue": ticket.queue,
                                  "priority": ticket.priority, "customer": ticket.customer_email,
                                  "due_text": format_local(alert.due, calendar.zone, "en"),
                                  "time_zone": calendar.zone.key},
                         auto_submitted="auto-generated", language="en")
    session.flush()
    return [row.id]
