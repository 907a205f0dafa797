"""Redaction benchmark: milliseconds per mail for `parsing.secrets.redact`, beside parsing the same mails.

    python bench/redact.py [--mails 2000]

Uses the ingest benchmark's corpus (5–50 KB customer mails, 34.5 KB mean) and times redact() on each
mail's subject and text, as the `redact` stage does for a mail without secrets; parsing the same mails
is timed in the same run, so the ratio holds on a busy machine too. The other pure functions of a mail's
CPU path are timed on the same mails: the identifiers (part of parsing, on the subject and new text)
and routing with the shipped rules.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailer.config import config_from_dict
from mailer.demo.samples import bulk_mail
from parsing.identifiers import extract_identifiers
from parsing.message import parse
from parsing.secrets import redact
from routing.rules import Router


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(2026)
    raws = [bulk_mail(i, f"Customer {i} <customer{i}@example.net>", rng) for i in range(args.mails)]
    started = time.perf_counter()
    mails = [parse(raw) for raw in raws]
    parsing = time.perf_counter() - started
    started = time.perf_counter()
    found = sum(redact(mail.subject).found or redact(mail.text).found for mail in mails)
    redacting = time.perf_counter() - started
    print(f"{args.mails} mails, mean {statistics.mean(map(len, raws)) / 1e3:.1f} KB raw, "
          f"{statistics.mean(len(m.text) for m in mails) / 1e3:.1f} K characters of text; {found} with secrets")
    print(f"redact: {redacting / args.mails * 1000:.3f} ms per mail; parse: {parsing / args.mails * 1000:.3f} ms "
          f"per mail; redaction costs {redacting / parsing:.2f}× parsing")
    started = time.perf_counter()
    for mail in mails:
        extract_identifiers(mail.subject + "\n" + mail.new_text)
    identifying = time.perf_counter() - started
    router = Router(config_from_dict({"smtp": {"url": "smtp://127.0.0.1:25", "from_address": "s@desk.example"}}).rules)
    started = time.perf_counter()
    for i, mail in enumerate(mails):
        router.route(mail, f"customer{i}@example.net")
    routing = time.perf_counter() - started
    print(f"identifiers: {identifying / args.mails * 1000:.3f} ms per mail; routing (shipped rules): "
          f"{routing / args.mails * 1000:.3f} ms per mail")
    return 0


if __name__ == "__main__":
    sys.exit(main())
