"""Progress for long operations: a line redrawn on a terminal, nothing at all otherwise.

A cron job or a pipe gets no progress noise, only the command's final summary; a person at a terminal
sees `label: 12,000 / 1,000,000 (1 %)` move at most five times a second.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")
REDRAW_EVERY = 0.2


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label, self.total, self.count = label, total, 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._drawn_at = 0.0

    def advance(self, amount: int = 1) -> None:
        self.count += amount
        if self.enabled and time.monotonic() - self._drawn_at >= REDRAW_EVERY:
            self._draw()

    def _draw(self) -> None:
        self._drawn_at = time.monotonic()
        if self.total:
            text = f"{self.label}: {self.count:,} / {self.total:,} ({100 * self.count // self.total} %)"
        else:
            text = f"{self.label}: {self.count:,}"
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.finish()


def progress(items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
    """Yield `items`, showing how far along they are on a terminal."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(label, total) as shown:
        for item in items:
            yield item
            shown.advance()
