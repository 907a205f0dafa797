"""The account directory's own table, loaded from a CSV export: streamed in batches, flat memory.

Columns: email, user_id, language, display_name, and optionally anti_phishing_code. Addresses are
normalized on the way in (routing.verify.normalize_address), so look-ups are exact matches. The language
is a BCP 47 tag (zh-TW, zh_Hant, pt-BR, EN …) stored as the shipped tag it means (zh-Hant, pt, en); left
empty, the mail's own language decides.

An exchange exports tens of millions of accounts, so nothing holds the file: rows are read, checked and
written a batch at a time (one bulk upsert and one commit per batch: new rows inserted, changed rows
updated, unchanged rows left alone). A row that cannot be used is skipped with its line and reason and
counted; it never aborts the rows around it. Only a file without the required columns stops the import,
before anything is written. Running the same import twice changes nothing.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, String, any_, bindparam, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from mailer.ledger.db import Account, Database
from parsing.language import SHIPPED, normalize_tag
from routing.verify import normalize_address

REQUIRED = ("email", "user_id")
OPTIONAL = ("language", "display_name", "anti_phishing_code")
FIELDS = ("user_id", "language", "display_name", "anti_phishing_code")
BATCH = 2000
# Column widths of the accounts table: PostgreSQL refuses a longer value, and with it the whole batch.
MAX_LENGTH = {"email": 320, "user_id": 64, "display_name": 200, "anti_phishing_code": 64}
EXAMPLES_KEPT = 20
LANGUAGE_REFUSED = "language is not one the desk answers in"


class ImportError_(Exception):
    """A CSV the importer cannot use at all, with the line that says why."""


@dataclass
class ImportReport:
    read: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows
    examples: list[str] = field(default_factory=list)  # the first skipped rows: "line N: reason"
    seconds: float = 0.0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        rate = self.read / self.seconds if self.seconds else 0.0
        text = (f"accounts: {self.read} rows read, {self.added} added, {self.updated} updated, "
                f"{self.unchanged} unchanged, {self.skipped_total} skipped")
        if self.skipped:
            text += " (" + ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common()) + ")"
        return text + f" in {self.seconds:.1f} s ({rate:,.0f} rows/s)"


Progress = Callable[[ImportReport, float], None]  # the report so far, and the share of the file read


def import_accounts(db: Database, path: Path, *, batch_size: int = BATCH,
                    progress: Progress | None = None) -> ImportReport:
    """Stream the CSV into the accounts table; see the module docstring for what is skipped and why."""
    report = ImportReport()
    started = time.monotonic()
    for rows, share in _batches(path, report, batch_size):
        with db.session() as session:
            _upsert(session.connection(), rows, report)
        report.seconds = time.monotonic() - started
        if progress is not None:
            progress(report, share)
    report.seconds = time.monotonic() - started
    if progress is not None:
        progress(report, 1.0)  # the rows after the last batch (skipped ones) are counted too
    return report


def _batches(path: Path, report: ImportReport, size: int) -> Iterator[tuple[dict[str, dict[str, Any]], float]]:
    """Batches of checked rows keyed by address (the last row of an address in a batch wins)."""
    try:
        binary = path.open("rb")
    except OSError as exc:
        raise ImportError_(f"{path}: {exc.strerror}") from None
    total = max(os.fstat(binary.fileno()).st_size, 1)
    with binary, io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ImportError_(f"{path}: line 1: missing column(s) {', '.join(missing)}; "
                               f"expected {', '.join(REQUIRED + OPTIONAL)}")
        batch: dict[str, dict[str, Any]] = {}
        try:
            for raw in reader:
                report.read += 1
                row, problem = _check({k.strip(): (v or "").strip() for k, v in raw.items()
                                       if isinstance(k, str) and isinstance(v, str)})
                if problem is not None:
                    _skip(report, reader.line_num, problem, row)
                    continue
                if row["email"] in batch:
                    report.updated += 1  # the file names the address twice: the later row wins
                batch[row["email"]] = row
                if len(batch) >= size:
                    yield batch, binary.tell() / total
                    batch = {}
        except UnicodeDecodeError as exc:
            raise ImportError_(f"{path}: line {reader.line_num + 1}: not UTF-8 ({exc.reason}); "
                               f"{report.read} rows before it were read") from None
        except csv.Error as exc:
            raise ImportError_(f"{path}: line {reader.line_num}: {exc}") from None
        if batch:
            yield batch, 1.0


def _check(row: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """The row as stored, or the reason it cannot be. Reasons are short: they are counted."""
    email = normalize_address(row.get("email", ""))
    if email is None:
        return row, "not an email address"
    if not row.get("user_id"):
        return row, "user_id is empty"
    language = normalize_tag(row["language"]) if row.get("language") else ""
    if language is None:
        return row, LANGUAGE_REFUSED
    clean = {"email": email, "user_id": row["user_id"], "language": language,
             "display_name": row.get("display_name") or "", "anti_phishing_code": row.get("anti_phishing_code") or None}
    for name, limit in MAX_LENGTH.items():
        if len(clean[name] or "") > limit:
            return row, f"{name} longer than {limit} characters"
    return clean, None


def _skip(report: ImportReport, line: int, reason: str, row: dict[str, Any]) -> None:
    report.skipped[reason] += 1
    if len(report.examples) < EXAMPLES_KEPT:
        report.examples.append(f"line {line}: {_explained(reason, row)}")


def _explained(reason: str, row: dict[str, Any]) -> str:
    """The reason as the person fixing the file needs it: with the value and what is accepted instead."""
    if reason == LANGUAGE_REFUSED:
        return (f"language {row.get('language')!r} is not one the desk answers in ({', '.join(SHIPPED)}, "
                f"or a regional tag of one such as zh-TW)")
    return reason


def _upsert(connection: Connection, rows: dict[str, dict[str, Any]], report: ImportReport) -> None:
    """Classify the batch against what is stored, then one INSERT … ON CONFLICT for the new and changed."""
    columns = Account.__table__.c
    emails = list(rows)
    # PostgreSQL plans `= ANY(one array)` once; an IN list of 2,000 parameters costs a plan per batch.
    among = (columns.email == any_(bindparam("emails", emails, type_=postgresql.ARRAY(String)))
             if connection.dialect.name == "postgresql" else columns.email.in_(emails))
    stored = {r.email: tuple(r[1:]) for r in connection.execute(
        select(columns.email, *(columns[f] for f in FIELDS)).where(among))}
    writes = []
    for email, row in rows.items():
        before = stored.get(email)
        if before is None:
            report.added += 1
        elif before == tuple(row[f] for f in FIELDS):
            report.unchanged += 1
            continue
        else:
            report.updated += 1
        writes.append(row)
    if writes:
        connection.execute(_upsert_statement(connection.dialect.name), writes)


def _upsert_statement(dialect: str) -> Any:
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
    if insert is None:
        raise ImportError_(f"accounts import supports SQLite and PostgreSQL, not {dialect}")
    statement = insert(Account.__table__)
    columns = Account.__table__.c
    changed = tuple_(*(columns[f] for f in FIELDS)).is_distinct_from(
        tuple_(*(statement.excluded[f] for f in FIELDS))) if dialect == "postgresql" else None
    # A concurrent import may have written the row since the batch was classified: update it, but only
    # when a value differs (PostgreSQL then writes no new row version for it).
    return statement.on_conflict_do_update(index_elements=[columns.email],
                                           set_={f: statement.excluded[f] for f in FIELDS}, where=changed)


def terminal_progress(stream: io.TextIOBase | Any) -> Progress:
    """A one-line counter rewritten in place, at most a few times a second."""
    last = 0.0

    def show(report: ImportReport, share: float) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < 0.25 and share < 1.0:
            return
        last = now
        rate = report.read / report.seconds if report.seconds else 0.0
        stream.write(f"\raccounts: {share:6.1%} of the file, {report.read:,} rows, {rate:,.0f} rows/s, "
                     f"{report.skipped_total:,} skipped ")
        stream.flush()

    return show
