"""supportd's transport and ledger: IMAP intake, the pipeline, the outbox, the daemon and its CLI."""
