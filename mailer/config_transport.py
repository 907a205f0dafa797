"""Config of how supportd reaches its servers: TLS trust, sign-in (password or OAuth2) and DKIM signing.

Read by `mailer.config` for each `[[mailboxes]]` table, `[smtp]` and `[dkim]`; the same
`file: key: reason` errors as everywhere else. Secrets (client secrets, refresh tokens) are only ever
named here by the environment variable that holds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mailer.dkim import key_problem
from mailer.tls import is_loopback, plaintext_refusal

if TYPE_CHECKING:
    from mailer.config import Endpoint, _Section

OAUTH_PROVIDERS = ("google", "microsoft", "command")
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/{tenant}"
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"


@dataclass(frozen=True)
class OAuthConfig:
    """Where access tokens come from; see mailer/oauth.py for each provider."""

    provider: str
    token_url: str = GOOGLE_TOKEN_URL  # google: the token endpoint the refresh token is sent to
    client_id_env: str | None = None
    client_secret_env: str | None = None
    refresh_token_env: str | None = None  # google
    client_id: str | None = None  # microsoft: the app registration's id (not a secret)
    tenant: str | None = None  # microsoft
    authority: str | None = None  # microsoft: default https://login.microsoftonline.com/<tenant>
    certificate_file: Path | None = None  # microsoft: PEM with the private key and the certificate
    certificate_thumbprint: str | None = None
    scope: str = MICROSOFT_SCOPE
    command: tuple[str, ...] = ()  # command: prints an access token on its first line
    lifetime: float = 300.0  # command: seconds a printed token is used before asking again
    refresh_margin: float = 120.0  # a token this close to its expiry is replaced before use
    ca_file: Path | None = None  # CA of the token endpoint, when not a public one


@dataclass(frozen=True)
class TransportSecurity:
    """The keys every endpoint shares: how its certificate is trusted and how supportd signs in."""

    ca_file: Path | None = None
    allow_plaintext: bool = False
    auth: str = "password"  # password | xoauth2 | oauthbearer (IMAP only)
    oauth: OAuthConfig | None = None


@dataclass(frozen=True)
class DkimConfig:
    domain: str = ""
    selector: str = ""
    key_file: Path | None = None
    relay_signs: bool = False  # the relay signs for us: supportd leaves mail unsigned


def _path(section: _Section, name: str, base_dir: Path) -> Path | None:
    value = section.str(name)
    if value is None:
        return None
    path = base_dir / value
    if not path.is_file():
        raise section.fail(name, f"no such file: {path}")
    return path


def _env(section: _Section, name: str, *, required: bool) -> str | None:
    variable = section.str(name, required=required)
    if variable is not None and not os.environ.get(variable):
        raise section.fail(name, f"environment variable {variable} is not set")
    return variable


def _oauth(section: _Section, base_dir: Path) -> OAuthConfig:
    provider = section.choice("provider", OAUTH_PROVIDERS, "google")
    google, microsoft = provider == "google", provider == "microsoft"
    command = section.strings("command")
    if provider == "command" and not command:
        raise section.fail("command", 'is required with provider = "command" (e.g. ["get-token", "support"])')
    tenant = section.str("tenant", required=microsoft)
    certificate = _path(section, "certificate_file", base_dir)
    secret_env = _env(section, "client_secret_env", required=google)
    if microsoft and not secret_env and not certificate:
        raise section.fail("client_secret_env", "or certificate_file is required with provider = \"microsoft\"")
    thumbprint = section.str("certificate_thumbprint", required=certificate is not None)
    token_url = section.str("token_url", GOOGLE_TOKEN_URL)
    parts = urlsplit(token_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise section.fail("token_url", f"must be an https:// URL; got {token_url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise section.fail("token_url", f"must be https:// (the client secret would go in clear to {parts.hostname})")
    oauth = OAuthConfig(
        provider=provider,
        token_url=token_url,
        client_id_env=_env(section, "client_id_env", required=google),
        client_secret_env=secret_env,
        refresh_token_env=_env(section, "refresh_token_env", required=google),
        client_id=section.str("client_id", required=microsoft),
        tenant=tenant,
        authority=section.str("authority", MICROSOFT_AUTHORITY.format(tenant=tenant) if tenant else None),
        certificate_file=certificate,
        certificate_thumbprint=thumbprint,
        scope=section.str("scope", MICROSOFT_SCOPE),
        command=command,
        lifetime=section.number("lifetime", 300.0, minimum=1),
        refresh_margin=section.number("refresh_margin", 120.0, minimum=0),
        ca_file=_path(section, "ca_file", base_dir),
    )
    section.done()
    return oauth


def transport_security(section: _Section, endpoint: Endpoint, *, tls: bool, auth_choices: tuple[str, ...],
                       base_dir: Path) -> TransportSecurity:
    """Read ca_file, allow_plaintext, auth and [oauth]; refuse credentials sent in clear to another host."""
    auth = section.choice("auth", auth_choices, "password")
    oauth = _oauth(section.table("oauth"), base_dir) if auth != "password" else None
    if auth == "password" and section.data.get("oauth"):
        raise section.fail("oauth", 'is only read with auth = "xoauth2" or "oauthbearer"')
    if auth != "password" and not endpoint.username:
        raise section.fail("url", f"needs the user to sign in as with auth = {auth!r} (scheme://user@host)")
    security = TransportSecurity(ca_file=_path(section, "ca_file", base_dir),
                                 allow_plaintext=section.bool("allow_plaintext", False), auth=auth, oauth=oauth)
    signs_in = auth != "password" or bool(endpoint.username and endpoint.password)
    refusal = plaintext_refusal(endpoint.host, tls, security.allow_plaintext,
                                "password" if auth == "password" else "OAuth2 token")
    if signs_in and refusal:
        raise section.fail("url", refusal)
    return security


def dkim(section: _Section, from_address: str, base_dir: Path) -> DkimConfig | None:
    """[dkim]: the key that signs every outgoing mail, aligned with the From domain (else DMARC fails)."""
    if not section.data:
        return None
    relay_signs = section.bool("relay_signs", False)
    config = DkimConfig(domain=section.str("domain", required=not relay_signs) or "",
                        selector=section.str("selector", required=not relay_signs) or "",
                        key_file=_path(section, "key_file", base_dir), relay_signs=relay_signs)
    section.done()
    if relay_signs:
        return config
    if config.key_file is None:
        raise section.fail("key_file", "is required unless relay_signs = true")
    from_domain = from_address.rpartition("@")[2].lower()
    domain = config.domain.lower().rstrip(".")
    if from_domain != domain and not from_domain.endswith("." + domain):
        raise section.fail("domain", f"{config.domain} is not aligned with smtp.from_address ({from_address}): "
                                     "receivers' DMARC checks would not count the signature")
    problem = key_problem(config.key_file)
    if problem:
        raise section.fail("key_file", problem)
    return config
