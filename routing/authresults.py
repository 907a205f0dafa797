"""What our own MTA says about a mail's authenticity (RFC 8601 Authentication-Results).

Anyone can write an Authentication-Results header into a mail. Only headers carrying our MTA's
authserv-id, and standing above the Received line our MTA added (it writes on top; what a sender
forged sits below), are read; `our_block` is that position rule on its own, for any other verdict
our MTA writes (routing.spam reads spam flags and scores with it). Alignment compares organizational
domains, approximated as the last two labels (three under a two-letter country code with a generic
second level, such as co.uk): good enough to tell example.com from evil.example, without a public
suffix list to keep current.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

POLICIES = ("none", "aligned", "dmarc")
_COMMENT = re.compile(r"\([^()]*\)")
_GENERIC_SLD = {"co", "com", "net", "org", "gov", "edu", "ac", "ne", "or", "go"}


@dataclass(frozen=True)
class AuthResult:
    trusted: bool  # a header from our MTA was found
    dmarc: str | None = None  # pass | fail | none | … as our MTA reported
    dkim_domains: tuple[str, ...] = ()  # header.d of passing DKIM signatures
    spf_domain: str | None = None  # smtp.mailfrom domain when SPF passed
    spf: str | None = None  # pass | fail | softfail | … as our MTA reported
    ignored: int = 0  # headers claiming to be ours or others that were not trusted
    evidence: dict[str, object] = field(default_factory=dict)

    def aligned_with(self, from_domain: str) -> bool:
        org = organizational_domain(from_domain)
        return any(organizational_domain(d) == org for d in (*self.dkim_domains, self.spf_domain or "") if d)

    def meets(self, policy: str, from_domain: str) -> bool:
        if policy == "none":
            return True
        if self.dmarc == "pass":
            return True
        return policy == "aligned" and self.aligned_with(from_domain)


def organizational_domain(domain: str) -> str:
    labels = domain.lower().rstrip(".").split(".")
    keep = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _GENERIC_SLD else 2
    return ".".join(labels[-keep:])


@dataclass(frozen=True)
class OurBlock:
    """The header fields our MTA wrote: those above its Received line, top first."""

    fields: tuple[tuple[str, str], ...]
    below: tuple[tuple[str, str], ...]  # everything further down, which anyone may have written
    anchored: bool  # our MTA's Received line was found under `fields`

    def values(self, name: str) -> list[str]:
        return [value for field_name, value in self.fields if field_name == name]


def our_block(trace: tuple[tuple[str, str], ...], received_hops: int = 0) -> OurBlock:
    """Split the header fields (lower-case name, value; top first) at our MTA's Received line.

    `received_hops` is how many Received lines of our own MTAs may stand above what it writes: 0 when the
    MTA writes on top (Postfix with milters such as OpenDKIM, OpenDMARC, rspamd or spamass-milter does),
    1 when it writes just below its own Received line.
    """
    received = 0
    for index, (name, _value) in enumerate(trace):
        if name == "received":
            received += 1
            if received > received_hops:
                return OurBlock(trace[:index], trace[index:], anchored=True)
    return OurBlock(trace, (), anchored=False)


def evaluate(trace: tuple[tuple[str, str], ...], authserv_id: str, received_hops: int = 0) -> AuthResult:
    """Read the trusted Authentication-Results among `trace` (the header fields, top first).

    See `our_block` for `received_hops`.
    """
    block = our_block(trace, received_hops)
    ignored = sum(name == "authentication-results" for name, _ in block.below)
    trusted = False
    results: list[tuple[str, str, dict[str, str]]] = []
    for value in block.values("authentication-results"):
        server, entries = _parse(value)
        if server != authserv_id.lower():
            ignored += 1
            continue
        trusted = True
        results += entries
    dmarc = next((result for method, result, _ in results if method == "dmarc"), None)
    dkim = tuple(props.get("header.d", "").lower() for method, result, props in results
                 if method == "dkim" and result == "pass" and props.get("header.d"))
    spf = next((props.get("smtp.mailfrom", "").rpartition("@")[2].lower() for method, result, props in results
                if method == "spf" and result == "pass" and props.get("smtp.mailfrom")), None)
    spf_result = next((result for method, result, _ in results if method == "spf"), None)
    return AuthResult(trusted=trusted, dmarc=dmarc, dkim_domains=dkim, spf_domain=spf or None, spf=spf_result,
                      ignored=ignored, evidence={"dmarc": dmarc, "spf": spf_result, "dkim_pass": list(dkim),
                                                 "spf_pass": spf, "ignored_headers": ignored})


def reported_dmarc_failures(trace: tuple[tuple[str, str], ...], from_domain: str) -> list[str]:
    """authserv-ids of every Authentication-Results header reporting dmarc=fail for the From domain.

    Used without [trust], when no header can be told from a forged one. Believing a *failure* from any
    header is safe: a forger can only make their own mail count as unauthenticated, never pass.
    A DMARC entry without header.from is about this mail's From, so it counts too.
    """
    org = organizational_domain(from_domain)
    servers = []
    for name, value in trace:
        if name != "authentication-results":
            continue
        server, entries = _parse(value)
        if any(method == "dmarc" and result == "fail"
               and organizational_domain(props.get("header.from", from_domain)) == org
               for method, result, props in entries):
            servers.append(server)
    return servers


def _parse(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """authserv-id and (method, result, properties) of one header value; comments dropped."""
    parts = [p.strip() for p in _COMMENT.sub(" ", value).split(";")]
    server = parts[0].split()[0].lower() if parts and parts[0] else ""
    entries = []
    for part in parts[1:]:
        tokens = part.split()
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        props = dict(t.split("=", 1) for t in tokens[1:] if "=" in t)
        entries.append((method.lower(), result.lower(), {k.lower(): v.strip('"') for k, v in props.items()}))
    return server, entries
