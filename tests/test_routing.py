"""routing/: verification outcomes, address normalization, and rule decisions with reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.config import load_config
from mailer.demo.samples import encoded_word, text_mail
from parsing.message import parse
from routing.autoreply import automatic_reason
from routing.rules import Router
from routing.verify import AccountRef, normalize_address, verify_sender
from tests.test_config import MINIMAL, write

ACCOUNT = AccountRef(1, "omar@example.com", "10066554", "en", "Omar")


def lookup(address: str) -> AccountRef | None:
    return ACCOUNT if address == ACCOUNT.email else None


@pytest.mark.parametrize(("written", "normalized"), [
    ("Omar@Example.COM", "omar@example.com"),
    (" <omar@example.com> ", "omar@example.com"),
    ("user@bücher.example", "user@xn--bcher-kva.example"),
    ("not an address", None),
    ("@example.com", None),
])
def test_normalize_address(written: str, normalized: str | None) -> None:
    assert normalize_address(written) == normalized


@pytest.mark.parametrize(("from_header", "extra", "status"), [
    ('"Omar H." <OMAR@example.com>', "", "verified"),
    ("stranger@example.net", "", "unregistered"),
    ("omar@example.com, other@example.net", "", "mismatch"),
    ("omar@example.com", "Reply-To: attacker@evil.example\r\n", "mismatch"),
    ("omar@example.com", "Sender: bulk@evil.example\r\n", "mismatch"),
    ('"omar@example.com" <evil@x.example>', "", "unregistered"),
])
def test_verification(from_header: str, extra: str, status: str) -> None:
    mail = parse(text_mail(from_header, "x", "y", "<v@x>", extra=extra))
    assert verify_sender(mail, lookup).status == status


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Router:
    config = load_config(write(tmp_path_factory.mktemp("cfg"), MINIMAL))
    return Router(config.rules)


@pytest.mark.parametrize(("subject", "body", "queue"), [
    ("充值未到账", "请帮忙", "deposits"),
    ("Where is my money", "tx " + "ab" * 32, "deposits"),
    ("账户安全问题", "有人登录了我的账户", "security"),
    ("My account was hacked", "", "security"),
    ("KYC verification problem", "", "kyc"),
    ("身份验证失败", "", "kyc"),
    ("API key question", "", "api"),
    ("Rapid question", "how do fees work", "general"),
])
def test_rules_choose_queues_and_say_why(router: Router, subject: str, body: str, queue: str) -> None:
    header = subject if subject.isascii() else encoded_word(subject, "utf-8")
    decision = router.route(parse(text_mail("a@b.example", header, body, "<r@x>")), None)
    assert decision.queue == queue
    assert decision.reasons


def test_subject_outweighs_body(router: Router) -> None:
    mail = parse(text_mail("a@b.example", "KYC verification", "also my deposit and withdrawal", "<w@x>"))
    decision = router.route(mail, None)
    assert decision.queue == "kyc" and "subject contains 'kyc'" in decision.reasons


@pytest.mark.parametrize(("extra", "automatic"), [
    ("Auto-Submitted: auto-replied\r\n", True),
    ("Auto-Submitted: auto-generated\r\n", True),
    ("Auto-Submitted: no\r\n", False),
    ("Precedence: bulk\r\n", True),
    ("List-Id: <news.example.com>\r\n", True),
    ("X-Autoreply: yes\r\n", True),
    ("Return-Path: <>\r\n", True),
    ("X-Supportd-Loop: token123\r\n", True),
    ("", False),
])
def test_automatic_mail_is_recognised(extra: str, automatic: bool) -> None:
    mail = parse(text_mail("a@b.example", "x", "y", "<a@x>", extra=extra))
    assert (automatic_reason(mail, "token123") is not None) is automatic


def test_shipped_rules_file_is_what_the_minimal_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert {r.queue for r in config.rules} == set(config.queues)
