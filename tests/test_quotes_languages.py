"""parsing/quotes.py: quoted history, Outlook header blocks and mobile footers in every language served."""

from __future__ import annotations

import pytest

from parsing.quotes import strip_quoted

ADDRESS = "Support <support@desk.example>"


@pytest.mark.parametrize("quote", [
    f"於 2026年11月23日 週一 上午10:00，{ADDRESS} 寫道：\n> 舊內容",
    f"El lun, 23 nov 2026 a las 10:00, {ADDRESS} escribió:\n> texto anterior",
    f"Em seg., 23 de nov. de 2026 às 10:00, {ADDRESS} escreveu:\n> texto anterior",
    f"23.11.2026 10:00, {ADDRESS} пишет:\n> старый текст",
    f"пн, 23 нояб. 2026 г. в 10:00, {ADDRESS}:\n> старый текст",
    f"{ADDRESS}, 23 Kas 2026 Pzt, 10:00 tarihinde şunu yazdı:\n> eski metin",
    f"Vào Th 2, 23 thg 11, 2026 lúc 10:00 {ADDRESS} đã viết:\n> nội dung cũ",
    f"2026년 11월 23일 (월) 오전 10:00, {ADDRESS}님이 작성:\n> 이전 내용",
    f"2026年11月23日(月) 10:00 {ADDRESS}:\n> 以前の内容",
    "-----Mensaje original-----\nDe: Support\nEnviado: lunes\ntexto anterior",
    "De: Support <support@desk.example>\nEnviada em: segunda-feira\nPara: mim\ntexto anterior",
    "От: Support <support@desk.example>\nОтправлено: 23 ноября 2026 г.\nКому: мне\nстарый текст",
    "差出人: Support <support@desk.example>\n送信日時: 2026年11月23日\n宛先: 私\n以前の内容",
    "보낸 사람: Support <support@desk.example>\n보낸 날짜: 2026년 11월 23일\n이전 내용",
    "Enviado desde mi iPhone", "Enviado do meu iPhone", "Отправлено с iPhone", "iPhone'umdan gönderildi",
    "Được gửi từ iPhone của tôi", "iPhone에서 보냄", "iPhoneから送信", "從我的 iPhone 傳送",
])
def test_quotes_and_footers_in_other_languages_are_stripped(quote: str) -> None:
    assert strip_quoted(f"Mi depósito no llegó.\n\n{quote}") == "Mi depósito no llegó."


@pytest.mark.parametrize("own_text", [
    "Приложение пишет:\nОшибка подписи при выводе",  # "the app says:" and the error: the customer's words
    "De: mi billetera\na la cuenta del exchange, 500 USDT",
])
def test_the_customers_own_lines_stay(own_text: str) -> None:
    assert strip_quoted(own_text) == own_text
