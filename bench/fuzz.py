"""The long fuzz run: mutated real mail through the whole stage list, at least 5,000 cases.

    python bench/fuzz.py [--cases 5000] [--database-url postgresql://…]

The same property as tests/test_fuzz.py (no stage after `parse` fails on what `parse` produced, no
reply to an injected address), with fresh random cases each run; prints the number of cases, the
outcomes and the mutations applied. A broken property fails with the shrunk case that breaks it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_fuzz import run_fuzz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--database-url", help="default: a new SQLite file")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # hypothesis warns about the size of a failing case's repr
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="supportd-fuzz-") as tmp:
        fuzzer = run_fuzz(Path(tmp), args.cases, derandomize=False, database_url=args.database_url)
    elapsed = time.perf_counter() - started
    print(fuzzer.report())
    print(f"  {elapsed:.0f} s, {elapsed / max(sum(fuzzer.outcomes.values()), 1) * 1000:.1f} ms per case")
    return 0


if __name__ == "__main__":
    sys.exit(main())
