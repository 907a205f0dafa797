"""Which ticket, if any, a mail belongs to.

Exact duplicates (a Message-ID we already hold, or the same bytes) change nothing. Replies join their
ticket through In-Reply-To/References to any message of it, ours included, or through a `[#123]` tag in
the subject, which counts only when the sender is that ticket's customer: nobody writes into someone
else's ticket by guessing a number.

A re-sent complaint joins the customer's open ticket as a repeat. Candidates are only that customer's
open tickets of the window (never anybody else's), so each can be compared exactly:

1. the same normalized content (prefixes, quotes, signature, case and spacing removed) is a repeat;
2. a shared TxID or order ID is a repeat, and keys on both sides that do not meet mean a different
   problem, whatever the wording (two deposits are two tickets);
3. the same normalized subject (Re:/Fwd:/回复:/AW: … and [#n] tags removed) is a follow-up, unless the
   two name different user IDs: "still not credited, my UID is 12345678" hours after a long first mail
   with the TxID shares too few words with it for rule 4, but it is the same conversation;
4. otherwise Jaccard similarity of character 3-gram shingles at or above the configured threshold.

Exact comparison beats MinHash or SimHash here: those estimate similarity to search millions of
documents, while blocking by customer leaves a handful, and shingles need no Chinese word segmentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from mailer.ledger.db import RawMessage, Ticket, TicketMessage
from parsing.message import ParsedMail
from parsing.normalize import jaccard, normalized_content, shingles

TICKET_TAG = re.compile(r"\[#(\d{1,12})\]")


@dataclass(frozen=True)
class ThreadMatch:
    ticket: Ticket
    reason: str
    repeat: bool = False  # a re-sent complaint rather than a reply in the thread
    by_tag: bool = False  # joined by its [#123] subject tag, which only an authenticated customer may use


FINISHED = ("done", "duplicate", "automatic", "bounce")
MAX_CANDIDATES = 50  # open tickets of one customer compared at most


@dataclass(frozen=True)
class SeenRow:
    """A raw mail with the Message-ID or the bytes of the mail at hand."""
    raw_id: int
    status: str
    message_id: str


# The per-mail look-ups, built once (building and keying a statement for every mail cost more than running it).
_MESSAGE_ID = bindparam("message_id", type_=TicketMessage.message_id.type)
_RECORDED = select(TicketMessage.id).where(TicketMessage.message_id == _MESSAGE_ID)
# One query, by Message-ID or hash alone (both indexed): with a status condition too, SQLite may walk
# the large status index.
_SEEN = select(RawMessage.id, RawMessage.status, RawMessage.message_id).where(
    or_(RawMessage.message_id == _MESSAGE_ID, RawMessage.sha256 == bindparam("sha256", type_=RawMessage.sha256.type)))
_OPEN_TICKETS_OF = select(Ticket).where(
    Ticket.customer_email == bindparam("customer", type_=Ticket.customer_email.type), Ticket.status != "closed",
    Ticket.created_at >= bindparam("since", type_=Ticket.created_at.type),
).order_by(Ticket.id.desc()).limit(MAX_CANDIDATES)


def find_exact_duplicate(session: Session, mail: ParsedMail, raw_id: int, *, recorded: bool | None = None,
                         seen: list[SeenRow] | None = None) -> str | None:
    """A reason if this mail was already recorded, else None.

    Mail that opened no ticket (an auto-reply, a bounce) counts too: fetched again after a UIDVALIDITY
    change or from a second mailbox, it must not be handled twice. `recorded` and `seen`, when given,
    are the answers of the two look-ups made ahead for a whole batch (mailer/stages/lookups.py).
    """
    if recorded is None:
        recorded = session.scalar(_RECORDED, {"message_id": mail.message_id}) is not None
    if recorded:
        return f"Message-ID {mail.message_id} already recorded"
    if seen is None:
        seen = [SeenRow(*row) for row in session.execute(_SEEN, {"message_id": mail.message_id,
                                                                 "sha256": mail.sha256})]
    finished = [row.message_id == mail.message_id for row in seen if row.raw_id != raw_id and row.status in FINISHED]
    if any(finished):
        return f"Message-ID {mail.message_id} already handled"
    if finished:
        return "identical bytes already handled"
    return None


def find_thread(session: Session, mail: ParsedMail, customer: str | None) -> ThreadMatch | None:
    referenced = [m for m in (mail.in_reply_to, *mail.references) if m]
    if referenced:
        hit = session.scalars(
            select(TicketMessage).where(TicketMessage.message_id.in_(referenced[-50:])).limit(1)).first()
        # An anonymised ticket (mailer.ledger.retention) has no customer left to continue with: a new one opens.
        if hit is not None and hit.ticket.purged_at is None:
            return ThreadMatch(hit.ticket, f"replies to {hit.message_id}")
    if customer:
        for number in TICKET_TAG.findall(mail.subject):
            ticket = session.get(Ticket, int(number))
            if ticket is not None and ticket.customer_email == customer:
                return ThreadMatch(ticket, f"subject carries [#{number}] and the sender is its customer",
                                   by_tag=True)
    return None


def problem_keys(identifiers: dict[str, list[list[str]] | list[str]]) -> frozenset[str]:
    """TxIDs and order IDs: what names one particular problem."""
    txids = {value for _kind, value in identifiers.get("txids", [])}  # type: ignore[misc]
    return frozenset(txids | {f"order:{o}" for o in identifiers.get("order_ids", [])})


def find_repeat(session: Session, mail: ParsedMail, customer: str | None, verified: bool, *, now: datetime,
                window: timedelta, threshold: float, candidates: list[Ticket] | None = None) -> ThreadMatch | None:
    """The customer's open ticket this mail repeats, if any; verified and unverified mail never mix.

    `candidates`, when given, are the customer's open tickets of the window, newest first, looked up ahead."""
    if not customer:
        return None
    if candidates is None:
        candidates = list(session.scalars(_OPEN_TICKETS_OF, {"customer": customer, "since": now - window}))
    if not candidates:
        return None  # most mails: nothing to compare with, so nothing to normalize
    keys = problem_keys(mail.identifiers.to_json())
    mine = shingles(normalized_content(mail.subject, mail.new_text))
    best: tuple[float, ThreadMatch] | None = None
    for ticket in candidates:
        if (ticket.verified == "verified") != verified:
            continue
        match = _compare(ticket, mail, keys, mine, threshold)
        if match and (best is None or match[0] > best[0]):
            best = match
    return best[1] if best else None


def _compare(ticket: Ticket, mail: ParsedMail, keys: frozenset[str], mine: frozenset[str],
             threshold: float) -> tuple[float, ThreadMatch] | None:
    inbound = [m for m in ticket.messages if m.direction == "in"]
    if any(m.content_hash == mail.content_hash for m in inbound):
        return 3.0, ThreadMatch(ticket, "the same complaint sent again", repeat=True)
    theirs = problem_keys(ticket.identifiers)
    if keys and theirs:
        shared = keys & theirs
        if not shared:
            return None  # different transactions or orders: a different problem
        return 2.0, ThreadMatch(ticket, f"names the same {_key_name(min(shared))}", repeat=True)
    if _same_subject(ticket.subject, mail.subject) and not _other_user(ticket.identifiers, mail):
        return 1.5, ThreadMatch(ticket, f"a follow-up with the subject of #{ticket.id}", repeat=True)
    first = inbound[0] if inbound else None
    if first is None:
        return None
    similarity = jaccard(mine, shingles(normalized_content(first.subject, first.body)))
    if similarity >= threshold:
        return similarity, ThreadMatch(ticket, f"text similarity {similarity:.2f} with #{ticket.id}", repeat=True)
    return None


def _same_subject(theirs: str, mine: str) -> bool:
    """Equal once prefixes, tags, case, punctuation and spacing are gone; an empty subject matches nothing."""
    normalized = normalized_content(mine[:2000], "")
    return bool(normalized) and normalized == normalized_content(theirs, "")


def _other_user(identifiers: dict[str, list[str]], mail: ParsedMail) -> bool:
    """Both name user IDs and none is shared: a question about another account, not a follow-up."""
    theirs, mine = set(identifiers.get("user_ids", [])), set(mail.identifiers.user_ids)
    return bool(theirs and mine and not theirs & mine)


def _key_name(key: str) -> str:
    return f"order {key.removeprefix('order:')}" if key.startswith("order:") else f"TxID {key[:18]}…"
