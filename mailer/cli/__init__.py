"""`supportd` — the command line. Every user mistake ends in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from mailer.cli import ops as cli_ops
from mailer.cli.config import register as register_config_commands
from mailer.cli.retention import register as register_retention_commands
from mailer.cli.spam import register as register_spam_commands
from mailer.config import Config, ConfigError, load_config
from mailer.runtime import logs, safety
from sla import quality

if TYPE_CHECKING:  # the CLI imports the heavy modules only for the command that runs
    from mailer.app import App
    from mailer.ledger.db import Ticket

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """A mistake the user can fix; printed without a traceback."""


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("SUPPORTD_CONFIG") or "supportd.toml")


def _load(args: argparse.Namespace) -> Config:
    return _with_drivers(load_config(_config_path(args)))


def _with_drivers(config: Config) -> Config:
    """Every command stops here, in one line, when the config needs a driver the install lacks."""
    missing = safety.missing_drivers(config)
    if missing:
        raise UserError(missing)
    return config


def _warn(config: Config, *, logged: bool = False) -> None:
    """check-config prints; a starting daemon logs (so a JSON log stays all JSON)."""
    for warning in safety.warnings(config):
        if logged:
            logging.getLogger("supportd").warning("%s", warning)
        else:
            print(f"supportd: warning: {warning}", file=sys.stderr)


def _app(args: argparse.Namespace, *, upgrade: bool = True) -> App:
    from mailer.app import App
    from mailer.ledger import migrate

    config = _load(args)
    if upgrade:
        migrate.upgrade(config.database_url)
    return App.from_config(config)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _with_drivers(load_config(args.file))
    _warn(config)
    if config.templates_dir:
        from templates import check_override

        for problem in check_override(config.templates_dir):
            print(f"supportd: {'error' if problem.error else 'warning'}: {problem}", file=sys.stderr)
    print(f"{args.file}: OK ({len(config.mailboxes)} mailboxes, {len(config.queues)} queues, "
          f"{len(config.rules)} rules, database {config.database_url.split('@')[-1]})")
    if config.dkim and not config.dkim.relay_signs:
        from mailer.transport.dkim import txt_record

        print(f"DKIM key OK; publish this record:\n{txt_record(config.dkim)}")
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from mailer.ledger import migrate

    config = _load(args)
    migrate.upgrade(config.database_url)
    print("database schema is current")
    return EXIT_OK


def cmd_accounts_import(args: argparse.Namespace) -> int:
    from mailer.ledger.accounts import ImportError_, import_accounts, terminal_progress

    app = _app(args)
    if app.config.accounts.source != "table":
        print(f'{app.config.source}: accounts.source: is "{app.config.accounts.source}": verification reads the '
              "live directory, not the table this import fills", file=sys.stderr)
    progress = terminal_progress(sys.stderr) if sys.stderr.isatty() else None
    try:
        report = import_accounts(app.db, Path(args.file), progress=progress)
    except ImportError_ as exc:
        raise UserError(str(exc)) from None
    finally:
        app.close()
        if progress is not None:
            print(file=sys.stderr)
    for example in report.examples:
        print(f"{args.file}: {example} (row skipped)", file=sys.stderr)
    print(report.summary())
    return EXIT_OK


def _on_signals(handler: Callable[[], None]) -> None:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("supportd").info("received %s", signal.Signals(signum).name)
        handler()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _on_reload(handler: Callable[[], None]) -> None:
    """SIGHUP (systemctl reload): the handler only notes the request; the main loop acts on it."""
    signal.signal(signal.SIGHUP, lambda _signum, _frame: handler())


def cmd_run(args: argparse.Namespace) -> int:
    from mailer.runtime.daemon import Daemon, DaemonError

    app = _app(args)
    _warn(app.config, logged=True)
    if not app.config.mailboxes and not (app.config.lmtp_listen and not args.once):
        raise UserError(f"{app.config.source}: mailboxes: no [[mailboxes]] (or [lmtp] listen) configured, "
                        "nothing to read")
    daemon = Daemon(app)
    if args.once:
        try:
            backlog = daemon.run_once()
        except DaemonError as exc:
            raise UserError(str(exc)) from None
        if not backlog.empty:
            print(f"supportd: gave up after {app.config.once_timeout:g}s with {backlog.mails} mails and "
                  f"{backlog.replies} replies unfinished (last error: {backlog.last_error})", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK
    _on_signals(daemon.stop)
    _on_reload(daemon.request_reload)
    daemon.run()
    return EXIT_OK


def cmd_lmtp(args: argparse.Namespace) -> int:
    """The daemon with the LMTP listener only: no IMAP intake, mail arrives pushed by the MTA."""
    from dataclasses import replace

    from mailer.runtime.daemon import Daemon

    app = _app(args)
    _warn(app.config, logged=True)
    listen = app.config.lmtp_listen
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        if not host or not port.isdigit():
            raise UserError(f'--listen must be host:port such as "127.0.0.1:2424"; got {args.listen!r}')
        listen = (host.strip("[]"), int(port))
    if listen is None:
        raise UserError(f"{app.config.source}: lmtp.listen: not configured; give --listen host:port")
    app.config = replace(app.config, mailboxes=(), lmtp_listen=listen)
    daemon = Daemon(app)
    _on_signals(daemon.stop)
    _on_reload(daemon.request_reload)
    daemon.run()
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    import threading

    from mailer.runtime.reload import reload_workers, retire
    from mailer.runtime.service import Service
    from mailer.runtime.workers import Workers

    app = _app(args, upgrade=False)
    if app.config.broker.embedded:
        raise UserError(f"{app.config.source}: broker.url: is \"embedded\"; `supportd worker` needs a Redis or "
                        "RabbitMQ URL (the embedded broker's workers run inside `supportd run`)")
    stop = threading.Event()
    _on_signals(stop.set)
    reload_requested = threading.Event()
    _on_reload(reload_requested.set)
    workers = Workers(app)
    service = Service(app, workers, None, main_every=30.0)
    workers.start(args.threads or app.config.broker.worker_threads or 4)
    logging.getLogger("supportd").info("worker running on %s", app.config.broker.url.split("@")[-1])
    service.ready()
    retired: list[App] = []
    while not stop.wait(1.0):
        if reload_requested.is_set():
            reload_requested.clear()
            retired += reload_workers(workers)
        service.beat()
    service.stop()
    workers.stop()
    for old in retired:
        retire(old, workers.app)
    workers.app.close()
    return EXIT_OK


def cmd_tickets_list(args: argparse.Namespace) -> int:
    from mailer.ledger.db import Ticket, TicketMessage

    app = _app(args)
    with app.db.reading() as session:
        counts = dict(session.execute(select(TicketMessage.ticket_id, func.count()).where(
            TicketMessage.direction == "in").group_by(TicketMessage.ticket_id)).all())
        query = select(Ticket).order_by(Ticket.id)
        if args.status:
            query = query.where(Ticket.status == args.status)
        tickets = list(session.scalars(query))
        rows = [_ticket_json(t, counts.get(t.id, 0)) for t in tickets]
    app.close()
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        print(format_ticket_table(rows, ZoneInfo(app.config.calendar.time_zone)))
    return EXIT_OK


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _ticket_json(ticket: Ticket, message_count: int) -> dict[str, object]:
    return {
        "id": ticket.id, "queue": ticket.queue, "priority": ticket.priority, "status": ticket.status,
        "customer_email": ticket.customer_email, "verified": ticket.verified, "subject": ticket.subject,
        "language": ticket.language, "message_count": message_count, "identifiers": ticket.identifiers,
        "created_at": _iso(ticket.created_at), "first_response_due": _iso(ticket.first_response_due),
        "resolution_due": _iso(ticket.resolution_due),
    }


def format_ticket_table(rows: Sequence[dict[str, object]], zone: ZoneInfo) -> str:
    """A table for people: due times in the desk's time zone."""
    header = f"{'#':>5}  {'queue':<9} {'priority':<8} {'verified':<12} {'msgs':>4}  {'first reply due':<17} subject"
    lines = [f"(times in {zone.key})", header, "-" * len(header)]
    for r in rows:
        due_at = r["first_response_due"]
        due = datetime.fromisoformat(str(due_at)).astimezone(zone).strftime("%a %d %b %H:%M") if due_at else ""
        lines.append(f"{r['id']:>5}  {r['queue']:<9} {r['priority']:<8} {r['verified']:<12} {r['message_count']:>4}"
                     f"  {due:<17} {str(r['subject'])[:60]}")
    return "\n".join(lines)


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    from mailer.ledger.db import RawMessage

    app = _app(args)
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
    app = _app(args)
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

    app = _app(args)
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
    app = _app(args)
    report = retry_failed(app, None if args.all else list(args.ids))
    app.close()
    print(f"{report.requeued} mails back in the queue, {report.still_failed} still failing")
    return EXIT_OK


def cmd_storage_new_key(args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return EXIT_OK


def cmd_storage_rotate(args: argparse.Namespace) -> int:
    """Re-encrypt raw mail and attachment files under the first key (or encrypt what was stored plain)."""
    from mailer.ledger.db import RawMessage
    from mailer.runtime.progress import Progress, progress

    app = _app(args)
    if not app.sealer.enabled:
        raise UserError(f"{app.config.source}: encryption.keys_env: not configured; nothing to rotate to")
    rows = files = 0
    with app.db.reading() as session:
        ids = list(session.scalars(select(RawMessage.id).where(RawMessage.purged_at.is_(None)).order_by(RawMessage.id)))
    with Progress("raw mails re-encrypted", len(ids)) as shown:
        for start in range(0, len(ids), 200):
            with app.db.session() as session:
                for raw in session.scalars(select(RawMessage).where(RawMessage.id.in_(ids[start:start + 200]))):
                    raw.raw = app.sealer.reseal(raw.raw)
                    rows += 1
            shown.advance(len(ids[start:start + 200]))
    for path in progress(app.store.paths(), "attachment files re-encrypted"):
        temporary = path.with_name(f".rotate-{path.name}")
        temporary.write_bytes(app.sealer.reseal(path.read_bytes()))
        temporary.replace(path)
        files += 1
    app.close()
    print(f"re-encrypted {rows} raw mails and {files} attachment files under the first key")
    return EXIT_OK


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

    app = _app(args)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from mailer.demo.run import run_demo

    return run_demo(keep=Path(args.keep) if args.keep else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supportd", description="Email support pipeline daemon.")
    parser.add_argument("--log-level", default=os.environ.get("SUPPORTD_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", choices=logs.FORMATS, default=os.environ.get("SUPPORTD_LOG_FORMAT"),
                        help="json (default when stderr is not a terminal) or text")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_text: str,
                parent: argparse._SubParsersAction = sub, config: bool = True) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        if config:
            p.add_argument("--config", "-c", help="config file (default $SUPPORTD_CONFIG or ./supportd.toml)")
        p.set_defaults(func=func)
        return p

    run = command("run", cmd_run, "run the daemon until SIGTERM/SIGINT")
    run.add_argument("--once", action="store_true", help="process what is in the mailboxes now, send replies, exit")
    lmtp = command("lmtp", cmd_lmtp, "run the daemon with only the LMTP listener (mail pushed by an MTA)")
    lmtp.add_argument("--listen", metavar="HOST:PORT", help="default: [lmtp] listen from the config")
    worker = command("worker", cmd_worker, "run broker workers only (Redis or RabbitMQ broker)")
    worker.add_argument("--threads", type=int, default=0)
    check = command("check-config", cmd_check_config, "validate a config file and exit", config=False)
    check.add_argument("file", type=Path)
    command("demo", cmd_demo, "run the whole pipeline on embedded servers with sample mails",
            config=False).add_argument("--keep", metavar="DIR", help="keep the database and files in DIR")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    command("upgrade", cmd_db_upgrade, "create or migrate the schema to the current version", parent=db)

    accounts = sub.add_parser("accounts", help="the account directory").add_subparsers(dest="sub", required=True)
    command("import", cmd_accounts_import, "load accounts from CSV (email,user_id,language,display_name)",
            parent=accounts).add_argument("file")

    tickets = sub.add_parser("tickets", help="tickets").add_subparsers(dest="sub", required=True)
    listing = command("list", cmd_tickets_list, "list tickets", parent=tickets)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--status", choices=["open", "pending", "closed"])
    cli_ops.register(sub, tickets, command, _app)

    sla = sub.add_parser("sla", help="service levels").add_subparsers(dest="sub", required=True)
    sla_report = command("report", cmd_sla_report, "met and breached first replies per queue", parent=sla)
    sla_report.add_argument("--since", metavar="YYYY-MM-DD", help="tickets created on or after this day")
    sla_report.add_argument("--json", action="store_true", help="one JSON object per queue and line")
    sla_report.add_argument("--html", metavar="FILE", help="also write an HTML page with charts")

    storage = sub.add_parser("storage", help="encryption at rest").add_subparsers(dest="sub", required=True)
    command("new-key", cmd_storage_new_key, "print a new encryption key", parent=storage, config=False)
    command("rotate", cmd_storage_rotate, "re-encrypt stored mail and files under the first key", parent=storage)

    quarantine = sub.add_parser("quarantine", help="mails that could not be processed").add_subparsers(
        dest="sub", required=True)
    command("list", cmd_quarantine_list, "list quarantined mails with stage and reason", parent=quarantine)
    retry = command("retry", cmd_quarantine_retry, "put quarantined mails back in the queue", parent=quarantine)
    retry.add_argument("ids", nargs="*", type=int)
    retry.add_argument("--all", action="store_true")

    outbox = sub.add_parser("outbox", help="mails that could not be sent").add_subparsers(dest="sub", required=True)
    command("list", cmd_outbox_list, "list failed outgoing mails with the reason", parent=outbox)
    resend = command("retry", cmd_outbox_retry, "compose again and re-send failed mails", parent=outbox)
    resend.add_argument("ids", nargs="*", type=int)
    resend.add_argument("--all", action="store_true")
    register_spam_commands(sub, command, _app)
    register_retention_commands(sub, command, _app)
    register_config_commands(sub, command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"supportd: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        print(f"supportd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OperationalError as exc:
        print(f"supportd: database: {str(exc.orig).strip().splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
