"""The identifiers a support agent needs first: user ID, transaction IDs, order IDs, coins and chains.

Extraction is by pattern with context words, in English and Chinese. A bare 64-hex string is a TxID of a
Bitcoin-style or Tron chain; `0x` + 64 hex is an EVM transaction; 86–88 base58 characters are a Solana
signature. Identifiers are stored on the ticket as typed fields and feed routing and deduplication.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

_EVM_TX = re.compile(r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{64}(?![0-9A-Za-z])")
_HEX64_TX = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{64}(?![0-9A-Za-z])")
_SOLANA_SIG = re.compile(r"(?<![1-9A-HJ-NP-Za-km-z])[1-9A-HJ-NP-Za-km-z]{86,88}(?![1-9A-HJ-NP-Za-km-z])")
_USER_ID = re.compile(
    r"(?:\bUID|\buser\s*id|用户\s*ID|用户编号|账户\s*ID|账号\s*ID|帳戶\s*ID)\s*(?:is)?\s*[:：#]?\s*(\d{5,12})\b",
    re.IGNORECASE)
_ORDER_ID = re.compile(
    r"(?:\border\s*(?:id|no\.?|number|#)|订单号|订单编号|订单\s*ID|訂單編號)\s*(?:is)?\s*[:：#]?\s*([A-Za-z0-9][A-Za-z0-9-]{5,39})\b",
    re.IGNORECASE)

COINS = {
    "BTC": ("btc", "bitcoin", "比特币", "比特幣"), "ETH": ("eth", "ether", "ethereum", "以太币", "以太幣"),
    "USDT": ("usdt", "tether", "泰达币"), "USDC": ("usdc",), "BNB": ("bnb",), "SOL": ("sol", "solana"),
    "TRX": ("trx", "tron", "波场币"), "XRP": ("xrp", "ripple", "瑞波币"), "DOGE": ("doge", "dogecoin", "狗狗币"),
    "LTC": ("ltc", "litecoin", "莱特币"), "ADA": ("ada", "cardano"), "TON": ("ton", "toncoin"),
}
CHAINS = {
    "ERC20": ("erc20", "erc-20", "ethereum network", "以太坊"), "TRC20": ("trc20", "trc-20", "tron network", "波场"),
    "BEP20": ("bep20", "bep-20", "bsc", "bnb smart chain", "币安智能链"), "Solana": ("solana", "spl"),
    "Bitcoin": ("bitcoin network", "比特币网络"), "Polygon": ("polygon", "matic"),
    "Arbitrum": ("arbitrum",), "Optimism": ("optimism",), "Base": ("base chain", "base network"),
    "TON": ("ton network",),
}
_AMOUNT = re.compile(r"(\d+(?:[.,]\d+)?)\s*(" + "|".join(COINS) + r")\b", re.IGNORECASE)

# Words without which a pattern cannot match, in lower case: tested first, as substrings.
_USER_ID_WORDS = ("uid", "user", "用户", "账户", "账号", "帳戶")
_ORDER_ID_WORDS = ("order", "订单", "訂單")
_AMOUNT_WORDS = tuple(coin.lower() for coin in COINS)
# Characters that IGNORECASE matches to an ASCII letter but that do not lower-case to it (ſ to s, ı and
# İ to i): where one occurs, the substring tests could miss a match, so the patterns run regardless.
_CASE_EXCEPTIONS = ("ſ", "ı", "İ")


@dataclass(frozen=True)
class Identifiers:
    user_ids: tuple[str, ...] = ()
    txids: tuple[tuple[str, str], ...] = ()  # (kind, value): kind is evm | hex64 | solana
    order_ids: tuple[str, ...] = ()
    coins: tuple[str, ...] = ()
    chains: tuple[str, ...] = ()
    amounts: tuple[tuple[str, str], ...] = ()  # (amount, coin)

    def to_json(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies every value first, which cost more than the rest.
        found = {}
        for name in _FIELDS:
            values = getattr(self, name)
            if values:
                found[name] = [list(v) if isinstance(v, tuple) else v for v in values]
        return found

    def has(self, kind: str) -> bool:
        return bool(getattr(self, {"txid": "txids", "user_id": "user_ids", "order_id": "order_ids",
                                   "coin": "coins", "chain": "chains", "amount": "amounts"}.get(kind, kind), ()))


_FIELDS = tuple(field.name for field in fields(Identifiers))


def _unique(items: list[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


class _NameMatcher:
    """The names of a table found in a text, in one pass of one alternation over it. Only the names that
    occur as substrings go into the alternation (a regex engine tries every alternative at every
    position, so forty names cost tens of microseconds even on a short text); leaving out names that
    cannot match changes no match."""

    def __init__(self, table: dict[str, tuple[str, ...]]) -> None:
        self.canonical = {name: canonical for canonical, names in table.items() for name in names}
        # Longest first: "ethereum network" before "ethereum".
        self.ordered = tuple(sorted(self.canonical, key=len, reverse=True))

    def find(self, lowered: str) -> tuple[str, ...]:
        present = tuple(name for name in self.ordered if name in lowered)
        if not present:
            return ()
        return _unique([self.canonical[m.group()] for m in _alternation(present).finditer(lowered)])


@lru_cache(maxsize=1024)
def _alternation(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(n) if not n.isascii() else r"(?<![a-z0-9])" + re.escape(n) + r"(?![a-z0-9])"
                               for n in names))


_COIN_NAMES, _CHAIN_NAMES = _NameMatcher(COINS), _NameMatcher(CHAINS)


class _Finder:
    """A case-insensitive pattern's `findall`, skipped when none of the words it needs is in the text:
    a substring test costs a fraction of the regex search."""

    def __init__(self, text: str, lowered: str) -> None:
        self.text = text
        self.lowered = None if any(ch in text for ch in _CASE_EXCEPTIONS) else lowered

    def all(self, pattern: re.Pattern[str], words: tuple[str, ...]) -> list[Any]:
        if self.lowered is not None and not any(word in self.lowered for word in words):
            return []
        return pattern.findall(self.text)


def extract_identifiers(text: str) -> Identifiers:
    """Identifiers in `text`; give it the subject and the new part of a mail, not the quoted history."""
    lowered = text.lower()
    evm = [m.lower() for m in _EVM_TX.findall(text)]
    stripped = _EVM_TX.sub(" ", text)
    hex64 = [m.lower() for m in _HEX64_TX.findall(stripped)]
    solana = _SOLANA_SIG.findall(stripped)
    txids = [("evm", t) for t in evm] + [("hex64", t) for t in hex64] + [("solana", t) for t in solana]
    found = _Finder(text, lowered)
    amounts = [(amount.replace(",", "."), coin.upper()) for amount, coin in found.all(_AMOUNT, _AMOUNT_WORDS)]
    return Identifiers(
        user_ids=_unique(found.all(_USER_ID, _USER_ID_WORDS)),
        txids=_unique(txids),
        order_ids=_unique([o for o in found.all(_ORDER_ID, _ORDER_ID_WORDS) if any(c.isdigit() for c in o)]),
        coins=_COIN_NAMES.find(lowered),
        chains=_CHAIN_NAMES.find(lowered),
        amounts=_unique(amounts),
    )
