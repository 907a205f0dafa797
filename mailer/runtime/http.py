"""The operator's HTTP endpoint (`[http] listen`): /metrics, /healthz and /readyz.

A small threaded server from the standard library, in a daemon thread of `supportd run`, `lmtp` and
`worker`. It reads the ledger and the process's health state; it never touches the work itself.
/healthz and /readyz answer JSON naming each check, with 200 when all pass and 503 otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST

from mailer.config import ConfigError
from mailer.runtime.health import HEALTH, Check
from mailer.runtime.metrics import exposition

if TYPE_CHECKING:
    from mailer.app import App

log = logging.getLogger(__name__)


class Endpoint:
    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        handler = type("Handler", (_Handler,), {"endpoint": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> Endpoint:
        self.thread.start()
        log.info("HTTP endpoint on http://%s:%d (/metrics, /healthz, /readyz)", *self.server.server_address[:2])
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def health(self) -> dict[str, Check]:
        return HEALTH.liveness()

    def readiness(self) -> dict[str, Check]:
        return {**HEALTH.liveness(), **HEALTH.readiness(self.app.db, self.app.config.broker.url),
                "connections": connections_check(self.app)}


class _Handler(BaseHTTPRequestHandler):
    endpoint: Endpoint
    server_version = "supportd"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, exposition(self.endpoint.app))
        elif path == "/healthz":
            self._checks(self.endpoint.health())
        elif path == "/readyz":
            self._checks(self.endpoint.readiness())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz or /readyz\n")

    def _checks(self, checks: dict[str, Check]) -> None:
        ok = all(check.ok for check in checks.values())
        body = {"status": "ok" if ok else "failing", "checks": {name: c.to_json() for name, c in checks.items()}}
        self._send(200 if ok else 503, "application/json", json.dumps(body, indent=1).encode() + b"\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes every few seconds: not worth a line
        log.debug("%s " + format, self.address_string(), *args)


def connections_check(app: App) -> Check:
    """What the operator must fix on a connection (a certificate, a revoked token), as intake and SMTP saw it."""
    problems = app.links.problems()
    if problems:
        return Check(False, "; ".join(f"{endpoint}: {reason}" for endpoint, reason in sorted(problems.items())))
    return Check(True, "no sign-in or certificate problems")


def serve(app: App) -> Endpoint | None:
    """Start the endpoint if `[http] listen` is configured; a port in use is a config error, said in one line."""
    listen = app.config.http_listen
    if listen is None:
        return None
    try:
        endpoint = Endpoint(app, *listen)
    except OSError as exc:
        raise ConfigError(app.config.source, "http.listen", f"cannot listen on {listen[0]}:{listen[1]}: "
                          f"{exc.strerror or exc}") from None
    return endpoint.start()
