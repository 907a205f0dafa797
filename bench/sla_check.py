"""The periodic SLA check with 100,000 open tickets: the indexed "next alert at" query against a full scan.

    python bench/sla_check.py [--tickets 100000] [--due 100] [--database sqlite postgres]

Writes N open tickets arrived over the last ten days on the default calendar (their due dates and next
alert computed by the real code), of which `--due` have an alert due now, then times:

- `escalate(app, now)` — the check as the daemon runs it every 30 s: once with `--due` tickets due
  (their alerts are recorded) and again right after, with nothing due (the usual case);
- the previous check: read every open ticket and work out its alerts (no alert is recorded).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailer.app import App
from mailer.config import config_from_dict
from mailer.ledger import migrate
from mailer.ledger.db import Ticket, utcnow
from mailer.stages.escalate import escalate
from sla.clock import due_dates
from sla.escalation import alerts, next_alert

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def fill(app: App, tickets: int, due_now: int) -> None:
    rng = random.Random(10)
    now = utcnow()
    queues = list(app.config.queues)
    rows = []
    for i in range(tickets):
        arrived = now - timedelta(minutes=rng.randrange(10 * 24 * 60))
        queue, priority = rng.choice(queues), rng.choice(("low", "normal", "high"))
        policy = app.config.sla.policy_for(queue, priority)
        calendar = app.calendars[policy.calendar]
        due = due_dates(calendar, policy, arrived)
        row = {"id": i + 1, "queue": queue, "priority": priority, "status": "open",
               "customer_email": f"c{i}@example.net", "verified": "verified", "language": "en",
               "subject": f"Question {i}", "identifiers": {},
               "created_at": arrived, "updated_at": arrived, "first_response_due": due.first_response,
               "resolution_due": due.resolution, "sla_calendar": policy.calendar, "paused_seconds": 0,
               "first_responded_at": arrived + timedelta(minutes=30) if i % 4 else None}
        ticket = Ticket(**row)
        # As the pipeline leaves them: alerts already past were sent by earlier checks.
        past = {a.key for a in alerts(ticket, calendar, policy, app.config.sla.warn_at, now)}
        row["next_alert_at"] = (now - timedelta(seconds=1) if i < due_now
                                else next_alert(ticket, calendar, policy, app.config.sla.warn_at, past))
        rows.append(row)
    # An insert takes None for "use the column default" (the safety net: look at it at the next check).
    nothing_left = [row["id"] for row in rows if row["next_alert_at"] is None]
    with app.db.session() as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(Ticket), rows[start:start + 5000])
        for start in range(0, len(nothing_left), 5000):
            session.execute(update(Ticket).where(Ticket.id.in_(nothing_left[start:start + 5000]))
                            .values(next_alert_at=None))
    with app.db.engine.begin() as connection:  # the statistics autovacuum would gather after such a load
        connection.exec_driver_sql("ANALYZE tickets" if connection.dialect.name == "postgresql" else "ANALYZE")


def plan(app: App) -> str:
    """How the database runs the check's query: it must be an index range, not a table scan."""
    query = select(Ticket.id).where(Ticket.next_alert_at <= utcnow())
    with app.db.engine.connect() as connection:
        compiled = query.compile(connection, compile_kwargs={"literal_binds": False})
        prefix = "EXPLAIN" if connection.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
        rows = connection.exec_driver_sql(f"{prefix} {compiled}", tuple(compiled.params.values())
                                          if connection.dialect.name == "sqlite" else compiled.params).all()
    return " / ".join(str(row[-1]).strip() for row in rows)


def full_scan(app: App) -> int:
    """What the check did before: every open ticket read and its alerts worked out."""
    now, found = utcnow(), 0
    with app.db.session() as session:
        for ticket in session.scalars(select(Ticket).where(Ticket.status != "closed")):
            calendar, policy = app.sla_for(ticket)
            found += len(alerts(ticket, calendar, policy, app.config.sla.warn_at, now))
    return found


def timed(action: object, repeat: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def database(kind: str, workdir: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'sla.db'}", None
    import psycopg

    name = f"supportd_bench_sla_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}", name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--database", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    args = parser.parse_args()
    logging.getLogger("mailer.stages.escalate").setLevel(logging.ERROR)  # the bench's queues have no lead to tell
    workdir = Path(tempfile.mkdtemp(prefix="supportd-bench-sla-"))
    for kind in args.database:
        url, name = database(kind, workdir)
        try:
            migrate.upgrade(url)
            app = App.from_config(config_from_dict({
                "smtp": {"url": "smtp://127.0.0.1:2525", "from_address": "support@desk.example"},
                "database": {"url": url}, "paths": {"storage": str(workdir / "data")}}, base_dir=workdir))
            fill(app, args.tickets, args.due)
            started = time.perf_counter()
            escalate(app, utcnow())
            with_due = time.perf_counter() - started
            idle, _ = timed(lambda app=app: escalate(app, utcnow()))
            scan, found = timed(lambda app=app: full_scan(app), repeat=1)
            print(f"{kind:8}  {args.tickets:,} open tickets: check with {args.due} due {with_due * 1000:7.1f} ms, "
                  f"with none due {idle * 1000:6.1f} ms (median of 5); full scan as before {scan * 1000:8.0f} ms "
                  f"({found} alerts past due by the clock, sent or not)", flush=True)
            print(f"{'':8}  query plan: {plan(app)}", flush=True)
            app.close()
        finally:
            if name is not None:
                import psycopg

                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
