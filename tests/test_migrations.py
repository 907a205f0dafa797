"""The schema at daemon start: upgraded by Alembic, or recognised as current without loading it."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from mailer.ledger import migrate


def test_head_is_alembics_newest_revision() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert script.get_heads() == [migrate.HEAD]


def test_a_new_database_is_upgraded_then_recognised_as_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert not migrate.is_current(url)  # no alembic_version table yet
    migrate.upgrade(url)
    assert migrate.is_current(url)
    migrate.upgrade(url)  # again: nothing to do, nothing raised


def test_an_older_schema_is_not_taken_for_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0014'"))
    engine.dispose()
    assert not migrate.is_current(url)
