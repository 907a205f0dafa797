"""Schema migrations with Alembic: `supportd db upgrade` and the automatic upgrade at daemon start."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest migration's revision (tests/test_migrations.py holds it to Alembic's head). A daemon starting on
# a current schema reads one row instead of loading Alembic and every migration script (~0.15 s).
HEAD = "0012"  # the chain is not in numeric order: 0015 -> 0010 -> 0007 -> 0012


def alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    if is_current(url):
        return
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def is_current(url: str) -> bool:
    """The database records HEAD as its version (anything else, or no table yet: Alembic decides)."""
    from mailer.ledger.db import READONLY, make_engine

    engine = make_engine(url)
    try:
        with engine.connect().execution_options(**{READONLY: True}) as connection:  # no write lock
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:
        return False
    finally:
        engine.dispose()
    return versions == [HEAD]


def revision(url: str, message: str) -> None:
    """For developers: write a new migration from the difference between the models and the database."""
    from alembic import command

    command.revision(alembic_config(url), message=message, autogenerate=True)
