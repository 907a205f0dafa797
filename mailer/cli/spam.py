"""`supportd spam list|release`: what was held as spam, and putting a mail back as normal mail."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailer.app import App
    from mailer.stages.spam import HeldMail

OpenApp = Callable[[argparse.Namespace], "App"]
Command = Callable[..., argparse.ArgumentParser]


def register(sub: argparse._SubParsersAction, command: Command, open_app: OpenApp) -> None:
    """Add the `spam` commands; `command` is the CLI's own sub-command factory."""
    spam = sub.add_parser("spam", help="mails held as spam or as forged").add_subparsers(dest="sub", required=True)
    listing = command("list", partial(cmd_spam_list, open_app), "list mails held as spam, with the reason",
                      parent=spam)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--released", action="store_true", help="also list mails released since")
    listing.add_argument("--limit", type=int, default=200, metavar="N", help="the newest N (default 200; 0: all)")
    release = command("release", partial(cmd_spam_release, open_app),
                      "process held mails again as normal mail (the spam verdict is skipped for them)", parent=spam)
    release.add_argument("ids", nargs="+", type=int, metavar="ID")


def cmd_spam_list(open_app: OpenApp, args: argparse.Namespace) -> int:
    from mailer.stages.spam import held

    app = open_app(args)
    rows, count = held(app.db, include_released=args.released, limit=args.limit or None)
    app.close()
    for row in rows:
        print(json.dumps(_as_json(row), ensure_ascii=False) if args.json else _as_line(row))
    if not args.json:
        print(f"{count} held as spam" + (f", the newest {len(rows)} shown" if len(rows) < count else ""))
    return 0


def cmd_spam_release(open_app: OpenApp, args: argparse.Namespace) -> int:
    from mailer.stages.spam import release

    app = open_app(args)
    done, not_held = release(app.db, args.ids)
    app.close()
    print(f"{len(done)} mails released: processed again as normal mail by the running daemon or the next "
          "`supportd run`")
    if not_held:
        print(f"supportd: not held as spam: {', '.join(map(str, not_held))}", file=sys.stderr)
        return 1
    return 0


def _as_json(row: HeldMail) -> dict[str, object]:
    return {"id": row.id, "mailbox": row.mailbox, "uid": row.uid, "received_at": row.received_at.isoformat(),
            "status": row.status, "ticket_id": row.ticket_id, **row.verdict}


def _as_line(row: HeldMail) -> str:
    verdict = row.verdict
    state = f"  released by {verdict.get('released_by')} → {row.status}" if verdict.get("released_at") else ""
    return (f"{row.id:>6}  {row.received_at:%Y-%m-%d %H:%M}  {row.mailbox}:{row.uid}  {verdict.get('kind', '?'):<6}"
            f"  {_printable(verdict.get('from'), 40):<40}  {_printable(verdict.get('subject'), 50):<50}  "
            f"{_printable(verdict.get('reason'), 200)}{state}")


def _printable(value: object, width: int) -> str:
    """Sender-written text made safe for a terminal: no control or escape characters, one line."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(value or ""))[:width]
