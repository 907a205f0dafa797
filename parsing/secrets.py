"""Secrets customers paste into support mail, found and replaced before anything is stored.

Kinds: seed phrases (BIP-39, English and Chinese word lists from the `mnemonic` package), private keys
(hex with key context, WIF, extended private keys), API secrets, passwords and 2FA codes. Each is
replaced by `[REDACTED: kind]`.

Precision matters as much as recall: a TxID is 64 hex characters too, Chinese prose is made of the very
characters of the Chinese word list, and "I forgot my password" is no secret. So hex needs key words
around it, a Chinese seed needs separators between its characters (as wallets display them) or seed
words around it and a valid BIP-39 checksum, and a password needs an explicit "password: …".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from mnemonic import Mnemonic

MIN_SEED_WORDS = 12
CHINESE = ("chinese_simplified", "chinese_traditional")
SEED_LENGTHS = (24, 21, 18, 15, 12)
_CONTEXT_SPAN = 80

_BASE58 = "1-9A-HJ-NP-Za-km-z"
_KEY_CONTEXT = re.compile(r"(private\s*key|priv\s*key|privkey|secret\s*key|私钥|私鑰|秘钥|密钥|密鑰)", re.IGNORECASE)
_SEED_CONTEXT = re.compile(r"(seed|mnemonic|recovery\s*phrase|secret\s*phrase|助记词|助記詞|种子|種子|恢复短语)",
                           re.IGNORECASE)
_HEX_KEY = re.compile(r"(?<![0-9A-Za-z])(?:0x)?[0-9a-fA-F]{64}(?![0-9A-Za-z])")
# Bounded by any letter or digit, not only base58 ones: inside a hex TxID, "0" ends a base58 run. The first
# character comes before the look-behind so that the regex engine can skip ahead to a 5, K or L.
_WIF = re.compile(rf"[5KL](?<![0-9A-Za-z][5KL])[{_BASE58}]{{50,51}}(?![0-9A-Za-z])")
_XPRV = re.compile(rf"(?<![0-9A-Za-z])[xtyzuv]prv[{_BASE58}]{{100,112}}(?![0-9A-Za-z])")
_API_SECRET = re.compile(
    r"((?:api|secret)[ _-]?(?:secret|key)?[ _-]?secret|secret[ _-]?key|api[ _-]?secret|apisecret|密钥)"
    r"(\s*(?:is|是|为|為)?\s*[:：=]?\s*)([A-Za-z0-9+/=_-]{20,128})", re.IGNORECASE)
_PASSWORD = re.compile(
    r"(password|passwd|pwd|pass\s*word|passcode|登录密码|登錄密碼|交易密码|资金密码|密码|密碼)"
    r"(\s*(?:is|是|为|為)?\s*[:：=]\s*|\s+(?:is|是|为|為)\s+|\s*(?:是|为|為)\s*)(\S{4,64})", re.IGNORECASE)
_TWO_FA = re.compile(r"((?<![0-9a-z])(?:2fa|two[- ]factor|google\s*auth\w*|authenticator|otp|verification\s*code|"
                     r"security\s*code)(?![0-9a-z])|验证码|驗證碼|谷歌验证|動態碼|动态码)", re.IGNORECASE)
_SIX_DIGITS = re.compile(r"\d(?<![0-9A-Za-z]\d)\d{5}(?![0-9A-Za-z])")  # look-behind after the 1st digit: see _WIF
_LATIN_WORD = re.compile(r"[a-z]+")
_CJK_CHAR = re.compile(r"[\u3400-\u9fff]")


# Shown to the customer in the secret warning, in the ticket's language (English names where none).
KIND_NAMES = {
    "zh-Hans": {"seed phrase": "助记词", "private key": "私钥", "API secret": "API 密钥", "password": "密码",
                "2FA code": "二次验证码"},
    "zh-Hant": {"seed phrase": "助記詞", "private key": "私鑰", "API secret": "API 金鑰", "password": "密碼",
                "2FA code": "二階段驗證碼"},
    "ja": {"seed phrase": "シードフレーズ", "private key": "秘密鍵", "API secret": "APIシークレット",
           "password": "パスワード", "2FA code": "二段階認証コード"},
    "ko": {"seed phrase": "시드 구문", "private key": "개인 키", "API secret": "API 시크릿", "password": "비밀번호",
           "2FA code": "2단계 인증 코드"},
    "ru": {"seed phrase": "сид-фраза", "private key": "закрытый ключ", "API secret": "API-секрет", "password": "пароль",
           "2FA code": "код 2FA"},
    "vi": {"seed phrase": "cụm từ khôi phục", "private key": "khóa riêng tư", "API secret": "API secret",
           "password": "mật khẩu", "2FA code": "mã 2FA"},
    "tr": {"seed phrase": "kurtarma ifadesi", "private key": "özel anahtar", "API secret": "API gizli anahtarı",
           "password": "şifre", "2FA code": "2FA kodu"},
    "es": {"seed phrase": "frase semilla", "private key": "clave privada", "API secret": "secreto de API",
           "password": "contraseña", "2FA code": "código 2FA"},
    "pt": {"seed phrase": "frase de recuperação", "private key": "chave privada", "API secret": "segredo de API",
           "password": "senha", "2FA code": "código 2FA"},
}


def kind_names(kinds: tuple[str, ...], language: str) -> list[str]:
    names = KIND_NAMES.get(language, {})
    return [names.get(kind, kind) for kind in kinds]


@dataclass(frozen=True)
class Redaction:
    text: str
    kinds: tuple[str, ...]  # what was found, in order, without repeats

    @property
    def found(self) -> bool:
        return bool(self.kinds)


@cache
def _wordlist(*languages: str) -> frozenset[str]:
    return frozenset(word for language in languages for word in Mnemonic(language).wordlist)


@cache
def _checker(language: str) -> Mnemonic:
    return Mnemonic(language)


@dataclass(frozen=True)
class _HintWords:
    """Words without which a slower pattern cannot match, by how they are searched (see `_Hints`)."""

    letters: tuple[bytes, ...]  # ASCII letters only: found inside one word
    digit_led: tuple[bytes, ...]  # "2fa"
    cjk: tuple[bytes, ...]


def _hint_words(*words: str) -> _HintWords:
    encoded = [word.encode() for word in words]
    return _HintWords(tuple(w for w in encoded if w.isalpha()),
                      tuple(w for w in encoded if w.isascii() and not w.isalpha()),
                      tuple(w for w in encoded if not w.isascii()))


# Checked first because most mails have none of them.
_SECRET_HINTS = _hint_words("secret", "密钥", "密鑰")
_PASSWORD_HINTS = _hint_words("pass", "pwd", "密码", "密碼")
_KEY_HINTS = _hint_words("priv", "secret", "私钥", "私鑰", "秘钥", "密钥", "密鑰")
_TWO_FA_HINTS = _hint_words("2fa", "factor", "auth", "otp", "code", "验证", "驗證", "动态", "動態")


def redact(text: str) -> Redaction:
    """Cheap checks first, at C speed over the bytes (most mails hold no secret); the costly patterns only
    where one of their words or shapes is present."""
    data = text.encode("utf-8", "surrogatepass")
    words = data.translate(_WORD_BYTES).split()
    hints = _Hints(data, words)
    spans: list[tuple[int, int, str]] = []
    if _twelve_listed_words_in_a_row(words):
        spans += _english_seeds(text, text.lower())
    if not text.isascii() and (region := _cjk_region(text, data)):
        spans += _chinese_seeds(text, region, hints)
    if hints.any(_KEY_HINTS):
        spans += [(m.start(), m.end(), "private key") for m in _HEX_KEY.finditer(text)
                  if _near(_KEY_CONTEXT, text, m)]
    base58_shape = data.translate(_BASE58_SHAPE)
    if _WIF_RUN in base58_shape:
        spans += [(m.start(), m.end(), "private key") for m in _WIF.finditer(text)]
    if _XPRV_RUN in base58_shape and b"prv" in hints.words:
        spans += [(m.start(), m.end(), "private key") for m in _XPRV.finditer(text)]
    if hints.any(_SECRET_HINTS):
        spans += [(m.start(3), m.end(3), "API secret") for m in _API_SECRET.finditer(text)]
    if password_hints := hints.found(_PASSWORD_HINTS):
        spans += [(m.start(3), m.end(3), "password") for m in _near_hints(_PASSWORD, text, password_hints)
                  if _looks_like_password(m)]
    if hints.any(_TWO_FA_HINTS):
        spans += [(m.start(), m.end(), "2FA code") for m in _SIX_DIGITS.finditer(text)
                  if _near(_TWO_FA, text, m, 40)]
    return _apply(text, spans)


class _Hints:
    """Whether a text holds a hint word, without searching all of it once per hint: letter hints are
    searched in the text's distinct words (a fraction of its length), CJK ones in its non-ASCII bytes."""

    def __init__(self, data: bytes, words: list[bytes]) -> None:
        self.words = b" " + b" ".join(set(words))  # each word after a space
        self._data = data
        self._non_ascii = data.translate(None, _ASCII_BYTES) if not data.isascii() else b""

    def any(self, hints: _HintWords) -> bool:
        return (any(word in self.words for word in hints.letters)
                or any(self._has_digit_led(word) for word in hints.digit_led)
                or (bool(self._non_ascii) and any(self._has_cjk(word) for word in hints.cjk)))

    def found(self, hints: _HintWords) -> tuple[bytes, ...]:
        return (tuple(word for word in hints.letters if word in self.words)
                + tuple(word for word in hints.digit_led if self._has_digit_led(word))
                + tuple(word for word in hints.cjk if self._has_cjk(word)))

    def _has_digit_led(self, hint: bytes) -> bool:
        # The whole text is searched only when a word starts with the hint's letters.
        return b" " + hint.lstrip(b"0123456789") in self.words and hint in self._data.lower()

    def _has_cjk(self, hint: bytes) -> bool:
        # With the ASCII bytes taken out, characters that were apart may meet: confirm in the text itself.
        return hint in self._non_ascii and hint in self._data


# Latin letters lower-cased, every other byte a space: the text split into its ASCII words at C speed.
_WORD_BYTES = bytes(c + 32 if 65 <= c <= 90 else c if 97 <= c <= 122 else 32 for c in range(256))
_ASCII_BYTES = bytes(range(128))
# Base58 characters as "b", anything else as a space: a WIF key needs 51 of them in a row, an xprv 104.
_BASE58_SHAPE = bytes(98 if re.fullmatch(f"[{_BASE58}]", chr(c)) else 32 for c in range(256))
_WIF_RUN = b"b" * 51
_XPRV_RUN = b"b" * 104


@cache
def _english_word_bytes() -> frozenset[bytes]:
    return frozenset(word.encode("ascii") for word in _wordlist("english"))


def _twelve_listed_words_in_a_row(words: list[bytes]) -> bool:
    """The cheap first pass for English seeds, with no Python loop over the words: each word becomes one
    byte (listed or not) and twelve listed ones in a row are a substring search. Only every sixth word is
    looked up at first: twelve in a row hold two neighbours among those, and only around such a pair are
    the other words looked up."""
    listed = _english_word_bytes().__contains__
    stride = MIN_SEED_WORDS // 2
    sampled = bytes(map(listed, words[::stride]))
    pair = sampled.find(b"\x01\x01")
    while pair >= 0:
        # The run holds words stride * pair and stride * (pair + 1); it starts at most stride - 1 before.
        first = stride * pair
        around = words[max(0, first - stride + 1):first + 2 * stride]
        if b"\x01" * MIN_SEED_WORDS in bytes(map(listed, around)):
            return True
        pair = sampled.find(b"\x01\x01", pair + 1)
    return False


_HINT_REACH = 400  # characters after a hint word in which its pattern's match must end


def _near_hints(pattern: re.Pattern[str], text: str, hints: tuple[bytes, ...]) -> list[re.Match[str]]:
    """The matches of a pattern that starts with (or just before) one of the hint words the text holds,
    searched only around those words: a case-insensitive alternation run over the whole text costs milliseconds."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters change length when lower-cased: search everywhere
        return list(pattern.finditer(text))
    starts = sorted({found for hint in hints for found in _find_all(lowered, hint.decode("utf-8"))})
    matches: list[re.Match[str]] = []
    done = 0
    for start in starts:
        if start < done:
            continue
        match = pattern.search(text, max(done, start - _HINT_LEAD), start + _HINT_REACH)
        if match is not None:
            matches.append(match)
            done = match.end()
    return matches


_HINT_LEAD = 2  # "登录密码" starts two characters before its hint "密码"


def _find_all(text: str, word: str) -> Iterator[int]:
    at = text.find(word)
    while at >= 0:
        yield at
        at = text.find(word, at + 1)


def _near(pattern: re.Pattern[str], text: str, match: re.Match[str], span: int = _CONTEXT_SPAN) -> bool:
    return bool(pattern.search(text, max(0, match.start() - span), match.start()))


def _looks_like_password(match: re.Match[str]) -> bool:
    value, separator = match.group(3), match.group(2)
    if any(ch in separator for ch in ":：="):
        return True
    # "my password is hunter2!" is one; "my password is not working" is not.
    return any(ch.isdigit() for ch in value) or any(not ch.isalnum() for ch in value.rstrip(".,;!?。，"))


def _english_seeds(text: str, lowered: str) -> list[tuple[int, int, str]]:
    """Runs of at least twelve BIP-39 words; anything between them is digits, spaces or punctuation."""
    words = _wordlist("english")
    runs: list[list[re.Match[str]]] = [[]]
    for match in _LATIN_WORD.finditer(lowered):
        run = runs[-1]
        if match.group() in words and (not run or not _has_letters(text[run[-1].end():match.start()])):
            run.append(match)
        else:
            runs.append([match] if match.group() in words else [])
    return [_seed_span(run, ("english",)) for run in runs if len(run) >= MIN_SEED_WORDS]


# UTF-8 lead bytes of U+3000–U+9FFF, a little more than _CJK_CHAR: found at C speed from either end.
_CJK_LEAD_BYTES = range(0xE3, 0xEA)


def _cjk_region(text: str, data: bytes) -> tuple[int, int] | None:
    """From the first CJK character to the last one: the CJK patterns need not read an English quoted
    history that follows (or precedes) a Chinese message."""
    last = max(data.rfind(lead) for lead in _CJK_LEAD_BYTES)
    if last < 0:
        return None
    end = len(data[:last].decode("utf-8", "surrogatepass")) + 1
    first = _CJK_CHAR.search(text, 0, end)
    return (first.start(), end) if first else None


def _chinese_seeds(text: str, region: tuple[int, int], hints: _Hints) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    if _SEPARATED_CJK_RUN.search(text, *region):
        spans += _separated_chinese_seeds(text, region)
    if hints.any(_SEED_HINTS):
        spans += _compact_chinese_seeds(text)
    return spans


# Twelve CJK characters with list separators between them: the shape a separated seed needs at least.
_SEPARATED_CJK_RUN = re.compile(r"[\u3400-\u9fff](?:[\s,，、;；.。\d]{1,4}[\u3400-\u9fff]){11}")
_SEED_HINTS = _hint_words("seed", "mnemonic", "phrase", "助记", "助記", "种子", "種子", "恢复")


def _separated_chinese_seeds(text: str, region: tuple[int, int]) -> list[tuple[int, int, str]]:
    words = _wordlist(*CHINESE)
    runs: list[list[re.Match[str]]] = [[]]
    for match in _CJK_CHAR.finditer(text, *region):
        run = runs[-1]
        if match.group() in words and (not run or _separated(text, run[-1], match)):
            run.append(match)
        else:
            runs.append([match] if match.group() in words else [])
    return [_seed_span(run, CHINESE) for run in runs if len(run) >= MIN_SEED_WORDS]


def _compact_chinese_seeds(text: str) -> list[tuple[int, int, str]]:
    """Written without separators: only right after seed words, and only with a valid BIP-39 checksum."""
    spans = []
    for context in _SEED_CONTEXT.finditer(text):
        chars = list(_CJK_CHAR.finditer(text, context.end(), context.end() + 40))
        for offset in range(4):  # a few words such as 是 or 为 may come first
            window = _valid_window(chars[offset:offset + max(SEED_LENGTHS)], CHINESE, anchored=True)
            if window:
                spans.append((window[0].start(), window[-1].end(), "seed phrase"))
                break
    return spans


def _seed_span(run: list[re.Match[str]], languages: tuple[str, ...]) -> tuple[int, int, str]:
    """The checksum-valid phrase inside a run if there is one (so neighbouring words stay), else the run."""
    window = _valid_window(run, languages, anchored=False) or run
    return window[0].start(), window[-1].end(), "seed phrase"


def _valid_window(run: list[re.Match[str]], languages: tuple[str, ...], *,
                  anchored: bool) -> list[re.Match[str]] | None:
    starts = [0] if anchored else range(len(run))
    for length in SEED_LENGTHS:
        for start in starts:
            window = run[start:start + length]
            phrase = " ".join(m.group().lower() for m in window)
            if len(window) == length and any(_checker(lang).check(phrase) for lang in languages):
                return window
    return None


def _has_letters(gap: str) -> bool:
    return any(ch.isalpha() for ch in gap)


_LIST_SEPARATOR = re.compile(r"^[\s,，、;；.。\d]{1,4}$")


def _separated(text: str, previous: re.Match[str], current: re.Match[str]) -> bool:
    """Seed characters as wallets show them: spaces, commas or numbers between, never a colon or prose."""
    gap = text[previous.end():current.start()]
    return bool(_LIST_SEPARATOR.match(gap)) and any(ch.isspace() or ch in ",，、" for ch in gap)


def _apply(text: str, spans: list[tuple[int, int, str]]) -> Redaction:
    if not spans:
        return Redaction(text, ())
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in sorted(spans):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, kind))
    out, cursor = [], 0
    for start, end, kind in merged:
        out += [text[cursor:start], f"[REDACTED: {kind}]"]
        cursor = end
    out.append(text[cursor:])
    return Redaction("".join(out), tuple(dict.fromkeys(kind for _, _, kind in merged)))
