"""parsing/: charsets, bodies, quotes, identifiers, attachments; never a traceback on bad mail."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from mailer.demo.samples import BTC_TXID, EVM_TXID, encoded_word, mail_with_attachment, text_mail, tiny_png
from parsing.charset import decode_header_value
from parsing.identifiers import extract_identifiers
from parsing.message import UnreadableMail, parse
from parsing.quotes import strip_quoted


def test_gb2312_label_with_gbk_only_characters_is_read_whole() -> None:
    subject = "充值未到账 鍮"  # 鍮 exists in GBK, not in GB2312
    header = encoded_word(subject, "gbk").replace("?gbk?", "?gb2312?")
    raw = text_mail("a@example.cn", header, "充值未到账 鍮", "<g@x>", charset="gbk").replace(
        b"charset=gbk", b"charset=gb2312")
    mail = parse(raw)
    assert mail.subject == subject
    assert mail.text.strip() == "充值未到账 鍮"
    assert mail.defects == ()
    assert mail.language == "zh-Hans"


@pytest.mark.parametrize("charset", ["utf-8", "gbk", "gb2312", "gb18030", "big5"])
def test_subjects_in_chinese_charsets(charset: str) -> None:
    text = "帳戶被盜" if charset == "big5" else "账户被盗"
    assert decode_header_value(encoded_word(text, charset) + " " + encoded_word("请帮忙" if charset != "big5"
                                                                                else "請幫忙", charset)) in (
        "账户被盗请帮忙", "帳戶被盜請幫忙")


def test_raw_8bit_utf8_and_gbk_headers() -> None:
    raw = "From: a@b.example\r\nSubject: 充值未到账\r\n\r\nbody\r\n".encode()
    assert parse(raw).subject == "充值未到账"
    raw_gbk = "From: a@b.example\r\nSubject: 充值未到账\r\n\r\nbody\r\n".encode("gbk")
    assert parse(raw_gbk).subject == "充值未到账"


def test_unknown_charset_is_a_defect_not_an_error() -> None:
    raw = (b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\n"
           b"hello \xff world\r\n")
    mail = parse(raw)
    assert "hello" in mail.text and any("x-klingon" in d for d in mail.defects)


def test_html_only_mail_becomes_text_without_markup_or_scripts() -> None:
    raw = (b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<p>Hello</p><script>alert(1)</script><p>fees &amp; limits<br>line two</p>"
           b"<table><tr><td>BTC</td><td>0.1</td></tr></table>")
    mail = parse(raw)
    assert mail.has_html and "alert" not in mail.text and "<" not in mail.text
    assert "fees & limits" in mail.text and "line two" in mail.text and "BTC" in mail.text


@pytest.mark.parametrize("quote", [
    "On Mon, 23 Nov 2026 at 08:00, Support <support@desk.example> wrote:\n> old text",
    "在 2026年11月23日 08:00，Support <support@desk.example> 写道：\n> 旧内容",
    "-----Original Message-----\nFrom: Support\nSent: Monday\nold text",
    "发件人: Support <support@desk.example>\n发送时间: 2026年11月23日\n收件人: me\nold text",
    "From: Support <support@desk.example>\nSent: Monday, November 23, 2026\nTo: me\nold text",
    "-- \nAnna Schmidt\nSenior Trader",
    "> old text\n> more old text",
])
def test_quoted_replies_and_signatures_are_stripped(quote: str) -> None:
    assert strip_quoted(f"My deposit is still missing.\n\n{quote}") == "My deposit is still missing."


def test_identifiers_in_english_and_chinese() -> None:
    ids = extract_identifiers(
        f"用户ID：10023345，订单号: 2026112300123。TxID {BTC_TXID} 和 {EVM_TXID}，网络 TRC20，金额 500 USDT。"
        "Solana sig 5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnbJLgp8uirBgmQpjKhoR4tjF3ZpRzrFmBV6UjKdiSZkQUW")
    assert ids.user_ids == ("10023345",)
    assert ids.order_ids == ("2026112300123",)
    assert ("hex64", BTC_TXID) in ids.txids and ("evm", EVM_TXID) in ids.txids
    assert any(kind == "solana" for kind, _ in ids.txids)
    assert ids.chains == ("TRC20", "Solana") and "USDT" in ids.coins and ("500", "USDT") in ids.amounts
    assert extract_identifiers("rapid deposit of bitcoin, no ids here").txids == ()


def test_attachment_names_never_carry_paths() -> None:
    raw = mail_with_attachment("a@b.example", "x", "see", "<a@x>", "../../etc/\u202epasswd.png", "image/png",
                               tiny_png())
    [attachment] = parse(raw).attachments
    assert attachment.filename == "passwd.png" and attachment.content.startswith(b"\x89PNG")


def test_missing_message_id_is_derived_from_the_bytes() -> None:
    raw = b"From: a@b.example\r\nSubject: no id\r\n\r\nbody\r\n"
    first, second = parse(raw), parse(raw)
    assert first.message_id_derived and first.message_id == second.message_id
    assert first.message_id.startswith(f"<{first.sha256}@")


def test_not_a_mail_is_refused_with_a_reason() -> None:
    with pytest.raises(UnreadableMail):
        parse(b"   \r\n")
    with pytest.raises(UnreadableMail, match="no header"):
        parse(b"\x00\x01 garbage")


def _cpython_corpus() -> list[Path]:
    import test

    folder = Path(os.path.dirname(test.__file__)) / "test_email" / "data"
    return sorted(folder.glob("msg_*.txt"))


@pytest.mark.skipif(not _cpython_corpus(), reason="this Python has no test_email data")
def test_cpython_email_corpus_parses_or_is_refused_cleanly() -> None:
    parsed = refused = 0
    for path in _cpython_corpus():
        try:
            mail = parse(path.read_bytes())
        except UnreadableMail:
            refused += 1
            continue
        assert mail.message_id.startswith("<") and isinstance(mail.text, str)
        parsed += 1
    assert parsed >= 40, (parsed, refused)


def test_base64_body_in_big5() -> None:
    body = "您好，我的帳戶被盜了"
    raw = (b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/plain; charset=big5\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n") + base64.b64encode(body.encode("big5"))
    assert parse(raw).text == body
