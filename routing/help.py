"""Help articles while the customer waits: which articles of the knowledge base answer this mail.

The knowledge base is a folder with one TOML file per article: an `id`, a `url` and, per language, a
`title` and a `text` (languages `en`, `zh-Hans`, `zh-Hant`, `ja`, `ko`, `ru`, `vi`, `tr`, `es`, `pt`):

    id = "deposit-not-credited"
    url = "https://help.example.com/deposit-not-credited"
    [en]
    title = "My deposit has not arrived"
    text = "Deposits are credited after the network confirms them ..."

It is read and indexed once at start. Each language has its own BM25 index (bm25s) built with that
language's analyzer, so a mail is matched in whatever language it is written in, and the article is
then shown in the customer's language. Chinese and Japanese are split into overlapping character
bigrams, Korean into syllable bigrams within each word, Vietnamese into syllables and syllable pairs;
English, Russian, Spanish, Portuguese and Turkish words are Snowball-stemmed. Only articles scoring
above a threshold are suggested, so a mail no article fits gets none.
"""

from __future__ import annotations

import itertools
import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import bm25s
import bm25s.stopwords
import Stemmer

from parsing.language import SHIPPED

LANGUAGES = SHIPPED  # the desk's languages: an article may be written in any of them
MAX_QUERY_CHARS = 3000  # the problem is stated at the top; quoted history and signatures only add noise
TITLE_WEIGHT = 2  # a title is repeated in its document: its words say what the article is about
COMMON_SHARE = 0.25  # terms in more articles than this share are ignored (see _common_terms)
MIN_ARTICLES_FOR_COMMON = 8  # below that, document frequency says nothing


class ArticleError(Exception):
    """A knowledge-base file that cannot be used, told as `file: key: reason`."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source}: {key}: {reason}")


@dataclass(frozen=True)
class Localized:
    title: str
    text: str
    url: str


@dataclass(frozen=True)
class Article:
    id: str
    versions: dict[str, Localized]  # language tag -> title, text, URL

    def shown_in(self, chain: Iterable[str]) -> Localized:
        """The first language of the fallback chain the article is written in, else any it has."""
        for tag in chain:
            if tag in self.versions:
                return self.versions[tag]
        return self.versions.get("en") or next(iter(self.versions.values()))


@dataclass(frozen=True)
class Suggestion:
    article: Article
    score: float


def load_articles(folder: Path) -> tuple[Article, ...]:
    """Every `*.toml` in the folder, checked; ids must be unique."""
    if not folder.is_dir():
        raise ArticleError(str(folder), "(folder)", "no such directory")
    articles: list[Article] = []
    for path in sorted(folder.glob("*.toml")):
        article = _read_article(path)
        if any(a.id == article.id for a in articles):
            raise ArticleError(str(path), "id", f"{article.id!r} is used by another article")
        articles.append(article)
    if not articles:
        raise ArticleError(str(folder), "(folder)", "holds no *.toml article")
    return tuple(articles)


def _read_article(path: Path) -> Article:
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ArticleError(source, "(syntax)", str(exc)) from None
    article_id, url = data.pop("id", None), data.pop("url", None)
    if not isinstance(article_id, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,79}", article_id):
        raise ArticleError(source, "id", "must be lower-case letters, digits and dashes")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ArticleError(source, "url", "must be an http(s) URL")
    versions: dict[str, Localized] = {}
    for tag, section in data.items():
        if tag not in LANGUAGES:
            raise ArticleError(source, tag, f"is not a language of the desk ({', '.join(LANGUAGES)})")
        if not isinstance(section, dict) or set(section) - {"title", "text", "url"}:
            raise ArticleError(source, tag, "must be a table with title, text and optionally url")
        title, text = section.get("title"), section.get("text")
        if not isinstance(title, str) or not title.strip() or not isinstance(text, str) or not text.strip():
            raise ArticleError(source, tag, "needs a non-empty title and text")
        versions[tag] = Localized(title.strip(), " ".join(text.split()), str(section.get("url", url)))
    if not versions:
        raise ArticleError(source, "(languages)", "the article has no language table")
    return Article(article_id, versions)


# --- analyzers: text -> index terms, one per language ------------------------------------------------

_WORD = re.compile(r"\w+")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_HIRAGANA = re.compile(r"[\u3040-\u309f]+")
_HANGUL_RUN = re.compile(r"[\uac00-\ud7a3]+")
_NOISE = re.compile(r"^(?:\d+|[0-9a-f]{16,}|0x[0-9a-f]+)$")  # numbers, TxIDs, addresses say nothing of topic
_SNOWBALL = {"en": "english", "ru": "russian", "es": "spanish", "pt": "portuguese", "tr": "turkish"}
_STOPWORDS = {"en": bm25s.stopwords.STOPWORDS_EN, "ru": bm25s.stopwords.STOPWORDS_RUSSIAN,
              "es": bm25s.stopwords.STOPWORDS_SPANISH, "pt": bm25s.stopwords.STOPWORDS_PORTUGUESE,
              "tr": bm25s.stopwords.STOPWORDS_TURKISH}

# Vietnamese function words; bm25s ships no list for it.
_VIETNAMESE_STOPWORDS = frozenset((
    "và", "của", "các", "là", "có", "được", "cho", "tôi", "bạn", "chúng", "không", "này", "đã", "đang", "sẽ",
    "với", "để", "khi", "thì", "mà", "những", "một", "như", "ở", "trong", "ra", "vào", "lại", "rồi", "nào",
    "gì", "ạ", "nhé", "vẫn", "hãy"))


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _latin_words(text: str) -> list[str]:
    """Words outside the CJK and Hangul runs (coin names, API, 2FA in an Asian-language mail)."""
    return [w for w in _WORD.findall(_HANGUL_RUN.sub(" ", _CJK_RUN.sub(" ", text))) if not _NOISE.match(w)]


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]


def _cjk_terms(text: str) -> list[str]:
    """Character bigrams; pairs of hiragana only are Japanese grammar (です, して), not topic."""
    text = _normal(text)
    return [b for run in _CJK_RUN.findall(text) for b in _bigrams(run) if not _HIRAGANA.fullmatch(b)] + \
        _latin_words(text)


def _korean_terms(text: str) -> list[str]:
    text = _normal(text)
    return [b for run in _HANGUL_RUN.findall(text) for b in _bigrams(run)] + _latin_words(text)


def _vietnamese_terms(text: str) -> list[str]:
    """Syllables and syllable pairs: most Vietnamese words are two syllables (tài khoản, rút tiền)."""
    syllables = [w for w in _WORD.findall(_normal(text)) if not _NOISE.match(w)]
    pairs = [f"{a}_{b}" for a, b in itertools.pairwise(syllables)]
    return [w for w in syllables if w not in _VIETNAMESE_STOPWORDS] + pairs


@cache
def _stemmer(language: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(_SNOWBALL[language])


def _stemmed_terms(language: str) -> Callable[[str], list[str]]:
    stop = set(_STOPWORDS[language])

    def analyze(text: str) -> list[str]:
        words = [w for w in _WORD.findall(_normal(text)) if w not in stop and not _NOISE.match(w)]
        return _stemmer(language).stemWords(words)

    return analyze


ANALYZERS: dict[str, Callable[[str], list[str]]] = {
    "zh-Hans": _cjk_terms, "zh-Hant": _cjk_terms, "ja": _cjk_terms, "ko": _korean_terms, "vi": _vietnamese_terms,
    **{language: _stemmed_terms(language) for language in _SNOWBALL},
}


# --- the index ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _LanguageIndex:
    language: str
    articles: tuple[Article, ...]
    bm25: bm25s.BM25
    common: frozenset[str]  # in so many articles that they say nothing about any one


def _common_terms(corpus: list[list[str]]) -> frozenset[str]:
    """Terms found in more than a quarter of the articles: grammar for unstemmed languages ("습니", "của")."""
    counts: dict[str, int] = {}
    for doc in corpus:
        for term in set(doc):
            counts[term] = counts.get(term, 0) + 1
    return frozenset(t for t, n in counts.items() if n > COMMON_SHARE * len(corpus))


class HelpIndex:
    """Per-language BM25 indexes over the articles; built once, read by any number of threads."""

    def __init__(self, articles: tuple[Article, ...], min_score: float, limit: int = 3,
                 runner_up: float = 0.6) -> None:
        self.articles, self.min_score, self.limit, self.runner_up = articles, min_score, limit, runner_up
        self._indexes = [index for language in LANGUAGES if (index := self._build(language)) is not None]

    def _build(self, language: str) -> _LanguageIndex | None:
        written = tuple(a for a in self.articles if language in a.versions)
        if not written:
            return None
        analyze = ANALYZERS[language]
        corpus = [analyze(" ".join([a.versions[language].title] * TITLE_WEIGHT + [a.versions[language].text]))
                  for a in written]
        common = _common_terms(corpus) if len(corpus) >= MIN_ARTICLES_FOR_COMMON else frozenset()
        bm25 = bm25s.BM25()
        bm25.index([[t for t in doc if t not in common] for doc in corpus], show_progress=False)
        return _LanguageIndex(language, written, bm25, common)

    def scores(self, text: str) -> dict[str, float]:
        """Each article's best score over the languages: the mail is matched in the language it is in."""
        text = text[:MAX_QUERY_CHARS]
        best: dict[str, float] = {}
        for index in self._indexes:
            terms = [t for t in ANALYZERS[index.language](text) if t not in index.common]
            if not terms:
                continue
            for article, score in zip(index.articles, index.bm25.get_scores(terms), strict=True):
                if score > best.get(article.id, 0.0):
                    best[article.id] = float(score)
        return best

    def suggest(self, text: str) -> list[Suggestion]:
        """At most `limit` articles above the threshold; the others only if close to the best one."""
        by_id = {a.id: a for a in self.articles}
        ranked = sorted(self.scores(text).items(), key=lambda item: (-item[1], item[0]))
        if not ranked or ranked[0][1] < self.min_score:
            return []
        floor = max(self.min_score, ranked[0][1] * self.runner_up)
        return [Suggestion(by_id[i], round(s, 3)) for i, s in ranked[:self.limit] if s >= floor]
