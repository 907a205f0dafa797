"""What our own MTA says about a mail's authenticity (RFC 8601 Authentication-Results).

Anyone can write an Authentication-Results header into a mail. Only headers carrying our MTA's
authserv-id, and standing above the Received line our MTA added (it writes on top; what a sender
forged sits below), are read. Alignment compares organizational domains, approximated as the last
two labels (three under a two-letter country code with a generic second level, such as co.uk): good
enough to tell example.com from evil.example, without a public suffix list to keep current.
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


def evaluate(trace: tuple[tuple[str, str], ...], authserv_id: str, received_hops: int = 0) -> AuthResult:
    """Read the trusted Authentication-Results among `trace` (Received and A-R headers, top first).

    `received_hops` is how many Received lines of our own MTAs may stand above its A-R header: 0 when the
    MTA writes A-R on top (Postfix with OpenDKIM/OpenDMARC milters does), 1 when it writes it just below
    its own Received line.
    """
    received = ignored = 0
    trusted = False
    results: list[tuple[str, str, dict[str, str]]] = []
    for name, value in trace:
        if name == "received":
            received += 1
            continue
        server, entries = _parse(value)
        if server != authserv_id.lower() or received > received_hops:
            ignored += 1
            continue
        trusted = True
        results += entries
    dmarc = next((result for method, result, _ in results if method == "dmarc"), None)
    dkim = tuple(props.get("header.d", "").lower() for method, result, props in results
                 if method == "dkim" and result == "pass" and props.get("header.d"))
    spf = next((props.get("smtp.mailfrom", "").rpartition("@")[2].lower() for method, result, props in results
                if method == "spf" and result == "pass" and props.get("smtp.mailfrom")), None)
    return AuthResult(trusted=trusted, dmarc=dmarc, dkim_domains=dkim, spf_domain=spf or None, ignored=ignored,
                      evidence={"dmarc": dmarc, "dkim_pass": list(dkim), "spf_pass": spf, "ignored_headers": ignored})


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
