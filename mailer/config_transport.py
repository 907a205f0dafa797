"""Kept for imports written before the config became a package: see `mailer.config.transport`."""

from mailer.config.transport import (
                                     GOOGLE_TOKEN_URL,
                                     MICROSOFT_AUTHORITY,
                                     MICROSOFT_SCOPE,
                                     OAUTH_PROVIDERS,
                                     DkimConfig,
                                     OAuthConfig,
                                     TransportSecurity,
)

__all__ = ["GOOGLE_TOKEN_URL", "MICROSOFT_AUTHORITY", "MICROSOFT_SCOPE", "OAUTH_PROVIDERS", "DkimConfig",
           "OAuthConfig", "TransportSecurity"]
