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


@dataclass(frozen=True)
class Keyword:
    """A keyword as configured, the folded word it needs in the text, and the pattern that decides."""

    keyword: str
    word: str
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, keyword: str) -> Keyword:
        """Whole words for spaced scripts ("api" does not match "rapid"); a trailing * matches any ending
        ("yatır*" matches "yatırdım", "вывод*" matches "выводом"); substrings for CJK and Hangul."""
        prefix = keyword.endswith("*")
        word = fold(keyword.rstrip("*"))
        if _UNSPACED.search(word):
            return cls(keyword, word, re.compile(re.escape(word)))
        return cls(keyword, word, re.compile(rf"(?<!{_WORD_CHAR})" + re.escape(word)
                                             + ("" if prefix else rf"(?!{_WORD_CHAR})")))

    def found_in(self, folded: str) -> bool:
        # The substring test first: most keywords are absent, and it costs a fraction of a regex search.
        return self.word in folded and self.pattern.search(folded) is not None


@dataclass(frozen=True)
class CompiledRule:
    config: RuleConfig
    subject: tuple[Keyword, ...]
    body: tuple[Keyword, ...]

    @classmethod
    def compile(cls, rule: RuleConfig) -> CompiledRule:
        return cls(rule, tuple(map(Keyword.compile, rule.subject)), tuple(map(Keyword.compile, rule.body)))

    @property
    def is_fallback(self) -> bool:
        r = self.config
        return not (r.subject or r.body or r.sender or r.identifiers or r.attachment_types)

    def reasons(self, mail: ParsedMail, sender: str | None,
                folded: tuple[str, str] | None = None) -> list[tuple[str, str]]:
        """`folded`: the mail's subject and new text through `fold`, when the caller has them already."""
        subject, body = folded or (fold(mail.subject), fold(mail.new_text))
        found = [("subject", f"subject contains {k.keyword!r}") for k in self.subject if k.found_in(subject)]
        found += [("body", f"body contains {k.keyword!r}") for k in self.body if k.found_in(body)]
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
        folded = fold(mail.subject), fold(mail.new_text)  # once for all the rules
        for rule in self.rules:
            reasons = rule.reasons(mail, sender, folded)
            score = sum(SCORES[kind] for kind, _ in reasons)
            if score and (best is None or score > best.score):
                best = RouteDecision(rule.config.queue, rule.config.priority, rule.config.name, score,
                                     tuple(text for _, text in reasons))
        if best is not None:
            return best
        fallback = next((r for r in reversed(self.rules) if r.is_fallback), self.rules[-1])
        return RouteDecision(fallback.config.queue, fallback.config.priority, fallback.config.name, 0,
                             ("no rule matched: fallback",))
