"""What every command shares: exit codes, the user's mistake as one line, loading the config."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mailer.config import Config, load_config
from mailer.runtime import safety

if TYPE_CHECKING:  # the CLI imports the heavy modules only for the command that runs
    from mailer.app import App


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """A mistake the user can fix; printed without a traceback."""


def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("SUPPORTD_CONFIG") or "supportd.toml")


def load(args: argparse.Namespace) -> Config:
    return with_drivers(load_config(config_path(args)))


def with_drivers(config: Config) -> Config:
    """Every command stops here, in one line, when the config needs a driver the install lacks."""
    missing = safety.missing_drivers(config)
    if missing:
        raise UserError(missing)
    return config


def warn(config: Config, *, logged: bool = False) -> None:
    """check-config prints; a starting daemon logs (so a JSON log stays all JSON)."""
    for warning in safety.warnings(config):
        if logged:
            logging.getLogger("supportd").warning("%s", warning)
        else:
            print(f"supportd: warning: {warning}", file=sys.stderr)


def open_app(args: argparse.Namespace, *, upgrade: bool = True) -> App:
    from mailer.app import App
    from mailer.ledger import migrate

    config = load(args)
    if upgrade:
        migrate.upgrade(config.database_url)
    return App.from_config(config)
