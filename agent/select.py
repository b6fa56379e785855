"""Rank the retrieved sentences: which ones the reader (`agent.read`) reads first. Pure: it takes the
`Retrieval` (candidates, their neighbours, term statistics) and the question's answer type.

Each retrieved sentence gets features (dense similarity, question-word coverage of the sentence and of
its neighbours, answer-type match); a weighted sum ranks them. The reader, not this ranking, decides what
answers and when to refuse. Nothing here knows any particular question.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.answertype import type_match
from agent.retrieve import CANDIDATES, Retrieval, Sentence
from agent.text import content_words, proper_nouns, tokens

# Fitted by `make fit-ranking` (citeqa/fit_ranking.py) on held-out training articles: the weights that
# put a sentence holding the answer among the ones the reader reads most often (`cover` fits to 0).
WEIGHTS = {"dense": 1.0, "cover": 0.0, "window": 0.5, "type": 0.5, "idf_cover": 2.0, "dense_window": 4.0}


@dataclass
class Scored:
    sentence: Sentence
    score: float
    features: dict[str, float]


@dataclass
class Selection:
    question: str
    best: list[Scored]  # ranked, best first
    windows: dict[str, list[Sentence]]  # sentence id -> it and its neighbours, in document order


def _coverage(qtoks: list[str], text_toks: set[str], weights: dict[str, float]) -> float:
    total = sum(weights[t] for t in qtoks) or 1.0
    return sum(weights[t] for t in qtoks if t in text_toks) / total


def can_answer(text: str, asked: set[str]) -> bool:
    """A question in the text, or a sentence with no content word beyond the question's (`asked`), cannot
    answer it.

    >>> asked = set(content_words("Who built the bridge?"))
    >>> can_answer("Who built the bridge?", asked), can_answer("The bridge was built.", asked)
    (False, False)
    >>> can_answer("Acme built the bridge.", asked)
    True
    """
    return not text.rstrip().endswith("?") and bool(set(content_words(text)) - asked)


def score(question: str, kind: str, retrieval: Retrieval, top: int = 12) -> Selection:
    """Rank the first `CANDIDATES` retrieved sentences for `question`, whose answer type is `kind`
    (`agent.answertype.expected`); the `top` best are kept, with their neighbours."""
    qtoks = content_words(question)
    asked = set(qtoks)
    sentences = [s for s in retrieval.sentences[:CANDIDATES] if can_answer(s.text, asked)]
    if not sentences:
        return Selection(question, [], {})
    names = set(proper_nouns(question))
    weights = {t: (2.0 if t in names else 1.0) for t in qtoks}
    idf = {t: retrieval.idf.get(t, 0.0) for t in qtoks}
    scored = []
    windows = retrieval.windows
    for s in sentences:
        own = set(tokens(s.text))
        around = set(own)
        for n in windows[s.id]:
            around |= set(tokens(n.text))
        wvec = np.mean([n.vec for n in windows[s.id]] or [s.vec], axis=0)
        f = {
            "dense": s.dense,
            "cover": _coverage(qtoks, own, weights),
            "window": _coverage(qtoks, around, weights),
            "type": 1.0 if type_match(kind, s.text, question) else 0.0,
            "idf_cover": _coverage(qtoks, own, idf),
            "dense_window": float(wvec @ retrieval.qvec / (np.linalg.norm(wvec) or 1.0)),
        }
        total = sum(w * f[k] for k, w in WEIGHTS.items())
        scored.append(Scored(s, total, f))
    scored.sort(key=lambda x: -x.score)
    kept = scored[:top]
    return Selection(question, kept, {sc.sentence.id: windows[sc.sentence.id] for sc in kept})

