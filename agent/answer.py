"""The public API: `Agent.ask` / `Agent.stream` -> `Answer`. Retrieve -> select -> draft -> verify.

>>> agent = Agent()                                              # doctest: +SKIP
>>> a = agent.ask("Who built the bridge?")           # doctest: +SKIP
>>> a.refused, a.citations[0].text[:40]                          # doctest: +SKIP
(False, 'The bridge was built by Acme Steel in 19')
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from agent.backends import Backend, get_backend
from agent.cite import Citation, Passage, verify
from agent.condense import condense
from agent.retrieve import Chunk, Retriever, Sentence
from agent.select import Selection, score
from agent.text import content_words, tokens
from index.chunking import count_tokens, truncate_tokens
from index.config import Config
from index.errors import InputError
from index.ingest import open_store

REFUSAL = "I don't know — the indexed documents don't say."
_MODEL_REFUSES = re.compile(
    r"\b(i\s+(do\s*n[o']t|cannot|can't)\s+know|don't know|do not know|not (mentioned|stated|specified|provided|"
    r"given|say|said|contain)|(does|do)\s*n[o']t (say|mention|state|specify)|no information|cannot (answer|find|"
    r"determine)|unable to (answer|find|determine))", re.I)
CONTEXT_TOKENS = 1200  # budget for the sentences shown to a generative model


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    latency_ms: float
    backend: str
    model: str
    query: str = ""  # the standalone question actually searched
    retrieved: list[dict] = field(default_factory=list)  # ranked chunks: doc_id, chunk_id, offsets, score
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "refused": self.refused,
                "citations": [c.to_dict() for c in self.citations], "latency_ms": round(self.latency_ms, 1),
                "backend": self.backend, "model": self.model, "query": self.query,
                "retrieved": self.retrieved, "warnings": self.warnings}


class Agent:
    """Answers questions over one indexed collection. Settings: see `index.config.Config`."""

    def __init__(self, collection: str | None = None, backend: str | None = None, *,
                 config: Config | None = None, **settings: Any) -> None:
        if config is None:
            config = Config.resolve(collection=collection, backend=backend, **settings)
        else:
            config = config.with_(collection=collection, backend=backend, **settings)
        self.config = config
        self.store, self.embedder = open_store(config, create=False)
        self.retriever = Retriever(self.store, self.embedder, mode=config.retrieval)
        self.backend: Backend = get_backend(config)

    def ask(self, question: str, history: list[dict] | None = None) -> Answer:
        for item in self.stream(question, history):
            if isinstance(item, Answer):
                return item
        raise AssertionError("stream() ended without an Answer")

    def stream(self, question: str, history: list[dict] | None = None) -> Iterator[str | Answer]:
        """Yield pieces of the draft as they are produced, then the verified `Answer`."""
        t0 = time.perf_counter()
        question, warnings = self._check_question(question)
        standalone, context = self._condense(question, history)
        retrieval = self.retriever.search(f"{standalone} {context}".strip())
        selection = score(standalone, retrieval, self.retriever, refuse=not self.backend.generative)
        passages = self._passages(selection)
        text, citations = "", []
        if passages and not selection.refused:
            pieces = []
            for piece in self.backend.draft(standalone, passages):
                pieces.append(piece)
                yield piece
            draft = "".join(pieces)
            if not _MODEL_REFUSES.search(draft):
                text, citations = verify(draft, passages, self.embedder.encode, standalone)
        yield Answer(question=question, answer=text or REFUSAL, refused=not citations, citations=citations,
                     latency_ms=(time.perf_counter() - t0) * 1000, backend=self.backend.name,
                     model=self.backend.model, query=standalone,
                     retrieved=_retrieved(self.retriever.rerank_chunks(retrieval, [b.sentence for b in selection.best])),
                     warnings=warnings)

    def _check_question(self, question: str) -> tuple[str, list[str]]:
        question = (question or "").strip()
        if not question:
            raise InputError("the question is empty", fix="ask a question in words")
        limit = self.config.max_question_tokens
        if count_tokens(question) > limit:
            return truncate_tokens(question, limit).strip(), [
                f"the question was longer than {limit} tokens and was cut to its first {limit}"]
        return question, []

    def _condense(self, question: str, history: list[dict] | None) -> tuple[str, str]:
        if history and self.backend.generative:
            return self.backend.rewrite(question, history).strip() or question, ""
        return condense(question, history)

    def _passages(self, selection: Selection) -> list[Passage]:
        """One numbered passage per sentence. Extractive: the chosen sentence(s). Generative: the best
        `Config.context_size` sentences, best first (a 1.5B model misread who did what when shown whole
        neighbourhoods; docs/local.md has the measurements)."""
        if not selection.best:
            return []
        sentences = _context(selection, self.config.context_size) if self.backend.generative \
            else _evidence(selection)
        return [Passage(i + 1, [s]) for i, s in enumerate(sentences)]


def _context(selection: Selection, limit: int) -> list[Sentence]:
    """The best `limit` sentences that fit CONTEXT_TOKENS, best first."""
    chosen, budget = [], CONTEXT_TOKENS
    for sc in selection.best[:limit]:
        cost = count_tokens(sc.sentence.text)
        if cost <= budget:
            budget -= cost
            chosen.append(sc.sentence)
    return chosen


def _evidence(selection: Selection) -> list[Sentence]:
    """The best sentence, plus a second when it covers question words the first lacks (multi-hop)."""
    best = selection.best[0]
    chosen = [best.sentence]
    for other in selection.best[1:4]:
        gain = other.features["cover"] - best.features["cover"]
        if other.score >= best.score - 0.2 and best.features["cover"] < 0.999 and gain > -0.2 and \
                _adds_words(best.sentence.text, other.sentence.text, selection):
            chosen.append(other.sentence)
            break
    chosen.sort(key=lambda s: (s.doc_id, s.pos))
    return chosen


def _adds_words(first: str, second: str, selection: Selection) -> bool:
    q = set(content_words(selection.question))
    return bool(q & (set(tokens(second)) - set(tokens(first))))


def _retrieved(chunks: list[Chunk]) -> list[dict]:
    return [{"doc_id": c.doc_id, "chunk_id": c.id, "start_char": c.start, "end_char": c.end,
             "score": round(c.score, 5)} for c in chunks]
