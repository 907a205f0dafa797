"""Preparing ahead: the parsing pool is given raw ids, reads the mails from the ledger itself and stores the
accepted attachments in the content store, so that no mail's bytes cross a pipe; retention removes the
stored files that no message came to reference; the pool's processes end with a daemon killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mailer.app import App
from mailer.config import Config, RetentionConfig
from mailer.demo.samples import mail_with_attachment, tiny_png
from mailer.ledger.crypto import PREFIX
from mailer.ledger.db import utcnow
from mailer.ledger.retention import FILE_GRACE_SECONDS, purge
from mailer.runtime.pool import PARENT_CHECK_SECONDS, LedgerSettings, PreparePool
from mailer.stages.prepare import Prepared, Rules
from mailer.stages.runner import prepare_batch
from mailer.transport.intake import raw_row
from tests.conftest import ConfigFactory, prepared_app

SCREENSHOT = tiny_png(8, 8)
PROGRAM = b"MZ\x90\x00" + bytes(200)


def _encrypted_desk(make_config: ConfigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    url: str | None = None) -> tuple[Config, App]:
    monkeypatch.setenv("SUPPORTD_TEST_KEYS", Fernet.generate_key().decode())
    _, config = make_config(url, encryption={"keys_env": "SUPPORTD_TEST_KEYS"})
    return config, prepared_app(config, tmp_path)


def _store(app: App, *mails: tuple[bytes, str]) -> list[int]:
    """Raw rows as the intake writes them (sealed); each with its status."""
    with app.db.session() as session:
        rows = [raw_row("support", uid, raw, app.sealer) for uid, (raw, _) in enumerate(mails, start=1)]
        for row, (_, status) in zip(rows, mails, strict=True):
            row.status = status
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _mails() -> tuple[tuple[bytes, str], ...]:
    return ((mail_with_attachment("anna@example.net", "Deposit", "Screenshot attached.", "<shot@x>",
                                  "shot.png", "image/png", SCREENSHOT), "pending"),
            (mail_with_attachment("omar@example.com", "Tool", "Run this.", "<tool@x>",
                                  "tool.pdf", "application/pdf", PROGRAM), "pending"),
            (mail_with_attachment("li@example.cn", "Again", "Done already.", "<done@x>",
                                  "again.png", "image/png", tiny_png(3, 3)), "done"))


def _check(app: App, prepared: dict[int, Prepared], ids: list[int]) -> None:
    shot, tool, _ = ids
    assert set(prepared) == {shot, tool}  # a finished mail is not prepared again
    assert prepared[shot].mail.new_text.startswith("Screenshot attached.")
    part = prepared[shot].mail.attachments[0]
    assert (part.content, part.size, prepared[shot].verdicts[0].detected_type) == (None, len(SCREENSHOT), "image/png")
    assert prepared[shot].verdicts[0].refused is None
    assert app.store.get(part.sha256) == SCREENSHOT
    assert app.store.path_for(part.sha256).read_bytes().startswith(PREFIX)  # sealed at rest
    program = prepared[tool].mail.attachments[0]
    assert program.content is None and prepared[tool].verdicts[0].refused == "an executable program"
    assert not app.store.path_for(program.sha256).exists()  # a refused file is never stored


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_pool_reads_mails_by_id_and_stores_their_attachments(make_config: ConfigFactory, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 request: pytest.FixtureRequest, database: str) -> None:
    url = request.getfixturevalue("pg_url") if database == "postgresql" else None
    config, app = _encrypted_desk(make_config, tmp_path, monkeypatch, url)
    ids = _store(app, *_mails())
    pool = PreparePool(LedgerSettings.of(config), processes=1)
    try:
        prepared = dict(pool.prepare_many(ids, Rules.of(config)))
        assert dict(pool.prepare_many(ids, Rules.of(config))).keys() == prepared.keys()  # the connection kept
    finally:
        pool.close()
        app.close()
    _check(app, prepared, ids)


def test_without_a_pool_the_same_is_prepared_in_process(make_config: ConfigFactory, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _, app = _encrypted_desk(make_config, tmp_path, monkeypatch)
    ids = _store(app, *_mails())
    try:
        _check(app, prepare_batch(app, ids), ids)
    finally:
        app.close()


def test_retention_removes_stored_files_no_message_references(make_config: ConfigFactory, tmp_path: Path) -> None:
    _, config = make_config()
    app = prepared_app(config, tmp_path)
    settled, fresh = app.store.put(b"%PDF-1.7\nprepared for a spam mail\n"), app.store.put(b"%PDF-1.7\njust now\n")
    hours_ago = time.time() - 2 * FILE_GRACE_SECONDS
    os.utime(app.store.path_for(settled), (hours_ago, hours_ago))
    try:
        dry = purge(app.db, app.store, RetentionConfig(), utcnow(), apply=False)
        assert (dry.files, dry.unreferenced_files) == (1, 1) and app.store.path_for(settled).exists()
        done = purge(app.db, app.store, RetentionConfig(), utcnow(), apply=True)
        assert (done.files, done.unreferenced_files) == (1, 1)
    finally:
        app.close()
    assert not app.store.path_for(settled).exists()
    assert app.store.path_for(fresh).exists()  # may belong to a mail whose transaction is still open


OWNER = """
import multiprocessing, sys, time
from pathlib import Path
from mailer.runtime.pool import PARENT_CHECK_SECONDS, LedgerSettings, PreparePool
pool = PreparePool(LedgerSettings(sys.argv[1], Path(sys.argv[2]), 1 << 20, None), processes=1).start()
while not multiprocessing.active_children():
    time.sleep(0.05)
print(*(child.pid for child in multiprocessing.active_children()), flush=True)
time.sleep(60)
"""


def test_the_pool_exits_with_a_daemon_killed_outright(sqlite_url: str, tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, sqlite_url, str(tmp_path)], stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).resolve().parents[1])
    assert owner.stdout is not None
    children = [int(pid) for pid in owner.stdout.readline().split()]
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    owner.stdout.close()
    deadline = time.monotonic() + 4 * PARENT_CHECK_SECONDS + 5
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert children and not any(Path(f"/proc/{pid}").exists() for pid in children)
