"""parsing/language.py: which language a mail is in, the tags accounts and articles use, and locale formats."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from mailer.demo.samples import text_mail
from parsing.language import SHIPPED, choose_language, detect_language, fallback_chain, normalize_tag
from parsing.message import parse
from sla.calendar import parse_duration
from sla.clock import format_local
from tests.lang_corpus import TX, mails


def test_detection_accuracy_on_labelled_support_mails() -> None:
    """Every mail goes through the real parser (quotes and footers stripped) before detection."""
    total, right = Counter[str](), Counter[str]()
    confusions = Counter[tuple[str, str | None]]()
    for i, mail in enumerate(mails()):
        detected = parse(text_mail("c@customers.example", mail.subject, mail.body, f"<lang-{i}@x>")).language
        total[mail.language] += 1
        if detected == mail.language:
            right[mail.language] += 1
        else:
            confusions[(mail.language, detected)] += 1
    accuracy = sum(right.values()) / sum(total.values())
    per_language = ", ".join(f"{lang} {right[lang]}/{total[lang]}" for lang in SHIPPED)
    print(f"\nlanguage detection: {sum(right.values())}/{sum(total.values())} = {accuracy:.1%} ({per_language})")
    if confusions:
        print("confused:", dict(confusions))
    assert set(total) == set(SHIPPED) and min(total.values()) >= 20
    assert accuracy >= 0.95
    assert all(right[lang] / total[lang] >= 0.85 for lang in SHIPPED), confusions


@pytest.mark.parametrize(("text", "expected"), [
    # Japanese that is mostly kanji: a few kana decide; without any, characters only Japanese writes do.
    ("出金申請済、至急確認願います。", "ja"),
    ("本人確認書類提出済。審査状況確認希望", "ja"),
    ("出金申請が未着。至急確認願います", "ja"),
    # Traditional (Taiwan) and Simplified Chinese with the same meaning.
    ("提領申請一直未處理，請儘速確認", "zh-Hant"),
    ("提币申请一直未处理，请尽快确认", "zh-Hans"),
    # A character both scripts write (干) is no evidence; the rest of the sentence is.
    ("我的帳戶被凍結了，這跟我做的事情無關，請幫我解除", "zh-Hant"),
    # A Chinese mail with an English signature is Chinese; an English mail naming a Chinese city is English.
    ("充值没到账\n\nBest regards,\nLi Wei\nSenior Trader, Example Capital", "zh-Hans"),
    ("My withdrawal to my bank in 深圳 has not arrived yet, can you check?", "en"),
    # Coin names, networks and TxIDs do not make a mail English.
    (f"Meu depósito de USDT TRC20 não caiu. TxID {TX}", "pt"),
    (f"Mi retiro de BTC sigue pendiente. Hash: {TX}", "es"),
    ("USDT TRC20 nạp chưa về", "vi"),
    ("BTC çekimim hâlâ beklemede", "tr"),
    ("Вывод USDT завис", "ru"),
    ("USDT 입금 확인 부탁드립니다", "ko"),
])
def test_hard_cases(text: str, expected: str) -> None:
    assert detect_language(text) == expected


def test_nothing_to_go_by_is_none_and_the_default_answers() -> None:
    assert detect_language(f"TxID {TX}", "https://tronscan.org/#/transaction/abc 12345 USDT") is None
    assert choose_language(None, None, "ja") == "ja"
    assert choose_language("", "ko", "en") == "ko"  # no language in the directory: the mail's own decides
    assert choose_language("zh-TW", "ja", "en") == "zh-Hant"  # the account's language wins


@pytest.mark.parametrize(("tag", "shipped"), [
    ("zh-Hant", "zh-Hant"), ("zh-TW", "zh-Hant"), ("zh_TW", "zh-Hant"), ("zh-HK", "zh-Hant"), ("zh-Hant-TW", "zh-Hant"),
    ("ZH-HANT", "zh-Hant"), ("zh-CN", "zh-Hans"), ("zh", "zh-Hans"), ("zh-Hans-SG", "zh-Hans"), ("zh-SG", "zh-Hans"),
    ("ja-JP", "ja"), ("pt-BR", "pt"), ("pt_PT", "pt"), ("EN", "en"), ("en-US", "en"), ("ko-KR", "ko"), ("ru", "ru"),
    ("es-419", "es"), ("vi-VN", "vi"), ("tr-TR", "tr"),
    ("fr", None), ("de-DE", None), ("", None), (None, None), ("not a tag!", None), ("en--US", None),
])
def test_normalize_tag(tag: str | None, shipped: str | None) -> None:
    assert normalize_tag(tag) == shipped


@pytest.mark.parametrize(("tag", "chain"), [
    ("zh-TW", ("zh-TW", "zh-Hant", "zh-Hans", "en")),
    ("zh_hk", ("zh-HK", "zh-Hant", "zh-Hans", "en")),
    ("zh-Hant", ("zh-Hant", "zh-Hans", "en")),
    ("zh-Hans", ("zh-Hans", "en")),
    ("zh-CN", ("zh-CN", "zh-Hans", "en")),
    ("pt-BR", ("pt-BR", "pt", "en")),
    ("ja-JP", ("ja-JP", "ja", "en")),
    ("en", ("en",)),
    ("fr-CA", ("fr-CA", "fr", "en")),
    (None, ("en",)),
])
def test_fallback_chain(tag: str | None, chain: tuple[str, ...]) -> None:
    assert fallback_chain(tag) == chain


def test_due_times_and_targets_read_naturally_in_every_language() -> None:
    due = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Shanghai
    zone = ZoneInfo("Asia/Shanghai")
    expected_date = {"en": "November 25, 2026", "zh-Hans": "2026年11月25日", "zh-Hant": "2026年11月25日",
                     "ja": "2026年11月25日", "ko": "2026년 11월 25일", "ru": "25 ноября 2026",
                     "vi": "25 tháng 11, 2026", "tr": "25 Kasım 2026", "es": "25 de noviembre de 2026",
                     "pt": "25 de novembro de 2026"}
    weekday = {"en": "Wednesday", "zh-Hans": "星期三", "zh-Hant": "星期三", "ja": "水曜日", "ko": "수요일",
               "ru": "среда", "vi": "Thứ Tư", "tr": "Çarşamba", "es": "miércoles", "pt": "quarta-feira"}
    for tag in SHIPPED:
        text = format_local(due, zone, tag)
        assert expected_date[tag] in text and weekday[tag] in text and "10:00" in text, (tag, text)
    assert parse_duration("1 business day").describe("en") == "1 business day"
    assert parse_duration("4 business hours").describe("en") == "4 business hours"
    assert parse_duration("2 business days").describe("ru") == "2 рабочих дня"
    assert parse_duration("5 business days").describe("ru") == "5 рабочих дней"
    assert parse_duration("21 hours").describe("ru") == "21 рабочий час"
    assert parse_duration("1.5 days").describe("es") == "1,5 días hábiles"
    assert parse_duration("2 business days").describe("zh-TW") == "2 個工作天"
    assert parse_duration("2 business days").describe("ja") == "2営業日"
    assert parse_duration("2 business days").describe("fr") == "2 business days"
