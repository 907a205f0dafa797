"""Push delivery: an LMTP listener, so an MTA such as Postfix hands mail to supportd directly.

A mail is answered 250 (once per recipient, as LMTP wants) only after its raw row is committed, and 451
if that fails, so the MTA keeps it and tries again: nothing is lost between the two. Behind the listener
is the same pipeline as behind IMAP intake. Rows use the mailbox name "lmtp" and a running number as
UID; there is nothing to mark on a server afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from sqlalchemy import func, select

from mailer.app import App
from mailer.ledger.db import RawMessage
from mailer.runtime import metrics
from mailer.transport.intake import insert_raw_rows, raw_row

log = logging.getLogger(__name__)
MAILBOX = "lmtp"


class LmtpHandler:
    def __init__(self, app: App, enqueue: Any) -> None:
        self.app, self.enqueue = app, enqueue

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        count = max(len(envelope.rcpt_tos), 1)
        if len(raw) > self.app.config.max_message_bytes:
            return "\r\n".join(["552 5.3.4 message too large"] * count)
        try:
            raw_id = await asyncio.get_running_loop().run_in_executor(None, self._store, raw)
        except Exception as exc:  # the MTA keeps the mail and tries again later
            log.warning("lmtp: could not store a mail (%s)", exc)
            return "\r\n".join(["451 4.3.0 not stored, try again later"] * count)
        metrics.mail_pushed(MAILBOX)
        self.enqueue([raw_id])
        return "\r\n".join([f"250 2.0.0 stored as {raw_id}"] * count)

    def _store(self, raw: bytes) -> int:
        with self.app.db.session() as session:
            uid = (session.scalar(select(func.max(RawMessage.uid)).where(RawMessage.mailbox == MAILBOX)) or 0) + 1
            row = raw_row(MAILBOX, uid, raw, self.app.sealer)
            row.server_state = "marked"  # no IMAP server to mark it on
            insert_raw_rows(session, [row])
            return row.id


class LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


def start_listener(app: App, host: str, port: int, enqueue: Any) -> LmtpController:
    controller = LmtpController(LmtpHandler(app, enqueue), hostname=host, port=port, enable_SMTPUTF8=True,
                                data_size_limit=app.config.max_message_bytes + 1024 * 1024)
    controller.start()
    log.info("LMTP listening on %s:%d", host, port)
    return controller
