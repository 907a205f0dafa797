"""`supportd config schema`: the JSON Schema of supportd.toml, for editors that complete and check TOML."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

Command = Callable[..., argparse.ArgumentParser]


def register(sub: argparse._SubParsersAction, command: Command) -> None:
    """Add the `config` command group; `command` is the CLI's own sub-command factory."""
    group = sub.add_parser("config", help="the config file's schema").add_subparsers(dest="sub", required=True)
    command("schema", cmd_config_schema, "print the JSON Schema of supportd.toml (see README: editor support)",
            parent=group, config=False)


def cmd_config_schema(args: argparse.Namespace) -> int:
    from mailer.config import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0
