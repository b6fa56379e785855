"""Hybrid retrieval: dense (Chroma, sentences and chunks) + BM25 (sentences), fused by reciprocal rank.

The unit of evidence is a sentence with its offsets; chunks are ranked too (the passages a user or a
generative model reads, and what retrieval recall is measured on). A sentence addressed to the
assistant (a planted instruction, `agent.injection`) never leaves this module as a candidate or a
neighbour, and BM25's statistics leave it out: each document is judged in order when the BM25 index
is built, so a chat-template block is caught whole.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from agent.injection import addressed
from agent.text import content_words, tokens
from index.embedding import Embedder
from citeqa.errors import IndexMissingError, InputError
from index.ids import parse, record_id
from index.store import Hit, Store

RRF_K = 60
CANDIDATES = 24  # the best sentences that come with their neighbours: what selection ranks (`agent.select`)
OVERFETCH = 200  # at most this many more dense hits are fetched, standing in for planted ones dropped


@dataclass
class Sentence:
    id: str
    doc_id: str
    source: str
    chunk_id: str
    pos: int
    start: int
    end: int
    text: str
    vec: np.ndarray
    dense: float = 0.0  # cosine similarity to the query
    fused: float = 0.0  # reciprocal-rank fusion score
    page: int | None = None  # 1-based page it starts on, for documents with pages (PDF)


@dataclass
class Chunk:
    id: str
    doc_id: str
    source: str
    start: int
    end: int
    text: str
    score: float


@dataclass
class Retrieval:
    """Everything the later steps need, as plain data: they never call back into the store."""

    query: str
    qvec: np.ndarray
    sentences: list[Sentence]  # best first (fused)
    chunks: list[Chunk]  # best first (fused)
    windows: dict[str, list[Sentence]] = field(default_factory=dict)  # the first CANDIDATES -> neighbours
    idf: dict[str, float] = field(default_factory=dict)  # BM25 idf of the query's content words
    chunk_pool: dict[str, Chunk] = field(default_factory=dict)  # `chunks` and those of every window sentence


def evidence_chunks(retrieval: Retrieval, evidence: list[Sentence], k: int) -> list[Chunk]:
    """The chunks of the evidence sentences first (best first), then the ranked chunks; at most `k`."""
    order = list(dict.fromkeys([s.chunk_id for s in evidence] + [c.id for c in retrieval.chunks]))
    return [retrieval.chunk_pool[c] for c in order if c in retrieval.chunk_pool][:k]


def chunk_id_of(meta: dict) -> str:
    return record_id(meta["doc_id"], meta["sha256"], "c", meta["chunk"])


def sentence_id(doc_id: str, sha: str, pos: int) -> str:
    return record_id(doc_id, sha, "s", pos)


def _sha(s: Sentence) -> str:
    return parse(s.id)[1]


def _planted(hits: list[Hit]) -> set[str]:
    """The ids of the sentences addressed to the assistant (`agent.injection.addressed`), each document's
    judged in order, so that a chat-template block or a turn is caught whole."""
    by_doc: dict[str, list[Hit]] = {}
    for hit in hits:
        by_doc.setdefault(hit.meta["doc_id"], []).append(hit)
    planted = set()
    for group in by_doc.values():
        group.sort(key=lambda h: int(h.meta["pos"]))
        ends = [int(h.meta["end_char"]) for h in group]
        breaks = [True] + [int(h.meta["start_char"]) - end >= 2 for h, end in zip(group[1:], ends)]  # a blank line
        planted |= {h.id for h, why in zip(group, addressed([h.text for h in group], breaks)) if why}
    return planted


def _sentence(hit: Hit, vec: np.ndarray, **scores: float) -> Sentence:
    m = hit.meta
    return Sentence(hit.id, m["doc_id"], m.get("source", ""), chunk_id_of(m), int(m["pos"]), int(m["start_char"]),
                    int(m["end_char"]), hit.text, vec, page=m.get("page"), **scores)


class _BM25:
    """BM25 over every committed sentence, rebuilt when the set of documents changes."""

    def __init__(self) -> None:
        self.fingerprint = ""
        self.ids: list[str] = []
        self.doc_ids = np.array([], dtype=str)  # the document of each of `ids`
        self.model = None
        self.df: Counter[str] = Counter()
        self.planted: set[str] = set()  # ids of sentences addressed to the assistant (`_planted`)

    def refresh(self, store: Store, shas: dict[str, str]) -> None:
        fp = hashlib.sha1(repr(sorted(shas.items())).encode()).hexdigest()
        if fp == self.fingerprint:
            return
        import bm25s

        hits = [hit for hit, _ in store.scan("sents", shas)]
        self.planted = _planted(hits)
        ids, doc_ids, corpus = [], [], []
        for hit in hits:
            if hit.id not in self.planted:  # not evidence, and not counted in the statistics either
                ids.append(hit.id)
                doc_ids.append(hit.meta["doc_id"])
                corpus.append(tokens(hit.text) or ["<empty>"])
        model = bm25s.BM25()
        if corpus:
            # bm25s would add a "" token to the vocabulary that has no scores: a query token "" (a lone
            # "s", as in "U.S.", stems to "") then passed the vocabulary filter in `top` and made
            # get_scores raise ValueError. Without it, the vocabulary is exactly the scored tokens.
            model.index(corpus, show_progress=False, create_empty_token=False)
        self.ids, self.model, self.fingerprint = ids, (model if corpus else None), fp
        self.doc_ids = np.array(doc_ids, dtype=str)
        self.df = Counter(t for toks in corpus for t in set(toks))

    def idf(self, token: str) -> float:
        """BM25's inverse document frequency of a token over the indexed sentences."""
        n, df = len(self.ids), self.df.get(token, 0)
        return float(np.log((n - df + 0.5) / (df + 0.5) + 1.0))

    def top(self, query: str, k: int, docs: list[str] | None = None) -> list[tuple[str, float]]:
        """The k best sentences for `query`, of the documents `docs` only when given."""
        if self.model is None:
            return []
        q = [t for t in tokens(query) if t in self.model.vocab_dict]
        if not q:
            return []
        scores = self.model.get_scores(q)
        if docs:
            scores = np.where(np.isin(self.doc_ids, docs), scores, 0.0)
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best])]
        return [(self.ids[i], float(scores[i])) for i in best if scores[i] > 0]


class Retriever:
    def __init__(self, store: Store, embedder: Embedder, mode: str = "hybrid", k_sentences: int = 40,
                 k_chunks: int = 10) -> None:
        """`mode`: "hybrid" (dense + BM25, the default), "dense" or "bm25" (for ablations)."""
        self.store, self.embedder = store, embedder
        self.k_sentences, self.k_chunks = k_sentences, k_chunks
        self._bm25 = _BM25()
        self.use_bm25 = mode in ("hybrid", "bm25")
        self.use_dense = mode in ("hybrid", "dense")

    def search(self, query: str, docs: list[str] | None = None) -> Retrieval:
        """Sentences and chunks for `query`, from the documents `docs` only when given (None or empty:
        every document); an id that is not indexed is an `InputError`."""
        shas = self._ready()
        docs = self._check_docs(docs, shas)
        qvec = self.embedder.encode([query])[0]
        if not tokens(query):
            # No word the index can read (its words are Latin-script, agent.text): a question in another
            # script, or only stopwords. Dense similarity alone then found unrelated sentences (issue 16).
            return Retrieval(query, qvec, [], [])
        self._bm25.refresh(self.store, shas)  # its statistics (idf) serve selection in every mode
        planted = self._bm25.planted
        dense = [h for h in self.store.query("sents", qvec, self.k_sentences + min(len(planted), OVERFETCH), shas,
                                             docs) if h.id not in planted][:self.k_sentences] if self.use_dense else []
        lexical = self._bm25.top(query, self.k_sentences, docs) if self.use_bm25 else []
        dense_chunks = self.store.query("chunks", qvec, self.k_chunks, shas, docs) if self.use_dense else []

        fused: dict[str, float] = {}
        for rank, h in enumerate(dense):
            fused[h.id] = fused.get(h.id, 0.0) + 1.0 / (RRF_K + rank + 1)
        for rank, (sid, _) in enumerate(lexical):
            fused[sid] = fused.get(sid, 0.0) + 1.0 / (RRF_K + rank + 1)

        fetched = self.store.get("sents", list(fused), embeddings=True) if fused else []
        sentences = [_sentence(hit, vec, dense=float(vec @ qvec), fused=fused[hit.id]) for hit, vec in fetched]
        chunk_rank = {h.id: r for r, h in enumerate(dense_chunks)}
        for s in sentences:  # a sentence inside a top chunk gets that chunk's vote too
            if s.chunk_id in chunk_rank:
                s.fused += 1.0 / (RRF_K + chunk_rank[s.chunk_id] + 1)
        sentences.sort(key=lambda s: -s.fused)
        chunks = self._rank_chunks(dense_chunks, sentences)
        windows = self.neighbours(sentences[:CANDIDATES])
        in_windows = list(dict.fromkeys(n.chunk_id for group in windows.values() for n in group))
        pool = {c.id: c for c in chunks}
        pool.update({c.id: c for c in self._chunks([c for c in in_windows if c not in pool], {}, {})})
        return Retrieval(query, qvec, sentences, chunks, windows,
                         {t: self._bm25.idf(t) for t in content_words(query)}, pool)

    def openings(self, docs: list[str] | None = None, n: int = 3, most: int = 5) -> list[list[Sentence]]:
        """The first `n` sentences of each document of `docs` (else of every indexed one; at most `most`
        documents), in order, less planted ones: what an overview of the documents cites."""
        shas = self._ready()
        docs = (self._check_docs(docs, shas) or sorted(shas))[:most]
        self._bm25.refresh(self.store, shas)
        ids = {d: [sentence_id(d, shas[d], p) for p in range(n)] for d in docs}
        got = self.store.get("sents", [i for group in ids.values() for i in group], embeddings=True)
        found = {hit.id: _sentence(hit, vec) for hit, vec in got if hit.id not in self._bm25.planted}
        return [[found[i] for i in group if i in found] for group in ids.values()]

    def _ready(self) -> dict[str, str]:
        shas = self.store.ready_shas()
        if not shas:
            raise IndexMissingError(f"collection {self.store.cfg.collection!r} is empty: no documents are indexed "
                                    "yet — add some with `citeqa index add`",
                                    fix="run `citeqa index add PATH` (files or folders), or upload files in the chat")
        return shas

    def _check_docs(self, docs: list[str] | None, shas: dict[str, str]) -> list[str] | None:
        if not docs:
            return None
        docs = [docs] if isinstance(docs, str) else list(dict.fromkeys(docs))
        unknown = [d for d in docs if d not in shas]
        if unknown:
            raise InputError(f"no document {', '.join(map(repr, unknown))} in collection "
                             f"{self.store.cfg.collection!r}", fix="see `citeqa index list` for the doc ids")
        return docs

    def _rank_chunks(self, dense_chunks: list[Hit], sentences: list[Sentence]) -> list[Chunk]:
        score: dict[str, float] = {}
        for rank, h in enumerate(dense_chunks):
            score[h.id] = score.get(h.id, 0.0) + 1.0 / (RRF_K + rank + 1)
        seen: list[str] = []
        for s in sentences:
            if s.chunk_id not in seen:
                seen.append(s.chunk_id)
        for rank, cid in enumerate(seen):
            score[cid] = score.get(cid, 0.0) + 1.0 / (RRF_K + rank + 1)
        best = sorted(score, key=lambda c: -score[c])[: self.k_chunks]
        return self._chunks(best, score, {h.id: h for h in dense_chunks})

    def _chunks(self, ids: list[str], score: dict[str, float], hits: dict[str, Hit]) -> list[Chunk]:
        missing = [c for c in ids if c not in hits]
        hits.update({h.id: h for h, _ in self.store.get("chunks", missing)} if missing else {})
        return [Chunk(c, hits[c].meta["doc_id"], hits[c].meta.get("source", ""), int(hits[c].meta["start_char"]),
                      int(hits[c].meta["end_char"]), hits[c].text, score.get(c, 0.0)) for c in ids if c in hits]

    def neighbours(self, sentences: list[Sentence], before: int = 1, after: int = 1) -> dict[str, list[Sentence]]:
        """For each sentence, the sentences around it in its document (itself included), in order.

        One Chroma round trip for all of them.
        """
        wanted: dict[str, list[str]] = {}
        for s in sentences:
            wanted[s.id] = [sentence_id(s.doc_id, _sha(s), p) for p in range(max(0, s.pos - before), s.pos + after + 1)]
        ids = list(dict.fromkeys(i for group in wanted.values() for i in group))
        got = self.store.get("sents", ids, embeddings=True) if ids else []
        found = {hit.id: _sentence(hit, vec) for hit, vec in got}
        return {sid: [found[i] for i in group if i in found and i not in self._bm25.planted]
                for sid, group in wanted.items()}
