"""Due dates for 100,000 tickets: first response (2 business days) and resolution (5 business days).

    python bench/due_dates.py [--tickets 100000]

Arrivals are spread over a year (weekends, Singapore holidays, DST does not apply there; a London
calendar is measured too). Prints the time per calendar and per ticket. The calendar walks whole open
spans a day at a time, never minute by minute.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailer.config import CalendarConfig, SlaConfig
from sla.calendar import BusinessCalendar
from sla.clock import due_dates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(5)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    arrivals = [start + timedelta(seconds=rng.randint(0, 365 * 24 * 3600)) for _ in range(args.tickets)]
    week = ("mon", "tue", "wed", "thu", "fri")
    calendars = {
        "Singapore, Mon–Fri 09–18, SG holidays": CalendarConfig(
            time_zone="Asia/Singapore", hours={d: ((clock(9), clock(18)),) for d in week}, country="SG"),
        "London, split shifts, GB holidays, DST": CalendarConfig(
            time_zone="Europe/London", hours={d: ((clock(9), clock(12)), (clock(13), clock(18))) for d in week},
            country="GB"),
    }
    policy = SlaConfig(first_response="2 business days", resolution="5 business days")
    for name, config in calendars.items():
        calendar = BusinessCalendar.from_config(config)
        began = time.perf_counter()
        for arrived in arrivals:
            due_dates(calendar, policy, arrived)
        elapsed = time.perf_counter() - began
        print(f"{name}: {args.tickets} tickets (2 due dates each) in {elapsed:.2f}s "
              f"= {elapsed / args.tickets * 1e6:.1f} µs per ticket")
    return 0


if __name__ == "__main__":
    sys.exit(main())
