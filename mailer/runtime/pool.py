"""The embedded daemon's parsing processes: `prepare` on every core but the one that writes the ledger.

Each process loads the parsers and the language models before its first mail, which takes about a
second. `supportd run` starts them first thing, so that second passes while the daemon itself imports,
reads its config and signs in to its mailboxes, not between its first fetch and its first reply. This
module imports none of the parsers for that reason: starting the processes costs the daemon a spawn.

The daemon sends raw ids, not mails: each process reads the bytes from its own read-only connection to
the ledger (SQLite in WAL mode lets it read beside the writer) and stores accepted attachments in the
content store itself, so a large mail is held by one process at a time and crosses no pipe.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailer.config import Config
    from mailer.stages.prepare import Prepared, Rules


PARENT_CHECK_SECONDS = 2.0


@dataclass(frozen=True)
class LedgerSettings:
    """What a pool process needs to read raw mail and store attachments on its own: parts of the config that
    change only with a restart (mailer.runtime.reload.RESTART_ONLY), so they are given once, at spawn."""

    database_url: str
    storage_dir: Path
    max_message_bytes: int
    encryption_keys_env: str | None  # the keys stay in the environment, which the processes inherit

    @classmethod
    def of(cls, config: Config) -> LedgerSettings:
        return cls(config.database_url, config.storage_dir, config.max_message_bytes, config.encryption_keys_env)


class PreparePool:
    """Worker processes for `prepare`; one per core but the one the writing process keeps busy by default
    (each loads the parsers and language models: about 200 MB).

    Every batch goes to the pool, however small (shipping one mail costs about a millisecond): the writing
    process then never detects a language, so it never loads the models and keeps their memory free."""

    def __init__(self, ledger: LedgerSettings, processes: int | None = None) -> None:
        self.ledger = ledger
        self.processes = processes or max((os.cpu_count() or 1) - 1, 1)
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> PreparePool:
        """Start the processes now, not with the first mails: each is spawned when a task finds none idle."""
        executor = self._started()
        for _ in range(self.processes):
            executor.submit(_started_up)
        return self

    def _started(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the daemon has threads (and locks) that a forked child would inherit mid-use.
            self._executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_load_parsers, initargs=(os.getpid(), self.ledger))
        return self._executor

    def prepare_many(self, raw_ids: list[int], rules: Rules) -> list[tuple[int, Prepared]]:
        """The stored mails prepared, by raw id (those not prepared are left out)."""
        if not raw_ids:
            return []
        from mailer.stages.prepare import prepare_in_pool  # long imported here by the pipeline's runner

        executor = self._started()
        size = -(-len(raw_ids) // self.processes)
        chunks = [raw_ids[i:i + size] for i in range(0, len(raw_ids), size)]
        futures = [executor.submit(prepare_in_pool, chunk, rules) for chunk in chunks]
        return [item for future in futures for item in future.result()]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None


def start_for(config: Config) -> PreparePool | None:
    """The pool a daemon with this config parses in: with the embedded broker and more than one core.

    Otherwise the process that runs the pipeline parses itself (`supportd worker` processes scale out)."""
    if config.broker.embedded and (os.cpu_count() or 1) > 1:
        return PreparePool(LedgerSettings.of(config)).start()
    return None


def _load_parsers(daemon: int, ledger: LedgerSettings) -> None:
    """In each process, before its first task: its ledger, the parsers, the language models, one mail parsed."""
    threading.Thread(target=_exit_with, args=(daemon,), name="exit-with-daemon", daemon=True).start()
    from mailer.stages.prepare import open_pool_ledger, warm_up

    open_pool_ledger(ledger)
    warm_up()


def _exit_with(daemon: int) -> None:
    """A daemon killed outright (SIGKILL, OOM) never shuts its pool down, and the processes, which wait on a
    queue their siblings also hold open, would wait for ever with their memory and database connection."""
    while os.getppid() == daemon:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _started_up() -> None:
    """Nothing: one per process from `start`, so that each is spawned (and loads the parsers) at once."""
