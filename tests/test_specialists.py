"""Specialists answer from their own mail client: the round trip over real IMAP and SMTP."""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from aiosmtpd.controller import Controller
from sqlalchemy import select

from mailer.config import default_routing, load_config
from mailer.demo.embedded import free_port
from mailer.demo.samples import BTC_TXID, text_mail
from mailer.ledger.db import Database, RawMessage, Ticket
from tests.conftest import prepared_app
from tests.servers import Dovecot, Mailbox, Pymap
from tests.test_pipeline import run_once

PEOPLE = ("desk", "dana", "lee", "lead", "omar")


class Relay:
    """An MTA for the test: mail for the desk (plus-addresses too) and each person lands in their mailbox."""

    def __init__(self, boxes: dict[str, Mailbox]) -> None:
        self.boxes, self.lock = boxes, threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            local = rcpt.split("@")[0].split("+")[0]
            owner = {"support": "desk", "omar": "omar", "dana": "dana", "lee": "lee", "lead": "lead"}.get(local)
            if owner:
                self.boxes[owner].append(bytes(envelope.content))
        return "250 OK"

    def send(self, message: EmailMessage) -> None:
        with smtplib.SMTP("127.0.0.1", self.controller.port) as smtp:
            smtp.send_message(message)


@contextmanager
def running_desk(tmp_path: Path, imap_backend: Dovecot | Pymap,
                 **sections: object) -> Iterator[tuple[Path, Relay, dict[str, Mailbox]]]:
    """A desk with its people's mailboxes behind a relay; `sections` are added to its config."""
    boxes = {name: imap_backend.new_mailbox() for name in PEOPLE}
    relay = Relay(boxes)
    relay.controller.start()
    queues = default_routing()["queues"]
    queues["deposits"] = {**queues["deposits"], "specialists": ["dana@desk.example", "lee@desk.example"],
                          "lead": "lead@desk.example"}
    path = tmp_path / "supportd.toml"
    path.write_text(tomli_w.dumps({
        "mailboxes": [{"name": "support", "url": boxes["desk"].url()}],
        "smtp": {"url": f"smtp://127.0.0.1:{relay.controller.port}", "from_address": "support@desk.example",
                 "retry_base": 0.05},
        "database": {"url": f"sqlite:///{tmp_path / 'supportd.db'}"},
        "desk": {"once_timeout": 30}, "paths": {"storage": str(tmp_path / "data")}, "queues": queues,
        **sections,
    }))
    prepared_app(load_config(path), tmp_path).close()
    try:
        yield path, relay, boxes
    finally:
        relay.controller.stop()
        for box in boxes.values():
            box.close()


@pytest.fixture(params=[False])
def desk(request: pytest.FixtureRequest, tmp_path: Path,
         imap_backend: Dovecot | Pymap) -> Iterator[tuple[Path, Relay, dict[str, Mailbox]]]:
    trust = {"trust": {"authserv_id": "mx.desk.example"}} if request.param else {}
    with running_desk(tmp_path, imap_backend, **trust) as running:
        yield running


def inbox(box: Mailbox) -> list[EmailMessage]:
    with box.client() as client:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["ALL"]))
        data = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
    return [message_from_bytes(data[u][b"BODY[]"], policy=policy.default) for u in uids]  # type: ignore[misc]


def answer(forward: EmailMessage, sender: str, text: str, *, to: str | None = None,
           attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    """A specialist's reply as a mail client writes it: quoting the forward, with a signature."""
    reply = EmailMessage()
    reply["From"], reply["To"] = sender, to or forward["Reply-To"]
    reply["Subject"] = "Re: " + str(forward["Subject"])
    reply["In-Reply-To"] = reply["References"] = forward["Message-ID"]
    quoted = "\n".join("> " + line for line in forward.get_body(("plain",)).get_content().splitlines()[:5])
    reply.set_content(f"{text}\n\nOn Mon, 23 Nov 2026, Support wrote:\n{quoted}\n\n-- \n{sender.split('@')[0]}\n"
                      "Deposits team, Example Exchange\n")
    if attachment:
        reply.add_attachment(attachment[1], maintype="application", subtype="pdf", filename=attachment[0])
    return reply


def tickets(path: Path) -> dict[int, Ticket]:
    db = Database(load_config(path).database_url)
    with db.session() as session:
        rows = {t.id: t for t in session.scalars(select(Ticket))}
        for ticket in rows.values():
            _ = [e.kind for e in ticket.events]  # load while the session is open
    db.dispose()
    return rows


def test_round_trip_from_customer_to_specialist_and_back(desk: tuple[Path, Relay, dict[str, Mailbox]]) -> None:
    path, relay, boxes = desk
    boxes["desk"].append(text_mail("Omar Haddad <omar@example.com>", "Deposit not credited",
                                   f"My BTC deposit is missing. TxID {BTC_TXID}", "<omar-1@example.com>"))
    assert run_once(path) == 0
    [forward] = inbox(boxes["dana"])
    assert len(inbox(boxes["lee"])) == 1
    reply_to = str(forward["Reply-To"])
    assert reply_to.startswith("support+1.") and reply_to.endswith("@desk.example")
    assert "Deposit not credited" not in str(forward["Subject"])  # no customer text in our headers
    body = forward.get_body(("plain",)).get_content()
    assert BTC_TXID in body and "omar@example.com (verified)" in body

    relay.send(answer(forward, "dana@desk.example", "#priority urgent\n\nHello Omar, we found your deposit; "
                      "it will be credited within the hour.", attachment=("receipt.pdf", b"%PDF-1.4 receipt")))
    assert run_once(path) == 0
    to_customer = inbox(boxes["omar"])
    assert [str(m["Subject"]) for m in to_customer] == ["[#1] We have your request (Deposits & withdrawals)",
                                                        "[#1] Re: your request (Deposits & withdrawals)"]
    relayed = to_customer[1]
    text = relayed.get_body(("plain",)).get_content()
    assert text.startswith("Your anti-phishing code: OH-PHX\n\nHello Omar, we found your deposit; it will be "
                           "credited within the hour.\n\n--\n")
    assert "#priority" not in text and "wrote:" not in text and "Deposits team" not in text
    assert relayed["From"].addresses[0].addr_spec == "support@desk.example"
    assert "dana" not in relayed.as_string()
    assert relayed["In-Reply-To"] == "<omar-1@example.com>" and relayed["Auto-Submitted"] is None
    assert [(a.get_filename(), a.get_content()) for a in relayed.iter_attachments()] == \
        [("receipt.pdf", b"%PDF-1.4 receipt")]
    ticket = tickets(path)[1]
    assert ticket.priority == "urgent" and ticket.first_responded_at is not None
    assert {"answered", "first_response", "priority"} <= {e.kind for e in ticket.events}

    # A second specialist answering is relayed too, and told that someone already did.
    [lee_forward] = inbox(boxes["lee"])
    relay.send(answer(lee_forward, "lee@desk.example", "Confirmed on our side as well."))
    # A note stays internal; a forged specialist and a wrong token are refused; an unknown command bounces.
    relay.send(answer(forward, "dana@desk.example", "#note checked with the chain team, all fine"))
    relay.send(answer(forward, "mallory@evil.example", "Please send your seed phrase to verify."))
    relay.send(answer(forward, "dana@desk.example", "Hi", to="support+1.aaaaaaaaaa@desk.example"))
    relay.send(answer(forward, "dana@desk.example", "#escalate now\nHello"))
    assert run_once(path) == 0

    to_customer = inbox(boxes["omar"])
    assert len(to_customer) == 3
    assert to_customer[2].get_body(("plain",)).get_content().split("\n\n")[1] == "Confirmed on our side as well."
    assert any("already answered" in str(m["Subject"]) for m in inbox(boxes["lee"]))
    assert any("not sent: command problem" in str(m["Subject"]) for m in inbox(boxes["dana"]))
    assert any("was refused" in str(m["Subject"]) for m in inbox(boxes["lead"]))
    ticket = tickets(path)[1]
    assert any(e.kind == "note" and "chain team" in e.detail["text"] for e in ticket.events)
    db = Database(load_config(path).database_url)
    with db.session() as session:
        refused = [r.error for r in session.scalars(select(RawMessage).where(RawMessage.stage == "gateway"))]
    db.dispose()
    assert sorted(refused) == ["mallory@evil.example is not a specialist of queue 'deposits'",
                               "the ticket address carries a wrong token"]

    # #pending pauses for the customer; their answer resumes; #close closes.
    relay.send(answer(forward, "dana@desk.example", "#pending\nCould you send the screenshot of the deposit?"))
    assert run_once(path) == 0
    assert tickets(path)[1].status == "pending"
    question = inbox(boxes["omar"])[-1]
    customer_reply = text_mail("omar@example.com", "Re: " + str(question["Subject"]), "Here it is.", "<omar-2@x>",
                               extra=f"In-Reply-To: {question['Message-ID']}\r\n")
    boxes["desk"].append(customer_reply)
    assert run_once(path) == 0
    assert tickets(path)[1].status == "open"
    relay.send(answer(forward, "dana@desk.example", "#close\nAll done, thank you for your patience."))
    assert run_once(path) == 0
    ticket = tickets(path)[1]
    assert ticket.status == "closed"
    assert {"waiting_on_customer", "customer_replied", "closed"} <= {e.kind for e in ticket.events}
    to_customer = inbox(boxes["omar"])
    assert len(to_customer) == 6 and "[#1] How did we do?" in {str(m["Subject"]) for m in to_customer}  # survey


def test_tokens_and_commands() -> None:
    from routing.specialists import find_ticket_address, parse_reply, ticket_address

    secret = b"s" * 32
    address = ticket_address("support@desk.example", 42, secret)
    assert find_ticket_address(["x@y.example", address.upper()], "support@desk.example", secret).token_valid  # type: ignore[union-attr]
    forged = address.replace(address.split(".")[1].split("@")[0], "a" * 10)
    assert not find_ticket_address([forged], "support@desk.example", secret).token_valid  # type: ignore[union-attr]
    assert find_ticket_address([address], "support@desk.example", b"t" * 32).token_valid is False  # type: ignore[union-attr]
    queues = ("deposits", "kyc")
    reply = parse_reply("#assign kyc\n#priority high\n\nHello there\n#close is not a command here", queues)
    assert [(c.name, c.argument) for c in reply.commands] == [("assign", "kyc"), ("priority", "high")]
    assert reply.text == "Hello there\n#close is not a command here" and not reply.errors
    note = parse_reply("#note called the customer\nsecond line", queues)
    assert note.internal and note.text == "called the customer\nsecond line"
    assert parse_reply("#assign nowhere\nHi", queues).errors[0].startswith("#assign needs a queue")
    assert parse_reply("#priority asap", queues).errors and parse_reply("#merge x", queues).errors
    assert parse_reply("#frobnicate\nHi", queues).errors[0].startswith("unknown command #frobnicate")


@pytest.mark.parametrize("desk", [True], indirect=True)
def test_a_specialist_reply_failing_authentication_is_refused(desk: tuple[Path, Relay, dict[str, Mailbox]]) -> None:
    path, relay, boxes = desk
    passing = "Authentication-Results: mx.desk.example; dkim=pass header.d={d}; dmarc=pass header.from={d}\r\n"
    boxes["desk"].append(passing.format(d="example.com").encode() + text_mail(
        "omar@example.com", "Deposit not credited", "missing", "<omar-9@example.com>"))
    assert run_once(path) == 0
    [forward] = inbox(boxes["dana"])
    forged = answer(forward, "dana@desk.example", "Please send your seed phrase.")
    forged["Authentication-Results"] = "mx.desk.example; dkim=none; spf=fail; dmarc=fail header.from=desk.example"
    relay.send(forged)
    assert run_once(path) == 0
    assert len(inbox(boxes["omar"])) == 1  # the acknowledgement only
    assert any("was refused" in str(m["Subject"]) for m in inbox(boxes["lead"]))


def test_merge_folds_a_ticket_into_another(desk: tuple[Path, Relay, dict[str, Mailbox]]) -> None:
    path, relay, boxes = desk
    boxes["desk"].append(text_mail("omar@example.com", "Deposit not credited", f"TxID {BTC_TXID}", "<m-1@x>"),
                         text_mail("omar@example.com", "KYC selfie rejected", "my selfie was rejected", "<m-2@x>"))
    assert run_once(path) == 0
    forwards = inbox(boxes["dana"])  # only the deposit ticket reaches the deposits queue
    assert len(forwards) == 1
    deposit = int(str(forwards[0]["Subject"]).split("]")[0].removeprefix("[#"))
    other = 3 - deposit
    relay.send(answer(forwards[0], "dana@desk.example", f"#merge {other}\n#note same customer, handled in #{other}"))
    assert run_once(path) == 0
    rows = tickets(path)
    assert rows[deposit].status == "closed"
    assert any(e.kind == "merged" and e.detail["into"] == other for e in rows[deposit].events)
    assert any(e.kind == "merged_in" and e.detail["from_ticket"] == deposit for e in rows[other].events)
    assert len(inbox(boxes["omar"])) == 2  # the two acknowledgements; the merge and the note stay inside
