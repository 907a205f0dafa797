"""What the batch's mails not yet flushed could be found by, so that most mails need no flush of their own.

A batch is written with one flush at its end: the ORM then sends each table's new rows in one
statement instead of a round of statements per mail. The stages of a later mail look things up in
SQL, though (a Message-ID already recorded, the customer's open tickets, replies sent to an address
today), and SQL sees only flushed rows. So before a mail that could meet an earlier mail's unflushed
rows, the session is flushed, exactly as when every mail flushed; the test is conservative: anything
the look-ups could key on counts as a meeting.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailer.stages.work import Work
from parsing.message import ParsedMail
from routing.dedup import TICKET_TAG
from routing.verify import normalize_address

_RECIPIENT_HEADERS = ("delivered-to", "x-original-to")


class MailKeys:
    """What a set of mails (those not flushed yet, or all of the batch so far) could be found by: their
    Message-IDs, hashes and addresses."""

    def __init__(self) -> None:
        self.mails = 0
        self._ids: set[str] = set()
        self._addresses: set[str] = set()

    def could_meet(self, mail: ParsedMail | None) -> bool:
        """Whether the stages of `mail` could look up a row one of these mails wrote or changed."""
        if not self.mails:
            return False
        if mail is None or _refers_to_tickets(mail):
            return True  # not prepared ahead (unknown yet), or threading/commands/reports: look up everything
        if mail.message_id in self._ids or mail.sha256 in self._ids:
            return True
        return not self._addresses.isdisjoint(_sender_addresses(mail))

    def add(self, work: Work) -> None:
        """A mail went through: remember what it could be found by."""
        self.mails += 1
        if work.mail is not None:
            self._ids.update((work.mail.message_id, work.mail.sha256))
            self._addresses.update(_sender_addresses(work.mail))
        self._ids.add(work.raw.sha256)
        extra = [row.to_address for row in work.outbox]
        if work.ticket is not None:
            extra.append(work.ticket.customer_email)
        if work.verification is not None and work.verification.address:
            extra.append(work.verification.address)
        self._addresses.update(_normalized(extra))

    def clear(self) -> None:
        self.mails = 0
        self._ids.clear()
        self._addresses.clear()


def _refers_to_tickets(mail: ParsedMail) -> bool:
    """Replies, [#n] tags, plus-addresses (ticket and rating addresses) and delivery reports are looked up
    by what they name, not by who sent them."""
    if mail.in_reply_to or mail.references or mail.report is not None or TICKET_TAG.search(mail.subject):
        return True
    recipients = [a.address for a in mail.to] + [v for n in _RECIPIENT_HEADERS for v in mail.headers.get(n, ())]
    return any("+" in address.partition("@")[0] for address in recipients)


def _sender_addresses(mail: ParsedMail) -> set[str]:
    people = [*mail.from_, *mail.reply_to, *([mail.sender] if mail.sender else [])]
    return _normalized(person.address for person in people)


def _normalized(addresses: Iterable[str]) -> set[str]:
    found = set()
    for address in addresses:
        normal = normalize_address(address)
        found.add(normal if normal else address.strip().lower())
    return found
