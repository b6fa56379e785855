"""citeqa inside llama-index: a retriever of ranked sentences and a query engine of verified citations.

`CiteqaRetriever` is a llama-index `BaseRetriever`: it searches citeqa's index (hybrid dense + BM25,
`agent.retrieve`) and ranks the sentences as `Agent.ask` does (`Agent.rank`); each node is one
sentence, a `TextNode` whose `start_char_idx`/`end_char_idx` are its span in the source document, so
it drops into any llama-index pipeline (`RetrieverQueryEngine`, postprocessors, agents).

`CiteqaQueryEngine` is a `CustomQueryEngine` that runs the whole of `Agent.ask` (read, draft, verify,
refuse) and returns a llama-index `Response`: the answer text, citeqa's verified citations as
`source_nodes`, and `metadata` with short_answer, refused and confidence.

>>> retriever = CiteqaRetriever.from_config(k=3)                                   # doctest: +SKIP
>>> node = retriever.retrieve("Who retook the al-Hamdan airbase?")[0].node          # doctest: +SKIP
>>> node.metadata["doc_id"], node.start_char_idx, node.end_char_idx                 # doctest: +SKIP
('isil-retakes-syria-border-town.txt', 399, 667)
>>> CiteqaQueryEngine.from_config().query("What is the capital of Peru?").metadata["refused"]  # doctest: +SKIP
True

Importing this module imports llama-index (a few seconds); nothing else in citeqa imports it.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import Response
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode

from agent.answer import Agent, Answer
from agent.cite import Citation
from agent.retrieve import Sentence
from citeqa.config import Config
from citeqa.errors import ConfigError

def span_node(node_id: str, text: str, doc_id: str, source: str, start: int, end: int, page: int | None,
              chunk_id: str) -> TextNode:
    """A `TextNode` for the span `start:end` of document `doc_id` (its SOURCE relationship, so
    `node.ref_doc_id == doc_id`); metadata doc_id, source, chunk_id, and page when known."""
    metadata: dict[str, Any] = {"doc_id": doc_id, "source": source, "chunk_id": chunk_id}
    if page is not None:
        metadata["page"] = page
    return TextNode(id_=node_id, text=text, start_char_idx=start, end_char_idx=end, metadata=metadata,
                    excluded_embed_metadata_keys=["chunk_id"], excluded_llm_metadata_keys=["chunk_id"],
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc_id)})


def sentence_node(s: Sentence, value: float) -> NodeWithScore:
    """One retrieved sentence, scored `value`."""
    return NodeWithScore(node=span_node(s.id, s.text, s.doc_id, s.source, s.start, s.end, s.page, s.chunk_id),
                         score=value)


def citation_node(c: Citation) -> NodeWithScore:
    """One verified citation, scored by its citation score; metadata `n` is its number in the answer."""
    nws = NodeWithScore(node=span_node(f"{c.chunk_id}@{c.start_char}", c.text, c.doc_id, c.source, c.start_char,
                                       c.end_char, c.page, c.chunk_id), score=c.score)
    nws.node.metadata["n"] = c.n
    return nws


def to_response(answer: Answer) -> Response:
    """A llama-index `Response` for a citeqa `Answer`: a refusal has no source nodes."""
    return Response(response=answer.answer, source_nodes=[citation_node(c) for c in answer.citations],
                    metadata={"short_answer": answer.short_answer, "refused": answer.refused,
                              "confidence": answer.confidence, "query": answer.query,
                              "latency_ms": answer.latency_ms, "backend": answer.backend,
                              "model": answer.model, "warnings": answer.warnings})


class CiteqaRetriever(BaseRetriever):
    """The `k` best sentences for a query, ranked as `Agent.ask` ranks them (from the documents `docs`
    only, when given): fewer when fewer can answer (only the best `agent.retrieve.CANDIDATES` fused
    sentences are ranked, and a question, or a sentence with no word beyond the query's, is never a
    candidate). Each node's score is citeqa's ranking score (higher is better)."""

    def __init__(self, agent: Agent, k: int = 5, docs: list[str] | None = None, **kwargs: Any) -> None:
        """`kwargs` go to llama-index's `BaseRetriever` (callback_manager, verbose)."""
        if k < 1:
            raise ConfigError(f"k={k}: a retriever must return at least one node", fix="pass k=1 or more")
        super().__init__(**kwargs)
        self.agent, self.k, self.docs = agent, k, docs

    @classmethod
    def from_config(cls, config: Config | None = None, *, k: int = 5, docs: list[str] | None = None,
                    **settings: Any) -> "CiteqaRetriever":
        """A retriever over a new `Agent(config=config, **settings)` (settings as in `Agent(...)`)."""
        return cls(Agent(config=config, **settings), k=k, docs=docs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [sentence_node(b.sentence, b.score) for b in self.agent.rank(query_bundle.query_str, self.docs, self.k)]


class CiteqaQueryEngine(CustomQueryEngine):
    """`Agent.ask` as a llama-index query engine (`Response` as in `to_response`)."""

    agent: Agent
    docs: list[str] | None = None

    @classmethod
    def from_config(cls, config: Config | None = None, *, docs: list[str] | None = None,
                    **settings: Any) -> "CiteqaQueryEngine":
        """An engine over a new `Agent(config=config, **settings)` (settings as in `Agent(...)`)."""
        return cls(agent=Agent(config=config, **settings), docs=docs)

    def custom_query(self, query_str: str) -> Response:
        return to_response(self.agent.ask(query_str, docs=self.docs))
