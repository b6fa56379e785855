"""citeqa.llama_index inside real llama-index pipelines, over the bundled article indexed in a real Chroma
with the real embedder and reader (the `indexed` fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import TextNode

from agent.answer import Agent
from citeqa.errors import ConfigError, InputError
from citeqa.llama_index import CiteqaQueryEngine, CiteqaRetriever
from prompts import REFUSAL

AIRBASE = "Who retook the al-Hamdan airbase?"


@pytest.fixture
def agent(indexed: Path) -> Agent:
    return Agent()


def assert_spans(agent: Agent, nodes) -> None:
    """Each node is a TextNode whose text is its document's text at [start_char_idx:end_char_idx]."""
    assert nodes
    for nws in nodes:
        node = nws.node
        assert isinstance(node, TextNode) and node.ref_doc_id == node.metadata["doc_id"]
        text = agent.store.document_text(node.metadata["doc_id"])
        assert node.get_content() == text[node.start_char_idx:node.end_char_idx]


def test_retriever_returns_ranked_sentence_spans(agent: Agent) -> None:
    nodes = CiteqaRetriever(agent, k=4).retrieve(AIRBASE)
    assert len(nodes) == 4
    assert_spans(agent, nodes)
    assert "al-Hamdan airbase" in nodes[0].node.get_content()
    assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)
    assert nodes[0].node.metadata["source"].endswith("isil-retakes-syria-border-town.txt")
    assert len({n.node.node_id for n in nodes}) == 4


def test_retriever_ranks_as_the_agent_reads(agent: Agent) -> None:
    """The top node is the sentence the agent's own answer cites."""
    answer = agent.ask(AIRBASE)
    top = CiteqaRetriever(agent, k=1).retrieve(AIRBASE)[0].node
    assert (top.metadata["doc_id"], top.start_char_idx) == (answer.citations[0].doc_id, answer.citations[0].start_char)


def test_retriever_keeps_to_the_documents_asked_for(agent: Agent) -> None:
    (doc_id,) = {n.node.metadata["doc_id"] for n in CiteqaRetriever(agent).retrieve(AIRBASE)}
    assert CiteqaRetriever(agent, docs=[doc_id]).retrieve(AIRBASE)
    with pytest.raises(InputError, match="no document 'elsewhere'"):
        CiteqaRetriever(agent, docs=["elsewhere"]).retrieve(AIRBASE)


def test_retriever_from_config_and_bad_k(indexed: Path) -> None:
    retriever = CiteqaRetriever.from_config(k=2, retrieval="bm25")
    assert retriever.agent.config.retrieval == "bm25"
    nodes = retriever.retrieve(AIRBASE)
    assert len(nodes) == 2 and "al-Hamdan" in nodes[0].node.get_content()
    with pytest.raises(ConfigError, match="at least one node"):
        CiteqaRetriever(retriever.agent, k=0)


def test_retriever_inside_a_retriever_query_engine(agent: Agent) -> None:
    """llama-index's own RetrieverQueryEngine (compact synthesizer, its MockLLM) over citeqa's retriever:
    its source nodes are citeqa's sentences, and the LLM was shown them."""
    retriever = CiteqaRetriever(agent, k=3)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query(AIRBASE)
    expected = retriever.retrieve(AIRBASE)
    assert [(n.node.node_id, n.node.start_char_idx, n.node.end_char_idx, n.score) for n in response.source_nodes] == [
        (n.node.node_id, n.node.start_char_idx, n.node.end_char_idx, n.score) for n in expected]
    assert_spans(agent, response.source_nodes)
    assert expected[0].node.get_content() in str(response)  # MockLLM echoes the prompt it was given


def test_query_engine_answers_with_verified_citations(agent: Agent) -> None:
    engine = CiteqaQueryEngine(agent=agent)
    response = engine.query(AIRBASE)
    answer = agent.ask(AIRBASE)
    assert response.response == answer.answer and not response.metadata["refused"]
    assert response.metadata["short_answer"] == answer.short_answer and answer.short_answer
    assert response.metadata["confidence"] == pytest.approx(answer.confidence)
    assert [(n.node.get_content(), n.node.metadata["doc_id"], n.node.start_char_idx, n.node.end_char_idx,
             n.score, n.node.metadata["n"]) for n in response.source_nodes] == [
        (c.text, c.doc_id, c.start_char, c.end_char, c.score, c.n) for c in answer.citations]
    assert_spans(agent, response.source_nodes)


def test_query_engine_refuses_what_the_article_does_not_say(indexed: Path) -> None:
    response = CiteqaQueryEngine.from_config().query("What is the capital of Peru?")
    assert response.metadata["refused"] is True and response.metadata["short_answer"] is None
    assert response.source_nodes == [] and response.response == REFUSAL
