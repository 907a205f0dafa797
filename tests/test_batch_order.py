"""Batches write in the order they were enqueued, even when a later one is taken up first; the first
batch of a burst is answered before a later one writes."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from sqlalchemy import select

from mailer.demo.samples import bulk_mail
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Outbox, RawMessage
from mailer.runtime.workers import FIRST_BATCH
from mailer.stages.prepare import BatchOrder
from tests.conftest import ConfigFactory, open_db, prepared_app
from tests.servers import Mailbox
from tests.test_pipeline import run_once


def _write(order: BatchOrder, key: int, written: list[int], started: threading.Event | None = None) -> None:
    with order.taken_up(key) as wait_for_earlier_batches:
        if started is not None:
            started.set()
        wait_for_earlier_batches()
        written.append(key)


def test_a_later_batch_taken_up_first_waits_for_the_earlier_one() -> None:
    order, written = BatchOrder(), []
    order.expect(1)
    order.expect(11)
    started = threading.Event()
    later = threading.Thread(target=_write, args=(order, 11, written, started))
    later.start()
    started.wait(5)
    time.sleep(0.2)  # the later batch is taken up and waiting; the earlier one has not been taken up yet
    assert written == []
    _write(order, 1, written)
    later.join(5)
    assert written == [1, 11]


def test_a_batch_not_enqueued_after_all_holds_nothing_up() -> None:
    order, written = BatchOrder(), []
    order.expect(1)
    order.forget(1)
    _write(order, 11, written)
    assert written == [11]


def test_unexpected_batches_still_keep_the_order_they_were_taken_up_in() -> None:
    order, written = BatchOrder(), []
    started = threading.Event()
    with order.taken_up(1) as wait_first:
        later = threading.Thread(target=_write, args=(order, 11, written, started))
        later.start()
        started.wait(5)
        time.sleep(0.2)
        assert written == []
        wait_first()
        written.append(1)
    later.join(5)
    assert written == [1, 11]


def test_the_order_is_idle_only_when_every_batch_has_been_written() -> None:
    order = BatchOrder()
    assert order.idle()
    order.expect(1)
    assert not order.idle()
    with order.taken_up(1):
        assert not order.idle()
    assert order.idle()


def test_the_first_replies_of_a_burst_go_out_before_its_later_batches_write(
        make_config: ConfigFactory, mailbox: Mailbox, tmp_path: Path) -> None:
    path, config = make_config()
    app = prepared_app(config, tmp_path)
    customers = tmp_path / "customers.csv"
    customers.write_text("email,user_id,language,display_name\n" + "".join(
        f"customer{i}@example.net,{20_000_000 + i},en,Customer {i}\n" for i in range(FIRST_BATCH + 20)))
    import_accounts(app.db, customers)
    app.close()
    rng = random.Random(11)
    mailbox.append(*(bulk_mail(i, f"Customer {i} <customer{i}@example.net>", rng) for i in range(FIRST_BATCH + 20)))
    assert run_once(path) == 0
    db = open_db(config)
    with db.reading() as session:
        raws = session.execute(select(RawMessage.ticket_id, RawMessage.processed_at).order_by(RawMessage.id)).all()
        acks = dict(session.execute(select(Outbox.ticket_id, Outbox.sent_at).where(Outbox.purpose == "ack")).all())
    db.dispose()
    first, later = raws[:FIRST_BATCH], raws[FIRST_BATCH:]
    assert all(acks.get(ticket_id) for ticket_id, _ in raws)
    assert max(acks[ticket_id] for ticket_id, _ in first) <= min(processed_at for _, processed_at in later)
