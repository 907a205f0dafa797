"""Servers for the TLS and OAuth2 tests: a test CA, aiosmtpd with TLS and XOAUTH2, and an identity provider.

The identity provider is a small HTTP(S) server that does what Google's and Microsoft's token endpoints
do for supportd (refresh-token and client-credentials grants, OpenID discovery for msal) and what
Dovecot's oauth2 passdb asks of a provider (RFC 7662 token introspection). Tokens expire, can be
expired early (as a provider does when it rotates keys) and revoked with their grant.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from mailer.demo.embedded import SinkHandler, free_port


@dataclass
class LocalCA:
    """A CA made for the test run, a server certificate for 127.0.0.1 and the files both live in."""

    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path
    server_cert: trustme.LeafCert

    @classmethod
    def make(cls, directory: Path) -> LocalCA:
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        directory.mkdir(parents=True, exist_ok=True)
        paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
        ca.cert_pem.write_to_path(str(paths[0]))
        leaf.cert_chain_pems[0].write_to_path(str(paths[1]))
        for extra in leaf.cert_chain_pems[1:]:
            extra.write_to_path(str(paths[1]), append=True)
        leaf.private_key_pem.write_to_path(str(paths[2]))
        return cls(ca, *paths, leaf)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        return context


def smtp_server(handler: Any, *, implicit: ssl.SSLContext | None = None, starttls: ssl.SSLContext | None = None,
                oauth: IdentityProvider | None = None, port: int | None = None) -> Controller:
    """aiosmtpd on loopback: implicit TLS, or STARTTLS required before anything else, and XOAUTH2 if asked."""
    kwargs: dict[str, Any] = {}
    if implicit is not None:
        kwargs["ssl_context"] = implicit
    if starttls is not None:
        kwargs.update(tls_context=starttls, require_starttls=True)
    if oauth is not None:
        kwargs.update(auth_require_tls=False)  # loopback; OAuthSink refuses MAIL before AUTH itself
    return Controller(handler, hostname="127.0.0.1", port=port or free_port(), **kwargs)


@dataclass
class OAuthSink(SinkHandler):
    """Keeps mail like SinkHandler and signs in with XOAUTH2 against the identity provider."""

    provider: IdentityProvider | None = None
    tokens_seen: list[str] = field(default_factory=list)

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        return "250 OK"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            blob = base64.b64decode(args[1])
        else:
            answer = await server.challenge_auth("")
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            blob = answer
        fields = dict(part.split("=", 1) for part in blob.decode().split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        self.tokens_seen.append(token)
        assert self.provider is not None
        if self.provider.user_of(token) == fields.get("user"):
            return AuthResult(success=True, auth_data=fields["user"])
        # RFC 7628: the error as a challenge, the client answers with an empty line, then the failure.
        error = base64.b64encode(json.dumps({"status": "401", "schemes": "bearer"}).encode()).decode()
        await server.push(f"334 {error}")
        await server._reader.readline()
        return AuthResult(success=False, handled=False, message="535 5.7.8 token not accepted")


@dataclass
class Grant:
    user: str
    revoked: bool = False


class IdentityProvider:
    """Token endpoint, OpenID discovery, and token introspection, on one loopback port."""

    def __init__(self, lifetime: float = 3600) -> None:
        self.lifetime = lifetime
        self.clients: dict[str, str] = {}  # client id -> secret
        self.refresh_tokens: dict[str, Grant] = {}
        self.app_users: dict[str, str] = {}  # client id -> the mailbox its client-credentials tokens act for
        self.tokens: dict[str, tuple[Grant, float]] = {}  # access token -> grant, expiry
        self.lock = threading.Lock()
        self.servers: list[ThreadingHTTPServer] = []
        self.base = self._serve(None)

    def _serve(self, tls: ssl.SSLContext | None) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(self))
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return f"{'https' if tls else 'http'}://127.0.0.1:{server.server_port}"

    def serve_tls(self, context: ssl.SSLContext) -> str:
        """The same provider on a second port over HTTPS (msal accepts only https authorities)."""
        return self._serve(context)

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    # --- what a test arranges --------------------------------------------------------------------

    def register(self, client_id: str, secret: str) -> None:
        self.clients[client_id] = secret

    def grant(self, user: str) -> str:
        """A refresh token for `user`, as a consent screen would give."""
        token = "1//" + secrets.token_urlsafe(24)
        self.refresh_tokens[token] = Grant(user)
        return token

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.tokens = {t: (g, 0.0) for t, (g, _) in self.tokens.items()}

    def revoke(self, user: str) -> None:
        """The user (or an admin) withdrew consent: the grant and every token from it stop working."""
        with self.lock:
            for grant in [*self.refresh_tokens.values(), *(g for g, _ in self.tokens.values())]:
                if grant.user == user:
                    grant.revoked = True

    def user_of(self, token: str) -> str | None:
        with self.lock:
            grant, expires = self.tokens.get(token, (None, 0.0))
        return grant.user if grant and not grant.revoked and time.time() < expires else None

    # --- the endpoints ---------------------------------------------------------------------------

    def issue(self, grant: Grant) -> dict[str, Any]:
        token = "ya29." + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (grant, time.time() + self.lifetime)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}

    def token_endpoint(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.clients.get(form.get("client_id", "")) != form.get("client_secret"):
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        if form.get("grant_type") == "refresh_token":
            grant = self.refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None or grant.revoked:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            return 200, self.issue(grant)
        if form.get("grant_type") == "client_credentials":
            return 200, self.issue(Grant(self.app_users[form["client_id"]]))
        return 400, {"error": "unsupported_grant_type"}

    def discovery(self, base: str, tenant: str) -> dict[str, Any]:
        root = f"{base}/{tenant}"
        return {"issuer": f"{root}/v2.0", "token_endpoint": f"{root}/oauth2/v2.0/token",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize"}

    def introspect(self, form: dict[str, str]) -> dict[str, Any]:
        user = self.user_of(form.get("token", ""))
        return {"active": True, "username": user} if user else {"active": False}


def _handler(provider: IdentityProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.endswith("/.well-known/openid-configuration"):
                base = f"https://{self.headers['Host']}"
                self._answer(200, provider.discovery(base, self.path.strip("/").split("/")[0]))
            else:
                self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            if self.path == "/introspect":
                self._answer(200, provider.introspect(form))
            elif self.path == "/token" or self.path.endswith("/oauth2/v2.0/token"):
                self._answer(*provider.token_endpoint(form))
            else:
                self._answer(404, {"error": "not_found"})

    return Handler
