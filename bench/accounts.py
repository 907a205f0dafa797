"""Account import at exchange scale: `supportd accounts import` of N generated rows, as its own process.

    python bench/accounts.py [--rows 200000 1000000] [--database sqlite postgres]

For each size and database: a fresh database, a CSV of N rows (a few hundredths of them malformed, to
exercise the skip path; mixed-case addresses and IDN domains to exercise normalization), then three
imports in separate processes: the first (all new), the same file again (all unchanged) and a file in
which every tenth row changed. Prints rows/s and the peak RSS of each import process, read with wait4
from the kernel's own accounting of that child.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailer.ledger import migrate

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def write_csv(path: Path, rows: int, changed_every: int = 0) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("email,user_id,language,display_name,anti_phishing_code\n")
        for i in range(rows):
            if i % 5000 == 4999:
                out.write(f"broken-{i},{i},en,,\n")  # not an address: skipped and counted
                continue
            domain = "bücher.example" if i % 1000 == 0 else "exchange.example"
            name = f"Trader {i}" if not (changed_every and i % changed_every == 0) else f"Trader {i} (renamed)"
            out.write(f"Trader.{i}@{domain},{50_000_000 + i},{'zh' if i % 3 == 0 else 'en'},{name},"
                      f"AP-{i % 99991}\n")


def run_import(config: Path, csv: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, summary line) of one `supportd accounts import` process."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "mailer", "accounts", "import", "--config", str(config),
                                str(csv)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not the max over all children
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"import failed ({process.returncode}): {out}")
    return elapsed, usage.ru_maxrss / 1024, out.strip()


def fresh_database(kind: str, workdir: Path, rows: int) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'accounts-{rows}.db'}", None
    import psycopg

    name = f"supportd_bench_accounts_{rows}_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}", name


def drop_database(name: str | None) -> None:
    if name is None:
        return
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--database", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="supportd-bench-accounts-"))
    print(f"{'rows':>9}  {'database':8}  {'import':24}  {'seconds':>7}  {'rows/s':>8}  {'peak RSS':>8}")
    for rows in args.rows:
        first, changed = workdir / f"accounts-{rows}.csv", workdir / f"accounts-{rows}-changed.csv"
        write_csv(first, rows)
        write_csv(changed, rows, changed_every=10)
        for kind in args.database:
            url, name = fresh_database(kind, workdir, rows)
            try:
                migrate.upgrade(url)
                config = workdir / f"supportd-{kind}.toml"
                config.write_text(tomli_w.dumps({
                    "smtp": {"url": "smtp://127.0.0.1:2525", "from_address": "support@desk.example"},
                    "database": {"url": url}, "paths": {"storage": str(workdir / "data")}}))
                for label, csv in (("first (all new)", first), ("again (all unchanged)", first),
                                   ("every 10th row changed", changed)):
                    seconds, rss, summary = run_import(config, csv)
                    print(f"{rows:>9,}  {kind:8}  {label:24}  {seconds:7.1f}  {rows / seconds:8,.0f}  "
                          f"{rss:6.0f} MB", flush=True)
                    print(f"{'':>9}  {'':8}  {summary}", flush=True)
            finally:
                drop_database(name)
                for path in workdir.glob("accounts-*.db*"):
                    path.unlink()
        first.unlink()
        changed.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
