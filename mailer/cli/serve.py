"""`supportd run`, `lmtp` and `worker`: the long-running commands, with their signal handling."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from mailer.cli.common import EXIT_FAILED, EXIT_OK, UserError, load, open_app, warn

if TYPE_CHECKING:  # the CLI imports the heavy modules only for the command that runs
    from mailer.app import App
    from mailer.config import Config


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
    config = load(args)
    warn(config, logged=True)
    if not config.mailboxes and not (config.lmtp_listen and not args.once):
        raise UserError(f"{config.source}: mailboxes: no [[mailboxes]] (or [lmtp] listen) configured, "
                        "nothing to read")
    app = _open_with_pool(args, config)
    from mailer.runtime.daemon import Daemon, DaemonError

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


def _open_with_pool(args: argparse.Namespace, config: Config) -> App:
    """The App, with its parsing processes started before anything else.

    They take about a second to load the parsers and language models; started first, that second passes
    while this process imports the daemon, upgrades the database and signs in to its mailboxes."""
    from mailer.runtime.allocator import return_large_buffers
    from mailer.runtime.pool import start_for

    return_large_buffers()  # before the pool starts: its processes inherit the setting
    cpu = start_for(config)
    try:
        app = open_app(args)
    except BaseException:
        if cpu is not None:
            cpu.close()
        raise
    app.cpu = cpu
    return app


def cmd_lmtp(args: argparse.Namespace) -> int:
    """The daemon with the LMTP listener only: no IMAP intake, mail arrives pushed by the MTA."""
    from dataclasses import replace

    from mailer.runtime.daemon import Daemon

    app = open_app(args)
    warn(app.config, logged=True)
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

    from mailer.runtime.allocator import return_large_buffers
    from mailer.runtime.reload import reload_workers, retire
    from mailer.runtime.service import Service
    from mailer.runtime.workers import Workers

    return_large_buffers()
    app = open_app(args, upgrade=False)
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
