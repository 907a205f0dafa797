"""`supportd` — the command line. Every user mistake ends in one line on stderr and exit code 2.

The parser is here; the commands are in one module per group (serve, setup, config, tickets, ops, repair,
reports, spam, retention, demo), and what they share in common.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy.exc import OperationalError

from mailer.cli import ops as cli_ops
from mailer.cli.common import EXIT_FAILED, EXIT_USAGE, UserError, open_app
from mailer.cli.config import register as register_config_commands
from mailer.cli.demo import cmd_demo
from mailer.cli.repair import cmd_outbox_list, cmd_outbox_retry, cmd_quarantine_list, cmd_quarantine_retry
from mailer.cli.reports import cmd_sla_report
from mailer.cli.retention import register as register_retention_commands
from mailer.cli.serve import cmd_lmtp, cmd_run, cmd_worker
from mailer.cli.setup import (
    cmd_accounts_import,
    cmd_check_config,
    cmd_db_upgrade,
    cmd_storage_new_key,
    cmd_storage_rotate,
)
from mailer.cli.spam import register as register_spam_commands
from mailer.cli.tickets import cmd_tickets_list
from mailer.config import ConfigError
from mailer.runtime import logs


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
    cli_ops.register(sub, tickets, command, open_app)

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
    register_spam_commands(sub, command, open_app)
    register_retention_commands(sub, command, open_app)
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
