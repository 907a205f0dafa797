"""The dramatiq side: the broker, the two actors, and in-process worker threads.

Actors carry row ids only (a short list of them for processing); the rows say what to do.
`embedded` uses dramatiq's StubBroker with worker threads in this process; a Redis or RabbitMQ URL
shares the work with `supportd worker` processes on any host. Actors are declared on an explicit
broker, never on dramatiq's global default, so importing this module needs no Redis.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

import dramatiq
from dramatiq.brokers.stub import StubBroker

from mailer.app import App
from mailer.config import BrokerConfig
from mailer.ledger.db import utcnow
from mailer.stages import runner
from mailer.stages.escalate import escalate
from mailer.transport.outbox import deliver_batch
from parsing.language import load_models

log = logging.getLogger(__name__)

PROCESS_QUEUE, SEND_QUEUE = "supportd_process", "supportd_send"
# Mails per processing message: one transaction each. Small enough that a retried batch is cheap.
PROCESS_BATCH = 50
FIRST_BATCH = 10
# Outbox rows per sending message: claimed in one transaction, sent over one connection, marked in one.
SEND_BATCH = 50
# dramatiq runs lower numbers first: replies go out while a backlog of mail is still being processed.
SEND_PRIORITY, PROCESS_PRIORITY = 0, 10
# Threads that only send, beside the configured ones that process: a reply never waits for a thread that
# is busy with a later batch (all of them are, at the start of a burst, waiting on the parsing pool).
SEND_THREADS = 2


def make_broker(config: BrokerConfig) -> dramatiq.Broker:
    if config.embedded:
        return StubBroker()
    scheme = urlsplit(config.url).scheme
    if scheme in ("redis", "rediss"):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=config.url, namespace=config.namespace)
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    return RabbitmqBroker(url=config.url)


class _SecondWorkerNotice(logging.Filter):
    """dramatiq warns when a second Worker joins a broker; ours is deliberate (sending has threads of its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "same type twice" not in record.getMessage()


class Workers:
    def __init__(self, app: App) -> None:
        self.app = app
        self.broker = make_broker(app.config.broker)
        self.broker.logger.addFilter(_SecondWorkerNotice())
        self._workers: list[dramatiq.Worker] = []
        self.progress = threading.Event()  # set whenever a batch was processed or sent (for `run --once`)
        self.broker_down = False  # set when an enqueue failed; the daemon then re-derives the work
        # Embedded broker: mails enqueued here and not yet through, so the reconciler never queues them twice.
        self._in_hand: set[int] = set()
        self._in_hand_lock = threading.Lock()
        # Transient failures (the database away) are retried by dramatiq; the reconciler catches the rest.
        self.process_actor = dramatiq.actor(self._process, broker=self.broker, actor_name="supportd_process",
                                            queue_name=PROCESS_QUEUE, max_retries=20, min_backoff=500,
                                            max_backoff=60_000, priority=PROCESS_PRIORITY)
        self.send_actor = dramatiq.actor(self._send, broker=self.broker, actor_name="supportd_send",
                                         queue_name=SEND_QUEUE, max_retries=20, min_backoff=1000,
                                         max_backoff=60_000, priority=SEND_PRIORITY)
        # The SLA check is cheap to repeat and runs again a minute later: no retries.
        self.sla_actor = dramatiq.actor(self._check_sla, broker=self.broker, actor_name="supportd_sla",
                                        queue_name=PROCESS_QUEUE, max_retries=0)

    def _process(self, raw_ids: list[int], answer_first: bool = False) -> None:
        try:
            if answer_first:
                self._process_and_answer(raw_ids)
            else:
                results = runner.process(self.app, raw_ids)
                self.enqueue_send(outbox_id for result in results for outbox_id in result.outbox_ids)
        finally:
            with self._in_hand_lock:
                self._in_hand.difference_update(raw_ids)
        self.progress.set()

    def _process_and_answer(self, raw_ids: list[int]) -> None:
        """The first batch after a quiet spell: its replies go out before any later batch writes.

        A later batch's write holds the ledger for a few hundred milliseconds; between this batch's commit
        and its replies' claim, and again before their mark, the first customers would wait for it. (A mail
        the runner writes again alone after a Message-ID collision waits for this hold, at most ORDER_WAIT;
        with the embedded broker this process orders every write, so only a batch that waited out
        ORDER_WAIT can collide.)"""
        app = self.app
        with app.batch_order.taken_up(min(raw_ids)):  # later batches wait for this one to end, replies too
            results = runner.process(app, raw_ids)
            outbox_ids = [outbox_id for result in results for outbox_id in result.outbox_ids]
            try:
                for start in range(0, len(outbox_ids), SEND_BATCH):
                    self._send(outbox_ids[start:start + SEND_BATCH])
            except Exception as exc:  # the sending actor retries what could not be sent here
                log.warning("sending at once failed (%s: %s); the replies are queued", type(exc).__name__, exc)
                self.enqueue_send(outbox_ids)

    def _send(self, outbox_ids: list[int] | int) -> None:
        ids = [outbox_ids] if isinstance(outbox_ids, int) else outbox_ids  # one id: a message from before
        for delivery in deliver_batch(self.app, ids):
            if delivery.outcome == "retry" and delivery.retry_in is not None:
                delay_ms = max(int(delivery.retry_in.total_seconds() * 1000), 10)
                self.send_actor.send_with_options(args=([delivery.outbox_id],), delay=delay_ms)
        self.progress.set()

    def check_sla(self) -> None:
        """Ask a worker for the SLA check (from the daemon's timer)."""
        self._post(self.sla_actor)

    def _check_sla(self) -> None:
        self.enqueue_send(escalate(self.app, utcnow()))

    def enqueue_process(self, raw_ids: Iterable[int], *, recovered: bool = False) -> int:
        """Queue mails for processing in batches. `recovered`: mails the reconciler found still pending
        (their message was lost or its retries ran out); with the embedded broker those still queued here
        are left alone, and the rest promise no order: a later batch must never wait for them to come up.
        Returns how many mails were queued."""
        ids = self._not_in_hand(raw_ids)
        if not ids:
            return 0
        # A small first batch: the first customers of a burst are answered without waiting for a full one.
        bounds = [0, *range(FIRST_BATCH, len(ids), PROCESS_BATCH)] if len(ids) > FIRST_BATCH else [0]
        # The embedded broker's batches are all taken up here, so their order is known from now on.
        order = self.app.batch_order if self.app.config.broker.embedded and not recovered else None
        quiet = order is not None and order.idle()  # nothing in hand: this is the first batch of a burst
        for start, end in zip(bounds, [*bounds[1:], len(ids)], strict=True):
            batch = ids[start:end]
            if order is not None:
                order.expect(min(batch))
            answer_first = (True,) if quiet and start == 0 else ()  # (never for remote workers)
            if not self._post(self.process_actor, batch, *answer_first):
                if order is not None:
                    order.forget(min(batch))
                with self._in_hand_lock:  # not queued after all: the reconciler must find them again
                    self._in_hand.difference_update(ids[start:])
                return start
        return len(ids)

    def _not_in_hand(self, raw_ids: Iterable[int]) -> list[int]:
        if not self.app.config.broker.embedded:
            return list(raw_ids)  # remote workers' progress is not seen here: the ledger decides
        with self._in_hand_lock:
            ids = [raw_id for raw_id in raw_ids if raw_id not in self._in_hand]
            self._in_hand.update(ids)
        return ids

    def enqueue_send(self, outbox_ids: Iterable[int]) -> None:
        ids = list(outbox_ids)
        for start in range(0, len(ids), SEND_BATCH):
            if not self._post(self.send_actor, ids[start:start + SEND_BATCH]):
                return

    def _post(self, actor: dramatiq.Actor, *args: object) -> bool:  # type: ignore[type-arg]
        """Enqueue, or note that the broker is away: the rows are the work, the reconciler sends it again."""
        try:
            actor.send(*args)
        except Exception as exc:  # whatever the broker's client raises; nothing is lost but the message
            if not self.broker_down:
                log.warning("broker unreachable (%s: %s); the work waits in the ledger", type(exc).__name__, exc)
            self.broker_down = True
            return False
        if self.broker_down:
            log.info("broker reachable again")
            self.broker_down = False
        return True

    def start(self, threads: int) -> None:
        if threads > 0 and not self._workers:
            if self.app.cpu is None:  # with a parsing pool, its processes detect languages, not this one
                load_models()
            self._workers = [
                # Processing threads take replies too, before any batch (priority): under a backlog, two
                # sending threads alone fall behind the four that write.
                dramatiq.Worker(self.broker, queues={PROCESS_QUEUE, SEND_QUEUE}, worker_threads=threads,
                                worker_timeout=100),
                dramatiq.Worker(self.broker, queues={SEND_QUEUE}, worker_threads=SEND_THREADS, worker_timeout=100)]
            for worker in self._workers:
                worker.start()

    def threads(self) -> list[threading.Thread]:
        """The worker threads of this process (processing and sending), for the health check."""
        return [thread for worker in self._workers for thread in worker.workers]

    def stop(self) -> None:
        for worker in self._workers:  # processing first: the replies of its last batches are sent after
            worker.stop(timeout=30_000)
        self._workers = []
        self.broker.close()
