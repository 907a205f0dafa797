"""`supportd tickets list` (`tickets show` is in mailer/cli/ops.py with `status`)."""

from __future__ import annotations

import argparse
import json
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from mailer.cli.common import EXIT_OK, open_app
from mailer.ledger.listing import format_ticket_table, ticket_json


def cmd_tickets_list(args: argparse.Namespace) -> int:
    from mailer.ledger.db import Ticket, TicketMessage

    app = open_app(args)
    with app.db.reading() as session:
        counts = dict(session.execute(select(TicketMessage.ticket_id, func.count()).where(
            TicketMessage.direction == "in").group_by(TicketMessage.ticket_id)).all())
        query = select(Ticket).order_by(Ticket.id)
        if args.status:
            query = query.where(Ticket.status == args.status)
        tickets = list(session.scalars(query))
        rows = [ticket_json(t, counts.get(t.id, 0)) for t in tickets]
    app.close()
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        print(format_ticket_table(rows, ZoneInfo(app.config.calendar.time_zone)))
    return EXIT_OK
