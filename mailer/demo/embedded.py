"""Servers that run inside this process: pymap's in-memory IMAP server and an aiosmtpd sink.

Used by `supportd demo`, the benchmark and the tests' fallback when Dovecot is not installed; both
listen on loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedImap:
    """pymap's dict backend on a private event loop in a thread; one user, in memory."""

    def __init__(self, user: str = "support", password: str = "secret", port: int | None = None) -> None:
        self.user, self.password = user, password
        self.host, self.port = "127.0.0.1", port or free_port()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="embedded-imap", daemon=True)

    @property
    def url(self) -> str:
        return f"imap://{self.user}:{self.password}@{self.host}:{self.port}/INBOX"

    def _args(self) -> argparse.Namespace:
        from pymap.backend.dict import DictBackend
        from pymap.imap import IMAPService

        parser = argparse.ArgumentParser()
        parser.add_argument("--debug", action="store_true")
        sub = parser.add_subparsers(dest="backend")
        DictBackend.add_subparser("dict", sub)
        IMAPService.add_arguments(parser)
        parser.set_defaults(skip_services=[], passlib_cfg=None)
        return parser.parse_args(["--host", self.host, "--port", str(self.port), "--no-tls", "dict",
                                  "--demo-user", self.user, "--demo-password", self.password])

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from pymap.backend.dict import DictBackend
        from pymap.imap import IMAPService

        self._loop, self._stopped = asyncio.get_running_loop(), asyncio.Event()
        backend, config = await DictBackend.init(self._args())
        config.apply_context()
        async with AsyncExitStack() as stack:
            await backend.start(stack)
            await IMAPService(backend, config).start(stack)
            self._ready.set()
            await self._stopped.wait()

    def start(self) -> EmbeddedImap:
        self._thread.start()
        if not self._ready.wait(15) or self._error:
            raise RuntimeError(f"embedded IMAP server did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop and self._stopped:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)  # e.g. SMTPUTF8

    @property
    def message(self) -> Message:
        return message_from_bytes(self.data)


@dataclass
class SinkHandler:
    """Accepts every mail and keeps it; `fail_next` answers the next N transactions with a 451."""

    delivered: list[Delivered] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return "451 4.3.0 try again later"
            self.delivered.append(Delivered(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content),
                                            list(envelope.mail_options or [])))
        return "250 2.0.0 OK"


class SmtpSink:
    """aiosmtpd's Controller with a handler that records what it receives."""

    def __init__(self, port: int | None = None, *, smtputf8: bool = False) -> None:
        self.handler = SinkHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port or free_port(),
                                     data_size_limit=100 * 1024 * 1024, enable_SMTPUTF8=smtputf8)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}"

    @property
    def delivered(self) -> list[Delivered]:
        with self.handler.lock:
            return list(self.handler.delivered)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
