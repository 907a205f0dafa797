"""`supportd sla report`: met and breached first replies, waiting tickets, satisfaction; text, JSON, HTML."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from mailer.cli import ops as cli_ops
from mailer.cli.common import EXIT_OK, open_app
from sla import quality

if TYPE_CHECKING:  # the CLI imports the heavy modules only for the command that runs
    from mailer.app import App


def _feedback(app: App, since: datetime | None) -> tuple[list[quality.FeedbackRow], list[quality.FeedbackRow]]:
    """Ratings and review scores of tickets created since `since`, per queue and per specialist."""
    from mailer.ledger.db import Rating, Review, Ticket

    with app.db.reading() as session:
        rows = {}
        for model in (Rating, Review):
            value = model.rating if model is Rating else model.score
            query = select(model.queue, model.specialist, value).join(Ticket, Ticket.id == model.ticket_id)
            if since is not None:
                query = query.where(Ticket.created_at >= since)
            rows[model] = [quality.Feedback(*row) for row in session.execute(query)]
    return quality.build(rows[Rating], rows[Review])


def cmd_sla_report(args: argparse.Namespace) -> int:
    from mailer.ledger.db import Ticket, utcnow
    from sla import report
    from sla.calendar import parse_duration

    app = open_app(args)
    since = datetime.fromisoformat(args.since).replace(tzinfo=app.calendar.zone) if args.since else None
    with app.db.reading() as session:
        query = select(Ticket.queue, Ticket.priority, Ticket.created_at, Ticket.first_response_due,
                       Ticket.first_responded_at)
        if since is not None:
            query = query.where(Ticket.created_at >= since)
        rows = session.execute(query).all()
    times = [report.TicketTimes(*row) for row in rows]
    def target_hours(queue: str) -> float:
        policy = app.config.sla.policy_for(queue, "normal")
        calendar = app.calendars[policy.calendar]
        return calendar.to_timedelta(parse_duration(policy.first_response)).total_seconds() / 3600

    reports = report.build(times, lambda t: app.calendars[app.config.sla.policy_for(t.queue, t.priority).calendar],
                           utcnow(), target_hours)
    reports = report.with_waiting(reports, cli_ops.waiting_tickets(app), app.calendars, utcnow())
    satisfaction, specialists = _feedback(app, since)
    if args.json:
        csat = {row.name: row.to_json() for row in satisfaction}
        for item in reports:
            print(json.dumps({**item.to_json(), "csat": csat.get(item.queue)}, ensure_ascii=False))
        for person in specialists:
            print(json.dumps({"specialist": person.name, **person.to_json()}, ensure_ascii=False))
    else:
        print(report.text_table(reports) + "\n\n" + report.at_risk_table(reports)
              + quality.text_tables(satisfaction, specialists))
    if args.html:
        bins = [f"{lo}–{hi}h" if hi else f"{lo}h+" for lo, hi in report.BINS]
        page = app.renderer.env.get_template("report/sla.html.j2").render(
            reports=reports, bins=bins, desk_name=app.config.desk_name, at_risk_labels=report.AT_RISK_LABELS,
            satisfaction=satisfaction, specialists=specialists,
            period=f"since {args.since}" if args.since else "at any time",
            generated=utcnow().astimezone(app.calendar.zone).strftime("%Y-%m-%d %H:%M %Z"))
        Path(args.html).write_text(page, encoding="utf-8")
        print(f"written {args.html}", file=sys.stderr)
    app.close()
    return EXIT_OK
