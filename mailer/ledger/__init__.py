"""The ledger: the database models and migrations, attachment content, encryption at rest, the
account directory, and retention."""
