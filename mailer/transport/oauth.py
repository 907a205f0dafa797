"""OAuth2 access tokens for IMAP and SMTP sign-in (XOAUTH2 / OAUTHBEARER), kept fresh.

Three sources: a Google refresh token (the token endpoint is asked for a new access token), Microsoft
365 client credentials (msal: an app registration's secret or certificate), and a command that prints
a token (any other provider, or a vault). A `TokenCache` hands out the current token, replaces it
`refresh_margin` seconds before it expires, and fetches a new one when a server refuses it. A source
that cannot give a token (revoked grant, wrong secret, command failed) raises `TokenError` with the
provider's own reason in one line.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from mailer.config import OAuthConfig
from mailer.transport.tls import LinkError, client_context

HTTP_TIMEOUT = 30.0
DEFAULT_LIFETIME = 3600.0  # when a token endpoint does not say
MICROSOFT_HOSTS = ("login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn")


class TokenError(Exception):
    """No access token could be had; the message is the provider's reason."""


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # time.time() seconds


class TokenSource(Protocol):
    def fetch(self) -> AccessToken: ...

    def forget(self) -> None:
        """Drop anything cached inside the source, so the next fetch asks the provider."""


def _env(name: str | None) -> str:
    value = os.environ.get(name or "", "")
    if not value:
        raise TokenError(f"environment variable {name} is not set")
    return value


def _expiry(seconds: Any) -> float:
    try:
        return time.time() + float(seconds)
    except (TypeError, ValueError):
        return time.time() + DEFAULT_LIFETIME


class GoogleRefreshToken:
    """grant_type=refresh_token at the token endpoint (Google Workspace, and any RFC 6749 provider)."""

    def __init__(self, config: OAuthConfig) -> None:
        self.config = config

    def fetch(self) -> AccessToken:
        form = urllib.parse.urlencode({
            "grant_type": "refresh_token", "client_id": _env(self.config.client_id_env),
            "client_secret": _env(self.config.client_secret_env),
            "refresh_token": _env(self.config.refresh_token_env)}).encode()
        request = urllib.request.Request(self.config.token_url, data=form, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        context = client_context(self.config.ca_file, True) if self.config.token_url.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT, context=context) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise TokenError(f"token endpoint refused the refresh token: {_oauth_error(exc.read())}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TokenError(f"token endpoint {self.config.token_url}: {getattr(exc, 'reason', exc)}") from None
        if not isinstance(answer, dict) or not answer.get("access_token"):
            raise TokenError("token endpoint answered without an access_token")
        return AccessToken(str(answer["access_token"]), _expiry(answer.get("expires_in")))

    def forget(self) -> None:
        pass


def _oauth_error(body: bytes) -> str:
    """`error (error_description)` from an RFC 6749 error answer, else the start of the body."""
    try:
        answer = json.loads(body)
        return f"{answer['error']} ({answer.get('error_description') or 'no description'})".splitlines()[0]
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace").splitlines()[0] if body.strip() else "no reason given"


class MicrosoftClientCredentials:
    """Client credentials for Microsoft 365 through msal: the app's secret or certificate, no user."""

    def __init__(self, config: OAuthConfig) -> None:
        self.config = config
        self._app: Any = None

    def _application(self) -> Any:
        import msal

        if self._app is None:
            config = self.config
            credential: Any
            if config.certificate_file is not None:
                credential = {"private_key": config.certificate_file.read_text(),
                              "thumbprint": config.certificate_thumbprint}
            else:
                credential = _env(config.client_secret_env)
            http = _http_session()
            if config.ca_file is not None:
                http.verify = str(config.ca_file)
            known = urlsplit(config.authority or "").hostname in MICROSOFT_HOSTS
            self._app = msal.ConfidentialClientApplication(
                config.client_id, client_credential=credential, authority=config.authority, http_client=http,
                instance_discovery=known, timeout=HTTP_TIMEOUT)
        return self._app

    def fetch(self) -> AccessToken:
        try:
            result = self._application().acquire_token_for_client(scopes=[self.config.scope])
        except Exception as exc:  # msal raises plain ValueError/requests errors for discovery failures
            raise TokenError(f"Microsoft identity platform at {self.config.authority}: {exc}".splitlines()[0]) \
                from None
        if "access_token" not in result:
            reason = f"{result.get('error')} ({result.get('error_description') or 'no description'})"
            raise TokenError(f"Microsoft identity platform refused the client credentials: {reason}".splitlines()[0])
        return AccessToken(result["access_token"], _expiry(result.get("expires_in")))

    def forget(self) -> None:
        self._app = None  # msal caches tokens inside the application; a new one asks the server


def _http_session() -> Any:
    """A requests session whose `verify` (our ca_file) wins over REQUESTS_CA_BUNDLE in the environment.

    requests is imported here, with msal: a daemon without Microsoft 365 never loads either."""
    import requests

    class _Session(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            settings: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = self.verify
            return settings

    return _Session()


class CommandToken:
    """A command that prints an access token on its first line; used for `lifetime` seconds."""

    def __init__(self, config: OAuthConfig) -> None:
        self.config = config

    def fetch(self) -> AccessToken:
        command = self.config.command
        try:
            done = subprocess.run(list(command), capture_output=True, text=True, timeout=HTTP_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TokenError(f"token command {shlex.join(command)}: {exc}") from None
        token = done.stdout.strip().splitlines()[0].strip() if done.stdout.strip() else ""
        if done.returncode != 0 or not token:
            said = (done.stderr.strip().splitlines() or ["printed no token"])[-1]
            raise TokenError(f"token command {shlex.join(command)} failed (exit {done.returncode}): {said}")
        return AccessToken(token, time.time() + self.config.lifetime)

    def forget(self) -> None:
        pass


SOURCES = {"google": GoogleRefreshToken, "microsoft": MicrosoftClientCredentials, "command": CommandToken}


class TokenCache:
    """The current access token of one endpoint; thread-safe, replaced before expiry or after refusal."""

    def __init__(self, config: OAuthConfig, endpoint: str) -> None:
        self.source: TokenSource = SOURCES[config.provider](config)
        self.margin, self.endpoint = config.refresh_margin, endpoint
        self._token: AccessToken | None = None
        self._lock = threading.Lock()
        self.fetched = 0  # how many tokens were obtained: for logs and tests

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.time() >= self._token.expires_at - self.margin:
                self._token = self._fetch()
            return self._token.value

    def refused(self, token: str) -> str:
        """The server refused `token`: a new one (unless another thread already replaced it)."""
        with self._lock:
            if self._token is None or self._token.value == token:
                self.source.forget()
                self._token = self._fetch()
            return self._token.value

    def _fetch(self) -> AccessToken:
        try:
            token = self.source.fetch()
        except TokenError as exc:
            raise LinkError(self.endpoint, f"no OAuth2 access token: {exc}") from None
        self.fetched += 1
        return token


def xoauth2(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (Google, Microsoft), before base64."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"
