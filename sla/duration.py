"""Business-time targets as written in the config: "2 business days", "4 business hours", "30 minutes".

Kept apart from `sla.calendar` so that the config can check a target without importing the calendar
(which itself reads the config's calendar tables).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ZH_UNITS = {"days": "个工作日", "hours": "个工作小时", "minutes": "分钟（工作时间）"}


@dataclass(frozen=True)
class Duration:
    """A target such as "2 business days" or "4 business hours"."""

    amount: float
    unit: str  # "days" | "hours" | "minutes"

    def __str__(self) -> str:
        return f"{self.amount:g} business {self.unit}"

    def describe(self, language: str) -> str:
        """The target in words for a customer: "2 business days", "2 个工作日"."""
        if language == "zh":
            return f"{self.amount:g} " + _ZH_UNITS[self.unit]
        unit = self.unit if self.amount != 1 else self.unit.rstrip("s")
        return f"{self.amount:g} business {unit}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:business\s+)?(day|days|hour|hours|minute|minutes|d|h|m)\s*$")


def parse_duration(text: str) -> Duration:
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f'must look like "2 business days", "4 business hours" or "30 minutes"; got {text!r}')
    unit = {"d": "days", "h": "hours", "m": "minutes"}.get(match[2], match[2].rstrip("s") + "s")
    return Duration(float(match[1]), unit)
