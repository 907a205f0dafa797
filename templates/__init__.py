"""Outgoing mail texts: one folder per purpose, one file per language and part.

`templates/<purpose>/<lang>.subject.j2`, `<lang>.txt.j2` and `<lang>.html.j2`. HTML parts autoescape;
subjects are rendered from our own words and the ticket number only, then stripped of line breaks and
control characters, so nothing a sender wrote can reach a header. A `[paths] templates` directory in the
config overrides any file here.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

BUILTIN_DIR = Path(__file__).resolve().parent
LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def single_line(text: str, limit: int = 200) -> str:
    """Header-safe: no line breaks or control characters, collapsed spaces, bounded length."""
    cleaned = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return " ".join(cleaned.split())[:limit]


class Renderer:
    def __init__(self, override_dir: Path | None = None) -> None:
        loaders = [FileSystemLoader(str(override_dir))] if override_dir else []
        loaders.append(FileSystemLoader(str(BUILTIN_DIR)))
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, purpose: str, language: str, context: dict[str, object]) -> Rendered:
        language = language if language in LANGUAGES else "en"

        def part(kind: str) -> str:
            return self.env.get_template(f"{purpose}/{language}.{kind}.j2").render(context)

        return Rendered(subject=single_line(part("subject")), text=part("txt"), html=part("html"))
