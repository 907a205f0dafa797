"""Help articles in the acknowledgement: which ones, if any, and in which language they are shown.

The matching is routing/help.py's; this module decides when it may run. Never for a security emergency
(queue `security` or priority `urgent`): a customer whose account is being emptied needs a person, not
reading. Only the acknowledgement of a verified customer calls it: the generic answer to an unverified
sender stays word for word the same, so it cannot tell anyone what the desk knows.
"""

from __future__ import annotations

from mailer.stages.work import Work, event, need
from parsing.language import fallback_chain

EMERGENCY_QUEUES = ("security",)


def suggest_articles(work: Work) -> list[dict[str, str]]:
    """Up to `max_suggestions` articles as {"title", "url"} in the customer's language; recorded as an event."""
    index, ticket, mail = work.app.help_index, need(work.ticket, "record"), need(work.mail, "parse")
    if index is None or ticket.queue in EMERGENCY_QUEUES or ticket.priority == "urgent":
        return []
    suggestions = index.suggest(f"{mail.subject}\n{mail.new_text}")
    if not suggestions:
        return []
    chain = fallback_chain(ticket.language)
    event(work, ticket, "help_suggested", articles=[{"id": s.article.id, "score": s.score} for s in suggestions])
    return [{"title": shown.title, "url": shown.url}
            for shown in (s.article.shown_in(chain) for s in suggestions)]
