"""Setting up: `check-config`, `db upgrade`, `accounts import`, and `storage new-key|rotate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import select

from mailer.cli.common import EXIT_OK, UserError, load, open_app, warn, with_drivers
from mailer.config import load_config


def cmd_check_config(args: argparse.Namespace) -> int:
    config = with_drivers(load_config(args.file))
    warn(config)
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

    config = load(args)
    migrate.upgrade(config.database_url)
    print("database schema is current")
    return EXIT_OK


def cmd_accounts_import(args: argparse.Namespace) -> int:
    from mailer.ledger.accounts import ImportError_, import_accounts, terminal_progress

    app = open_app(args)
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


def cmd_storage_new_key(args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return EXIT_OK


def cmd_storage_rotate(args: argparse.Namespace) -> int:
    """Re-encrypt raw mail and attachment files under the first key (or encrypt what was stored plain)."""
    from mailer.ledger.db import RawMessage
    from mailer.runtime.progress import Progress, progress

    app = open_app(args)
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
