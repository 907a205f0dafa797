"""The language to answer in when the account does not say: Chinese if the mail is written in it."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def detect_language(*texts: str) -> str:
    sample = " ".join(texts)[:4000]
    cjk = len(_CJK.findall(sample))
    letters = sum(ch.isalpha() for ch in sample)
    # A Chinese mail still carries Latin TxIDs, coin names and signatures; a tenth of CJK letters is enough.
    return "zh" if cjk >= 2 and cjk * 10 >= letters else "en"
