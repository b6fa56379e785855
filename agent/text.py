"""Small text utilities shared by retrieval, answer selection and verification.

>>> content_words("How many bridges did the engineers build?")
['bridg', 'engin', 'build']
>>> has_number("killed 40 rebel fighters"), has_number("many casualties")
(True, False)
"""

from __future__ import annotations

import re
from functools import lru_cache

import snowballstemmer

_PORTER = snowballstemmer.stemmer("porter")

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having
he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
nor not of off on once only or other our ours ourselves out over own same she should so some such than
that the their theirs them themselves then there these they this those through to too under until up very
was we were what when where which while who whom why will with would you your yours yourself yourselves
according many much whose kind name named called tell say said says told one ones thing things
""".split())

MARKUP = re.compile(r"^(?:#{1,6}|>|[-*+•])\s+")  # a Markdown heading's, quote's or list item's markup opening a line
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-]*")
NUMBER_WORDS = frozenset("""zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen
fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred
thousand million billion dozen dozens hundreds thousands millions twice thrice half""".split())
MONTHS = frozenset("""january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday""".split())


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Porter stem of the lower-cased word: 'linking' -> 'link', 'prisoners' -> 'prison'."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    return _PORTER.stemWord(w)


def words(text: str) -> list[str]:
    return WORD.findall(text)


def tokens(text: str) -> list[str]:
    """Lower-cased, stemmed tokens without stopwords (BM25 and overlap use these).

    A hyphenated word also yields its parts: 'UN-backed' -> 'un-back', 'un', 'back'.
    """
    out = []
    for w in words(text):
        if w.lower() in STOPWORDS:
            continue
        out.append(stem(w.rstrip("'’")))
        if "-" in w:
            out.extend(stem(p) for p in w.split("-") if p and p.lower() not in STOPWORDS)
    return out


def word_set(text: str) -> set[str]:
    """The lower-cased words of `text`."""
    return {w.lower() for w in words(text)}


def new_words(text: str, question: str) -> str:
    """The words of `text` that `question` does not contain, in order: where a new answer can be.

    >>> new_words("ISIL retook the airbase", "Who retook the airbase?")
    'ISIL'
    """
    asked = word_set(question)
    return " ".join(w for w in words(text) if w.lower() not in asked)


def content_words(text: str) -> list[str]:
    return list(dict.fromkeys(tokens(text)))


def has_number(text: str) -> bool:
    return any(w[0].isdigit() or w.lower() in NUMBER_WORDS for w in words(text))


def has_time(text: str) -> bool:
    return any(w.lower() in MONTHS or re.fullmatch(r"(1[0-9]|20)\d\d(s)?", w) for w in words(text)) or bool(
        re.search(r"\b(mid|early|late)-?\d{4}|\b(century|decade|year|month|week|day|today|yesterday|"
                  r"morning|afternoon|evening|night|weekend|earlier|later|ago|since|until)\b", text, re.I))


def proper_nouns(text: str) -> list[str]:
    """Stems of capitalised words or word parts ('UK-headquartered' -> 'uk'), a crude entity detector.

    The first word of `text` counts only when it is all capitals (questions start with a capital).
    """
    out = []
    for i, m in enumerate(WORD.finditer(text)):
        for part in m.group().rstrip("'’").split("-"):
            if not part or part.lower() in STOPWORDS or not part[0].isupper():
                continue
            if i == 0 and not part.isupper():
                continue
            out.append(stem(part))
    return list(dict.fromkeys(out))
