"""Mail in and out: IMAP intake, LMTP, SMTP, the outbox and its sent journal, TLS, OAuth2, DKIM,
provider quirks, and the state of each connection to the outside."""
