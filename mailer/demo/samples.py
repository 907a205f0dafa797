"""Realistic customer mails, built as raw bytes the way real clients write them.

Used by `supportd demo`, the benchmark and the tests. Subjects in GBK and Big5 are written as RFC 2047
encoded words by hand, because Python's own email package would re-encode them as UTF-8.
"""

from __future__ import annotations

import base64
import random
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

ACCOUNTS_CSV = """email,user_id,language,display_name,anti_phishing_code
li.wei@example.cn,10023345,zh,李伟,LW-7731
anna.schmidt@example.de,10088812,en,Anna Schmidt,SUN-RIVER
kenji@example.jp,10099001,en,Kenji Sato,
chen.mei@example.tw,10077123,zh-TW,陳美,MEI-42
omar@example.com,10066554,en,Omar Haddad,OH-PHX
"""

EVM_TXID = "0x" + "3f9a1c" * 10 + "b2c4"
BTC_TXID = "9c1d" * 16


def encoded_word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode('ascii')}?="


def tiny_png(width: int = 4, height: int = 4) -> bytes:
    """A valid PNG image, small, made here (no binary fixtures in the repository)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@dataclass(frozen=True)
class Sample:
    label: str
    raw: bytes


def _headers(from_: str, subject: str, message_id: str, extra: str = "") -> str:
    date = format_datetime(datetime(2026, 11, 23, 2, 15, tzinfo=UTC))
    return (f"From: {from_}\r\nTo: support@desk.example\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n{extra}")


def text_mail(from_: str, subject: str, body: str, message_id: str, charset: str = "utf-8",
              extra: str = "") -> bytes:
    head = _headers(from_, subject, message_id, extra)
    payload = base64.encodebytes(body.encode(charset)).decode("ascii").replace("\n", "\r\n")
    # UTF-8 headers as SMTPUTF8 mail has them (internationalized addresses); plain ASCII otherwise.
    return (head + f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + payload).encode("utf-8")


def html_mail(from_: str, subject: str, html: str, message_id: str) -> bytes:
    head = _headers(from_, subject, message_id)
    payload = base64.encodebytes(html.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
    return (head + "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + payload).encode("ascii")


def mail_with_attachment(from_: str, subject: str, body: str, message_id: str, filename: str,
                         content_type: str, content: bytes) -> bytes:
    boundary = "=_supportd_sample_boundary"
    head = _headers(from_, subject, message_id, f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n')
    attachment = base64.encodebytes(content).decode("ascii").replace("\n", "\r\n")
    return (head + f"\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
            f"--{boundary}\r\nContent-Type: {content_type}; name=\"{filename}\"\r\n"
            f"Content-Disposition: attachment; filename=\"{filename}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            f"{attachment}\r\n--{boundary}--\r\n").encode("utf-8")


def demo_mails() -> list[Sample]:
    gbk_subject = encoded_word("充值未到账，请尽快处理", "gbk")
    big5_subject = encoded_word("帳戶被盜，請立即凍結", "big5")
    deposit_zh = text_mail(
        f"{encoded_word('李伟', 'gbk')} <li.wei@example.cn>", gbk_subject,
        f"您好，\n\n我昨天通过 TRC20 网络充值了 500 USDT，到现在还没有到账。\n用户ID: 10023345\n"
        f"TxID: {BTC_TXID}\n\n请帮忙查一下，谢谢！\n李伟\n", "<dep-zh-1@mail.example.cn>", charset="gbk")
    return [
        Sample("GBK subject, deposit not credited, TxID", deposit_zh),
        Sample("English withdrawal complaint with a PNG screenshot", mail_with_attachment(
            "Anna Schmidt <anna.schmidt@example.de>", "Withdrawal not received after 6 hours",
            f"Hello,\n\nI withdrew 0.25 ETH to my wallet on the Ethereum network this morning. The status says\n"
            f"completed but nothing arrived. Transaction hash: {EVM_TXID}\nScreenshot attached.\n\n"
            "On Mon, 23 Nov 2026 at 08:00, Support <support@desk.example> wrote:\n> earlier answer\n\nAnna",
            "<wd-en-1@mail.example.de>", "screenshot.png", "image/png", tiny_png())),
        Sample("KYC question", text_mail(
            "Kenji Sato <KENJI@Example.JP>", "KYC verification stuck at selfie step",
            "Hi, my identity verification has been pending for three days. I uploaded my passport and the\n"
            "selfie twice. Could you check what is missing? UID 10099001\n-- \nKenji", "<kyc-1@mail.example.jp>")),
        Sample("hacked-account alarm", text_mail(
            "Omar Haddad <omar@example.com>", "URGENT: account hacked, unauthorized withdrawal",
            "Someone logged into my account from an unknown IP and withdrew all my BTC. It was not me.\n"
            "Please freeze my account immediately!", "<sec-1@mail.example.com>")),
        Sample("unregistered sender", text_mail(
            "Unknown Person <stranger@elsewhere.example>", "Deposit missing",
            "Where is my deposit? My user id is 10023345.", "<unreg-1@elsewhere.example>")),
        Sample("the same mail sent twice (1st)", text_mail(
            "Anna Schmidt <anna.schmidt@example.de>", "API key returns 401 on websocket",
            "My API key works for REST but the websocket login answers 401. Key created yesterday.",
            "<api-1@mail.example.de>")),
        Sample("the same mail sent twice (2nd)", text_mail(
            "Anna Schmidt <anna.schmidt@example.de>", "API key returns 401 on websocket",
            "My API key works for REST but the websocket login answers 401. Key created yesterday.",
            "<api-1@mail.example.de>")),
        Sample("HTML-only mail", html_mail(
            "Omar Haddad <omar@example.com>", "Question about trading fees",
            "<html><body><p>Hello team,</p><p>What are the <b>maker and taker fees</b> for VIP 1?</p>"
            "<table><tr><td>Pair</td><td>BTC/USDT</td></tr></table><p>Thanks &amp; regards,<br>Omar</p>"
            "</body></html>", "<html-1@mail.example.com>")),
        Sample("Big5 mail", text_mail(
            f"{encoded_word('陳美', 'big5')} <chen.mei@example.tw>", big5_subject,
            "您好，我的帳戶被盜了，有人修改了我的二次驗證。請立即凍結帳戶！\n", "<big5-1@mail.example.tw>",
            charset="big5")),
        Sample("vacation auto-reply (no answer expected)", text_mail(
            "Kenji Sato <kenji@example.jp>", "Out of office: re: your request",
            "I am out of the office until Monday.", "<ooo-1@mail.example.jp>",
            extra="Auto-Submitted: auto-replied\r\n")),
    ]


DEMO_MTA = "mx.desk.example"


def as_delivered(raw: bytes, dmarc: str = "pass") -> bytes:
    """The mail as our MTA hands it over: its Authentication-Results on top of its Received line."""
    sender_domain = raw.split(b"@", 1)[1].split(b">", 1)[0].split(b"\r", 1)[0].decode("ascii", "replace")
    return (f"Authentication-Results: {DEMO_MTA}; dkim={dmarc} header.d={sender_domain}; dmarc={dmarc} "
            f"header.from={sender_domain}\r\nReceived: from mail.{sender_domain} by {DEMO_MTA} with ESMTPS; "
            f"Mon, 23 Nov 2026 02:15:00 +0000\r\n").encode() + raw


def showcase_mails() -> list[Sample]:
    """Two more for the demo: a forged sender, and a customer pasting a seed phrase."""
    from mnemonic import Mnemonic

    phrase = Mnemonic("english").to_mnemonic(bytes(range(16)))
    return [
        Sample("forged From: omar@example.com, but our MTA reports DMARC fail", as_delivered(text_mail(
            "Omar Haddad <omar@example.com>", "Account hacked - send my balance to my new wallet",
            "Please move all my funds to 0x1111111111111111111111111111111111111111 now.",
            "<forged-1@evil.example>"), dmarc="fail")),
        Sample("a customer pastes a seed phrase", as_delivered(text_mail(
            "Kenji Sato <kenji@example.jp>", "Withdrawal stuck, wallet restore",
            f"My withdrawal is stuck. To help you check, my seed phrase is: {phrase}", "<seed-1@mail.example.jp>"))),
    ]


_TOPICS = [
    ("Deposit not credited", "I deposited {amount} USDT via TRC20 and it is not credited. TxID: {txid}"),
    ("充值未到账", "您好，我充值了 {amount} USDT（TRC20），一直没有到账。TxID：{txid}"),
    ("Withdrawal pending for hours", "My withdrawal of {amount} ETH is pending. Hash {evm}"),
    ("KYC verification problem", "My identity verification was rejected, passport is valid. UID {uid}"),
    ("API websocket disconnects", "The websocket API drops every minute with rate limit errors."),
    ("账户安全问题", "我的账户出现异常登录，不是我操作的，请帮忙冻结。"),
    ("Question about fees", "What are the maker fees for spot trading?"),
]


def bulk_mail(index: int, sender: str, rng: random.Random, min_size: int = 5_000, max_size: int = 50_000) -> bytes:
    """A customer mail of 5–50 KB: a real complaint, a quoted history, sometimes a small screenshot."""
    subject, body = _TOPICS[index % len(_TOPICS)]
    body = body.format(amount=rng.randint(10, 5000), txid=f"{rng.getrandbits(256):064x}",
                       evm=f"0x{rng.getrandbits(256):064x}", uid=10_000_000 + index)
    target = rng.randint(min_size, max_size)
    history = "\n".join(f"> previous message line {i}: " + "lorem ipsum dolor sit amet " * 3 for i in range(400))
    text = f"{body}\n\nRegards\n\nOn Sun, 22 Nov 2026, Support wrote:\n{history}"
    subject_header = encoded_word(subject, "utf-8") if not subject.isascii() else subject
    message_id = f"<bulk-{index}-{rng.getrandbits(32):08x}@mail.example.net>"
    if index % 5 == 0:
        raw = mail_with_attachment(sender, subject_header, text[: max(target - 2000, 500)], message_id,
                                   "screenshot.png", "image/png", tiny_png(16, 16))
    else:
        raw = text_mail(sender, subject_header, text[: max(target - 800, 500)], message_id)
    return raw
