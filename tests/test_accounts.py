"""`supportd accounts import`: streamed in batches, insert new, update changed, skip bad rows with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.cli import main
from mailer.ledger import migrate
from mailer.ledger.accounts import ImportError_, import_accounts
from mailer.ledger.db import Account, Database

HEADER = "email,user_id,language,display_name,anti_phishing_code\n"


def stored(db: Database) -> dict[str, tuple[str, str, str, str | None]]:
    with db.reading() as session:
        return {a.email: (a.user_id, a.language, a.display_name, a.anti_phishing_code)
                for a in session.scalars(select(Account))}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, sqlite_url: str) -> Database:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else sqlite_url
    migrate.upgrade(url)
    database = Database(url)
    request.addfinalizer(database.dispose)
    return database


def test_batches_insert_new_update_changed_and_leave_the_rest(db: Database, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    first.write_text(HEADER + "".join(f"User{i}@Example.COM,{i},en,User {i},\n" for i in range(25)))
    report = import_accounts(db, first, batch_size=10)
    assert (report.read, report.added, report.updated, report.unchanged) == (25, 25, 0, 0)
    assert stored(db)["user7@example.com"] == ("7", "en", "User 7", None)
    assert stored(db)["user0@example.com"][1] == "en"

    second = tmp_path / "second.csv"
    rows = [f"user{i}@example.com,{i},en,User {i},\n" for i in range(25)]
    rows[3] = "user3@example.com,3,zh_TW,用户 3,CODE-3\n"  # changed
    rows.append("new@bücher.example,99,,,\n")  # new, IDN domain
    second.write_text(HEADER + "".join(rows))
    report = import_accounts(db, second, batch_size=7)
    assert (report.read, report.added, report.updated, report.unchanged) == (26, 1, 1, 24)
    accounts = stored(db)
    assert accounts["user3@example.com"] == ("3", "zh-Hant", "用户 3", "CODE-3")  # the tag the desk answers in
    assert accounts["new@xn--bcher-kva.example"] == ("99", "", "", None)  # no language: the mail's decides
    assert len(accounts) == 26


def test_bad_rows_are_skipped_and_counted_not_fatal(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(HEADER + "good@example.com,1,en,Good,\n"
                    "not-an-address,2,en,,\n"
                    "empty-id@example.com,,en,,\n"
                    "lang@example.com,3,xx-YY,,\n"
                    f"long@example.com,{'9' * 65},en,,\n"
                    "also.good@example.com,4,zh,,\n"
                    "twice@example.com,5,en,First,\n"
                    "TWICE@example.com,5,en,Second,\n")
    report = import_accounts(db, path, batch_size=3)
    assert (report.read, report.added, report.updated, report.skipped_total) == (8, 3, 1, 4)
    assert report.skipped == {"not an email address": 1, "user_id is empty": 1,
                              "language is not one the desk answers in": 1, "user_id longer than 64 characters": 1}
    assert report.examples[:2] == ["line 3: not an email address", "line 4: user_id is empty"]
    assert set(stored(db)) == {"good@example.com", "also.good@example.com", "twice@example.com"}
    assert stored(db)["twice@example.com"][2] == "Second"  # the later row of an address wins


def test_a_file_without_the_required_columns_writes_nothing(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("mail,name\na@example.com,A\n")
    with pytest.raises(ImportError_, match="line 1: missing column"):
        import_accounts(db, path)
    assert stored(db) == {}


def test_cli_prints_a_summary_and_the_skipped_lines(tmp_path: Path, sqlite_url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "supportd.toml"
    config.write_text(f'[smtp]\nurl = "smtp://127.0.0.1:2525"\nfrom_address = "support@desk.example"\n'
                      f'[database]\nurl = "{sqlite_url}"\n')
    path = tmp_path / "accounts.csv"
    path.write_text(HEADER + "a@example.com,1,en,A,\nbroken,2,en,B,\n")
    assert main(["accounts", "import", "--config", str(config), str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("accounts: 2 rows read, 1 added, 0 updated, 0 unchanged, 1 skipped "
                          "(1 not an email address) in ")
    assert f"{path}: line 3: not an email address (row skipped)" in err
    assert "\r" not in err  # no progress counter when stderr is not a terminal
