"""Obsolete RFC 5322 syntax (§4) is read, and address headers are parsed before encoded words are decoded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from parsing.message import parse
from parsing.obsolete import close_spaced_header_names, message_ids, parse_date, strip_comments
from routing.verify import normalize_address

CORPUS = Path(__file__).parent / "corpus" / "real"


def test_spaced_header_names_comments_and_obsolete_date_of_rfc5322_a6_3() -> None:
    mail = parse((CORPUS / "rfc5322_a6_3_obsolete_white_space.eml").read_bytes())
    assert [a.address for a in mail.from_] == ["jdoe@machine.example"]
    assert [a.address for a in mail.to] == ["mary@example.net"]
    assert mail.subject == "Saying Hello"
    assert mail.message_id == "<1234@local.machine.example>" and not mail.message_id_derived
    assert mail.date == datetime(1997, 11, 21, 9, 55, 6, tzinfo=timezone(timedelta(hours=-6)))
    assert mail.new_text.startswith("This is a message just to say hello.")


def test_obsolete_routes_and_empty_list_members_of_rfc5322_a6_1() -> None:
    mail = parse((CORPUS / "rfc5322_a6_1_obsolete_addressing.eml").read_bytes())
    assert [a.address for a in mail.to] == ["mary@example.net", "jdoe@test.example"]


def test_route_in_from_and_a_named_zone() -> None:
    mail = parse((CORPUS / "obsolete_route_named_zone.eml").read_bytes())
    assert [a.address for a in mail.from_] == ["kenji@example.jp"]
    assert mail.message_id == "<obsolete-1@example.jp>"
    assert mail.date == datetime(2026, 11, 23, 22, 15, tzinfo=timezone(timedelta(hours=-5)))


@pytest.mark.parametrize(("value", "expected"), [
    ("21 Nov 97 09:55:06 GMT", datetime(1997, 11, 21, 9, 55, 6, tzinfo=UTC)),
    ("Fri, 21 Nov 97 09(comment):   55  :  06 -0600",
     datetime(1997, 11, 21, 9, 55, 6, tzinfo=timezone(timedelta(hours=-6)))),
    ("Thu, 13 Feb 1969 23:32 -0330 (Newfoundland Time)",
     datetime(1969, 2, 13, 23, 32, tzinfo=timezone(timedelta(hours=-3, minutes=-30)))),
    ("Mon, 23 Nov 2026 10:00:00 XYZ", datetime(2026, 11, 23, 10, 0, tzinfo=UTC)),  # unknown zone: -0000
    ("not a date at all", None),
])
def test_obsolete_dates(value: str, expected: datetime | None) -> None:
    assert parse_date(value) == expected


def test_repairs_leave_the_body_and_well_formed_values_alone() -> None:
    raw = b"From: a@b.example\r\nSubject: x\r\n\r\nNote  : this line is body\r\n"
    assert close_spaced_header_names(raw) is raw
    spaced = b"From  : a@b.example\r\n\r\nNote  : body\r\n"
    assert close_spaced_header_names(spaced) == b"From: a@b.example\r\n\r\nNote  : body\r\n"
    assert message_ids("<a@b> <c@d>") == ["<a@b>", "<c@d>"]
    assert strip_comments('"quoted (not a comment)" (a (nested) comment) x') == '"quoted (not a comment)"   x'


@pytest.mark.parametrize("from_", [
    b"=?utf-8?q?x=0D=0ABcc:_injected@evil.example?= <a@b.example>",
    b"=?utf-8?b?QWxpY2UgPGluamVjdGVkQGV2aWwuZXhhbXBsZT4s?= <a@b.example>",
    b"=?utf-8?q?injected@evil.example,?= <a@b.example>",
    b'"=?utf-8?q?injected@evil.example=22,_?=" <a@b.example>',
])
def test_an_encoded_word_cannot_add_an_address(from_: bytes) -> None:
    mail = parse(b"From: " + from_ + b"\r\nSubject: x\r\n\r\nbody\r\n")
    assert [a.address for a in mail.from_] == ["a@b.example"]
    assert "injected@evil.example" in mail.from_[0].name and "\n" not in mail.from_[0].name


def test_internationalized_addresses_normalize_the_same_however_composed() -> None:
    composed, decomposed = "jdöe@mächine.example", "jdo\u0308e@MA\u0308CHINE.example"
    assert normalize_address(composed) == normalize_address(decomposed) == "jdöe@xn--mchine-bua.example"
    assert normalize_address("jd\ufffde@example.org") is None  # what undecodable bytes became
    assert normalize_address("a" * 250 + "@example.org") is None
