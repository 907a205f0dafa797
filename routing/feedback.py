"""How the desk learns how it did: signed rating addresses for surveys, and which closed tickets are reviewed.

A survey's ratings are one-click `mailto:` links to `support+csat.<ticket>.<rating>.<token>@domain`: the
token is an HMAC, under the desk secret, of the ticket, the rating and a nonce stored when the survey was
sent. A link for another ticket or another rating, or for a ticket that was never surveyed, does not
verify, so nobody can rate a ticket they were not asked about, and no web server is needed.

Quality review takes a share of each specialist's closed tickets per ISO week. Which ones is decided by
counting: the n-th closing of the week is taken when `floor((n + offset) * share)` steps up, so over a
week of N closings the count is within one of N × share. The offset comes from the desk secret, the
specialist and the week, so nobody can tell in advance which of their tickets will be read.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from datetime import datetime

from routing.tokens import plus_address, sign

TOKEN_LENGTH = 12
RATINGS = (5, 4, 3, 2, 1)
_ADDRESS = re.compile(
    rf"^(?P<local>[^+@]+)\+csat\.(?P<ticket>\d{{1,12}})\.(?P<rating>[1-5])\.(?P<token>[a-z2-7]{{{TOKEN_LENGTH}}})"
    r"@(?P<domain>.+)$", re.IGNORECASE)
_QA = re.compile(r"^(?P<score>[1-5])(?:\s+(?P<comment>.*))?$", re.DOTALL)


def rating_token(secret: bytes, ticket_id: int, rating: int, nonce: str) -> str:
    return sign(secret, f"csat:{ticket_id}:{rating}:{nonce}", TOKEN_LENGTH)


def rating_address(support_address: str, secret: bytes, ticket_id: int, rating: int, nonce: str) -> str:
    return plus_address(support_address, f"csat.{ticket_id}.{rating}.{rating_token(secret, ticket_id, rating, nonce)}")


@dataclass(frozen=True)
class RatingAddress:
    ticket_id: int
    rating: int
    token: str

    def valid(self, secret: bytes, nonce: str) -> bool:
        return hmac.compare_digest(self.token, rating_token(secret, self.ticket_id, self.rating, nonce))


def find_rating_address(recipients: list[str], support_address: str) -> RatingAddress | None:
    """The rating address among the recipients, if any; whether its token holds is the caller's check."""
    local, _, domain = support_address.lower().partition("@")
    for recipient in recipients:
        match = _ADDRESS.match(recipient.strip().lower())
        if match and match["local"] == local and match["domain"] == domain:
            return RatingAddress(int(match["ticket"]), int(match["rating"]), match["token"])
    return None


def iso_week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def week_offset(secret: bytes, specialist: str, week: str) -> float:
    """A number in [0, 1) that only the desk knows, different for each specialist and week."""
    digest = hmac.new(secret, f"qa:{specialist.lower()}:{week}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sampled(closing: int, share: float, offset: float) -> bool:
    """Whether the `closing`-th (1-based) closing of the week is reviewed, at `share` of the closings."""
    if share <= 0:
        return False
    period = 1 / share
    position = offset * period
    return math.floor((closing + position) * share) > math.floor((closing - 1 + position) * share)


def parse_score(argument: str) -> tuple[int, str] | None:
    """`#qa 4 clear and kind` → (4, "clear and kind"); None if the score is not 1 to 5."""
    match = _QA.match(argument.strip())
    if match is None:
        return None
    return int(match["score"]), (match["comment"] or "").strip()
