"""HTML bodies to readable text, for mails that have no text/plain part."""

from __future__ import annotations

import re

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

# "strict" keeps tables readable without padding every cell; links are kept as their text.
_CONFIG = ParserConfig(css=CSS_PROFILES["strict"], display_links=False)
_BLANK_RUNS = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    if not html.strip():
        return ""
    try:
        text = get_text(html, _CONFIG)
    except Exception:  # lxml refuses some broken documents; drop tags crudely rather than lose the mail
        text = re.sub(r"<[^>]+>", " ", html)
    lines = [line.rstrip() for line in text.splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()
