"""The reconciler never queues a mail twice while the embedded broker still holds it.

Under a backlog, mails wait in the queue longer than the reconciler's settling time. Queued again, each
batch would be expected by the batch order a second time, and every batch taken up after it would wait
`ORDER_WAIT` for it: a backlog of 10,000 mails slowed to a few mails a second. Recovered mails are now
only the ones not in hand, and they promise no order.
"""

from __future__ import annotations

import time
from pathlib import Path

from mailer.demo.embedded import SmtpSink
from mailer.runtime.workers import Workers
from tests.conftest import ConfigFactory, prepared_app
from tests.servers import Mailbox


def test_mails_in_hand_are_not_queued_again_and_recovered_ones_hold_nothing_up(
        make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    _, config = make_config()
    app = prepared_app(config, tmp_path)
    workers = Workers(app)
    try:
        assert workers.enqueue_process(range(1, 121)) == 120  # a backlog: queued, nothing taken up yet
        assert workers.enqueue_process(range(1, 121), recovered=True) == 0  # the reconciler's pass: all in hand
        assert workers.enqueue_process([500, 501], recovered=True) == 2  # lost elsewhere: queued, in no order
        assert not app.batch_order.idle()
        workers.start(threads=2)
        deadline = time.monotonic() + 30
        while not app.batch_order.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.batch_order.idle()  # every batch went through (the ids are not in the ledger: skipped)
        # Through: a mail still pending after that is the reconciler's to queue again.
        assert workers.enqueue_process([1, 2], recovered=True) == 2
    finally:
        workers.stop()
        app.close()
