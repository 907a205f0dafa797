"""The config's JSON Schema and the annotated example cannot drift apart; mistakes read as our own words."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mailer.cli import main
from mailer.config import ConfigError, config_from_dict, json_schema

EXAMPLE = Path(__file__).resolve().parents[1] / "supportd.toml.example"
# A table header or a `key = value` line, written or commented out ("# key = value" shows an optional key).
HEADER = re.compile(r"^#?\s*\[\[?([A-Za-z0-9_.-]+)\]\]?\s*(#.*)?$")
KEY = re.compile(r"^#?\s*([A-Za-z0-9_-]+)\s*=\s*\S")


def example_keys() -> list[tuple[str, ...]]:
    """Every key path the example shows, written or commented out: ("mailboxes", "oauth", "provider")."""
    table: tuple[str, ...] = ()
    keys = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        header = HEADER.match(line)
        if header:
            table = tuple(header[1].split("."))
            keys.append(table)
            continue
        key = KEY.match(line)
        if key:
            keys.append((*table, key[1]))
    return keys


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref, arrays (of tables) and nullable unions down to the object a TOML table is checked by."""
    while True:
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        elif node.get("type") == "array" and isinstance(node.get("items"), dict):
            node = node["items"]
        elif "anyOf" in node:
            node = next(n for n in node["anyOf"] if n.get("type") != "null")
        else:
            return node


def schema_has(schema: dict[str, Any], path: tuple[str, ...]) -> bool:
    node = schema
    for part in path:
        node = _resolve(schema, node)
        if part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):  # a table of named tables or values
            node = node["additionalProperties"]
        else:
            return False
    return True


def test_every_key_of_the_example_is_in_the_schema() -> None:
    schema = json_schema()
    keys = example_keys()
    assert len(keys) > 100  # the parser above really reads the example
    assert [".".join(path) for path in keys if not schema_has(schema, path)] == []


def test_every_section_of_the_schema_is_shown_in_the_example() -> None:
    shown = {path[0] for path in example_keys()}
    assert sorted(set(json_schema()["properties"]) - shown) == []


def test_the_schema_knows_what_it_must_refuse() -> None:
    schema = json_schema()
    assert not schema_has(schema, ("mailboxes", "pasword_env")) and not schema_has(schema, ("smtp_relay",))
    mailbox = _resolve(schema, schema["properties"]["mailboxes"])
    assert mailbox["additionalProperties"] is False and set(mailbox["required"]) == {"name", "url"}
    assert mailbox["properties"]["batch_size"] == {"default": 200, "description": mailbox["properties"]["batch_size"]
                                                   ["description"], "minimum": 1, "title": "Batch Size",
                                                   "type": "integer"}
    assert mailbox["properties"]["done_action"]["enum"] == ["seen", "flagged", "move", "none"]
    assert mailbox["properties"]["url"]["type"] == "string"  # what the file holds, not what it becomes
    hours = _resolve(schema, schema["properties"]["calendar"])["properties"]["hours"]
    assert hours["additionalProperties"] == {"items": {"type": "string"}, "type": "array"}


def test_config_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(json_schema())) and printed["required"] == ["smtp"]


SMTP = {"url": "smtp://127.0.0.1:25", "from_address": "support@desk.example"}


@pytest.mark.parametrize(("data", "message"), [
    ({"mailboxes": {"name": "x"}}, "mailboxes: must be an array of tables ([[...]])"),
    ({"mailboxes": [{"name": "a", "url": "imap://u:p@127.0.0.1/", "done_action": "burn"}]},
     "mailboxes[0].done_action: must be one of seen, flagged, move, none; got 'burn'"),
    ({"mailboxes": [{"name": "a", "url": "imap://u:p@127.0.0.1/", "done_action": "move"}]},
     'mailboxes[0].done_folder: is required when done_action = "move"'),
    ({"desk": {"name": True}}, "desk.name: must be a string, not a boolean"),
    ({"queues": {}}, "queues: needs at least one queue"),
    ({"sla": {"policies": [{"calendar": "nope"}]}},
     "sla.policies[0].calendar: names no calendar: 'nope' (known: default, 24x7)"),
    ({"calendar": {"hours": {"mun": ["09:00-18:00"]}}}, "calendar.hours.mun: unknown key"),
    ({"dedup": {"similarity": 2}}, "dedup.similarity: must be at most 1"),
    ({"rules": [{"name": "x", "queue": "general", "subject": [3]}]},
     "rules[0].subject[0]: must be a string, not int 3"),
    ({"attachments": {"max_mb": 0}}, "attachments.max_mb: must be at least 0.001, got 0"),
])
def test_mistakes_are_one_line_in_our_words(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"smtp": SMTP, **data}, "desk.toml")
    text = str(caught.value)
    assert text.startswith(f"desk.toml: {message}")
    assert "\n" not in text and "pydantic" not in text and "validation error" not in text.lower()


def test_empty_trust_and_dkim_tables_mean_off() -> None:
    config = config_from_dict({"smtp": SMTP, "trust": {}, "dkim": {}})
    assert config.trust is None and config.dkim is None


def test_the_config_does_not_import_the_calendar_that_reads_it() -> None:
    """sla.calendar reads CalendarConfig; the config checks durations through sla.duration, never the calendar."""
    import ast

    root = Path(__file__).resolve().parents[1]
    imported = set()
    for path in [*(root / "mailer" / "config").glob("*.py"), root / "sla" / "duration.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add((path.name, node.module))
    assert {module for _, module in imported} & {"sla.calendar", "sla.clock", "sla"} == set()
    assert ("duration.py", "mailer.config") not in imported
