"""The public API: `Agent.ask` / `Agent.stream` -> `Answer`. Retrieve -> rank -> read -> draft -> verify.

The reader (`agent.reader`) reads the best-ranked sentences with their neighbours and gives each an
answer span; the judge (`agent.answerable`) turns the reader's logit and the passage's closeness to the
question into the probability that decides refusal (below `Judge.threshold` nothing answers; the
extractive backend also refuses a sentence that holds no answer of the asked-for type,
`agent.answertype`). The span is the short answer, and a citation is kept only for a sentence the
judge believes answers, whichever backend wrote the draft.

>>> agent = Agent()                                              # doctest: +SKIP
>>> a = agent.ask("Who built the bridge?")           # doctest: +SKIP
>>> a.refused, a.citations[0].text[:40]                          # doctest: +SKIP
(False, 'The bridge was built by Acme Steel in 19')
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generator, Iterator

from agent.answerable import Judge
from agent.answertype import asks_overview, expected
from agent.backends import Backend, get_backend
from agent.cite import Citation, Passage, verify
from agent.inputs import as_question, check_history, check_question_type
from agent.read import Pick, believed_first, is_heading, read
from agent.reader import Reader, get_reader
from agent.retrieve import Chunk, Retrieval, Retriever, Sentence, evidence_chunks
from agent.select import Scored, Selection, score
from citeqa.config import Config
from citeqa.errors import ConfigError, InputError
from index.chunking import count_tokens, truncate_tokens
from index.embedding import Embedder
from index.ingest import open_store
from index.store import Store
from prompts import REFUSAL

READ_TOP = 10  # best-ranked sentences the reader reads (each with its neighbours)


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    latency_ms: float
    backend: str
    model: str
    short_answer: str | None = None  # the answer phrase alone; None when refused or not a phrase
    confidence: float = 0.0  # the reader's probability that the best passage answers the question
    query: str = ""  # the standalone question actually searched
    retrieved: list[dict] = field(default_factory=list)  # ranked chunks: doc_id, chunk_id, offsets, score
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "short_answer": self.short_answer,
                "confidence": round(self.confidence, 4), "refused": self.refused,
                "citations": [c.to_dict() for c in self.citations], "latency_ms": round(self.latency_ms, 1),
                "backend": self.backend, "model": self.model, "query": self.query,
                "retrieved": self.retrieved, "warnings": self.warnings}


class Agent:
    """Answers questions over one indexed collection. Settings: see `citeqa.config.Config`."""

    def __init__(self, collection: str | None = None, backend: str | Backend | None = None, *,
                 config: Config | None = None, store: Store | None = None, embedder: Embedder | None = None,
                 reader: Reader | None = None, **settings: Any) -> None:
        """Settings resolve through `Config`; a collaborator handed in (a `Backend` object, an open
        store with its embedder, a reader) is used as it is, and the rest are built from the settings."""
        given = None if backend is None or isinstance(backend, str) else backend
        name = None if given else backend
        if config is None:
            config = Config.resolve(collection=collection, backend=name, **settings)
        else:
            config = config.with_(collection=collection, backend=name, **settings)
        self.config = config
        self.backend: Backend = given or get_backend(config)  # first: a wrong backend name fails fast
        if store is None:
            store, embedder = open_store(config, create=False, embedder=embedder)
        elif embedder is None:
            raise ConfigError("a store was given without its embedder", fix="pass embedder= too")
        self.store, self.embedder = store, embedder
        self.retriever = Retriever(self.store, self.embedder, mode=config.retrieval)
        self.reader = reader or get_reader(config.reader)
        self.judge = Judge.from_meta(self.reader.meta)
        if config.min_confidence:  # the user's own bar instead of the calibrated one
            self.judge = replace(self.judge, threshold=config.min_confidence)

    @classmethod
    def from_config(cls, config: Config, **collaborators: Any) -> "Agent":
        """An agent for `config`; `collaborators` as in `Agent(...)` (store, embedder, reader, backend)."""
        return cls(config=config, **collaborators)

    def ask(self, question: str, history: list[dict] | None = None, docs: list[str] | None = None) -> Answer:
        for item in self.stream(question, history, docs):
            if isinstance(item, Answer):
                return item
        raise AssertionError("stream() ended without an Answer")

    def stream(self, question: str, history: list[dict] | None = None,
               docs: list[str] | None = None) -> Iterator[str | Answer]:
        """Yield pieces of the draft as they are produced, then the verified `Answer`."""
        t0 = time.perf_counter()
        question, warnings = self._check_question(check_question_type(question))
        history = check_history(history)
        standalone, context = self.backend.standalone(question, history)
        standalone = as_question(standalone)
        if asks_overview(standalone):
            yield from self._overview(question, standalone, docs, t0, warnings)
            return
        retrieval = self.retriever.search(f"{standalone} {context}".strip(), docs=docs)
        kind = expected(standalone)
        selection, picks = readings(standalone, kind, retrieval, self.reader)
        picks = believed_first(self.judge.rescore(picks, retrieval.qvec), self.judge.threshold)
        passages = self.backend.passages(standalone, kind, picks, [b.sentence for b in selection.best],
                                         self.judge.threshold)
        prob = {p.sentence.id: p.prob for p in picks}
        text, citations = yield from self._written(standalone, passages, weigh=lambda s: prob.get(s.id, 0.0),
                                                   min_weight=self.judge.threshold)
        short = _short_answer(picks, citations)
        evidence = [p.sentence for p in picks] or [b.sentence for b in selection.best]
        yield Answer(question=question, answer=text or REFUSAL, refused=not citations, citations=citations,
                     latency_ms=(time.perf_counter() - t0) * 1000, backend=self.backend.name,
                     model=self.backend.model, query=standalone, short_answer=short,
                     confidence=picks[0].prob if picks else 0.0,
                     retrieved=_retrieved(evidence_chunks(retrieval, evidence, self.retriever.k_chunks)),
                     warnings=warnings)

    def _overview(self, question: str, standalone: str, docs: list[str] | None, t0: float,
                  warnings: list[str]) -> Iterator[str | Answer]:
        """"What is the article about?": each document's title and first statement, cited (`opening`),
        written by the backend and verified like any draft. Its confidence is 1: the documents' own
        opening, not a reading."""
        passages = [Passage(i + 1, [s]) for i, s in enumerate(
            s for group in self.retriever.openings(docs) for s in opening(group))]
        text, citations = yield from self._written(standalone, passages)
        yield Answer(question=question, answer=text or REFUSAL, refused=not citations, citations=citations,
                     latency_ms=(time.perf_counter() - t0) * 1000, backend=self.backend.name,
                     model=self.backend.model, query=standalone, confidence=1.0 if citations else 0.0,
                     warnings=warnings)

    def _written(self, standalone: str, passages: list[Passage], weigh: Callable[[Sentence], float] | None = None,
                 min_weight: float = 0.0) -> Generator[str, None, tuple[str, list[Citation]]]:
        """The backend's draft from `passages`, yielded piece by piece; returns the verified (text,
        citations), empty when there are no passages or the model says it does not know."""
        if not passages:
            return "", []
        pieces = []
        for piece in self.backend.draft(standalone, passages):
            pieces.append(piece)
            yield piece
        draft = "".join(pieces)
        if model_refuses(draft):
            return "", []
        return verify(draft, passages, self.embedder.encode, standalone, weigh=weigh, min_weight=min_weight)

    def rank(self, question: str, docs: list[str] | None = None, top: int = 12) -> list[Scored]:
        """The retrieved sentences ranked as `ask` ranks them before the reader reads them, best first (at
        most `top`): what a retriever door (`citeqa.llama_index`) returns."""
        question, _ = self._check_question(check_question_type(question))
        return score(question, expected(question), self.retriever.search(question, docs=docs), top=top).best

    def _check_question(self, question: str) -> tuple[str, list[str]]:
        question = (question or "").strip()
        if not question:
            raise InputError("the question is empty", fix="ask a question in words")
        limit = self.config.max_question_tokens
        if count_tokens(question) > limit:
            return truncate_tokens(question, limit).strip(), [
                f"the question was longer than {limit} tokens and was cut to its first {limit}"]
        return question, []


def readings(question: str, kind: str, retrieval: Retrieval, reader: Reader) -> tuple[Selection, list[Pick]]:
    """Rank the retrieved sentences and read the best `READ_TOP` (with the reader's own probabilities)."""
    selection = score(question, kind, retrieval)
    return selection, read(question, [b.sentence for b in selection.best[:READ_TOP]], selection.windows, reader)


def opening(sentences: list[Sentence]) -> list[Sentence]:
    """A document's title, when its first sentence is a heading, and its first statement.

    >>> from agent.retrieve import Sentence
    >>> s = [Sentence(f"d#x:s{i}", "d", "d.txt", "d#c0", i, 0, 0, t, None) for i, t in
    ...      enumerate(["Bridge reopens", "Dateline", "The bridge reopened on Monday.", "It cost $4m."])]
    >>> [x.text for x in opening(s)]
    ['Bridge reopens', 'The bridge reopened on Monday.']
    """
    title = sentences[:1] if sentences and is_heading(sentences[0].text) else []
    return title + next(([s] for s in sentences if not is_heading(s.text)), [])


def model_refuses(draft: str) -> bool:
    """The model said it does not know: its draft opens with the words of `REFUSAL` before the dash
    (the prompts ask for `REFUSAL` exactly). A draft that quotes a document saying "not given" is
    not a refusal; verification judges it like any claim.

    >>> model_refuses("I don’t know — the indexed documents don't say."), model_refuses("I don't know.")
    (True, True)
    >>> model_refuses("The fee is not given in the report [1].")
    False
    """
    opening = REFUSAL.split("—")[0].strip().lower()
    return draft.strip().lower().replace("’", "'").startswith(opening)


def _short_answer(picks: list[Pick], citations: list[Citation]) -> str | None:
    """The reader's span, when its sentence is cited."""
    if not citations or not picks or not picks[0].answer:
        return None
    best = picks[0].sentence
    return picks[0].answer if any(c.doc_id == best.doc_id and c.start_char == best.start for c in citations) else None


def _retrieved(chunks: list[Chunk]) -> list[dict]:
    return [{"doc_id": c.doc_id, "chunk_id": c.id, "start_char": c.start, "end_char": c.end,
             "score": round(c.score, 5)} for c in chunks]
