"""Batches write in the order they were enqueued, even when a later one is taken up first."""

from __future__ import annotations

import threading
import time

from mailer.stages.prepare import BatchOrder


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
