"""Parse and redact ahead of the write transaction, on every core: the CPU part of a mail's processing.

Parsing, redaction and the identifiers are pure functions of the raw bytes, so they run before the
pipeline takes the database's write lock and, in the embedded daemon, in a pool of worker processes
(`mailer.runtime.pool`; the database writes stay in one place). The `parse` and `redact` stages take the
prepared result when there is one and do the work themselves otherwise: a mail that fails here fails
there again, in its own stage, and goes to quarantine with that stage's name.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from parsing.identifiers import extract_identifiers
from parsing.language import load_models
from parsing.message import ParsedMail, parse, without_body
from parsing.normalize import content_hash
from parsing.secrets import redact

ORDER_WAIT = 30.0  # seconds a batch waits at most for earlier ones to write first


@dataclass(frozen=True)
class Prepared:
    mail: ParsedMail  # already redacted
    secrets: tuple[str, ...]  # kinds of secret found (never the values)
    raw_without_secrets: bytes | None  # the raw mail to keep instead, when it held secrets and they are dropped


def redact_mail(mail: ParsedMail) -> tuple[ParsedMail, tuple[str, ...]]:
    """The mail with passwords, seed phrases, keys and codes replaced, and the kinds that were found."""
    subject, text = redact(mail.subject), redact(mail.text)
    if not (subject.found or text.found):
        return mail, ()  # the new text is part of the whole text: nothing there either
    new_text = redact(mail.new_text)
    secrets = tuple(dict.fromkeys(subject.kinds + text.kinds + new_text.kinds))
    return replace(mail, subject=subject.text, text=text.text, new_text=new_text.text,
                   identifiers=extract_identifiers(subject.text + "\n" + new_text.text),
                   content_hash=content_hash(subject.text, new_text.text)), secrets


def prepare(raw: bytes, drop_raw_with_secrets: bool) -> Prepared | None:
    """Parsed and redacted, or None when that fails (the stages then report the failure)."""
    try:
        mail, secrets = redact_mail(parse(raw))
        stripped = without_body(raw, secrets) if secrets and drop_raw_with_secrets else None
        return Prepared(mail, secrets, stripped)
    except Exception:  # reported by the stage that meets it again
        return None


def prepare_chunk(raws: Sequence[bytes], drop: bool) -> list[Prepared | None]:
    """`prepare` for each mail: the task a process of the daemon's pool (`mailer.runtime.pool`) runs."""
    return [prepare(raw, drop) for raw in raws]


_SAMPLE = (b"From: Customer <customer@example.net>\r\nTo: support@example.com\r\nSubject: Deposit not credited\r\n"
           b"Message-ID: <warm-up@example.net>\r\n\r\nHello, my deposit has not arrived yet.\r\n")


def warm_up() -> None:
    """Load the language models and parse one mail now, so that the first real mail pays for neither."""
    load_models()
    prepare(_SAMPLE, drop_raw_with_secrets=False)


class BatchOrder:
    """Batches of one process write in the order they were enqueued, whoever finished preparing first.

    Preparing runs outside the write lock and in parallel, but the ledger must see mails in arrival order:
    the first mail of a problem opens the ticket and gets the acknowledgement, a re-sent copy joins it.
    A batch counts from the moment this process enqueues it (`expect`), not from when a thread takes it
    up: a thread that takes up a later batch first still waits for the earlier one.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._keys: Counter[int] = Counter()  # batches enqueued or taken up, not yet written
        self._expected: Counter[int] = Counter()  # of those, enqueued here and not yet taken up

    def expect(self, key: int) -> None:
        """A batch (key: its first row id) is about to be enqueued for this process's own workers."""
        with self._changed:
            self._keys[key] += 1
            self._expected[key] += 1

    def idle(self) -> bool:
        """No batch enqueued or taken up that has not been written yet."""
        with self._changed:
            return not self._keys

    def forget(self, key: int) -> None:
        """An expected batch that was not enqueued after all."""
        with self._changed:
            if self._expected[key] > 0:
                self._expected[key] -= 1
                self._done(key)

    @contextmanager
    def taken_up(self, key: int) -> Iterator[Callable[[], None]]:
        """Register the batch; the callable waits until no earlier batch is left."""
        with self._changed:
            if self._expected[key] > 0:
                self._expected[key] -= 1
            else:
                self._keys[key] += 1
        try:
            yield lambda: self._wait(key)
        finally:
            with self._changed:
                self._done(key)

    def _done(self, key: int) -> None:
        self._keys[key] -= 1
        if self._keys[key] <= 0:
            del self._keys[key]
        self._changed.notify_all()

    def _wait(self, key: int) -> None:
        with self._changed:
            # Bounded: a stuck earlier batch delays this one, it never blocks it for good.
            self._changed.wait_for(lambda: min(self._keys, default=key) >= key, timeout=ORDER_WAIT)
