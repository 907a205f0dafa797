"""What answers carry and who reviews them: `[help]` (articles suggested while a customer waits) and `[qa]`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo

from mailer.config.base import Section, base_dir


def _load_articles(value: Any, info: ValidationInfo) -> Any:
    """The folder named in the file, read and checked now: a bad article stops the start, not a reply."""
    if not isinstance(value, str):
        return value
    from routing.help import ArticleError, load_articles

    try:
        return load_articles(base_dir(info) / value)
    except ArticleError as exc:
        raise ValueError(str(exc)) from None


class HelpConfig(Section):
    """`[help]`: the knowledge base suggested in acknowledgements (routing/help.py); without it, none."""

    articles: Annotated[tuple[Any, ...], BeforeValidator(_load_articles, json_schema_input_type=str)] = Field(
        description="required; a folder of one TOML file per article (id, url, a title and text per language), "
                    "relative to this file; routing/help_articles/ is a sample")
    min_score: float = Field(3.5, ge=0.01, description="BM25 score the best article must reach")
    max_suggestions: int = Field(3, ge=1, description="articles suggested at most")


class QaSection(Section):
    """`[qa]`: quality review of closed tickets by the queue's lead (mailer/stages/feedback.py)."""

    share: float = Field(0.0, ge=0, le=1, description="share of each specialist's closed tickets a week the lead "
                                                      "reviews by answering \"#qa <1-5> <comment>\"")
