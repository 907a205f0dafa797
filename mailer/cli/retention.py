"""`supportd purge`: apply `[retention]`. A dry run by default: it says what would go, and removes nothing."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from mailer.runtime.progress import Progress

if TYPE_CHECKING:
    from mailer.app import App
    from mailer.ledger.retention import PurgeReport

OpenApp = Callable[[argparse.Namespace], "App"]
Command = Callable[..., argparse.ArgumentParser]


def register(sub: argparse._SubParsersAction, command: Command, open_app: OpenApp) -> None:
    """Add the `purge` command; `command` is the CLI's own sub-command factory."""
    purge = command("purge", partial(cmd_purge, open_app),
                    "remove raw mail, attachment files and closed tickets past [retention] (dry run unless --apply)")
    purge.add_argument("--apply", action="store_true", help="remove; without it only count what would go")
    purge.add_argument("--batch-size", type=int, default=500, metavar="N", help="rows per transaction (default 500)")


def cmd_purge(open_app: OpenApp, args: argparse.Namespace) -> int:
    from mailer.ledger.db import utcnow
    from mailer.ledger.retention import purge

    app = open_app(args)
    retention = app.config.retention
    if (retention.raw_mail_days, retention.attachments_days, retention.closed_tickets_days) == (None, None, None):
        # Files no message ever referenced (stored for a mail that became no ticket) go all the same.
        print(f"{app.config.source}: no [retention] rule configured; everything is kept "
              "but attachment files no message references")
    shown = _KindProgress()
    try:
        report = purge(app.db, app.store, retention, utcnow(), apply=args.apply,
                       batch_size=max(1, args.batch_size), progress=shown)
    finally:
        shown.finish()
        app.close()
    print(summary(report))
    return 0


class _KindProgress:
    """One progress line per kind, on a terminal only (mailer.runtime.progress)."""

    def __init__(self) -> None:
        self.current: Progress | None = None

    def __call__(self, kind: str, count: int) -> None:
        label = f"purge: {kind}"
        if self.current is None or self.current.label != label:
            self.finish()
            self.current = Progress(label)
        self.current.advance(count - self.current.count)

    def finish(self) -> None:
        if self.current is not None:
            self.current.finish()
            self.current = None


def _day(moment: datetime | None) -> str:
    return f"older than {moment:%Y-%m-%d %H:%M} UTC" if moment else "no rule of its own"


def summary(report: PurgeReport) -> str:
    verb = "removed" if report.applied else "would be removed"
    cut = report.cutoffs
    lines = [
        "purge: " + ("applied" if report.applied else "dry run, nothing changed (run with --apply to remove)"),
        f"  raw mail:        {report.raw_mails:>8} {verb}   ({_day(cut['raw_mail'])})",
        f"  attachments:     {report.attachments:>8} {verb}   ({_day(cut['attachments'])}); "
        f"files {verb}: {report.files}" + (f" ({report.files_kept} kept: written within the hour, for a later run)"
                                           if report.files_kept else ""),
        f"  closed tickets:  {report.tickets:>8} {'anonymised' if report.applied else 'would be anonymised'}"
        f"   ({_day(cut['closed_tickets'])})",
    ]
    return "\n".join(lines)
