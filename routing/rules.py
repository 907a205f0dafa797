"""Which queue and priority a new ticket gets, and why.

Rules are declarative (config `[[rules]]`, shipped defaults in routing/default_rules.toml). Every
condition that matches adds to the rule's score; the best score wins, the earlier rule on a tie, and the
last rule with no conditions is the fallback. The reasons are stored in the ticket's routing event.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from dataclasses import dataclass

from mailer.config import RuleConfig
from parsing.message import ParsedMail

SCORES = {"subject": 3, "identifier": 2, "sender": 2, "body": 1, "attachment": 1}


@dataclass(frozen=True)
class RouteDecision:
    queue: str
    priority: str
    rule: str
    score: int
    reasons: tuple[str, ...]


# Scripts written without spaces between words (Chinese, Japanese) or with particles glued to the word
# (Korean: 입금이, 출금을): a keyword there matches anywhere.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
# What continues a word for Latin-script and Cyrillic keywords; CJK next to "api" does not.
_WORD_CHAR = r"[0-9a-z\u00c0-\u024f\u1e00-\u1eff\u0400-\u04ff]"


def fold(text: str) -> str:
    """Lower case that survives Turkish and decomposed Vietnamese: İ/I/ı all become i, accents composed."""
    return unicodedata.normalize("NFC", text).lower().replace("i\u0307", "i").replace("ı", "i")


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole words for spaced scripts ("api" does not match "rapid"); a trailing * matches any ending
    ("yatır*" matches "yatırdım", "вывод*" matches "выводом"); substrings for CJK and Hangul."""
    prefix = keyword.endswith("*")
    word = fold(keyword.rstrip("*"))
    if _UNSPACED.search(word):
        return re.compile(re.escape(word))
    return re.compile(rf"(?<!{_WORD_CHAR})" + re.escape(word) + ("" if prefix else rf"(?!{_WORD_CHAR})"))


@dataclass(frozen=True)
class CompiledRule:
    config: RuleConfig
    subject: tuple[tuple[str, re.Pattern[str]], ...]
    body: tuple[tuple[str, re.Pattern[str]], ...]

    @classmethod
    def compile(cls, rule: RuleConfig) -> CompiledRule:
        return cls(rule, tuple((k, _keyword_pattern(k)) for k in rule.subject),
                   tuple((k, _keyword_pattern(k)) for k in rule.body))

    @property
    def is_fallback(self) -> bool:
        r = self.config
        return not (r.subject or r.body or r.sender or r.identifiers or r.attachment_types)

    def reasons(self, mail: ParsedMail, sender: str | None) -> list[tuple[str, str]]:
        subject, body = fold(mail.subject), fold(mail.new_text)
        found = [("subject", f"subject contains {k!r}") for k, p in self.subject if p.search(subject)]
        found += [("body", f"body contains {k!r}") for k, p in self.body if p.search(body)]
        found += [("identifier", f"mail carries a {kind}") for kind in self.config.identifiers
                  if mail.identifiers.has(kind)]
        if sender:
            found += [("sender", f"sender matches {pat!r}") for pat in self.config.sender
                      if fnmatch.fnmatch(sender, pat.lower())]
        for pattern in self.config.attachment_types:
            if any(fnmatch.fnmatch(a.content_type, pattern) for a in mail.attachments):
                found.append(("attachment", f"has a {pattern} attachment"))
        return found


class Router:
    def __init__(self, rules: tuple[RuleConfig, ...]) -> None:
        self.rules = [CompiledRule.compile(r) for r in rules]

    def route(self, mail: ParsedMail, sender: str | None) -> RouteDecision:
        best: RouteDecision | None = None
        for rule in self.rules:
            reasons = rule.reasons(mail, sender)
            score = sum(SCORES[kind] for kind, _ in reasons)
            if score and (best is None or score > best.score):
                best = RouteDecision(rule.config.queue, rule.config.priority, rule.config.name, score,
                                     tuple(text for _, text in reasons))
        if best is not None:
            return best
        fallback = next((r for r in reversed(self.rules) if r.is_fallback), self.rules[-1])
        return RouteDecision(fallback.config.queue, fallback.config.priority, fallback.config.name, 0,
                             ("no rule matched: fallback",))
