"""Is this mail written by a machine? Then it may join a ticket, but it never gets an automatic answer.

The signs are the standard ones (RFC 3834 Auto-Submitted, Precedence, list headers, a null return
path, the vacation-responder headers) and our own loop header, which every mail supportd sends carries.
"""

from __future__ import annotations

from parsing.message import ParsedMail

LOOP_HEADER = "X-Supportd-Loop"


def automatic_reason(mail: ParsedMail, loop_token: str) -> str | None:
    """A short reason if the mail is automatic, else None."""
    auto_submitted = (mail.header("auto-submitted") or "no").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return f"Auto-Submitted: {auto_submitted}"
    precedence = (mail.header("precedence") or "").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    for name in ("list-id", "list-unsubscribe", "x-autoreply", "x-autorespond", "x-auto-response-suppress"):
        if mail.header(name) is not None and (name != "x-auto-response-suppress" or _suppresses_replies(mail)):
            return f"{name} header present"
    if (mail.header("return-path") or "").strip() == "<>":
        return "null return path (a bounce or notification)"
    if any(loop_token in value for value in mail.headers.get(LOOP_HEADER.lower(), ())):
        return "our own loop header: this mail came from supportd"
    if mail.header("content-type") and "multipart/report" in (mail.header("content-type") or "").lower():
        return "delivery or read report"
    return None


def _suppresses_replies(mail: ParsedMail) -> bool:
    value = (mail.header("x-auto-response-suppress") or "").lower()
    return "all" in value or "autoreply" in value or "oof" in value
