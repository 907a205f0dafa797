"""How supportd reaches its servers: server URLs, TLS trust, sign-in (password or OAuth2) and DKIM signing.

Shared by each `[[mailboxes]]` table and `[smtp]` (`TransportKeys`), plus `[dkim]`. Secrets (passwords,
client secrets, refresh tokens) are only ever named here by the environment variable that holds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, PrivateAttr, model_validator

from mailer.config.base import ExistingFile, Items, Section, SetVariable, Text, require
from mailer.config.errors import KeyProblem
from mailer.transport.dkim import key_problem
from mailer.transport.tls import is_loopback, plaintext_refusal

OAUTH_PROVIDERS = ("google", "microsoft", "command")
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/{tenant}"
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"


@dataclass(frozen=True)
class Endpoint:
    """A server given as a URL: scheme, host, port, credentials and path."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = ""

    @property
    def implicit_tls(self) -> bool:
        return self.scheme in ("imaps", "smtps")


def parse_endpoint(url: str, schemes: dict[str, int]) -> Endpoint:
    """Parse a server URL such as `imaps://user:pass@host:993/INBOX`; `schemes` maps scheme to default port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in schemes:
        raise ValueError(f"scheme must be one of {', '.join(s + '://' for s in schemes)}; got {url!r}")
    if not parts.hostname:
        raise ValueError(f"has no host: {url!r}")
    return Endpoint(scheme=parts.scheme, host=parts.hostname, port=port or schemes[parts.scheme],
                    username=unquote(parts.username) if parts.username else None,
                    password=unquote(parts.password) if parts.password else None,
                    path=unquote(parts.path.lstrip("/")))


class OAuthConfig(Section):
    """Where access tokens come from (`[mailboxes.oauth]`, `[smtp.oauth]`); see mailer/transport/oauth.py."""

    # Keys are declared in the order they are checked, so the first mistake reported is the first to fix.
    provider: Literal["google", "microsoft", "command"] = Field(
        "google", description="google (refresh token) | microsoft (client credentials) | command")
    command: Items = Field((), description="command: prints an access token on its first line")
    tenant: str | None = Field(None, description="microsoft: tenant name or id")
    certificate_file: ExistingFile | None = Field(
        None, description="microsoft: PEM with the private key and the certificate")
    client_secret_env: SetVariable | None = Field(None, description="google and microsoft: variable holding the secret")
    certificate_thumbprint: str | None = Field(None, description="microsoft: with certificate_file")
    token_url: str = Field(GOOGLE_TOKEN_URL, description="google: the token endpoint the refresh token is sent to")
    client_id_env: SetVariable | None = Field(None, description="google: variable holding the client id")
    refresh_token_env: SetVariable | None = Field(None, description="google: variable holding the refresh token")
    client_id: str | None = Field(None, description="microsoft: the app registration's id (not a secret)")
    authority: str | None = Field(None, description="microsoft: default https://login.microsoftonline.com/<tenant>")
    scope: str = Field(MICROSOFT_SCOPE, description="microsoft")
    lifetime: float = Field(300.0, ge=1, description="command: seconds a printed token is used before asking again")
    refresh_margin: float = Field(120.0, ge=0, description="replace a token this many seconds before it expires")
    ca_file: ExistingFile | None = Field(None, description="CA of the token endpoint, when not a public one")

    @model_validator(mode="after")
    def _provider_needs(self) -> Self:
        google, microsoft = self.provider == "google", self.provider == "microsoft"
        if self.provider == "command":
            require(self.command, "command", 'is required with provider = "command" (e.g. ["get-token", "support"])')
        if microsoft:
            require(self.tenant, "tenant")
        if google:
            require(self.client_secret_env, "client_secret_env")
        if microsoft and not self.client_secret_env and not self.certificate_file:
            raise KeyProblem("client_secret_env", 'or certificate_file is required with provider = "microsoft"')
        if self.certificate_file is not None:
            require(self.certificate_thumbprint, "certificate_thumbprint")
        _check_token_url(self.token_url)
        if google:
            require(self.client_id_env, "client_id_env")
            require(self.refresh_token_env, "refresh_token_env")
        if microsoft:
            require(self.client_id, "client_id")
            if self.authority is None:
                object.__setattr__(self, "authority", MICROSOFT_AUTHORITY.format(tenant=self.tenant))
        return self


def _check_token_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise KeyProblem("token_url", f"must be an https:// URL; got {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise KeyProblem("token_url", f"must be https:// (the client secret would go in clear to {parts.hostname})")


@dataclass(frozen=True)
class TransportSecurity:
    """The keys every endpoint shares: how its certificate is trusted and how supportd signs in."""

    ca_file: Path | None = None
    allow_plaintext: bool = False
    auth: str = "password"  # password | xoauth2 | oauthbearer (IMAP only)
    oauth: OAuthConfig | None = None


class TransportKeys(Section):
    """Keys of a server table besides its URL: TLS, trust and sign-in. Subclasses declare `url` and `auth`."""

    password_env: SetVariable | None = Field(
        None, description="read the password from this environment variable, not the file")
    starttls: bool = Field(False, description="upgrade a plain connection with STARTTLS")
    tls_verify: bool = Field(True, description="verify the server certificate")
    ca_file: ExistingFile | None = Field(None, description="trust this CA (PEM) for the server's certificate")
    allow_plaintext: bool = Field(False, description="allow a password/token unencrypted to a non-loopback host")
    oauth: OAuthConfig | None = Field(None, description='with auth = "xoauth2"/"oauthbearer"; see docs/providers.md')
    _endpoint: Endpoint = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _oauth_table_with_oauth_sign_in(cls, data: Any) -> Any:
        """With auth = "xoauth2"/"oauthbearer" the [oauth] table is read even when absent (its keys are needed)."""
        if isinstance(data, dict) and data.get("auth", "password") != "password" and "oauth" not in data:
            return {**data, "oauth": {}}
        return data

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @property
    def security(self) -> TransportSecurity:
        auth: str = self.auth  # type: ignore[attr-defined]
        return TransportSecurity(ca_file=self.ca_file, allow_plaintext=self.allow_plaintext, auth=auth,
                                 oauth=self.oauth if auth != "password" else None)

    def _resolve_endpoint(self, url: Endpoint) -> None:
        """The URL with the password from `password_env`; then refuse credentials sent in clear."""
        endpoint = replace(url, password=os.environ[self.password_env]) if self.password_env else url
        self._endpoint = endpoint
        auth: str = self.auth  # type: ignore[attr-defined]
        if auth == "password" and self.oauth is not None:
            raise KeyProblem("oauth", 'is only read with auth = "xoauth2" or "oauthbearer"')
        if auth != "password" and not endpoint.username:
            raise KeyProblem("url", f"needs the user to sign in as with auth = {auth!r} (scheme://user@host)")
        signs_in = auth != "password" or bool(endpoint.username and endpoint.password)
        refusal = plaintext_refusal(endpoint.host, endpoint.implicit_tls or self.starttls, self.allow_plaintext,
                                    "password" if auth == "password" else "OAuth2 token")
        if signs_in and refusal:
            raise KeyProblem("url", refusal)


class DkimConfig(Section):
    """`[dkim]`: the key that signs every outgoing mail, aligned with the From domain (else DMARC fails)."""

    domain: Text = Field("", description="required; the From domain or a parent of it (DMARC alignment)")
    selector: Text = Field("", description="required; the record is <selector>._domainkey.<domain>")
    key_file: ExistingFile | None = Field(None, description="required; RSA private key, PEM")
    relay_signs: bool = Field(False, description="true: the relay signs for us; supportd leaves mail unsigned")

    @model_validator(mode="after")
    def _signing_needs(self) -> Self:
        if self.relay_signs:
            return self
        require(self.domain, "domain")
        require(self.selector, "selector")
        require(self.key_file, "key_file", "is required unless relay_signs = true")
        return self

    def check_alignment(self, from_address: str) -> None:
        """Receivers' DMARC counts the signature only if its domain is the From domain or a parent."""
        if self.relay_signs or self.key_file is None:
            return
        from_domain = from_address.rpartition("@")[2].lower()
        domain = self.domain.lower().rstrip(".")
        if from_domain != domain and not from_domain.endswith("." + domain):
            raise KeyProblem("domain", f"{self.domain} is not aligned with smtp.from_address ({from_address}): "
                                       "receivers' DMARC checks would not count the signature")
        problem = key_problem(self.key_file)
        if problem:
            raise KeyProblem("key_file", problem)
