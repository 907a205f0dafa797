"""Satisfaction (CSAT) per queue and per specialist, and quality-review scores per specialist, for `sla report`.

CSAT is the mean of the 1-5 ratings customers gave and the share of 4 and 5 ("satisfied"); surveys sent
without an answer count in `surveys` only. QA is the mean of the leads' `#qa` scores of sampled tickets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field


@dataclass
class FeedbackRow:
    name: str  # a queue or a specialist
    surveys: int = 0
    ratings: int = 0
    csat: float | None = None  # mean rating, 1-5
    satisfied: float | None = None  # share of ratings 4 or 5
    reviews: int = 0  # tickets sampled for review
    scored: int = 0
    qa: float | None = None  # mean review score, 1-5
    _ratings: list[int] = field(default_factory=list, repr=False)
    _scores: list[int] = field(default_factory=list, repr=False)

    def finish(self) -> FeedbackRow:
        if self._ratings:
            self.csat = round(sum(self._ratings) / len(self._ratings), 2)
            self.satisfied = round(sum(r >= 4 for r in self._ratings) / len(self._ratings), 3)
        if self._scores:
            self.qa = round(sum(self._scores) / len(self._scores), 2)
        self.ratings, self.scored = len(self._ratings), len(self._scores)
        return self

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass(frozen=True)
class Feedback:
    queue: str
    specialist: str
    value: int | None  # the rating or score; None: asked, not answered


def build(ratings: Iterable[Feedback], reviews: Iterable[Feedback]) -> tuple[list[FeedbackRow], list[FeedbackRow]]:
    """Rows per queue (CSAT) and per specialist (CSAT and QA), each sorted by name."""
    queues: dict[str, FeedbackRow] = {}
    people: dict[str, FeedbackRow] = {}
    for item in ratings:
        for row in (queues.setdefault(item.queue, FeedbackRow(item.queue)),
                    people.setdefault(item.specialist, FeedbackRow(item.specialist))):
            row.surveys += 1
            if item.value is not None:
                row._ratings.append(item.value)
    for item in reviews:
        row = people.setdefault(item.specialist, FeedbackRow(item.specialist))
        row.reviews += 1
        if item.value is not None:
            row._scores.append(item.value)
    return ([r.finish() for _, r in sorted(queues.items())], [r.finish() for _, r in sorted(people.items())])


def _number(value: float | None, pattern: str = "{:.2f}") -> str:
    return pattern.format(value) if value is not None else "–"


def text_tables(queues: list[FeedbackRow], people: list[FeedbackRow]) -> str:
    if not queues and not people:
        return ""
    lines = ["", f"{'satisfaction':<28} {'surveys':>7} {'ratings':>7} {'CSAT':>5} {'satisfied':>9}"]
    lines += [f"{r.name:<28} {r.surveys:>7} {r.ratings:>7} {_number(r.csat):>5} "
              f"{_number(None if r.satisfied is None else r.satisfied * 100, '{:.0f} %'):>9}" for r in queues]
    header = f"{'specialist':<28} {'surveys':>7} {'ratings':>7} {'CSAT':>5} {'reviews':>7} {'scored':>6} {'QA':>5}"
    lines += ["", header]
    lines += [f"{r.name:<28} {r.surveys:>7} {r.ratings:>7} {_number(r.csat):>5} {r.reviews:>7} {r.scored:>6} "
              f"{_number(r.qa):>5}" for r in people]
    return "\n".join(lines)
