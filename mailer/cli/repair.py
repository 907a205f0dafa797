"""Mails that could not be processed or sent: `supportd quarantine list|retry`, `outbox list|retry`."""

from __future__ import annotations

import argparse

from sqlalchemy import select

from mailer.cli.common import EXIT_OK, UserError, open_app


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    from mailer.ledger.db import RawMessage

    app = open_app(args)
    with app.db.reading() as session:
        rows = session.execute(select(RawMessage.id, RawMessage.mailbox, RawMessage.uid, RawMessage.stage,
                                      RawMessage.error).where(RawMessage.status == "quarantined")
                               .order_by(RawMessage.id)).all()
    app.close()
    for row in rows:
        print(f"{row.id:>6}  {row.mailbox}:{row.uid}  stage={row.stage}  {row.error}")
    print(f"{len(rows)} quarantined")
    return EXIT_OK


def cmd_quarantine_retry(args: argparse.Namespace) -> int:
    """Put quarantined mails back to pending; the next `supportd run` (or the running daemon) takes them."""
    from sqlalchemy import update

    from mailer.ledger.db import RawMessage
    from mailer.runtime.progress import Progress

    if not args.all and not args.ids:
        raise UserError("give message ids (see `supportd quarantine list`) or --all")
    app = open_app(args)
    retryable = (RawMessage.status == "quarantined", RawMessage.stage != "intake")
    with app.db.reading() as session:
        ids = list(session.scalars(select(RawMessage.id).where(*retryable).order_by(RawMessage.id)))
    ids = ids if args.all else sorted(set(ids) & set(args.ids))
    count = 0
    with Progress("mails back in the queue", len(ids)) as shown:
        for start in range(0, len(ids), 500):  # one short transaction per chunk: the daemon keeps writing
            with app.db.session() as session:
                count += session.execute(update(RawMessage).where(*retryable, RawMessage.id.in_(
                    ids[start:start + 500])).values(status="pending", stage=None, error=None)).rowcount
            shown.advance(len(ids[start:start + 500]))
    app.close()
    print(f"{count} mails back in the queue")
    return EXIT_OK


def cmd_outbox_list(args: argparse.Namespace) -> int:
    from mailer.ledger.db import Outbox

    app = open_app(args)
    with app.db.reading() as session:
        rows = session.execute(select(Outbox.id, Outbox.ticket_id, Outbox.purpose, Outbox.to_address,
                                      Outbox.last_error).where(Outbox.status == "failed").order_by(Outbox.id)).all()
    app.close()
    for row in rows:
        print(f"{row.id:>6}  ticket={row.ticket_id}  {row.purpose}  to={row.to_address}  {row.last_error}")
    print(f"{len(rows)} failed")
    return EXIT_OK


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    """Compose again where composing failed and put failed mails back in the queue."""
    from mailer.transport.outbox import retry_failed

    if not args.all and not args.ids:
        raise UserError("give outbox ids (see `supportd outbox list`) or --all")
    app = open_app(args)
    report = retry_failed(app, None if args.all else list(args.ids))
    app.close()
    print(f"{report.requeued} mails back in the queue, {report.still_failed} still failing")
    return EXIT_OK
