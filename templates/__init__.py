"""Outgoing mail texts: one folder per purpose, one file per language and part.

`templates/<purpose>/<lang>.subject.j2`, `<lang>.txt.j2` and `<lang>.html.j2`, `<lang>` a BCP 47 tag.
The language is chosen along `parsing.language.fallback_chain` (zh-TW → zh-Hant → zh-Hans → en), the
first one with all three parts. HTML parts autoescape; subjects are rendered from our own words and the
ticket number only, then stripped of line breaks and control characters, so nothing a sender wrote can
reach a header. A `[paths] templates` directory in the config overrides any file here, and may add
languages; `check_override` tells what in it would fail or surprise.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    select_autoescape,
)

from parsing.language import SHIPPED, fallback_chain

BUILTIN_DIR = Path(__file__).resolve().parent
LANGUAGES = SHIPPED
PARTS = ("subject", "txt", "html")
# What a customer receives: shipped in every language. Mails to specialists and leads are English only.
CUSTOMER_KINDS = ("ack", "unverified", "repeat_notice", "secret_warning", "attachment_refused", "reply", "survey")
INTERNAL_KINDS = ("forward", "collision", "command_error", "reply_refused", "sla_alert", "qa_review")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def single_line(text: str, limit: int = 200) -> str:
    """Header-safe: no line breaks or control characters, collapsed spaces, bounded length."""
    cleaned = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return " ".join(cleaned.split())[:limit]


def _environment(*directories: Path) -> Environment:
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(str(d)) for d in directories]),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # A changed template takes effect on reload (SIGHUP builds a new environment), not by a stat() of
        # three files for every mail sent; the compiled templates stay cached either way.
        auto_reload=False,
        cache_size=2000,
    )


class Renderer:
    def __init__(self, override_dir: Path | None = None) -> None:
        self.env = _environment(*([override_dir] if override_dir else []), BUILTIN_DIR)
        self.available = frozenset(self.env.list_templates(extensions=["j2"]))

    def language_for(self, purpose: str, language: str) -> str:
        """The first language along the fallback chain that has all three parts of `purpose`."""
        for tag in fallback_chain(language):
            if all(f"{purpose}/{tag}.{part}.j2" in self.available for part in PARTS):
                return tag
        raise TemplateNotFound(f"{purpose}/en.subject.j2")

    def render(self, purpose: str, language: str, context: dict[str, object]) -> Rendered:
        chosen = self.language_for(purpose, language)
        context = {**context, "lang": chosen}

        def part(kind: str) -> str:
            return self.env.get_template(f"{purpose}/{chosen}.{kind}.j2").render(context)

        return Rendered(subject=single_line(part("subject")), text=part("txt"), html=part("html"))


def variables(env: Environment, name: str) -> frozenset[str]:
    """The context variables a template (and the layout it extends) reads."""
    source = env.loader.get_source(env, name)[0] if env.loader else ""
    ast = env.parse(source)
    found = set(meta.find_undeclared_variables(ast))
    for parent in meta.find_referenced_templates(ast):
        if parent:
            found |= variables(env, parent)
    return frozenset(found)


@dataclass(frozen=True)
class Problem:
    path: Path
    key: str  # purpose/lang.part
    reason: str
    error: bool  # an error stops the daemon at start; a warning is only reported by check-config

    def __str__(self) -> str:
        return f"{self.path}: {self.key}: {self.reason}"


def check_override(directory: Path) -> list[Problem]:
    """What an override folder would break, judged against the shipped English texts.

    Errors (the daemon refuses to start): a file that does not parse, a variable the pipeline does not
    provide (StrictUndefined would fail every such mail). Warnings: a file name that is no known purpose
    and part (it is never used), a customer-facing text that leaves out a variable the shipped one shows
    (the anti-phishing code, say), and a language the folder adds for some customer-facing purposes but
    not all (those customers would get some mails in their language and some in English).
    """
    builtin, merged = _environment(BUILTIN_DIR), _environment(directory, BUILTIN_DIR)
    shipped = frozenset(builtin.list_templates(extensions=["j2"]))
    problems: list[Problem] = []
    added: dict[str, dict[str, set[str]]] = {}  # languages not shipped: tag -> purpose -> parts
    for path in sorted(directory.rglob("*.j2")):
        name = path.relative_to(directory).as_posix()
        purpose, _, file = name.partition("/")
        tag, _, part = file.removesuffix(".j2").rpartition(".")
        key = f"{purpose}/{tag}.{part}"
        try:
            used = variables(merged, name)
        except TemplateSyntaxError as exc:
            problems.append(Problem(path, key, f"line {exc.lineno}: {exc.message}", True))
            continue
        if part not in PARTS or not tag or f"{purpose}/en.{part}.j2" not in shipped:
            if name not in shipped:  # the layout and the SLA report page are replaced as they are
                problems.append(Problem(path, name, "not a known purpose/<lang>.<part>.j2 file: never used", False))
            continue
        expected = variables(builtin, f"{purpose}/en.{part}.j2") | {"lang"}
        if unknown := sorted(used - expected):
            problems.append(Problem(path, key, f"uses {', '.join(unknown)}, which the pipeline does not provide "
                                               f"(available: {', '.join(sorted(expected))})", True))
        if purpose in CUSTOMER_KINDS and (left_out := sorted(expected - used - {"lang"})):
            problems.append(Problem(path, key, f"leaves out {', '.join(left_out)}, which the shipped text shows",
                                    False))
        if tag == "zh":
            problems.append(Problem(path, key, "zh.* files are no longer used: Simplified Chinese is zh-Hans, "
                                               "Traditional zh-Hant (rename the file)", False))
            continue
        if purpose in CUSTOMER_KINDS and tag not in LANGUAGES:
            added.setdefault(tag, {}).setdefault(purpose, set()).add(part)
    for tag, purposes in sorted(added.items()):
        fallback = fallback_chain(tag)[1]
        if missing := [p for p in CUSTOMER_KINDS if set(PARTS) - purposes.get(p, set())]:
            problems.append(Problem(directory, f"*/{tag}", f"language {tag!r} lacks all three parts of "
                                    f"{', '.join(missing)}: those mails fall back to {fallback!r}", False))
    return problems
