"""templates/: every customer-facing mail in every shipped language, the same variables everywhere, the
language chosen along the fallback chain, and override folders checked before they can break a reply."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.cli import main
from parsing.language import SHIPPED
from templates import (
    BUILTIN_DIR,
    CUSTOMER_KINDS,
    INTERNAL_KINDS,
    PARTS,
    Renderer,
    _environment,
    check_override,
    variables,
)
from tests.test_config import MINIMAL, write

CONTEXT: dict[str, dict[str, object]] = {
    "ack": {"customer_name": "Ana", "anti_phishing_code": "SUN-42", "queue_title": "Deposits",
            "due_text": "Wednesday 10:00", "time_zone": "Asia/Shanghai", "first_response_target": "4 hours",
            "articles": []},
    "unverified": {}, "repeat_notice": {}, "secret_warning": {"kinds": ["password"]},
    "attachment_refused": {"files": [("invoice.exe", "a program that can run code")]},
    "reply": {"text": "Your deposit is credited.", "queue_title": "Deposits", "anti_phishing_code": "SUN-42"},
    "survey": {"anti_phishing_code": "SUN-42",
               "ratings": [{"value": r, "href": f"mailto:support+csat.42.{r}.abc@desk.example"} for r in (5, 3, 1)]},
}


def context(kind: str) -> dict[str, object]:
    return {"ticket": 42, "desk_name": "Example Desk", "customer_name": None, "anti_phishing_code": None,
            **CONTEXT[kind]}


def test_every_customer_mail_exists_in_every_shipped_language_with_the_same_variables() -> None:
    env = _environment(BUILTIN_DIR)
    names = set(env.list_templates(extensions=["j2"]))
    count = 0
    for kind in CUSTOMER_KINDS:
        for part in PARTS:
            reference = variables(env, f"{kind}/en.{part}.j2")
            for tag in SHIPPED:
                name = f"{kind}/{tag}.{part}.j2"
                assert name in names, f"missing {name}"
                assert variables(env, name) == reference, f"{name} reads other variables than {kind}/en.{part}.j2"
                count += 1
    for kind in INTERNAL_KINDS:
        assert all(f"{kind}/en.{part}.j2" in names for part in PARTS)
    assert not any("/zh." in name for name in names)  # zh.* became zh-Hans.*
    print(f"\n{count} customer-facing templates ({len(CUSTOMER_KINDS)} kinds × {len(SHIPPED)} languages × 3 parts)")


@pytest.mark.parametrize("tag", SHIPPED)
@pytest.mark.parametrize("kind", CUSTOMER_KINDS)
def test_each_renders_in_its_own_language(kind: str, tag: str) -> None:
    rendered = Renderer().render(kind, tag, context(kind))
    assert "#42" in rendered.subject and "\n" not in rendered.subject
    assert "42" in rendered.text and f'<html lang="{tag}">' in rendered.html
    if tag != "en":
        english = Renderer().render(kind, "en", context(kind))
        assert rendered.text != english.text and rendered.subject != english.subject


@pytest.mark.parametrize("tag", SHIPPED)
def test_the_ack_lists_help_articles_only_when_there_are_some(tag: str) -> None:
    articles = [{"title": "Deposit not credited", "url": "https://help.example/deposit-missing?a=1&b=2"},
                {"title": "Reset 2FA", "url": "https://help.example/reset-2fa"}]
    without = Renderer().render("ack", tag, context("ack"))
    with_articles = Renderer().render("ack", tag, {**context("ack"), "articles": articles})
    assert "help.example" not in without.text and "help.example" not in without.html
    assert "- Reset 2FA" in with_articles.text and "https://help.example/reset-2fa" in with_articles.text
    assert '<a href="https://help.example/deposit-missing?a=1&amp;b=2">Deposit not credited</a>' in with_articles.html
    heading = next(line for line in with_articles.text.splitlines()
                   if line and line not in without.text.splitlines() and not line.startswith("- "))
    assert heading.endswith((":", "："))


@pytest.mark.parametrize(("asked", "used"), [
    ("zh-TW", "zh-Hant"), ("zh-HK", "zh-Hant"), ("zh-CN", "zh-Hans"), ("zh", "zh-Hans"), ("pt-BR", "pt"),
    ("ja-JP", "ja"), ("fr", "en"), ("", "en"),
])
def test_the_language_is_chosen_along_the_fallback_chain(asked: str, used: str) -> None:
    assert Renderer().language_for("ack", asked) == used


def test_an_override_may_add_a_language_and_replace_single_files(tmp_path: Path) -> None:
    (tmp_path / "ack").mkdir()
    for part, text in (("subject", "[#{{ ticket }}] Nous avons reçu votre demande"),
                       ("txt", "Bonjour, ticket #{{ ticket }}. {{ desk_name }}"),
                       ("html", '{% extends "base.html.j2" %}{% block content %}#{{ ticket }}{% endblock %}')):
        (tmp_path / "ack" / f"fr.{part}.j2").write_text(text)
    (tmp_path / "ack" / "zh-Hant.subject.j2").write_text("[#{{ ticket }}] 已收到（{{ queue_title }}）")
    renderer = Renderer(tmp_path)
    assert renderer.render("ack", "fr-CA", context("ack")).subject == "[#42] Nous avons reçu votre demande"
    assert renderer.language_for("unverified", "fr") == "en"  # no French there: English
    taiwan = renderer.render("ack", "zh-TW", context("ack"))
    assert taiwan.subject == "[#42] 已收到（Deposits）" and "感謝您聯絡" in taiwan.text  # the rest is shipped


def test_override_check_finds_errors_and_warnings(tmp_path: Path) -> None:
    (tmp_path / "ack").mkdir()
    (tmp_path / "reply").mkdir()
    (tmp_path / "ack" / "ja.txt.j2").write_text("{{ ticket }} {{ customer_email }}")       # not provided
    (tmp_path / "ack" / "ko.html.j2").write_text("{% if ticket %}{{ ticket }")               # does not parse
    (tmp_path / "reply" / "ru.txt.j2").write_text("{{ text }}")                             # leaves things out
    (tmp_path / "ack" / "fr.txt.j2").write_text("{{ ticket }}")                             # a partial language
    (tmp_path / "ack" / "notes.md.j2").write_text("x")                                     # never used
    (tmp_path / "reply" / "zh.txt.j2").write_text("{{ text }}")                             # the old name
    problems = {(p.path.relative_to(tmp_path).as_posix() if p.path != tmp_path else ".", p.error): p.reason
                for p in check_override(tmp_path)}
    assert "customer_email" in problems[("ack/ja.txt.j2", True)]
    assert "line 1" in problems[("ack/ko.html.j2", True)]
    assert "anti_phishing_code" in problems[("reply/ru.txt.j2", False)]
    assert "fall back to 'en'" in problems[(".", False)] and "unverified" in problems[(".", False)]
    assert "never used" in problems[("ack/notes.md.j2", False)]
    assert "rename" in problems[("reply/zh.txt.j2", False)]
    assert check_override(BUILTIN_DIR) == []  # the shipped folder, taken as an override, is clean


def test_check_config_reports_the_override_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mail-texts"
    (folder / "ack").mkdir(parents=True)
    (folder / "reply").mkdir()
    (folder / "reply" / "es.txt.j2").write_text("{{ text }}\n")
    path = write(tmp_path, MINIMAL + '\n[paths]\ntemplates = "mail-texts"\n')
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr()
    assert "warning" in out.err and "reply/es.txt" in out.err and "anti_phishing_code" in out.err
    (folder / "ack" / "es.txt.j2").write_text("{{ ticket }} {{ secret_sauce }}\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'ack' / 'es.txt.j2'}: ack/es.txt: uses secret_sauce" in err
