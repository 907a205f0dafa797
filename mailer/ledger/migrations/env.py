"""Alembic environment: the URL comes from supportd's config (see mailer.ledger.migrate), never from an ini file."""

from __future__ import annotations

from alembic import context

from mailer.ledger.db import Base, make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "mailer.ledger.migrate sets sqlalchemy.url"

connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
