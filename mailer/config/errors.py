"""Config mistakes told as `file: key: reason`, whatever found them: TOML, pydantic or our own checks.

pydantic reports a location (`("mailboxes", 0, "url")`) and an error type; this module turns the first
error into the one line an operator reads, in our own words, never a pydantic dump.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

UNKNOWN_KEY = "unknown key (check the spelling against supportd.toml.example)"

# Where "is required" alone would leave the operator guessing what to write.
REQUIRED_HINTS = {"smtp": "is required ([smtp] with url and from_address)"}
TOO_SHORT_HINTS = {"queues": "needs at least one queue"}


class ConfigError(Exception):
    """A configuration mistake, told as `file: key: reason`."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source}: {key}: {reason}")


class KeyProblem(ValueError):
    """Raised by a validator about a key below the one it validates (e.g. a table's `done_folder`)."""

    def __init__(self, key: str | tuple[str | int, ...], reason: str) -> None:
        self.path = (key,) if isinstance(key, str) else key
        super().__init__(reason)


def key_path(loc: tuple[str | int, ...]) -> str:
    """`("mailboxes", 0, "url")` -> `mailboxes[0].url`; pydantic's own markers (`[key]`) are left out."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]" and not part.startswith("function-"):
            text += f".{part}" if text else part
    return text or "(top level)"


def _kind(value: Any) -> str:
    return "a boolean" if isinstance(value, bool) else f"{type(value).__name__} {value!r}"


def _number(value: Any) -> Any:
    """A bound as the operator wrote it: 0, not 0.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _choices(expected: str) -> str:
    """pydantic's `'seen', 'flagged' or 'move'` in our form: `seen, flagged, move`."""
    return expected.replace("'", "").replace(" or ", ", ")


def _reason(error: dict[str, Any], path: str) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "missing":
        return REQUIRED_HINTS.get(path, "is required")
    if kind == "extra_forbidden":
        return UNKNOWN_KEY
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("string_type", "path_type"):
        return f"must be a string, not {_kind(value)}"
    if kind == "bool_type":
        return f"must be true or false, not {_kind(value)}"
    if kind == "int_type":
        return f"must be an integer, not {_kind(value)}"
    if kind == "float_type":
        return f"must be an integer or a number, not {_kind(value)}"
    if kind in ("list_type", "tuple_type"):
        if isinstance(value, dict):
            return "must be an array of tables ([[...]])"
        return f"must be a list, not {_kind(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "dataclass_type"):
        return "must be a table"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {_number(ctx.get('ge', ctx.get('gt')))}, got {value}"
    if kind == "less_than_equal":
        return f"must be at most {_number(ctx['le'])}, got {value}"
    if kind == "less_than":
        return f"must be below {_number(ctx['lt'])}, got {value}"
    if kind == "literal_error":
        return f"must be one of {_choices(ctx['expected'])}; got {value!r}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        return TOO_SHORT_HINTS.get(path, f"needs at least {ctx.get('min_length')} entries")
    return error["msg"]


def config_error(source: str, exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> ConfigError:
    """The first of pydantic's errors, as a ConfigError (one line: the first mistake is the one to fix)."""
    error = exc.errors(include_url=False)[0]
    loc = prefix + tuple(error["loc"])
    problem = (error.get("ctx") or {}).get("error")
    if isinstance(problem, KeyProblem):
        loc += problem.path
    path = key_path(loc)
    return ConfigError(source, path, _reason(error, path))
