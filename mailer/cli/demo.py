"""`supportd demo`: runs mailer/demo/run.py, imported only when the command runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_demo(args: argparse.Namespace) -> int:
    from mailer.demo.run import run_demo

    return run_demo(keep=Path(args.keep) if args.keep else None)
