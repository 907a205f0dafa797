"""Satisfaction surveys and quality review over real IMAP and SMTP: close → survey → click → report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.cli import main
from mailer.config import load_config
from mailer.demo.samples import BTC_TXID, text_mail
from mailer.ledger.db import Database, Rating, RawMessage, Review
from routing.feedback import find_rating_address, parse_score, rating_address, sampled
from tests.servers import Dovecot, Mailbox, Pymap
from tests.test_pipeline import run_once
from tests.test_specialists import Relay, answer, inbox, running_desk, tickets

Desk = tuple[Path, Relay, dict[str, Mailbox]]


@pytest.fixture
def desk(tmp_path: Path, imap_backend: Dovecot | Pymap) -> Iterator[Desk]:
    with running_desk(tmp_path, imap_backend, qa={"share": 1.0}) as running:
        yield running


def click(href: str, sender: str = "omar@example.com", words: str = "", to: str | None = None) -> EmailMessage:
    """What a mail client sends when the customer clicks a mailto: link (and maybe types a few words)."""
    address, _, _ = href.removeprefix("mailto:").partition("?")
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, to or address, "Rating"
    mail.set_content(words or "\n")
    return mail


def rows(path: Path) -> tuple[list[Rating], list[Review], list[RawMessage]]:
    db = Database(load_config(path).database_url)
    with db.session() as session:
        ratings, reviews = list(session.scalars(select(Rating))), list(session.scalars(select(Review)))
        refused = list(session.scalars(select(RawMessage).where(RawMessage.stage == "rating")))
    db.dispose()
    return ratings, reviews, refused


def report(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["sla", "report", "--config", str(path), "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def text_of(mail: EmailMessage) -> str:
    return mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_survey_rating_and_review_round_trip(desk: Desk, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path, relay, boxes = desk
    boxes["desk"].append(text_mail("Omar Haddad <omar@example.com>", "Deposit not credited",
                                   f"My BTC deposit is missing. TxID {BTC_TXID}", "<omar-1@example.com>"),
                         text_mail("Omar Haddad <omar@example.com>", "Withdrawal limit",
                                   "How do I raise my withdrawal limit for USDT?", "<omar-2@example.com>"))
    assert run_once(path) == 0
    forward = next(m for m in inbox(boxes["dana"]) if str(m["Reply-To"]).startswith("support+1."))
    relay.send(answer(forward, "dana@desk.example", "#close\nWe credited your deposit, sorry for the wait."))
    assert run_once(path) == 0

    # The customer gets the answer and a survey of signed one-click links; nothing about the review.
    [survey] = [m for m in inbox(boxes["omar"]) if str(m["Subject"]) == "[#1] How did we do?"]
    assert survey["Auto-Submitted"] == "auto-replied" and survey["In-Reply-To"] == "<omar-1@example.com>"
    links = dict(re.findall(r"(★+) \S[^:]*: (mailto:\S+)", text_of(survey)))
    assert sorted(len(stars) for stars in links) == [1, 2, 3, 4, 5]
    href = {len(stars): link for stars, link in links.items()}
    assert all(h.startswith("mailto:support+csat.1.") for h in href.values())
    html = survey.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert all(f'href="{h}"' in html for h in href.values())
    assert not any("review" in str(m["Subject"]).lower() for m in inbox(boxes["omar"]))

    # The lead gets the whole transcript, with the ticket address to answer on.
    [review] = [m for m in inbox(boxes["lead"]) if "Quality review" in str(m["Subject"])]
    transcript = text_of(review)
    assert BTC_TXID in transcript and "We credited your deposit" in transcript and "dana@desk.example" in transcript
    assert str(review["Reply-To"]).startswith("support+1.")

    # Click 4 with a few words; the report shows it per queue and per specialist.
    relay.send(click(href[4], words="Quick and friendly, thanks."))
    assert run_once(path) == 0
    [rating], _, _ = rows(path)
    assert (rating.ticket_id, rating.rating, rating.comment, rating.specialist) == \
        (1, 4, "Quick and friendly, thanks.", "dana@desk.example")
    lines = report(path, capsys)
    deposits = next(line for line in lines if line.get("queue") == "deposits")
    assert deposits["csat"] == {"name": "deposits", "surveys": 1, "ratings": 1, "csat": 4.0, "satisfied": 1.0,
                                "reviews": 0, "scored": 0, "qa": None}

    # A later click updates it (the words stay); forged and stray links are refused and change nothing.
    relay.send(click(href[2]))
    relay.send(click(href[5].replace("csat.1.5.", "csat.1.3."), words="forged: a 5 token with a 3"))
    relay.send(click(href[5].replace("csat.1.", "csat.2."), words="another ticket, never surveyed"))
    relay.send(click(href[1], sender="mallory@evil.example"))
    assert run_once(path) == 0
    [rating], _, refused = rows(path)
    assert (rating.rating, rating.comment, rating.changes) == (2, "Quick and friendly, thanks.", 1)
    assert sorted(r.error or "" for r in refused) == [
        "mallory@evil.example is not the customer of ticket #1", "no survey was sent for this ticket",
        "the rating address carries a wrong token"]
    assert all(r.status == "quarantined" for r in refused)
    assert tickets(path)[1].status == "closed"  # a rating never reopens the ticket

    # The lead scores the review; the specialist cannot score themselves; a second #qa updates the score.
    relay.send(answer(forward, "dana@desk.example", "#qa 5 I did great"))
    relay.send(answer(review, "lead@desk.example", "#qa 4 correct and kind\nCould have linked the fee table."))
    assert run_once(path) == 0
    assert any("not sent: command problem" in str(m["Subject"]) for m in inbox(boxes["dana"]))
    _, [scored], _ = rows(path)
    assert (scored.specialist, scored.score, scored.comment) == \
        ("dana@desk.example", 4, "correct and kind\nCould have linked the fee table.")
    relay.send(answer(review, "lead@desk.example", "#qa 3 on a second reading, the tone was curt"))
    assert run_once(path) == 0
    _, [scored], _ = rows(path)
    assert scored.score == 3
    assert not any("correct and kind" in text_of(m) or "second reading" in text_of(m) for m in inbox(boxes["omar"]))

    lines = report(path, capsys)
    [dana] = [line for line in lines if line.get("specialist") == "dana@desk.example"]
    assert (dana["surveys"], dana["ratings"], dana["csat"], dana["reviews"], dana["scored"], dana["qa"]) == \
        (1, 1, 2.0, 1, 1, 3.0)
    capsys.readouterr()
    page = tmp_path / "sla.html"
    assert main(["sla", "report", "--config", str(path), "--html", str(page)]) == 0
    text = capsys.readouterr().out
    assert "deposits" in text and "dana@desk.example" in text and "3.00" in text
    html = page.read_text()
    assert "Customer satisfaction" in html and "dana@desk.example" in html


def test_unverified_customers_get_no_survey(desk: Desk) -> None:
    path, relay, boxes = desk
    boxes["desk"].append(text_mail("someone@elsewhere.example", "Deposit not credited", "My BTC deposit is missing.",
                                   "<x-1@elsewhere.example>"))
    assert run_once(path) == 0
    [forward] = inbox(boxes["dana"])
    relay.send(answer(forward, "dana@desk.example", "#close\nPlease write from your registered address."))
    assert run_once(path) == 0
    ratings, reviews, _ = rows(path)
    assert ratings == [] and len(reviews) == 1  # reviewed all the same: the lead reads every kind of ticket


def test_rating_addresses() -> None:
    secret = b"k" * 32
    address = rating_address("support@desk.example", secret, 42, 5, "n1")
    found = find_rating_address(["x@y.example", address.upper()], "support@desk.example")
    assert found is not None and (found.ticket_id, found.rating) == (42, 5)
    assert found.valid(secret, "n1") and not found.valid(secret, "n2") and not found.valid(b"j" * 32, "n1")
    assert find_rating_address([address.replace("support+", "other+")], "support@desk.example") is None
    assert parse_score("4 fine\nmore") == (4, "fine\nmore") and parse_score("7 great") is None
    assert parse_score("five") is None and parse_score("3") == (3, "")


@pytest.mark.parametrize("share", [0.1, 0.25, 1 / 3, 0.5, 1.0])
def test_review_sampling_takes_the_share(share: float) -> None:
    for offset in (0.0, 0.13, 0.5, 0.99):
        for closings in (1, 7, 10, 30, 100):
            taken = sum(sampled(n, share, offset) for n in range(1, closings + 1))
            assert abs(taken - closings * share) < 1 + 1e-9
    assert all(sampled(n, 1.0, 0.3) for n in range(1, 20)) and not any(sampled(n, 0.0, 0.3) for n in range(1, 20))
