"""Turn a draft answer with passage markers into verified, numbered, span-level citations.

A draft is text whose sentences end with markers such as [2] or [1][3] that name passages. For each
sentence, `verify` finds inside each cited passage the sentence that best supports the claim (lexical
coverage and embedding similarity), keeps it as a citation when the support clears a threshold, and
drops sentences that no citation supports. Numbers are then assigned in order of first use.

>>> split_claims("The bridge opened in 1932 [1]. It cost $4m [2][1].")
[('The bridge opened in 1932.', [1]), ('It cost $4m.', [2, 1])]
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from agent.retrieve import Sentence
from agent.text import MARKUP, content_words, has_number, proper_nouns, stem, tokens, words

MARKER = re.compile(r"\s*\[(\d+)\]")
CLAIM = re.compile(r"(.+?)((?:\s*\[\d+\])+)\s*([.!?]?)(?=\s|$)", re.S)
SUPPORT_MIN = 0.55  # support = 0.5 * word coverage + 0.5 * cosine; measured in docs/agent.md


@dataclass
class Citation:
    n: int
    doc_id: str
    source: str
    chunk_id: str
    start_char: int
    end_char: int
    text: str
    score: float
    page: int | None = None  # 1-based page the cited sentence starts on, for documents with pages (PDF)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Passage:
    """Sentences shown to a model under one number; `sentences` are contiguous in one document."""

    n: int
    sentences: list[Sentence]
    answer: str = ""  # the reader's answer phrase in these sentences, when it found one

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)


def split_claims(draft: str) -> list[tuple[str, list[int]]]:
    """Split a draft into (claim without markers, [passage numbers]); a claim ends at its markers."""
    claims, at = [], 0
    for m in CLAIM.finditer(draft):
        text = (m.group(1).strip() + m.group(3)).strip()
        if text:
            claims.append((text, [int(n) for n in MARKER.findall(m.group(2))]))
        at = m.end()
    rest = draft[at:].strip()
    if rest:
        claims.append((rest, []))
    return claims


def support(claim: str, claim_vec: np.ndarray, s: Sentence) -> float:
    """0.5 * the share of the claim's content words in `s` + 0.5 * cosine. A claim of three content
    words or fewer ("Reuters", "40 rebel fighters") is too short for its embedding to mean much: its
    words, all found in `s`, count as full similarity."""
    words = content_words(claim)
    have = set(tokens(s.text))
    coverage = sum(w in have for w in words) / len(words) if words else 0.0
    similarity = float(claim_vec @ s.vec)
    if len(words) <= 3:
        similarity = max(similarity, coverage)
    return 0.5 * coverage + 0.5 * similarity


def key_terms(text: str) -> set[str]:
    """Stems of the names and numbers in `text`: the words an answer must not invent.

    >>> sorted(key_terms("In 1932 Acme Steel built 40 bridges in France"))
    ['1932', '40', 'acm', 'franc', 'steel']
    """
    numbers = {stem(w) for w in words(text) if has_number(w)}
    return set(proper_nouns(text)) | numbers


def grounded(claim: str, question: str, evidence: list[Sentence]) -> bool:
    """A claim answers only if it says something the question did not (a restated question is not an
    answer) and every name or number it adds appears in its cited sentences (no swapped entities).

    >>> s = Sentence("d#0", "d", "d.txt", "d#c0", 0, 0, 36, "Acme Steel built the bridge in 1932.", None)
    >>> grounded("The bridge was built by Acme Steel.", "Who built the bridge?", [s])
    True
    >>> grounded("The bridge was built by Zenith Iron.", "Who built the bridge?", [s])
    False
    >>> grounded("The bridge was built by [1].", "Who built the bridge?", [s])
    False
    """
    asked = set(tokens(question)) | set(proper_nouns(question))
    if question and not set(content_words(claim)) - asked:
        return False
    have: set[str] = set()
    for s in evidence:
        have |= set(tokens(s.text)) | key_terms(s.text)
    return key_terms(claim) - asked <= have


def verify(draft: str, passages: list[Passage], encode, question: str = "",
           weigh: Callable[[Sentence], float] | None = None, min_weight: float = 0.0) -> tuple[str, list[Citation]]:
    """Keep the claims that their cited passages support; return (answer text, citations).

    A claim is kept when some cited passage holds a sentence that supports it (`support`), and the
    supporting sentences hold every name and number the claim adds to `question` (`grounded`). With
    `weigh` (the reader's probability for a sentence), a sentence weighing under `min_weight` supports
    nothing, and a citation's score is its weight. The answer text is on one line and without the
    Markdown that opens a cited line ("# ", "- "): a hard-wrapped sentence's line breaks are spaces
    there. `Citation.text` keeps the source's span as it is."""
    claims = split_claims(draft)
    if not claims:
        return "", []
    by_n = {p.n: p for p in passages}
    known = {s.text: s.vec for p in passages for s in p.sentences}  # verbatim claims need no encoding
    fresh = [c for c, _ in claims if c not in known]
    known.update(zip(fresh, encode(fresh) if fresh else []))
    vecs = [known[c] for c, _ in claims]
    kept: list[str] = []
    citations: dict[str, Citation] = {}
    for (claim, nums), vec in zip(claims, vecs):
        found = []  # (sentence, support) per cited passage that supports the claim
        for num in dict.fromkeys(nums):
            if num not in by_n:
                continue  # a passage the model invented
            best = max(by_n[num].sentences, key=lambda s: support(claim, vec, s))
            sup = support(claim, vec, best)
            weight = weigh(best) if weigh else sup
            if sup >= SUPPORT_MIN and weight >= min_weight:
                found.append((best, weight))
        if not found or not grounded(claim, question, [s for s, _ in found]):
            continue
        markers = []
        for best, sup in found:
            if best.id not in citations:
                citations[best.id] = Citation(len(citations) + 1, best.doc_id, best.source, best.chunk_id,
                                              best.start, best.end, best.text, round(sup, 4), best.page)
            markers.append(citations[best.id].n)
        kept.append(MARKUP.sub("", " ".join(claim.split())) + "".join(f" [{m}]" for m in dict.fromkeys(markers)))
    return " ".join(kept), list(citations.values())
