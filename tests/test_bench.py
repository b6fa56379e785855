"""`citeqa bench` smoke test (tiny sizes) and the llama-index recipe used as the comparison baseline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.conftest import ARTICLE

KEYS = ("ingest_chunks_per_s", "encoder_chunks_per_s", "ingest_ratio", "ask_p50_ms", "ask_p95_ms",
        "retrieval_p50_ms", "retrieval_p95_ms", "retrieval_chunks", "vs_llamaindex_speedup", "peak_rss_mb",
        "cold_start_s")


@pytest.mark.timeout(600)  # ~55 s on an idle 2-core machine; minutes when it is shared
def test_quick_bench_json(capsys: pytest.CaptureFixture) -> None:
    from citeqa import bench

    args = argparse.Namespace(quick=True, json=True, plots=None, chroma_server=False)
    assert bench.main(args, scale=0.02) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    for key in KEYS:
        value = result[key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        assert value > 0, key
    assert result["retrieval_chunks"] >= 100


def test_cli_parses_bench() -> None:
    from citeqa.cli import parser

    args = parser().parse_args(["bench", "--quick", "--json", "--plots", "x", "--chroma-server"])
    assert (args.quick, args.json, args.plots, args.chroma_server) == (True, True, "x", True)


def test_parse_citation_prompt_skips_the_example() -> None:
    from llama_index.core.query_engine.citation_query_engine import CITATION_QA_TEMPLATE

    from evals.llamaindex_recipe import parse_citation_prompt

    prompt = CITATION_QA_TEMPLATE.format(context_str="Source 1:\nA b. C d.\n\nSource 2:\nE f.\n",
                                         query_str="What is E?")
    assert parse_citation_prompt(prompt) == ("What is E?", [(1, "A b. C d."), (2, "E f.")], "")


def test_recipe_answers_with_a_whole_chunk_citation(citeqa_home: Path) -> None:
    from evals.llamaindex_recipe import recipe_agent_factory
    from index import ingest
    from citeqa.config import Config

    cfg = Config.resolve(collection="recipe-test")
    ingest.add([ARTICLE], cfg, progress=False)
    agent = recipe_agent_factory(cfg)
    d = agent.ask("Who retook the al-Hamdan airbase?").to_dict()
    assert d["backend"] == "llamaindex-citation" and not d["refused"]
    assert d["citations"], d
    doc = ARTICLE.read_text(encoding="utf-8")
    for c in d["citations"]:
        assert c["doc_id"] == ARTICLE.name
        assert 0 <= c["start_char"] < c["end_char"] <= len(doc)
        assert doc[c["start_char"]:c["end_char"]] == c["text"]
        assert len(c["text"]) > 200  # a whole chunk, not a sentence
    assert f"[{d['citations'][0]['n']}]" in d["answer"]
    assert 1 <= len(d["retrieved"]) <= 5
    for r in d["retrieved"]:
        assert 0 <= r["start_char"] < r["end_char"] <= len(doc)
    assert set(d) >= {"answer", "refused", "citations", "retrieved", "latency_ms", "backend", "model", "query"}
