"""Remove what a reply quotes and the signature below it, so a ticket shows only what is new.

Mail clients mark quoted text in many ways; the common ones, in every language the desk serves: `>`
prefixes, "On … wrote:" ("在 … 写道：", "El … escribió:", "… написал(а):", "…님이 작성:" …), Outlook's
"From: / Sent:" blocks ("发件人： / 发送时间：", "De: / Enviado:", "差出人: / 送信日時:" …), "Original
Message" rules, mobile footers ("Sent from my iPhone", "iPhoneから送信" …) and the `-- ` separator.
"""

from __future__ import annotations

import re

_REPLY_HEADERS = [
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$", re.IGNORECASE | re.DOTALL),
    re.compile(r"^\s*在.{0,200}写道[:：]\s*$", re.DOTALL),
    re.compile(r"^\s*.{0,200}于.{0,100}写道[:：]\s*$", re.DOTALL),
    re.compile(r"^\s*於.{0,200}寫道[:：]\s*$", re.DOTALL),
    re.compile(r"^\s*(El|Em)\b.{0,300}\b(escribió|escreveu):\s*$", re.DOTALL),
    # a date before it: "Приложение пишет:" followed by an error message is the customer's own text
    re.compile(r"^.{0,300}\d.{0,300}\b(написал|написала|написал\(а\)|пишет):\s*$", re.DOTALL),
    re.compile(r"^.{0,300}(şunu yazdı|tarihinde yazdı):\s*$", re.IGNORECASE | re.DOTALL),
    re.compile(r"^\s*Vào\b.{0,300}đã viết:\s*$", re.DOTALL),
    re.compile(r"^.{0,300}님이 작성:\s*$", re.DOTALL),
    re.compile(r"^\s*\d{4}年\d{1,2}月\d{1,2}日.{0,200}書きました[:：]\s*$", re.DOTALL),
    # Gmail in most locales: a date, then "Name <address>:"
    re.compile(r"^\s*.{0,200}\d.{0,200}<[^>\s]+@[^>\s]+>\s*[:：]\s*$", re.DOTALL),
    re.compile(r"^\s*-{2,}\s*(Original Message|原始邮件|原始郵件|Mensaje original|Mensagem original|Исходное сообщение|"
               r"Orijinal mesaj|Özgün ileti|Thư gốc|원본 메시지|元のメッセージ)\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*_{10,}\s*$"),  # Outlook's rule above the quoted header block
]
_OUTLOOK_BLOCK = [
    (re.compile(r"^\s*\**(From|发件人|寄件者|De|От|Kimden|Từ|보낸 사람|差出人)\**\s*[:：]", re.IGNORECASE),
     re.compile(r"^\s*\**(Sent|Date|发送时间|日期|寄件日期|To|收件人|Enviado|Enviada|Fecha|Data|Para|Отправлено|"
                r"Дата|Кому|Gönderildi|Tarih|Kime|Đã gửi|Ngày|Đến|보낸 날짜|받는 사람|送信日時|宛先)\**\s*[:：]",
                re.IGNORECASE)),
]
_SIGNATURE = re.compile(r"^(-- ?|--\s*$)$")
_MOBILE_FOOTER = re.compile(
    r"^\s*(Sent from my \w+.*|Get Outlook for \w+.*|发自我的\s*\S+|从我的\s*\S+\s*发送|從我的\s*\S+\s*傳送"
    r"|寄自我的\s*\S+|Enviado desde mi \w+.*|Enviado do meu \w+.*|Отправлено с \w+.*|\S+'(?:u|i|ü|ı)mdan gönderildi"
    r"|(?:Được gửi|Gửi) từ \w+ của tôi|\S+에서 보냄|\S+から送信)\s*$", re.IGNORECASE)


def strip_quoted(text: str) -> str:
    lines = text.splitlines()
    cut = len(lines)
    for i in range(len(lines)):
        if _starts_quote(lines, i):
            cut = i
            break
    kept = [line for line in lines[:cut] if not line.lstrip().startswith(">")]
    kept = _drop_signature(kept)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept).strip("\n")


def _starts_quote(lines: list[str], i: int) -> bool:
    line = lines[i]
    two_lines = line + " " + lines[i + 1] if i + 1 < len(lines) else line
    if any(p.match(line) or p.match(two_lines) for p in _REPLY_HEADERS):
        return True
    for first, follow in _OUTLOOK_BLOCK:
        if first.match(line) and any(follow.match(nxt) for nxt in lines[i + 1:i + 4]):
            return True
    return False


def _drop_signature(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if _SIGNATURE.match(line):
            return lines[:i]
    return [line for line in lines if not _MOBILE_FOOTER.match(line)]
