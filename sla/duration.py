"""Business-time targets as written in the config: "2 business days", "4 business hours", "30 minutes".

Kept apart from `sla.calendar` so that the config can check a target without importing the calendar
(which itself reads the config's calendar tables).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from babel.numbers import format_decimal

from parsing.language import DEFAULT, babel_locale, normalize_tag

# "N business days/hours/minutes" per language and CLDR plural category (Babel picks the category).
_UNITS: dict[str, dict[str, dict[str, str]]] = {
    "en": {"days": {"one": "{n} business day", "other": "{n} business days"},
           "hours": {"one": "{n} business hour", "other": "{n} business hours"},
           "minutes": {"one": "{n} business minute", "other": "{n} business minutes"}},
    "zh-Hans": {"days": {"other": "{n} 个工作日"}, "hours": {"other": "{n} 个工作小时"},
                "minutes": {"other": "{n} 分钟（工作时间）"}},
    "zh-Hant": {"days": {"other": "{n} 個工作天"}, "hours": {"other": "{n} 個工作小時"},
                "minutes": {"other": "{n} 分鐘（上班時間）"}},
    "ja": {"days": {"other": "{n}営業日"}, "hours": {"other": "{n}営業時間"},
           "minutes": {"other": "営業時間内の{n}分"}},
    "ko": {"days": {"other": "영업일 기준 {n}일"}, "hours": {"other": "영업시간 기준 {n}시간"},
           "minutes": {"other": "영업시간 기준 {n}분"}},
    "ru": {"days": {"one": "{n} рабочий день", "few": "{n} рабочих дня", "many": "{n} рабочих дней",
                    "other": "{n} рабочего дня"},
           "hours": {"one": "{n} рабочий час", "few": "{n} рабочих часа", "many": "{n} рабочих часов",
                     "other": "{n} рабочего часа"},
           "minutes": {"one": "{n} минута рабочего времени", "few": "{n} минуты рабочего времени",
                       "many": "{n} минут рабочего времени", "other": "{n} минуты рабочего времени"}},
    "vi": {"days": {"other": "{n} ngày làm việc"}, "hours": {"other": "{n} giờ làm việc"},
           "minutes": {"other": "{n} phút làm việc"}},
    "tr": {"days": {"other": "{n} iş günü"}, "hours": {"other": "{n} iş saati"},
           "minutes": {"other": "{n} mesai dakikası"}},
    "es": {"days": {"one": "{n} día hábil", "other": "{n} días hábiles"},
           "hours": {"one": "{n} hora hábil", "other": "{n} horas hábiles"},
           "minutes": {"one": "{n} minuto hábil", "other": "{n} minutos hábiles"}},
    "pt": {"days": {"one": "{n} dia útil", "other": "{n} dias úteis"},
           "hours": {"one": "{n} hora útil", "other": "{n} horas úteis"},
           "minutes": {"one": "{n} minuto útil", "other": "{n} minutos úteis"}},
}


@dataclass(frozen=True)
class Duration:
    """A target such as "2 business days" or "4 business hours"."""

    amount: float
    unit: str  # "days" | "hours" | "minutes"

    def __str__(self) -> str:
        return f"{self.amount:g} business {self.unit}"

    def describe(self, language: str) -> str:
        """The target in words for a customer: "2 business days", "2 个工作日", "2 рабочих дня"."""
        return _described(self.amount, self.unit, normalize_tag(language) or DEFAULT)


@lru_cache(maxsize=1024)
def _described(amount: float, unit: str, tag: str) -> str:
    """Asked for every acknowledgement, with a handful of targets: CLDR plural rules are not cheap."""
    locale = babel_locale(tag)
    forms = _UNITS[tag][unit]
    number = int(amount) if amount == int(amount) else amount
    pattern = forms.get(locale.plural_form(number), forms["other"])
    return pattern.format(n=format_decimal(number, locale=locale))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:business\s+)?(day|days|hour|hours|minute|minutes|d|h|m)\s*$")


def parse_duration(text: str) -> Duration:
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f'must look like "2 business days", "4 business hours" or "30 minutes"; got {text!r}')
    unit = {"d": "days", "h": "hours", "m": "minutes"}.get(match[2], match[2].rstrip("s") + "s")
    return Duration(float(match[1]), unit)
