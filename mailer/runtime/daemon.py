"""The long-running daemon: intake loops, worker threads and the reconciler, stopped gracefully.

`run()` serves until SIGTERM/SIGINT; `request_reload()` (SIGHUP) switches to the config file as it is
now between batches, or keeps the running one if the new one is refused. `run_once()` takes what the
mailboxes hold now, waits until every resulting reply is sent, marks the mails on the server, and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from mailer.app import App
from mailer.ledger.db import Outbox, RawMessage, utcnow
from mailer.runtime import lease, metrics, pool, reconcile
from mailer.runtime.reload import ReloadRefused, reloaded, retire
from mailer.runtime.service import Service
from mailer.runtime.workers import Workers
from mailer.stages.escalate import escalate, recompute_if_changed
from mailer.transport.intake import NETWORK_ERRORS, MailboxIntake
from mailer.transport.tls import LinkError

log = logging.getLogger(__name__)

TICK = 1.0  # how often the main loop looks for a reload request, a takeover or a broker back
DRAIN_CHECK, DRAIN_SETTLE = 1.0, 0.05


class DaemonError(Exception):
    """A condition that stops the daemon with a message for the operator, not a traceback."""


@dataclass(frozen=True)
class Backlog:
    mails: int
    replies: int
    last_error: str | None = None

    @property
    def empty(self) -> bool:
        return self.mails == 0 and self.replies == 0


class Daemon:
    def __init__(self, app: App) -> None:
        self.app = app
        self.workers = Workers(app)
        self.holder = lease.new_holder()
        self.stop_event = threading.Event()
        self._reload_requested = False
        self._recheck = False  # set on taking a lease over: the previous holder's work is ours now
        self._retired: list[App] = []
        self.intakes = [MailboxIntake(app.db, mb, app.config.max_message_bytes, self.workers.enqueue_process,
                                      app.sealer, app.links) for mb in app.config.mailboxes]

    # --- shared start and stop -------------------------------------------------------------------

    def _start(self) -> None:
        recompute_if_changed(self.app)
        _ = self.app.help_index  # index the knowledge base now, not on the first mail
        if self.app.cpu is None:  # `supportd run` started it before anything else
            self.app.cpu = pool.start_for(self.app.config)  # every core parses; this one writes and sends
        self.workers.start(self.app.config.broker.worker_threads)
        # An embedded broker's queue died with the previous process: everything unfinished is ours again.
        self._enqueue(reconcile.at_start(self.app, reclaim_all_sending=self.app.config.broker.embedded))

    @property
    def reconcile_every(self) -> float:
        """Also how often the SLA check runs."""
        return self.app.config.broker.reconcile_interval

    @property
    def settled_for(self) -> timedelta:
        return timedelta(seconds=2 * self.reconcile_every)

    def _reconcile(self, settled_for: timedelta) -> None:
        self._enqueue(reconcile.overdue(self.app, settled_for=settled_for), recovered=True)

    def _enqueue(self, work: reconcile.Unfinished, *, recovered: bool = False) -> None:
        queued = self.workers.enqueue_process(work.raw_ids, recovered=recovered)
        self.workers.enqueue_send(work.outbox_ids)
        if queued or work.outbox_ids:
            log.info("re-enqueuing %d mails and %d replies from the ledger", queued, len(work.outbox_ids))

    def _shutdown(self) -> None:
        self.workers.stop()
        for intake in self.intakes:
            try:
                lease.release(self.app.db, _lease_name(intake), self.holder)
            except SQLAlchemyError as exc:  # the lease lapses by itself
                log.warning("could not release the lease of %s (%s)", intake.config.name, type(exc).__name__)
        for old in self._retired:
            retire(old, self.app)
        self.app.close()

    def backlog(self) -> Backlog:
        with self.app.db.reading() as session:
            mails = session.scalar(select(func.count()).where(RawMessage.status == "pending")) or 0
            replies = session.scalar(select(func.count()).where(Outbox.status.in_(("pending", "sending")))) or 0
            last_error = None if not replies else session.scalar(select(Outbox.last_error).where(
                Outbox.status.in_(("pending", "sending")), Outbox.last_error.is_not(None)).limit(1))
        return Backlog(mails, replies, last_error)

    # --- once ------------------------------------------------------------------------------------

    def run_once(self) -> Backlog:
        """Process what is in the mailboxes now; returns the backlog left (empty on success)."""
        self._start()
        try:
            clients = {}
            for intake in self.intakes:
                if not lease.acquire(self.app.db, _lease_name(intake), self.holder):
                    raise DaemonError(f"mailbox {intake.config.name!r} is served by another running daemon")
                try:
                    clients[intake.config.name] = client = intake.connect()
                    intake.sync(client)
                except LinkError as exc:
                    raise DaemonError(str(exc)) from None
                except NETWORK_ERRORS as exc:
                    raise DaemonError(f"mailbox {intake.config.name!r}: {exc}") from None
            backlog = self.wait_until_drained(self.app.config.once_timeout)
            if backlog.empty:  # alerts that became due, sent before leaving
                self.workers.enqueue_send(escalate(self.app, utcnow()))
                backlog = self.wait_until_drained(self.app.config.once_timeout)
            for intake in self.intakes:
                client = clients[intake.config.name]
                try:
                    intake.mark_done(client)
                    client.logout()
                except NETWORK_ERRORS as exc:
                    log.warning("%s: could not mark processed mails (%s); they are marked next run",
                                intake.config.name, exc)
            return backlog
        finally:
            self._shutdown()

    def wait_until_drained(self, timeout: float) -> Backlog:
        """Look at the backlog when a batch was done here (or once a second, for workers elsewhere)."""
        deadline = time.monotonic() + timeout
        next_reconcile = time.monotonic() + self.reconcile_every
        while True:
            self.workers.progress.clear()
            backlog = self.backlog()
            if backlog.empty or time.monotonic() > deadline:
                return backlog
            if "smtp" in self.app.links.problems():  # waiting cannot fix a certificate or a revoked grant
                raise DaemonError(f"smtp: {self.app.links.problems()['smtp']}")
            if time.monotonic() > next_reconcile:
                self._reconcile(settled_for=self.settled_for)
                next_reconcile = time.monotonic() + self.reconcile_every
            self.workers.progress.wait(DRAIN_CHECK)
            time.sleep(DRAIN_SETTLE)  # let a few batches finish before counting again

    # --- forever ---------------------------------------------------------------------------------

    def run(self) -> None:
        service = Service(self.app, self.workers, self.holder if self.intakes else None, self.reconcile_every)
        self._start()
        listener = None
        if self.app.config.lmtp_listen:
            host, port = self.app.config.lmtp_listen
            from mailer.transport.lmtp import start_listener  # aiosmtpd and asyncio: only with [lmtp]

            listener = start_listener(self.app, host, port, self.workers.enqueue_process)
        threads = [threading.Thread(target=self._serve_mailbox, args=(intake,), name=f"intake-{intake.config.name}",
                                    daemon=True) for intake in self.intakes]
        for thread in threads:
            thread.start()
        log.info("supportd running: %d mailboxes, broker %s", len(self.intakes),
                 "embedded" if self.app.config.broker.embedded else self.app.config.broker.url.split("@")[-1])
        service.ready()
        next_reconcile = time.monotonic() + self.reconcile_every
        try:
            while not self.stop_event.wait(TICK):
                if self._reload_requested:
                    self._reload_requested = False
                    self.reload()
                # Work that may have been lost (a broker back after an outage, a lease taken over from a
                # dead daemon) is re-derived now, not after it has settled.
                urgent = self.workers.broker_down or self._recheck
                if urgent or time.monotonic() >= next_reconcile:
                    self._recheck = False
                    self._periodic(timedelta(0) if urgent else self.settled_for)
                    next_reconcile = time.monotonic() + self.reconcile_every
                service.beat()
        finally:
            service.stop()
            log.info("stopping: finishing work in hand")
            if listener is not None:
                listener.stop()
            for thread in threads:
                thread.join(timeout=30)
            self._shutdown()

    def _periodic(self, settled_for: timedelta) -> None:
        try:
            self._reconcile(settled_for=settled_for)
        except SQLAlchemyError as exc:
            log.warning("reconciler: database unavailable (%s); trying again later", type(exc).__name__)
            return
        self.workers.check_sla()

    def stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        """From a signal handler: only a flag, the main loop does the work."""
        self._reload_requested = True

    def reload(self) -> bool:
        """Switch to the config file as it is now; False (and the running config kept) if it is refused."""
        try:
            new = reloaded(self.app)
        except ReloadRefused as exc:
            log.error("reload refused, the running configuration stays: %s", exc)
            return False
        # One assignment each: a batch that started keeps the App it started with, the next takes this one.
        old, self.app = self.app, new
        self.workers.app = new
        self._retired.append(old)
        try:
            recompute_if_changed(new)
        except SQLAlchemyError as exc:
            log.warning("due dates not recomputed after reload (%s); they are at the next start",
                        type(exc).__name__)
        log.info("configuration reloaded from %s", new.config.source)
        return True

    def _serve_mailbox(self, intake: MailboxIntake) -> None:
        renew = lease.LeaseKeeper(self.app.db, _lease_name(intake), self.holder, on_acquired=self._taken_over)
        while not self.stop_event.is_set():
            if renew():
                intake.run(self.stop_event, renew)
            else:
                metrics.mailbox_standby(intake.config.name, lease.LEASE_TTL.total_seconds())
                self.stop_event.wait(lease.STANDBY_POLL)  # hot standby

    def _taken_over(self) -> None:
        self._recheck = True


def _lease_name(intake: MailboxIntake) -> str:
    return f"intake:{intake.config.name}"
