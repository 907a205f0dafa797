"""Logging set-up: `--log-format json|text`, JSON by default when stderr is not a terminal.

A JSON line carries the time, level, logger, message and the record's structured `fields` (raw id,
ticket, mailbox, UID, stage, duration, outcome for a mail), so a log pipeline can index them. What is
logged is ids and places, never a body, a subject or a credential: the fields are chosen where they
are logged (`mailer.runtime.metrics`), not filtered afterwards.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def default_format() -> str:
    return "text" if sys.stderr.isatty() else "json"


def configure(level: str, fmt: str | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if (fmt or default_format()) == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("dramatiq").setLevel(max(logging.WARNING, logging.getLogger().level))
    for noisy in ("imapclient", "alembic", "pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
