"""The shipped rules route mails in every shipped language to the right queue."""

from __future__ import annotations

from collections import Counter

import pytest

from mailer.config import RuleConfig, config_from_dict
from mailer.demo.samples import text_mail
from parsing.language import SHIPPED
from parsing.message import parse
from routing.rules import Router
from tests.lang_corpus import mails

SHIPPED_RULES = config_from_dict({"smtp": {"url": "smtp://127.0.0.1:25", "from_address": "support@desk.example"}})


def test_labelled_mails_in_every_language_reach_their_queue() -> None:
    router = Router(SHIPPED_RULES.rules)
    per_language, wrong = Counter[str](), []
    for i, mail in enumerate(mails()):
        decision = router.route(parse(text_mail("c@customers.example", mail.subject, mail.body, f"<route-{i}@x>")),
                                "c@customers.example")
        per_language[mail.language] += 1
        if decision.queue != mail.queue:
            wrong.append((mail.language, mail.subject, mail.queue, decision.queue, decision.reasons))
    print(f"\nrouting: {sum(per_language.values()) - len(wrong)}/{sum(per_language.values())} right")
    assert set(per_language) == set(SHIPPED) and min(per_language.values()) >= 10
    assert wrong == []


def _route(subject: str, body: str = "", *keywords: str) -> str:
    rules = (RuleConfig(name="hit", queue="hit", priority="normal", subject=keywords, body=keywords),
             RuleConfig(name="general", queue="general", priority="normal"))
    mail = parse(text_mail("c@customers.example", subject, body or "-", "<kw@x>"))
    return Router(rules).route(mail, None).queue


@pytest.mark.parametrize(("keywords", "subject", "queue"), [
    (("api",), "My API key", "hit"),
    (("api",), "Rapid growth", "general"),          # whole words for Latin script
    (("api",), "APIキーのエラー", "hit"),              # CJK right after a Latin keyword still ends the word
    (("yatır*",), "Para yatırdım ama gelmedi", "hit"),  # a trailing * takes any ending
    (("yatırma",), "PARA YATIRMA SORUNU", "hit"),      # Turkish dotless I in capitals
    (("çekim",), "ÇEKİM BEKLEMEDE", "hit"),            # Turkish dotted İ in capitals
    (("вывод*",), "Проблема с выводом средств", "hit"),
    (("вывод",), "Проблема с выводом средств", "general"),
    (("입금",), "입금이 안 됐어요", "hit"),             # Korean particles glued on
    (("rút tiền",), "Ru\u0301t tie\u0302\u0300n bi\u0323 treo", "hit"),  # decomposed Vietnamese accents
    (("depósito*",), "Mis depósitos no llegan", "hit"),
])
def test_keywords_match_words_the_way_each_script_writes_them(keywords: tuple[str, ...], subject: str,
                                                               queue: str) -> None:
    assert _route(subject, "", *keywords) == queue
