"""Running the stages over a batch of stored mails, in one write transaction.

The flow itself (which stages, in which order) is read in mailer/pipeline.py; this module is the
machinery around it: parse and redact the batch ahead of the write lock, keep the batches' order,
write the batch (again, with a savepoint per mail, when one mail fails), quarantine the mail whose
stage raised, and hand a database fault back to the broker to retry.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, defer

from mailer.app import App
from mailer.ledger.db import RawMessage, utcnow
from mailer.pipeline import STAGES
from mailer.runtime import metrics
from mailer.runtime.transient import is_transient
from mailer.stages.lookups import Lookups, fetch, window_start
from mailer.stages.prepare import Ledger, Prepared, Rules, prepare_stored
from mailer.stages.unflushed import MailKeys
from mailer.stages.work import Work, flush_events, keep_events

log = logging.getLogger(__name__)


class StageFailed(Exception):
    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage}: {type(cause).__name__}: {cause}")
        self.stage, self.cause = stage, cause


@dataclass(frozen=True)
class Result:
    raw_id: int
    outcome: str  # done | duplicate | automatic | bounce | spam | quarantined | skipped
    ticket_id: int | None = None
    outbox_ids: tuple[int, ...] = ()


def process(app: App, raw_ids: list[int]) -> list[Result]:
    """Run the stages for stored mails, in one transaction.

    Safe to call again for the same ids: a finished mail is skipped. A mail whose stage fails is
    quarantined alone; a database fault is re-raised for the broker to retry the whole batch.
    """
    with app.batch_order.taken_up(min(raw_ids, default=0)) as wait_for_earlier_batches:
        prepared = prepare_batch(app, raw_ids)  # the CPU part, before taking the write lock
        wait_for_earlier_batches()
        try:
            results, collided = _write_batch(app, raw_ids, prepared, careful=False)
        except _Redo:
            log.info("batch from mail %d: a mail failed, the batch is written again mail by mail", min(raw_ids))
            results, collided = _write_batch(app, raw_ids, prepared, careful=True)
    for raw_id in collided:
        # Alone and after the other worker's commit, the mail is now seen as a duplicate.
        results += process(app, [raw_id]) if len(raw_ids) > 1 else [_quarantine_alone(app, raw_id)]
    return results


class _Redo(Exception):
    """A mail of the batch failed: the batch is written again, carefully."""


def _write_batch(app: App, raw_ids: list[int], prepared: dict[int, Prepared], *,
                 careful: bool) -> tuple[list[Result], list[int]]:
    """Mails usually all go through, so the batch is first written without a savepoint per mail and with one
    flush at its end (mailer/stages/unflushed.py); if one fails, the transaction is rolled back and the batch
    written again with a savepoint and a flush per mail, the failing mail alone quarantined (or, for a
    Message-ID another worker recorded meanwhile, retried after)."""
    outcomes: list[Result | Work] = []
    collided: list[int] = []
    unflushed, earlier = MailKeys(), MailKeys()  # the mails not flushed yet; all mails of the batch so far
    with app.db.session(autoflush=False) as session:
        # One SELECT for the batch; the bytes are loaded only for a mail that was not prepared.
        raws = {raw.id: raw for raw in session.scalars(select(RawMessage).where(RawMessage.id.in_(raw_ids))
                                                       .options(defer(RawMessage.raw)).with_for_update())}
        lookups = None if careful else _look_up_ahead(app, session, raws, prepared)
        for raw_id in raw_ids:
            ahead = prepared.get(raw_id)
            mail = ahead.mail if ahead else None
            if unflushed.could_meet(mail):
                _flush(session, careful)
                unflushed.clear()
            # What was looked up at the batch's start is still true unless an earlier mail could have changed it.
            known = None if earlier.could_meet(mail) else lookups
            try:
                with session.begin_nested() if careful else nullcontext():
                    outcome = _run_stages(app, session, raw_id, raws.get(raw_id), ahead, known, flush=careful)
            except IntegrityError:
                if not careful:
                    raise _Redo from None
                collided.append(raw_id)  # another worker recorded the same Message-ID meanwhile
                continue
            except StageFailed as failure:
                if is_transient(failure.cause):
                    raise failure.cause from None
                if not careful:
                    raise _Redo from None
                _quarantine(session, raw_id, failure.stage, failure.cause)
                outcome = Result(raw_id, "quarantined")
            outcomes.append(outcome)
            if isinstance(outcome, Work) and not careful:
                unflushed.add(outcome)
                earlier.add(outcome)
        _flush(session, careful)
        flush_events(session)
    finished = [outcome for outcome in outcomes if isinstance(outcome, Work)]
    for work in finished:  # counted once the batch has committed (a batch written twice counts once)
        metrics.mail_done(work)
    return [_result(outcome) for outcome in outcomes], collided


def _look_up_ahead(app: App, session: Session, raws: dict[int, RawMessage],
                   prepared: dict[int, Prepared]) -> Lookups | None:
    pending = [(raws[raw_id], ahead.mail) for raw_id, ahead in prepared.items()
               if raw_id in raws and raws[raw_id].status == "pending"]
    if not pending:
        return None
    since = window_start((raw.received_at for raw, _ in pending), timedelta(days=app.config.dedup.window_days))
    return fetch(session, ((mail, raw.message_id) for raw, mail in pending), since, app.directory)


def _flush(session: Session, careful: bool) -> None:
    """Write what the mails so far added; a row the database refuses sends the batch to be written carefully."""
    try:
        session.flush()
    except (IntegrityError, DataError):
        if careful:
            raise
        raise _Redo from None


def _result(outcome: Result | Work) -> Result:
    """After the flush: the rows have their ids."""
    if isinstance(outcome, Result):
        return outcome
    return Result(outcome.raw.id, outcome.outcome, outcome.raw.ticket_id, tuple(row.id for row in outcome.outbox))


def prepare_batch(app: App, raw_ids: list[int]) -> dict[int, Prepared]:
    """Parse, redact and screen the batch's pending mails, in the pool when there is one: its processes read
    the mails by id and store the attachments themselves, so no mail's bytes pass through this process."""
    rules = Rules.of(app.config)
    if app.cpu is not None:
        return dict(app.cpu.prepare_many(raw_ids, rules))
    ledger = Ledger(partial(_pending_raws, app), app.sealer, app.store)
    return dict(prepare_stored(ledger, raw_ids, rules))


@contextmanager
def _pending_raws(app: App, raw_ids: list[int]) -> Iterator[Iterable[tuple[int, bytes]]]:
    """The batch's mails still pending and not too large, from a read snapshot (the pool reads its own)."""
    with app.db.reading() as session:
        yield session.execute(select(RawMessage.id, RawMessage.raw).where(
            RawMessage.id.in_(raw_ids), RawMessage.status == "pending",
            RawMessage.size <= app.config.max_message_bytes))


def _run_stages(app: App, session: Session, raw_id: int, raw: RawMessage | None, prepared: Prepared | None,
                lookups: Lookups | None, *, flush: bool) -> Result | Work:
    if raw is None or raw.status != "pending":
        return Result(raw_id, "skipped")
    work = Work(app, session, raw, prepared=prepared, lookups=lookups)
    for name, stage in STAGES:
        try:
            if not metrics.timed_stage(name, stage, work):
                break
        except Exception as exc:
            raise StageFailed(name, exc) from exc
    raw.status, raw.processed_at = work.outcome, utcnow()
    if flush:  # written carefully: each mail's own flush, so a value the schema refuses is this mail's alone
        try:
            session.flush()
        except DataError as exc:  # a value the schema refuses: this mail's fault or ours, never the batch's
            raise StageFailed("record", exc) from exc
    keep_events(work)
    return work


def _quarantine(session: Session, raw_id: int, stage: str, cause: BaseException) -> None:
    log.debug("".join(traceback.format_exception(cause)))
    raw = session.get(RawMessage, raw_id)
    if raw is not None and raw.status == "pending":
        metrics.mail_quarantined(raw, stage, cause)
        raw.status, raw.stage, raw.processed_at = "quarantined", stage, utcnow()
        raw.error = f"{type(cause).__name__}: {cause}"[:4000]


def _quarantine_alone(app: App, raw_id: int) -> Result:
    with app.db.session() as session:
        _quarantine(session, raw_id, "record", RuntimeError("unique constraint violated twice"))
    return Result(raw_id, "quarantined")
