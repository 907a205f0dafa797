"""The account directory: who is registered with which address, loaded from a CSV export.

Columns: email, user_id, language, display_name, and optionally anti_phishing_code. Addresses are
normalized on the way in (routing.verify.normalize_address), so look-ups are exact matches. The language
is a BCP 47 tag (zh-TW, zh_Hant, pt-BR, EN …) stored as the shipped tag it means (zh-Hant, pt, en); left
empty, the mail's own language decides.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from mailer.db import Account, Database
from parsing.language import SHIPPED, normalize_tag
from routing.verify import normalize_address

REQUIRED = ("email", "user_id")
OPTIONAL = ("language", "display_name", "anti_phishing_code")


class ImportError_(Exception):
    """A CSV the importer cannot use, with the line that says why."""


@dataclass(frozen=True)
class ImportReport:
    added: int
    updated: int


def import_accounts(db: Database, path: Path) -> ImportReport:
    rows = list(_read(path))
    added = updated = 0
    with db.session() as session:
        existing = {a.email: a for a in session.scalars(select(Account).where(
            Account.email.in_([r["email"] for r in rows])))} if rows else {}
        for row in rows:
            account = existing.get(row["email"])
            if account is None:
                account = existing[row["email"]] = Account(email=row["email"])
                session.add(account)
                added += 1
            else:
                updated += 1
            account.user_id = row["user_id"]
            account.language = row.get("language") or ""
            account.display_name = row.get("display_name") or ""
            account.anti_phishing_code = row.get("anti_phishing_code") or None
    return ImportReport(added, updated)


def _read(path: Path) -> list[dict[str, str]]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ImportError_(f"{path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ImportError_(f"{path}: line 1: missing column(s) {', '.join(missing)}; "
                               f"expected {', '.join(REQUIRED + OPTIONAL)}")
        rows = []
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            email = normalize_address(row.get("email", ""))
            if email is None:
                raise ImportError_(f"{path}: line {line}: not an email address: {row.get('email')!r}")
            if not row.get("user_id"):
                raise ImportError_(f"{path}: line {line}: user_id is empty")
            language = normalize_tag(row.get("language")) if row.get("language") else ""
            if language is None:
                raise ImportError_(f"{path}: line {line}: language {row['language']!r} is not one the desk "
                                   f"answers in ({', '.join(SHIPPED)}, or a regional tag of one such as zh-TW)")
            rows.append({**row, "email": email, "language": language})
        return rows
