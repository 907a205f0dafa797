"""End to end on real servers: customers are answered in their own language, and routed by it."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.app import App
from mailer.cli import main
from mailer.config import default_routing
from mailer.demo.embedded import SmtpSink
from mailer.demo.samples import text_mail
from mailer.ledger import migrate
from mailer.ledger.accounts import import_accounts
from mailer.ledger.db import Account
from tests.conftest import ConfigFactory
from tests.lang_corpus import TRON
from tests.servers import Mailbox

ACCOUNTS = """email,user_id,language,display_name
mei@example.tw,30000001,,陳美玲
haruto@example.jp,30000002,,佐藤 陽翔
ivan@example.ru,30000003,ru-RU,Иван
lucas@example.com.br,30000004,pt_BR,Lucas
"""

MAILS = [
    ("mei@example.tw", "入金未入帳",
     f"客服您好，我三小時前用TRC20入金300 USDT，到現在還沒入帳，麻煩幫我查詢。TxID：{TRON}"),
    ("haruto@example.jp", "不正ログインの通知",
     "海外IPからの不正ログイン通知が届きました。本人ではありません。至急ご確認ください。"),
    ("ivan@example.ru", "Верификация отклонена", "Верификацию личности снова отклонили, хотя фото паспорта чёткое."),
    ("lucas@example.com.br", "API key returns 401", "My new API key gets 401 on every private endpoint."),
    ("minjun@example.kr", "입금이 반영되지 않았습니다", "세 시간 전에 500 USDT를 입금했는데 아직 반영되지 않았습니다."),
]


def run_once(path: Path) -> int:
    return main(["run", "--config", str(path), "--once"])


@pytest.fixture
def answered(make_config: ConfigFactory, mailbox: Mailbox, smtp_sink: SmtpSink, tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, EmailMessage], dict[str, dict[str, object]]]:
    path, config = make_config()
    migrate.upgrade(config.database_url)
    (tmp_path / "accounts.csv").write_text(ACCOUNTS, encoding="utf-8")
    app = App.from_config(config)
    try:
        import_accounts(app.db, tmp_path / "accounts.csv")
        with app.db.session() as session:
            stored = {a.email: a.language for a in session.scalars(select(Account))}
    finally:
        app.close()
    assert stored == {"mei@example.tw": "", "haruto@example.jp": "", "ivan@example.ru": "ru",
                      "lucas@example.com.br": "pt"}  # tags normalized at import; empty: the mail decides
    mailbox.append(*(text_mail(sender, subject, body, f"<lang-{i}@customers.example>")
                     for i, (sender, subject, body) in enumerate(MAILS)))
    assert run_once(path) == 0
    capsys.readouterr()
    assert main(["tickets", "list", "--config", str(path), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    replies = {mail.rcpt_tos[0]: message_from_bytes(mail.data, policy=policy.default) for mail in smtp_sink.delivered}
    assert len(replies) == len(smtp_sink.delivered) == len(MAILS)
    return replies, {str(row["customer_email"]): row for row in rows}  # type: ignore[return-value]


def body(message: EmailMessage, kind: str = "plain") -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content())


def test_each_customer_gets_the_acknowledgement_in_their_language(
        answered: tuple[dict[str, EmailMessage], dict[str, dict[str, object]]]) -> None:
    replies, tickets = answered
    taiwan, japan, russia = replies["mei@example.tw"], replies["haruto@example.jp"], replies["ivan@example.ru"]

    assert tickets["mei@example.tw"]["language"] == "zh-Hant"
    assert "我們已收到您的來信（入金與出金）" in str(taiwan["Subject"])
    text = body(taiwan)
    assert "陳美玲 您好" in text and "感謝您聯絡" in text and "個工作" in text and "星期" in text
    assert "我们" not in text  # Traditional, not Simplified
    assert '<html lang="zh-Hant">' in body(taiwan, "html")

    assert tickets["haruto@example.jp"]["language"] == "ja"
    assert "お問い合わせを受け付けました（アカウントセキュリティ）" in str(japan["Subject"])
    text = body(japan)
    assert "佐藤 陽翔 様" in text and "受付番号" in text and "曜日" in text and "営業" in text

    assert tickets["ivan@example.ru"]["language"] == "ru"
    assert "Мы получили ваше обращение (Верификация (KYC))" in str(russia["Subject"])
    text = body(russia)
    assert "Здравствуйте, Иван!" in text and "рабоч" in text and "г.," in text


def test_the_account_language_wins_over_the_mail(
        answered: tuple[dict[str, EmailMessage], dict[str, dict[str, object]]]) -> None:
    replies, tickets = answered
    assert tickets["lucas@example.com.br"]["language"] == "pt"
    assert "Recebemos sua solicitação (API e robôs de negociação)" in str(replies["lucas@example.com.br"]["Subject"])


def test_an_unregistered_korean_sender_gets_the_generic_answer_in_korean(
        answered: tuple[dict[str, EmailMessage], dict[str, dict[str, object]]]) -> None:
    replies, tickets = answered
    korean = replies["minjun@example.kr"]
    assert tickets["minjun@example.kr"]["verified"] == "unregistered"
    assert "등록된 이메일 주소로 문의해 주세요" in str(korean["Subject"])
    text = body(korean)
    assert "계정에 등록된 이메일 주소로" in text and "30000" not in text


def test_mails_in_other_languages_reach_their_queues(
        answered: tuple[dict[str, EmailMessage], dict[str, dict[str, object]]]) -> None:
    _, tickets = answered
    assert {email: row["queue"] for email, row in tickets.items()} == {
        "mei@example.tw": "deposits", "haruto@example.jp": "security", "ivan@example.ru": "kyc",
        "lucas@example.com.br": "api", "minjun@example.kr": "deposits"}


def test_an_unknown_account_language_is_refused_with_its_line(tmp_path: Path, sqlite_url: str) -> None:
    from mailer.ledger.db import Database

    migrate.upgrade(sqlite_url)
    path = tmp_path / "accounts.csv"
    path.write_text("email,user_id,language\nok@example.com,1,zh-HK\nbad@example.com,2,fr-FR\n", encoding="utf-8")
    db = Database(sqlite_url)
    try:
        report = import_accounts(db, path)  # the row is skipped and counted; the rows around it are imported
    finally:
        db.dispose()
    assert (report.added, report.skipped_total) == (1, 1)
    assert report.examples[0].startswith("line 3: language 'fr-FR' is not one the desk answers in (en, zh-Hans")


def test_specialists_are_told_the_language_to_answer_in(make_config: ConfigFactory, mailbox: Mailbox,
                                                       smtp_sink: SmtpSink, tmp_path: Path) -> None:
    queues = default_routing()["queues"]
    queues["security"] = {**queues["security"], "specialists": ["aiko@desk.example"]}
    path, config = make_config(queues=queues)
    migrate.upgrade(config.database_url)
    sender, subject, text = MAILS[1]  # Japanese, security
    mailbox.append(text_mail(sender, subject, text, "<lang-forward@customers.example>"))
    assert run_once(path) == 0
    [forward] = [message_from_bytes(m.data, policy=policy.default) for m in smtp_sink.delivered
                 if m.rcpt_tos == ["aiko@desk.example"]]
    assert "Language:   Japanese (ja)" in body(forward)


def test_the_generic_answer_never_reveals_the_account_language(make_config: ConfigFactory, mailbox: Mailbox,
                                                               smtp_sink: SmtpSink, tmp_path: Path) -> None:
    """A registered address with a Reply-To elsewhere is answered in the mail's language, not the account's."""
    path, config = make_config()
    migrate.upgrade(config.database_url)
    (tmp_path / "accounts.csv").write_text(ACCOUNTS, encoding="utf-8")
    app = App.from_config(config)
    try:
        import_accounts(app.db, tmp_path / "accounts.csv")  # lucas@example.com.br reads Portuguese
    finally:
        app.close()
    mailbox.append(text_mail("lucas@example.com.br", "Withdrawal not received", "My BTC withdrawal is missing.",
                             "<lang-mismatch@customers.example>", extra="Reply-To: other@elsewhere.example\r\n"))
    assert run_once(path) == 0
    [answer] = [message_from_bytes(m.data, policy=policy.default) for m in smtp_sink.delivered]
    assert "Please write from your registered email address" in str(answer["Subject"])
