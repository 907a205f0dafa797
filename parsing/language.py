"""Which language a mail is written in, as a BCP 47 tag the desk can answer in.

The script decides first, because it is certain where it applies and short mails are mostly subject:
Hangul is Korean, Cyrillic is Russian, kana is Japanese, other Han text is Chinese — Traditional or
Simplified by the characters that exist in only one of the two scripts (OpenCC's phrase-aware
conversion tables, so a character valid in both, such as 干 or 里, is no evidence by itself). Text in
Latin script goes to lingua, restricted to the Latin-script languages the desk serves, so a two-line
Spanish mail is not taken for Catalan or Galician. TxIDs, addresses, URLs, numbers and upper-case coin
tickers are removed first: they are the same in every language and only add noise.

`normalize_tag` and `fallback_chain` turn whatever an account directory or a help article says ("zh_TW",
"pt-BR", "EN") into the shipped tags and the order to try them in.
"""

from __future__ import annotations

import re
import threading
from functools import cache

import opencc
from babel import Locale
from lingua import Language, LanguageDetector, LanguageDetectorBuilder

SHIPPED = ("en", "zh-Hans", "zh-Hant", "ja", "ko", "ru", "vi", "tr", "es", "pt")
DEFAULT = "en"

# Regions and scripts that say which written Chinese a tag means; a bare "zh" is Simplified.
_HANT_REGIONS = frozenset({"tw", "hk", "mo"})
_CHINESE = frozenset({"zh", "cmn", "yue", "lzh"})
_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")

_NOISE = re.compile(
    r"https?://\S+|www\.\S+"                      # links
    r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+"           # addresses (ASCII classes: \S+@ is quadratic on CJK)
    r"|\b[0-9A-Za-z]*\d[0-9A-Za-z]*\b"            # TxIDs, amounts, order IDs, TRC20
    r"|\b[A-Z]{2,}s?\b"                            # coin tickers and acronyms: USDT, BTC, KYC, APIs
    r"|(?i:\b(?:txid|txhash|tx|uid|hash)\b)"       # the labels in front of them
    r"|\[REDACTED: [^\]]*\]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3041-\u309f\u30a0-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9d]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")
# One Han or Hangul character carries about as much as a Latin word: a Chinese mail with a long
# English signature is still Chinese, an English mail that names a Chinese city is still English.
_EAST_ASIAN_WEIGHT = 10
# Kokuji and marks that Chinese does not use, on top of the shinjitai found through OpenCC's jp2t table.
_JAPANESE_MARKS = frozenset("々〆込畑働峠枠匂搾凪払")


def detect_language(*texts: str) -> str | None:
    """The shipped tag for the text, or None when nothing in it is language (only TxIDs, say)."""
    sample = _NOISE.sub(" ", "\n".join(texts)[:2000])  # the subject and the first lines say enough
    han, kana = len(_HAN.findall(sample)), len(_KANA.findall(sample))
    hangul, cyrillic, latin = len(_HANGUL.findall(sample)), len(_CYRILLIC.findall(sample)), len(_LATIN.findall(sample))
    east = _EAST_ASIAN_WEIGHT * (han + kana + hangul)
    if not (east or cyrillic or latin):
        return None
    if east >= max(cyrillic, latin):
        return "ko" if hangul >= han + kana else _han_language(sample, kana)
    if cyrillic >= latin:
        return "ru"
    return _latin_language(sample)


def _han_language(sample: str, kana: int) -> str:
    """Japanese if kana say so, or (without kana) characters only Japanese writes; else which Chinese."""
    han = "".join(_HAN.findall(sample))
    simplified, traditional = _script_counts(han)
    if kana >= 2 and kana * 20 >= len(han) + kana:
        return "ja"
    # Shinjitai such as 状 or 来 are also Simplified forms, so those count for neither side.
    if _japanese_only(han) + sum(map(_JAPANESE_MARKS.__contains__, sample)) >= max(1, simplified):
        return "ja"
    return "zh-Hant" if traditional > simplified else "zh-Hans"


def _script_counts(han: str) -> tuple[int, int]:
    """How many characters read as Simplified-only and as Traditional-only, in context."""
    to_traditional, to_simplified = _converters()[:2]
    return _changed(han, to_traditional.convert(han)), _changed(han, to_simplified.convert(han))


def _japanese_only(han: str) -> int:
    return sum(map(_is_shinjitai, han))


@cache
def _is_shinjitai(ch: str) -> bool:
    """A Japanese simplified form that is neither a Chinese Simplified nor a Traditional character (済, 駅).

    OpenCC's jp2t also maps variants that Chinese writes too (概 → 槪); only a Traditional form that has a
    Simplified form of its own, different again (濟 → 济 for 済), shows a Japanese-only character.
    """
    to_traditional, to_simplified, from_japanese = _converters()
    older = from_japanese.convert(ch)
    simplified = to_simplified.convert(older)
    return (older != ch and simplified not in (ch, older)
            and to_simplified.convert(ch) == ch and to_traditional.convert(ch) == ch)


def _changed(before: str, after: str) -> int:
    if len(before) != len(after):  # a phrase of another length: count what is not shared instead
        return len(set(before) ^ set(after))
    return sum(map(str.__ne__, before, after))


@cache
def _converters() -> tuple[opencc.OpenCC, opencc.OpenCC, opencc.OpenCC]:
    return opencc.OpenCC("s2t"), opencc.OpenCC("t2s"), opencc.OpenCC("jp2t")


def _latin_language(sample: str) -> str:
    language = _latin_detector().detect_language_of(sample)
    return _LINGUA_TAGS.get(language.name, DEFAULT) if language is not None else DEFAULT


_LINGUA_TAGS = {"ENGLISH": "en", "SPANISH": "es", "PORTUGUESE": "pt", "TURKISH": "tr", "VIETNAMESE": "vi"}


def load_models() -> None:
    """Load lingua's models and OpenCC's tables now (1–3 s, once per process): a worker that meets its first
    Latin-script or Chinese mail in the middle of a batch would otherwise stall there while others overtake it."""
    _converters()
    _latin_detector()


def _latin_detector() -> LanguageDetector:
    with _LOADING:  # worker threads that meet their first Latin-script mail together build it once
        return _build_latin_detector()


_LOADING = threading.Lock()


@cache
def _build_latin_detector() -> LanguageDetector:
    # Built on first use, once per process (about 1 s, 120 MB), so a process that never sees a Latin-script
    # mail never holds the models. Preloaded, because lingua's lazy lookups cost about 20 times more per mail.
    builder = LanguageDetectorBuilder.from_languages(*(getattr(Language, name) for name in _LINGUA_TAGS))
    return builder.with_preloaded_language_models().build()


def choose_language(*candidates: str | None) -> str:
    """The first candidate the desk can answer in (account's language, detected language, desk default)."""
    for candidate in candidates:
        tag = normalize_tag(candidate)
        if tag is not None:
            return tag
    return DEFAULT


@cache
def babel_locale(tag: str) -> Locale:
    """Babel's locale for a shipped tag (zh-Hant → zh_Hant, Taiwan's conventions), for dates and numbers."""
    return Locale.parse(tag.replace("-", "_"))


def language_name(tag: str) -> str:
    """The language's English name for specialists: "Chinese (Traditional)", "Japanese"."""
    shipped = normalize_tag(tag)
    return babel_locale(shipped).get_display_name("en") if shipped else tag


def normalize_tag(tag: str | None) -> str | None:
    """The shipped tag a BCP 47 tag (or a POSIX locale such as zh_TW) means, or None if the desk has none.

    zh-TW, zh-HK, zh-Hant-* → zh-Hant; zh, zh-CN, zh-SG, zh-Hans-* → zh-Hans; pt-BR → pt; EN → en.
    """
    parts = _subtags(tag)
    if not parts:
        return None
    language = parts[0]
    if language in _CHINESE:
        if "hant" in parts[1:] or language == "yue" or (_HANT_REGIONS & set(parts[1:]) and "hans" not in parts[1:]):
            return "zh-Hant"
        return "zh-Hans"
    return language if language in SHIPPED else None


def canonical_tag(tag: str) -> str:
    """Conventional case and hyphens: zh_tw → zh-TW, ZH-HANT → zh-Hant, pt_br → pt-BR."""
    parts = _subtags(tag)
    out = parts[:1]
    for part in parts[1:]:
        out.append(part.title() if len(part) == 4 and part.isalpha() else part.upper() if len(part) == 2 else part)
    return "-".join(out)


def fallback_chain(tag: str | None) -> tuple[str, ...]:
    """The tags to try, most specific first, ending in English.

    zh-TW → (zh-TW, zh-Hant, zh-Hans, en); pt-BR → (pt-BR, pt, en); zh-Hans → (zh-Hans, en). A tag the
    desk does not ship keeps its own steps (fr-CA → fr-CA, fr, en), so an override folder may add a language.
    """
    if not _subtags(tag):
        return (DEFAULT,)
    assert tag is not None
    full = canonical_tag(tag)
    chain = [full]
    shipped = normalize_tag(full)
    if shipped is None:
        parts = full.split("-")
        chain += ["-".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]
    else:
        chain.append(shipped)
        if shipped == "zh-Hant":
            chain.append("zh-Hans")  # a reader of Traditional reads Simplified better than English
    chain.append(DEFAULT)
    return tuple(dict.fromkeys(chain))


def _subtags(tag: str | None) -> list[str]:
    if not tag or not _TAG.match(tag.strip()):
        return []
    return tag.strip().replace("_", "-").lower().split("-")
