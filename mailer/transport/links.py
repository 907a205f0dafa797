"""What is wrong, right now, with each connection to the outside (mailboxes and the SMTP relay).

Intake and SMTP report here when they cannot sign in or verify a server (a revoked token, a wrong
certificate) and clear the entry once a connection works again, so a health check can answer "not
ready" with the reason instead of the operator reading logs.
"""

from __future__ import annotations

import threading


class Links:
    def __init__(self) -> None:
        self._problems: dict[str, str] = {}
        self._lock = threading.Lock()

    def failed(self, endpoint: str, reason: str) -> None:
        with self._lock:
            self._problems[endpoint] = reason

    def ok(self, endpoint: str) -> None:
        with self._lock:
            self._problems.pop(endpoint, None)

    def problems(self) -> dict[str, str]:
        """Endpoint name → one-line reason, for every endpoint that is failing now."""
        with self._lock:
            return dict(self._problems)

    @property
    def healthy(self) -> bool:
        return not self.problems()
