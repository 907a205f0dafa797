"""What every config table shares: frozen, no unknown keys, no silent type coercion; reusable key types.

TOML already gives typed values, so models are strict: `batch_size = "10"` is a mistake to report, not a
string to convert. Paths are relative to the config file's folder, passed as validation context.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator

from mailer.config.errors import KeyProblem


class Section(BaseModel):
    """One TOML table: frozen, strict, and refusing keys it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _lists_as_tuples(cls, data: Any) -> Any:
        """Arrays become tuples (the models are frozen), whether they come from TOML or from Python code."""
        if isinstance(data, dict):
            return {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
        return data


def base_dir(info: ValidationInfo | None) -> Path:
    context = info.context if info is not None else None
    return Path((context or {}).get("base_dir") or Path.cwd())


def _existing_file(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str):
        return value
    path = base_dir(info) / value
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


def _set_variable(value: Any) -> Any:
    if isinstance(value, str) and not os.environ.get(value):
        raise ValueError(f"environment variable {value} is not set")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _list_item(value: str) -> str:
    if not value:
        raise ValueError("must be a non-empty string")
    return value


def _host_port(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'must be host:port such as "127.0.0.1:2424"; got {value!r}')
    return value


def split_host_port(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def require(value: Any, key: str, reason: str = "is required") -> None:
    """A key required only in some combinations (checked after the table's keys are read)."""
    if value is None or value == "" or value == ():
        raise KeyProblem(key, reason)


# A file named relative to supportd.toml, which must exist; the model holds the resolved Path.
ExistingFile = Annotated[Path, BeforeValidator(_existing_file, json_schema_input_type=str)]
# The name of an environment variable that must be set (a secret never sits in the file itself).
SetVariable = Annotated[str, AfterValidator(_set_variable)]
Text = Annotated[str, AfterValidator(_not_blank)]
Items = tuple[Annotated[str, AfterValidator(_list_item)], ...]
HostPort = Annotated[str, AfterValidator(_host_port)]
