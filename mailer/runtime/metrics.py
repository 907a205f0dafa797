"""Prometheus metrics, and the one log line per mail per outcome.

Counters and histograms move on the hot path, one call per place (`mail_done`, `reply_sent`, …); they
are prometheus-client objects, so with `PROMETHEUS_MULTIPROC_DIR` set (worker processes) every
process writes its own file and the scrape adds them up. Gauges about the ledger (backlog, open
tickets, quarantine) are read at scrape time by small indexed queries, never kept on the hot path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from mailer.ledger.db import Outbox, RawMessage, Ticket, utcnow
from mailer.runtime.health import HEALTH

if TYPE_CHECKING:
    from mailer.app import App
    from mailer.stages.work import Stage, Work

log = logging.getLogger("supportd.mail")

REGISTRY = CollectorRegistry(auto_describe=True)

FETCHED = Counter("supportd_mails_fetched", "Mails fetched from IMAP, per mailbox", ["mailbox"], registry=REGISTRY)
PROCESSED = Counter("supportd_mails_processed", "Mails processed, by outcome (and stage, when quarantined)",
                    ["outcome", "stage"], registry=REGISTRY)
REPLIES = Counter("supportd_replies", "Outgoing mails by purpose (template) and outcome",
                  ["purpose", "outcome"], registry=REGISTRY)
SLA_ALERTS = Counter("supportd_sla_alerts", "SLA warnings and breaches raised", ["kind", "clock", "queue"],
                     registry=REGISTRY)
RECONNECTS = Counter("supportd_imap_reconnects", "IMAP connections lost or refused, per mailbox", ["mailbox"],
                     registry=REGISTRY)
STAGE_SECONDS = Histogram("supportd_stage_duration_seconds", "Time spent in each pipeline stage", ["stage"],
                          buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0),
                          registry=REGISTRY)
ACK_SECONDS = Histogram("supportd_arrival_to_ack_seconds", "From a mail's arrival to its acknowledgement's 250",
                        buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600), registry=REGISTRY)

_current = threading.local()  # per worker thread: the running mail's stage and time so far


# --- hot-path hooks (one call per place) ----------------------------------------------------------

def timed_stage(name: str, stage: Stage, work: Work) -> bool:
    """Run one stage, timing it; remembers the stage so the mail's log line can name where it ended."""
    if getattr(_current, "work", None) is not work:  # a new mail (a retried or collided one left no trace)
        _current.work, _current.seconds = work, 0.0
    started = time.perf_counter()
    try:
        return stage(work)
    finally:
        spent = time.perf_counter() - started
        _stage_histogram(name).observe(spent)
        _current.stage, _current.seconds = name, _current.seconds + spent


def _stage_histogram(name: str) -> Any:
    """The stage's labelled child, looked up once: `labels()` takes a lock and builds a key on every call."""
    child = _STAGE_CHILDREN.get(name)
    if child is None:
        child = _STAGE_CHILDREN[name] = STAGE_SECONDS.labels(name)
    return child


_STAGE_CHILDREN: dict[str, Any] = {}


def _take_mail_timing() -> tuple[str | None, float]:
    stage, seconds = getattr(_current, "stage", None), getattr(_current, "seconds", 0.0)
    _current.stage, _current.seconds, _current.work = None, 0.0, None
    return stage, seconds


def outcome_of(work: Work) -> str:
    """The operator's words for what became of a mail."""
    if work.outcome != "done":
        return work.outcome
    if work.message is not None and work.message.kind == "specialist":
        return "specialist"
    if work.thread is None:
        return "ticket"
    return "repeat" if work.thread.repeat else "reply"


def mail_done(work: Work) -> None:
    """Count the mail's outcome and write its one log line: ids and places, never content."""
    stage, seconds = _take_mail_timing()
    outcome = outcome_of(work)
    failed_at = work.raw.stage if outcome == "quarantined" else ""
    PROCESSED.labels(outcome, failed_at or "").inc()
    _log_mail(work.raw, outcome, failed_at or stage, seconds, work.raw.error if outcome == "quarantined" else None)


def mail_quarantined(raw: RawMessage, stage: str, cause: BaseException) -> None:
    """A stage raised: the mail goes to quarantine alone."""
    _, seconds = _take_mail_timing()
    PROCESSED.labels("quarantined", stage).inc()
    _log_mail(raw, "quarantined", stage, seconds, type(cause).__name__, logging.WARNING)


def _log_mail(raw: RawMessage, outcome: str, stage: str | None, seconds: float, error: str | None,
              level: int = logging.INFO) -> None:
    fields = {"raw_id": raw.id, "ticket": raw.ticket_id, "mailbox": raw.mailbox, "uid": raw.uid,
              "outcome": outcome, "stage": stage, "duration_ms": round(seconds * 1000, 2)}
    if error:
        fields["error"] = error[:200]
    ticket = f" ticket #{raw.ticket_id}" if raw.ticket_id else ""
    log.log(level, "mail %s %s:%s %s%s at %s in %.1f ms", raw.id, raw.mailbox, raw.uid, outcome, ticket, stage,
            seconds * 1000, extra={"fields": fields})


def mails_fetched(mailbox: str, count: int) -> None:
    """A batch is stored: counted, and the intake loop is turning (a first sync can be long)."""
    FETCHED.labels(mailbox).inc(count)
    HEALTH.turning(mailbox)


def mail_pushed(mailbox: str) -> None:
    """A mail taken over LMTP: counted as fetched for its pseudo-mailbox; no sync loop to watch."""
    FETCHED.labels(mailbox).inc()


def mailbox_synced(mailbox: str) -> None:
    HEALTH.synced(mailbox)


def mailbox_standby(mailbox: str, seconds: float) -> None:
    """Another daemon holds the lease: this loop waits, turning, and is not expected to sync."""
    HEALTH.beat(f"intake:{mailbox}", seconds)


def mailbox_failed(mailbox: str, error: BaseException) -> None:
    RECONNECTS.labels(mailbox).inc()
    HEALTH.failed(mailbox, f"{type(error).__name__}: {error}"[:300])


def reply_sent(app: App, outbox_id: int, purpose: str, ticket_id: int | None,
               arrived: datetime | None = None) -> None:
    """`arrived`: the ticket's creation time when the caller has it (else it is looked up)."""
    REPLIES.labels(purpose, "sent").inc()
    if purpose == "ack" and ticket_id is not None:
        if arrived is None:
            with app.db.reading() as session:
                arrived = session.scalar(select(Ticket.created_at).where(Ticket.id == ticket_id))
        if arrived is not None:
            ACK_SECONDS.observe(max((utcnow() - arrived).total_seconds(), 0.0))
    log.info("reply %s %s sent", outbox_id, purpose,
             extra={"fields": {"outbox_id": outbox_id, "ticket": ticket_id, "purpose": purpose, "outcome": "sent"}})


def reply_not_sent(purpose: str, given_up: bool) -> None:
    REPLIES.labels(purpose, "failed" if given_up else "retried").inc()


def reply_bounced(purpose: str) -> None:
    REPLIES.labels(purpose, "bounced").inc()


def sla_alert(kind: str, clock: str, queue: str) -> None:
    SLA_ALERTS.labels(kind, clock, queue).inc()


# --- read at scrape time ---------------------------------------------------------------------------

class LedgerCollector(Collector):
    """Gauges from the ledger and this process's state, computed when Prometheus asks."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._mailboxes()
        try:
            yield from self._ledger()
        except Exception as exc:  # the database away: /readyz says so; the counters are still served
            logging.getLogger(__name__).debug("ledger gauges unavailable: %s", exc)

    def _mailboxes(self) -> Iterator[Metric]:
        last_sync = GaugeMetricFamily("supportd_imap_last_sync_timestamp_seconds",
                                      "When each mailbox last synced successfully (Unix time)", labels=["mailbox"])
        for name, state in sorted(HEALTH.mailboxes.items()):
            if state.last_sync is not None:
                last_sync.add_metric([name], state.last_sync)
        yield last_sync

    def _ledger(self) -> Iterator[Metric]:
        now = utcnow()
        held = HEALTH.leases_held(self.app.db)
        lease = GaugeMetricFamily("supportd_mailbox_lease_held", "1 if this process holds the mailbox's intake "
                                  "lease", labels=["mailbox"])
        for mailbox in self.app.config.mailboxes:
            lease.add_metric([mailbox.name], 1.0 if mailbox.name in held else 0.0)
        yield lease
        backlog = ledger_backlog(self.app, now)
        for name, text, value in (
                ("supportd_pending_mails", "Mails stored and not yet processed", backlog["pending_mails"]),
                ("supportd_pending_replies", "Replies waiting to be sent", backlog["pending_replies"]),
                ("supportd_oldest_pending_mail_age_seconds", "Age of the oldest pending mail",
                 backlog["oldest_mail_seconds"]),
                ("supportd_oldest_pending_reply_age_seconds", "Age of the oldest pending reply",
                 backlog["oldest_reply_seconds"]),
                ("supportd_quarantined_mails", "Mails in quarantine", backlog["quarantined"]),
                ("supportd_failed_replies", "Replies that failed after their retries", backlog["failed_replies"])):
            yield GaugeMetricFamily(name, text, value=float(value or 0))
        tickets = GaugeMetricFamily("supportd_open_tickets", "Tickets not closed, by queue and SLA state",
                                    labels=["queue", "sla_state"])
        for (queue, state), count in sorted(open_tickets(self.app, now).items()):
            tickets.add_metric([queue, state], count)
        yield tickets


def ledger_backlog(app: App, now: datetime) -> dict[str, Any]:
    """Counts and ages of what waits; each query uses the status index of its table."""
    waiting = ("pending", "sending")
    with app.db.reading() as session:
        mails, oldest_mail = session.execute(select(func.count(), func.min(RawMessage.received_at)).where(
            RawMessage.status == "pending")).one()
        replies, oldest_reply = session.execute(select(func.count(), func.min(Outbox.created_at)).where(
            Outbox.status.in_(waiting))).one()
        quarantined = session.scalar(select(func.count()).where(RawMessage.status == "quarantined")) or 0
        failed = session.scalar(select(func.count()).where(Outbox.status == "failed")) or 0
    return {"pending_mails": mails, "pending_replies": replies, "quarantined": quarantined, "failed_replies": failed,
            "oldest_mail_seconds": (now - oldest_mail).total_seconds() if oldest_mail else 0.0,
            "oldest_reply_seconds": (now - oldest_reply).total_seconds() if oldest_reply else 0.0}


def sla_state_expression(now: datetime) -> Any:
    """waiting_on_customer | breached | on_time, as SQL so the database groups by it."""
    overdue = ((Ticket.first_responded_at.is_(None) & (Ticket.first_response_due < now))
               | (Ticket.resolution_due < now))
    return case((Ticket.status == "pending", "waiting_on_customer"), (overdue, "breached"), else_="on_time")


def open_tickets(app: App, now: datetime) -> dict[tuple[str, str], int]:
    state = sla_state_expression(now)
    with app.db.reading() as session:
        rows = session.execute(select(Ticket.queue, state, func.count()).where(
            Ticket.status.in_(("open", "pending"))).group_by(Ticket.queue, state)).all()
    return {(queue, sla_state): count for queue, sla_state, count in rows}


def exposition(app: App) -> bytes:
    """The /metrics body: this process's (or all processes') counters plus the ledger gauges."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(LedgerCollector(app))
    return generate_latest(registry)


class _Forward(Collector):
    """Serve another registry's metrics inside a per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        return self.source.collect()
