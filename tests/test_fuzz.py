"""Property: whatever `parse` produced, no later stage fails on it, and no reply goes to an injected address.

Mutated real mail (tests/mutations.py) is stored as intake stores it and run through the whole stage list
(`pipeline.process`) on SQLite, with specialists on every queue and sender authentication on, so every
stage has work. A mail may be quarantined only at `parse` (not mail at all); everything else ends as a
ticket, a duplicate, an automatic mail or a bounce. The quick runs are part of the normal suite; the
long one is `python bench/fuzz.py` (5,000 fresh cases by default), which prints its counts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select

from mailer.app import App
from mailer.config import default_routing, load_config
from mailer.ledger.db import Outbox, RawMessage
from mailer.stages.runner import process
from mailer.transport.intake import raw_row
from tests.conftest import prepared_app
from tests.mutations import INJECTED, mutated_mails, seed_mails

SEEDS = seed_mails()


def fuzz_app(tmp_path: Path, database_url: str | None = None) -> App:
    """A desk whose every queue has specialists and a lead, with sender authentication on; no servers."""
    queues = default_routing()["queues"]
    for name in queues:
        queues[name] = {**queues[name], "specialists": ["dana@desk.example"], "lead": "lead@desk.example"}
    path = tmp_path / "supportd.toml"
    path.write_text(tomli_w.dumps({
        "mailboxes": [{"name": "support", "url": "imap://support:secret@127.0.0.1:9/INBOX"}],
        "smtp": {"url": "smtp://127.0.0.1:9", "from_address": "support@desk.example"},
        "database": {"url": database_url or f"sqlite:///{tmp_path / 'fuzz.db'}"},
        "paths": {"storage": str(tmp_path / "data")},
        "trust": {"authserv_id": "mx.desk.example"},
        "queues": queues,
    }), encoding="utf-8")
    return prepared_app(load_config(path), tmp_path)


class Fuzzer:
    """Stores each case as intake would and processes it; counts outcomes; fails on a broken property."""

    def __init__(self, app: App) -> None:
        self.app, self.uid = app, 0
        self.outcomes: Counter[str] = Counter()
        self.mutations: Counter[str] = Counter()

    def case(self, label: str, raw: bytes) -> None:
        self.uid += 1
        with self.app.db.session() as session:
            row = raw_row("support", self.uid, raw, self.app.sealer)
            session.add(row)
            session.flush()
            raw_id = row.id
        results = process(self.app, [raw_id])
        with self.app.db.session() as session:
            stored = session.get(RawMessage, raw_id)
            assert stored is not None and stored.status != "pending"
            if stored.status == "quarantined":
                assert stored.stage == "parse", f"{label}: quarantined at {stored.stage}: {stored.error}"
                self.outcomes[f"quarantined at parse: {(stored.error or '')[:60]}"] += 1
            else:
                self.outcomes[stored.status] += 1
            outbox_ids = [i for r in results for i in r.outbox_ids]
            for to_address, head in session.execute(select(Outbox.to_address, Outbox.raw).where(
                    Outbox.id.in_(outbox_ids))):
                assert INJECTED.decode() not in to_address, f"{label}: reply to an injected address"
                assert INJECTED not in head.split(b"\r\n\r\n", 1)[0], f"{label}: injected header text"
        self.mutations.update(label.split("+"))

    def report(self) -> str:
        total = sum(self.outcomes.values())
        lines = [f"fuzz: {total} cases"]
        lines += [f"  {count:>6}  {outcome}" for outcome, count in self.outcomes.most_common()]
        lines.append("  mutations applied: " + ", ".join(f"{m} {c}" for m, c in sorted(self.mutations.items())))
        return "\n".join(lines)


def run_fuzz(tmp_path: Path, examples: int, *, derandomize: bool, database_url: str | None = None) -> Fuzzer:
    app = fuzz_app(tmp_path, database_url)
    fuzzer = Fuzzer(app)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(mutated_mails(SEEDS))
    def every_stage_copes(case: tuple[str, bytes]) -> None:
        fuzzer.case(*case)

    try:
        every_stage_copes()
    finally:
        app.close()
    return fuzzer


def test_no_stage_after_parse_fails_on_mutated_mail(tmp_path: Path) -> None:
    fuzzer = run_fuzz(tmp_path, 200, derandomize=True)
    print("\n" + fuzzer.report())
    assert sum(fuzzer.outcomes.values()) >= 200
    assert fuzzer.outcomes["done"] > 0  # the mutations leave plenty of mail that becomes tickets


@pytest.mark.postgres
def test_no_stage_after_parse_fails_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL enforces column lengths that SQLite ignores: long addresses, Message-IDs, keys."""
    fuzzer = run_fuzz(tmp_path, 100, derandomize=True, database_url=pg_url)
    print("\n" + fuzzer.report())
    assert sum(fuzzer.outcomes.values()) >= 100


@pytest.mark.parametrize("charset", ["punycode", "idna", "rot13", "base64", "gb2312\x00", "undefined", "utf-7"])
def test_charsets_the_fuzzer_found_are_read(charset: str) -> None:
    """Found by the fuzzer: codecs that refuse errors="replace", non-text codecs, NUL bytes in labels."""
    from parsing.message import parse

    raw = (f"From: a@b.example\r\nSubject: x\r\nContent-Type: text/plain; charset=\"{charset}\"\r\n\r\n"
           ).encode() + b"my deposit \xff\x95 is missing\x00\r\n"
    mail = parse(raw)
    assert "deposit" in mail.text and "\x00" not in mail.text
