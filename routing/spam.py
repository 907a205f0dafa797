"""Is a mail spam? Our own MTA's word, or a stranger whose From our MTA found forged.

Answering spam is backscatter: the answer goes to whoever the spammer put in From, and a desk that
does it lands on block lists, after which its genuine replies land in customers' spam folders. Two
verdicts hold a mail back (no ticket, no answer, listed for the operator to release):

- `spam`: our MTA's filter said so: a flag header (SpamAssassin `X-Spam-Flag: YES`, rspamd
  `X-Spam: Yes`) or a score at or above its threshold (`X-Spam-Status: Yes, score=15.2`,
  `X-Spamd-Result: default: True [15.20 / 15.00]`, `X-Rspamd-Score: 15.2`). Header names and
  thresholds come from the `[spam]` config section.
- `forged`: an unregistered sender whose SPF and DMARC both fail in our MTA's Authentication-Results.
  A registered customer failing them is a different case (routing.authresults, the `authenticate`
  stage): that ticket is kept, unanswered, for the security team.

Anyone can write these headers into a mail, so only those our MTA wrote count: above its Received
line (`routing.authresults.our_block`, `[trust] received_hops`), and only when that Received line is
there. A spam header a sender (or the sender's own server) wrote sits below it and is ignored, so a
mail cannot be pushed into the spam list from outside, nor out of it: a "No" is never read as a pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailer.config import SpamConfig, TrustConfig
from routing.authresults import OurBlock, evaluate, our_block
from routing.verify import UNREGISTERED

SPAM, FORGED = "spam", "forged"
_YES = ("yes", "true")
_SPF_FAIL = ("fail", "hardfail")
_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
# Where the score stands: SpamAssassin's "score=15.2", rspamd's "[15.20 / 15.00]", or the value alone.
_SCORES = (re.compile(r"\bscore=" + _NUMBER, re.IGNORECASE), re.compile(r"\[\s*" + _NUMBER + r"\s*/"),
           re.compile(r"^\s*" + _NUMBER + r"\s*$"))
MAX_EVIDENCE = 300


@dataclass(frozen=True)
class SpamVerdict:
    kind: str  # spam | forged
    reason: str
    evidence: dict[str, object] = field(default_factory=dict)


def judge(trace: tuple[tuple[str, str], ...], sender_status: str, config: SpamConfig,
          trust: TrustConfig | None) -> SpamVerdict | None:
    """The verdict for a mail with these header fields (top first) from a sender of this status, if any."""
    if not config.enabled:
        return None
    hops = trust.received_hops if trust is not None else 0
    verdict = mta_verdict(our_block(trace, hops), config)
    if verdict is None and config.forged_unregistered and trust is not None and sender_status == UNREGISTERED:
        verdict = forged_stranger(trace, trust)
    return verdict


def mta_verdict(block: OurBlock, config: SpamConfig) -> SpamVerdict | None:
    """Our MTA's spam verdict among the fields it wrote; None when it wrote none, or said no."""
    if not block.anchored:
        return None
    ignored = sum(name in config.flag_headers or name in config.scores for name, _ in block.below)
    for name, value in block.fields:
        if name in config.flag_headers and value.strip().split(",")[0].strip().lower() in _YES:
            return SpamVerdict(SPAM, f"our MTA flagged it as spam ({name}: {_short(value)})",
                               {"header": name, "value": _short(value), "ignored_headers": ignored})
        threshold = config.scores.get(name)
        score = score_of(value) if threshold is not None else None
        if threshold is not None and score is not None and score >= threshold:
            return SpamVerdict(SPAM, f"our MTA's spam score {score:g} reaches {threshold:g} ({name})",
                               {"header": name, "value": _short(value), "score": score, "threshold": threshold,
                                "ignored_headers": ignored})
    return None


def forged_stranger(trace: tuple[tuple[str, str], ...], trust: TrustConfig) -> SpamVerdict | None:
    """An unregistered sender's mail whose SPF and DMARC both fail, per our MTA: answering it is backscatter."""
    auth = evaluate(trace, trust.authserv_id, trust.received_hops)
    if auth.dmarc == "fail" and auth.spf in _SPF_FAIL:
        return SpamVerdict(FORGED, "unregistered sender failing SPF and DMARC at our MTA (a forged From)",
                           {"authentication": auth.evidence})
    return None


def score_of(value: str) -> float | None:
    for pattern in _SCORES:
        match = pattern.search(value)
        if match:
            return float(match.group(1))
    return None


def _short(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= MAX_EVIDENCE else value[:MAX_EVIDENCE] + "…"
