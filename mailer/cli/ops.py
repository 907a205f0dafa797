"""The operator's commands: `supportd status` and `supportd tickets show N`.

`status` answers "is it working" from the ledger (leases, checkpoints, backlog, quarantine, failed
replies, open tickets and their nearest due times) and, when `[http] listen` is configured and the
daemon answers there, from the daemon itself (last sync and error per mailbox). `tickets show` is the
whole audit trail of one ticket in time order: why it went where it went, what was sent, what failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select

from mailer.ledger.db import Checkpoint, Lease, Outbox, RawMessage, Ticket, TicketEvent, TicketMessage, utcnow
from mailer.runtime.metrics import ledger_backlog
from sla.report import Waiting

if TYPE_CHECKING:
    from mailer.app import App

OpenApp = Callable[[argparse.Namespace], "App"]
Command = Callable[..., argparse.ArgumentParser]


def register(sub: Any, tickets: Any, command: Command, open_app: OpenApp) -> None:
    status = command("status", lambda args: cmd_status(args, open_app), "mailboxes, backlog, quarantine, "
                     "failed replies and open tickets at a glance")
    status.add_argument("--json", action="store_true", help="one JSON object")
    show = command("show", lambda args: cmd_ticket_show(args, open_app), "the whole audit trail of a ticket",
                   parent=tickets)
    show.add_argument("ticket", type=int)
    show.add_argument("--json", action="store_true", help="one JSON object")


# --- status --------------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace, open_app: OpenApp) -> int:
    app = open_app(args)
    try:
        report = status_report(app)
    finally:
        app.close()
    if args.json:
        print(json.dumps(report, ensure_ascii=False, default=str))
    else:
        print(format_status(report, ZoneInfo(app.config.calendar.time_zone)))
    return 1 if report["problems"] else 0


def status_report(app: App) -> dict[str, Any]:
    now = utcnow()
    live = _live_checks(app)
    with app.db.reading() as session:
        leases = {lease.name.removeprefix("intake:"): lease for lease in session.scalars(select(Lease))}
        checkpoints = {c.mailbox: c for c in session.scalars(select(Checkpoint))}
        quarantined = dict(session.execute(select(RawMessage.mailbox, func.count()).where(
            RawMessage.status == "quarantined").group_by(RawMessage.mailbox)).all())
        queues = session.execute(select(
            Ticket.queue, func.count(),
            func.min(Ticket.first_response_due).filter(Ticket.first_responded_at.is_(None)),
            func.min(Ticket.resolution_due).filter(Ticket.status == "open"),
        ).where(Ticket.status.in_(("open", "pending"))).group_by(Ticket.queue).order_by(Ticket.queue)).all()
        failed = session.execute(select(Outbox.id, Outbox.ticket_id, Outbox.purpose, Outbox.last_error).where(
            Outbox.status == "failed").order_by(Outbox.id.desc()).limit(10)).all()
    mailboxes = []
    for mailbox in app.config.mailboxes:
        lease, checkpoint = leases.get(mailbox.name), checkpoints.get(mailbox.name)
        held = lease is not None and lease.expires_at > now
        check = live.get(f"mailbox:{mailbox.name}", {}) if live else {}
        mailboxes.append({
            "name": mailbox.name, "lease_holder": lease.holder if held and lease else None,
            "uidvalidity": checkpoint.uidvalidity if checkpoint else None,
            "last_uid": checkpoint.last_uid if checkpoint else None,
            "last_stored": checkpoint.updated_at if checkpoint else None,
            "last_sync": datetime.fromtimestamp(check["last_sync"]).astimezone() if check.get("last_sync") else None,
            "error": check.get("last_error"), "quarantined": quarantined.get(mailbox.name, 0)})
    backlog = ledger_backlog(app, now)
    report = {
        "at": now, "daemon": _daemon_state(app, live), "mailboxes": mailboxes, "backlog": backlog,
        "failed_replies": [{"outbox_id": i, "ticket": t, "purpose": p, "error": (e or "")[:200]}
                           for i, t, p, e in failed],
        "queues": [{"queue": q, "open": n, "first_response_due": fr, "resolution_due": rd}
                   for q, n, fr, rd in queues],
    }
    report["problems"] = _problems(report, live)
    return report


def _live_checks(app: App) -> dict[str, dict[str, Any]] | None:
    """The running daemon's own view, from its /readyz, when it has an endpoint and answers."""
    if app.config.http_listen is None:
        return None
    host, port = app.config.http_listen
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=2) as response:
            body = response.read()
    except urllib.error.HTTPError as error:  # 503: still a JSON answer
        body = error.read()
    except OSError:
        return None
    try:
        return dict(json.loads(body)["checks"])
    except (ValueError, KeyError, TypeError):
        return None


def _daemon_state(app: App, live: dict[str, dict[str, Any]] | None) -> str:
    if app.config.http_listen is None:
        return "unknown (no [http] listen configured)"
    if live is None:
        return "not answering on its HTTP endpoint"
    failing = [name for name, check in live.items() if not check.get("ok")]
    return "ready" if not failing else "not ready: " + ", ".join(failing)


def _problems(report: dict[str, Any], live: dict[str, dict[str, Any]] | None) -> list[str]:
    problems = [f"mailbox {m['name']}: {m['error']}" for m in report["mailboxes"] if m["error"]]
    problems += [f"mailbox {m['name']}: no daemon holds its lease" for m in report["mailboxes"]
                 if m["lease_holder"] is None]
    if report["backlog"]["quarantined"]:
        problems.append(f"{report['backlog']['quarantined']} mails in quarantine (supportd quarantine list)")
    if report["backlog"]["failed_replies"]:
        problems.append(f"{report['backlog']['failed_replies']} replies failed after their retries")
    if live is not None:
        problems += [f"{name}: {check.get('detail')}" for name, check in live.items()
                     if not check.get("ok") and not name.startswith("mailbox:")]
    return problems


def _when(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%a %d %b %H:%M") if moment else "–"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}min" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def format_status(report: dict[str, Any], zone: ZoneInfo) -> str:
    backlog = report["backlog"]
    lines = [f"supportd status at {_when(report['at'], zone)} ({zone.key}); daemon: {report['daemon']}", "",
             f"{'mailbox':<14} {'lease holder':<34} {'UIDVALIDITY':>11} {'last UID':>9} {'last stored':<17} "
             f"{'last sync':<17} {'quar.':>5}  error"]
    for m in report["mailboxes"]:
        lines.append(f"{m['name']:<14} {(m['lease_holder'] or 'none (not served)'):<34} "
                     f"{m['uidvalidity'] or '–':>11} {m['last_uid'] if m['last_uid'] is not None else '–':>9} "
                     f"{_when(m['last_stored'], zone):<17} {_when(m['last_sync'], zone):<17} "
                     f"{m['quarantined']:>5}  {m['error'] or ''}")
    lines += ["", f"backlog: {backlog['pending_mails']} mails pending (oldest {_age(backlog['oldest_mail_seconds'])}), "
              f"{backlog['pending_replies']} replies pending (oldest {_age(backlog['oldest_reply_seconds'])}); "
              f"{backlog['quarantined']} quarantined; {backlog['failed_replies']} replies failed"]
    for failed in report["failed_replies"]:
        lines.append(f"  failed reply {failed['outbox_id']} ({failed['purpose']}, ticket #{failed['ticket']}): "
                     f"{failed['error']}")
    lines += ["", f"{'queue':<12} {'open':>5}  {'next first reply due':<21} {'next resolution due':<21}"]
    for q in report["queues"]:
        lines.append(f"{q['queue']:<12} {q['open']:>5}  {_when(q['first_response_due'], zone):<21} "
                     f"{_when(q['resolution_due'], zone):<21}")
    if not report["queues"]:
        lines.append("(no open tickets)")
    lines += [""] + ([f"PROBLEM: {p}" for p in report["problems"]] or ["no problems"])
    return "\n".join(lines)


# --- sla report: the at-risk view -----------------------------------------------------------------

def waiting_tickets(app: App) -> list[Waiting]:
    """Open tickets (waiting on the desk, not on the customer) with their next due time."""
    due = case((Ticket.first_responded_at.is_(None), Ticket.first_response_due), else_=Ticket.resolution_due)
    with app.db.reading() as session:
        rows = session.execute(select(Ticket.queue, due, Ticket.sla_calendar).where(
            Ticket.status == "open", due.is_not(None))).all()
    return [Waiting(queue, moment, calendar) for queue, moment, calendar in rows]


# --- tickets show ----------------------------------------------------------------------------------

def cmd_ticket_show(args: argparse.Namespace, open_app: OpenApp) -> int:
    app = open_app(args)
    try:
        trail = audit_trail(app, args.ticket)
    finally:
        app.close()
    if trail is None:
        print(f"supportd: no ticket #{args.ticket}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(trail, ensure_ascii=False, default=str))
    else:
        print(format_trail(trail, ZoneInfo(app.config.calendar.time_zone)))
    return 0


def audit_trail(app: App, ticket_id: int) -> dict[str, Any] | None:
    """The ticket and everything that happened to it, merged from messages, outbox rows and events."""
    with app.db.reading() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            return None
        messages = list(session.scalars(select(TicketMessage).where(TicketMessage.ticket_id == ticket_id)))
        outbox = {row.message_id: row for row in session.scalars(select(Outbox).where(Outbox.ticket_id == ticket_id))}
        events = list(session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)))
        raws = {raw.id: raw for raw in session.scalars(select(RawMessage).where(
            RawMessage.id.in_([m.raw_message_id for m in messages if m.raw_message_id])))}
        entries = [_message_entry(m, outbox.get(m.message_id), raws.get(m.raw_message_id or 0)) for m in messages]
        entries += [{"at": e.at, "order": 1, "id": e.id, "kind": e.kind, "actor": e.actor, "detail": e.detail}
                    for e in events]
        header = {
            "id": ticket.id, "queue": ticket.queue, "priority": ticket.priority, "status": ticket.status,
            "customer": ticket.customer_email, "verified": ticket.verified, "subject": ticket.subject,
            "language": ticket.language, "created_at": ticket.created_at,
            "first_response_due": ticket.first_response_due, "first_responded_at": ticket.first_responded_at,
            "resolution_due": ticket.resolution_due, "closed_at": ticket.closed_at,
            "identifiers": ticket.identifiers}
    entries.sort(key=lambda e: (e["at"], e["order"], e["id"]))
    for entry in entries:
        del entry["order"]
    return {"ticket": header, "trail": entries}


def _message_entry(message: TicketMessage, outbox: Outbox | None, raw: RawMessage | None) -> dict[str, Any]:
    detail: dict[str, Any] = {"message_id": message.message_id, "from": message.from_address,
                              "subject": message.subject, "in_reply_to": message.in_reply_to,
                              "attachments": len(message.attachments)}
    if raw is not None:
        detail.update(mailbox=raw.mailbox, uid=raw.uid, raw_id=raw.id)
    if outbox is not None:
        detail.update(to=outbox.to_address, purpose=outbox.purpose, status=outbox.status, attempts=outbox.attempts,
                      sent_at=outbox.sent_at, last_error=outbox.last_error)
    return {"at": message.created_at, "order": 0, "id": message.id, "kind": f"mail_{message.direction}",
            "actor": message.from_address, "detail": {"kind": message.kind, **detail}}


def format_trail(trail: dict[str, Any], zone: ZoneInfo) -> str:
    t = trail["ticket"]
    lines = [f"ticket #{t['id']}  queue {t['queue']}  priority {t['priority']}  status {t['status']}  "
             f"customer {t['customer']} ({t['verified']})",
             f"subject: {t['subject']}",
             f"created {_when(t['created_at'], zone)}; first reply due {_when(t['first_response_due'], zone)}"
             f" (answered {_when(t['first_responded_at'], zone)}); resolution due {_when(t['resolution_due'], zone)}"
             f"  [{zone.key}]", ""]
    for entry in trail["trail"]:
        at = entry["at"].astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        detail = "  ".join(f"{k}={_short(v)}" for k, v in entry["detail"].items() if v not in (None, "", [], {}))
        lines.append(f"{at}  {entry['kind']:<16} {entry['actor']:<28} {detail}")
    return "\n".join(lines)


def _short(value: object) -> str:
    text = value.isoformat() if isinstance(value, datetime) else (
        json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (dict, list)) else str(value))
    return text if len(text) <= 160 else text[:157] + "…"
