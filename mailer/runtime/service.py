"""Running as a service: the HTTP endpoint, health registration and systemd notifications, started and
stopped together by `supportd run`, `lmtp` and `worker` (a few lines each)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailer.runtime import systemd
from mailer.runtime.health import HEALTH, Check
from mailer.runtime.http import Endpoint, serve
from mailer.transport.intake import MAX_BACKOFF

if TYPE_CHECKING:
    from mailer.app import App
    from mailer.config import MailboxConfig
    from mailer.runtime.workers import Workers

MAIN_LOOP = "main"


def sync_bound(mailbox: MailboxConfig) -> float:
    """How long a healthy intake may go without a successful sync: one wait, a slow fetch, one backoff."""
    wait = mailbox.idle_timeout if mailbox.idle else mailbox.poll_interval
    return wait + 2 * mailbox.timeout + MAX_BACKOFF


class Service:
    """Made before the work starts (a port in use stops the command cleanly); `ready()` once it runs."""

    def __init__(self, app: App, workers: Workers | None, holder: str | None, main_every: float) -> None:
        self.app, self.main_every = app, main_every
        HEALTH.reset()
        HEALTH.holder = holder
        if holder is not None:
            for mailbox in app.config.mailboxes:
                HEALTH.watch_mailbox(mailbox.name, sync_bound(mailbox))
        if workers is not None:
            HEALTH.watch("workers", lambda: workers_check(workers))
        self.beat()
        self.endpoint: Endpoint | None = serve(app)
        self.watchdog = systemd.Watchdog(lambda: all(c.ok for c in HEALTH.liveness().values()))

    def ready(self) -> None:
        self.watchdog.start()
        systemd.notify("READY=1")

    def beat(self) -> None:
        """The main loop turned; it promises the next turn within three of its periods."""
        HEALTH.beat(MAIN_LOOP, self.main_every * 3)

    def stop(self) -> None:
        systemd.notify("STOPPING=1")
        self.watchdog.stop()
        HEALTH.forget(MAIN_LOOP)
        if self.endpoint is not None:
            self.endpoint.stop()


def workers_check(workers: Workers) -> Check:
    threads = workers.threads()
    if not threads:
        return Check(True, "no worker threads in this process")
    dead = sum(not thread.is_alive() for thread in threads)
    if dead:
        return Check(False, f"{dead} of {len(threads)} worker threads died")
    return Check(True, f"{len(threads)} worker threads alive")
