"""systemd's notify protocol in a few lines: READY=1, STOPPING=1 and WATCHDOG=1 over $NOTIFY_SOCKET.

The watchdog is pinged only while the process's loops are turning (the same checks as /healthz), so a
stuck intake or reconciler gets the service restarted by systemd instead of sitting there silently.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send one notification; False when not started by systemd (no socket) or the send failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("systemd notify failed: %s", exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of WatchdogSec, as systemd recommends; None without a watchdog for this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000 / 2


class Watchdog:
    def __init__(self, alive: Callable[[], bool]) -> None:
        self.alive = alive
        self.interval = watchdog_interval()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> Watchdog:
        if self.interval is not None:
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            if self.alive():
                notify("WATCHDOG=1")
            else:
                log.error("a loop stopped turning: not pinging the systemd watchdog")

    def stop(self) -> None:
        self._stop.set()
