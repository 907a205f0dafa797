"""A labelled deduplication corpus: families of mails that must, or must not, share a ticket.

Per customer (14 of them, registered, English and Chinese):
- A: a deposit complaint with a TxID; its exact re-delivery (same Message-ID); a re-send with "Re:" and
  other spacing; a rewording that names the same TxID; a reply to our acknowledgement (second round).
- B: a complaint without identifiers; a re-send with one more line; a paraphrase.
- C: the same kind of deposit complaint, another TxID: a different problem, so a different ticket.
- D: another topic without identifiers.
Customers c and c+4 send word-for-word the same B text: look-alikes that must never merge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mailer.demo.samples import encoded_word, text_mail

CUSTOMERS = 14

KEYED = {
    "en": [("Deposit not credited", "I deposited {amount} USDT via TRC20 two hours ago and it is still not credited "
            "to my account. TxID: {txid}. Please check."),
           ("USDT deposit missing", "Hello, my USDT deposit ({amount}) has not arrived yet. Transaction hash "
            "{txid}. When will it be credited?")],
    "zh": [("充值未到账", "您好，我两小时前通过TRC20充值了{amount} USDT，到现在还没有到账。"
            "TxID：{txid}，请帮忙查一下。"),
           ("USDT充值没到", "我的{amount} USDT充值一直没到账，交易哈希是 {txid}，什么时候能到？")],
}
UNKEYED = [
    ("KYC verification problem", "My identity verification has been pending for three days. I uploaded my "
     "passport and a selfie twice. Could you check what is missing?",
     "KYC still pending", "Still no result for my identity verification after three days; my passport and "
     "selfie were uploaded twice. What is missing?"),
    ("API websocket disconnects", "The websocket API disconnects every minute with a rate limit error although "
     "I send very few requests.",
     "Websocket keeps disconnecting", "My websocket API connection disconnects every minute with rate limit "
     "errors, but I send very few requests."),
    ("账户异常登录", "我的账户今天出现了异常登录，不是我本人操作的，请帮我冻结账户并检查。",
     "异常登录，请冻结账户", "今天我的账户有异常登录记录，不是我操作的，麻烦尽快冻结账户检查一下。"),
    ("身份认证失败", "我的身份认证被拒绝了三次，护照是有效的，请问是什么原因？",
     "认证一直被拒绝", "身份认证已经被拒绝三次了，我的护照是有效的，到底是什么原因？"),
]


@dataclass(frozen=True)
class CorpusMail:
    index: int
    customer: str
    family: str  # mails of one family belong in one ticket
    kind: str
    raw: bytes
    message_id: str
    replies_to_ack_of: str | None = None  # second round: In-Reply-To our ack of this Message-ID


def accounts_csv() -> str:
    return "email,user_id,language,display_name\n" + "".join(
        f"c{i}@customers.example,{20_000_000 + i},{_lang(i)},Customer {i}\n" for i in range(CUSTOMERS))


def _lang(i: int) -> str:
    return "zh" if i % 2 else "en"


def _subject(text: str) -> str:
    return text if text.isascii() else encoded_word(text, "utf-8")


def build() -> tuple[list[CorpusMail], list[CorpusMail]]:
    """(first round, second round) in the order they are delivered."""
    rng = random.Random(4)
    originals: list[CorpusMail] = []
    repeats: list[CorpusMail] = []
    second: list[CorpusMail] = []
    counter = iter(range(10_000))

    def mail(customer: str, family: str, kind: str, subject: str, body: str, message_id: str | None = None,
             extra: str = "") -> CorpusMail:
        n = next(counter)
        mid = message_id or f"<corpus-{n}@customers.example>"
        return CorpusMail(n, customer, family, kind, text_mail(customer, _subject(subject), body, mid, extra=extra),
                          mid)

    for i in range(CUSTOMERS):
        who, lang = f"c{i}@customers.example", _lang(i)
        (s1, b1), (s2, b2) = KEYED[lang]
        txid_a, txid_c = f"{rng.getrandbits(256):064x}", f"{rng.getrandbits(256):064x}"
        amount_a, amount_c = rng.randint(50, 900), rng.randint(50, 900)
        a = mail(who, f"{i}A", "original", s1, b1.format(amount=amount_a, txid=txid_a))
        originals.append(a)
        repeats += [
            CorpusMail(next(counter), who, f"{i}A", "exact copy", a.raw, a.message_id),
            mail(who, f"{i}A", "re-send", "Re: " + s1, "  " + b1.format(amount=amount_a, txid=txid_a).replace(
                " ", "  ") + "\n"),
            mail(who, f"{i}A", "rewording", s2, b2.format(amount=amount_a, txid=txid_a)),
        ]
        second.append(CorpusMail(next(counter), who, f"{i}A", "thread reply", b"", "", replies_to_ack_of=a.message_id))
        bs, bb, bps, bpb = UNKEYED[i % 4]
        originals.append(mail(who, f"{i}B", "original", bs, bb))
        repeats += [mail(who, f"{i}B", "re-send", "Fwd: " + bs, bb + "\nPlease answer soon."),
                    mail(who, f"{i}B", "paraphrase", bps, bpb)]
        c = mail(who, f"{i}C", "different TxID", s1, b1.format(amount=amount_c, txid=txid_c))
        originals.append(c)
        repeats.append(mail(who, f"{i}C", "re-send", "RE: " + s1, b1.format(amount=amount_c, txid=txid_c)))
        ds, db, _, _ = UNKEYED[(i + 1) % 4]
        originals.append(mail(who, f"{i}D", "other topic", ds, db))
    rng.shuffle(repeats)
    return originals + repeats, second


def thread_reply(template: CorpusMail, ack_message_id: str, n: int) -> CorpusMail:
    mid = f"<corpus-reply-{n}@customers.example>"
    extra = f"In-Reply-To: {ack_message_id}\r\nReferences: {template.replies_to_ack_of} {ack_message_id}\r\n"
    raw = text_mail(template.customer, "Re: your ticket", "Any news? I am still waiting.\n\n> earlier mail", mid,
                    extra=extra)
    return CorpusMail(template.index, template.customer, template.family, template.kind, raw, mid)
