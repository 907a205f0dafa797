"""Run `python -m mailer …` with SQL statements and commits counted (for `bench/ingest.py --count`).

    python bench/count_sql.py OUT_FILE mailer-arguments…

Listens on SQLAlchemy's Engine class, so every engine the process makes is counted; at exit, one line
`statements commits` is appended to OUT_FILE (one line per process: the bench adds them up).
"""

from __future__ import annotations

import atexit
import itertools
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_statements, _commits = itertools.count(), itertools.count()  # next() is atomic under the GIL


def _on_statement(*_args: Any) -> None:
    next(_statements)


def _on_commit(*_args: Any) -> None:
    next(_commits)


def _report(out: Path) -> None:
    with out.open("a") as fh:
        fh.write(f"{next(_statements)} {next(_commits)}\n")


def main() -> int:
    out = Path(sys.argv[1])
    event.listen(Engine, "before_cursor_execute", _on_statement)
    event.listen(Engine, "commit", _on_commit)
    atexit.register(_report, out)
    from mailer.cli import main as cli_main

    return cli_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
