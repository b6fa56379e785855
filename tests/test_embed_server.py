"""Embeddings from a server (CITEQA_EMBED_URL): a real HTTP server on 127.0.0.1 serving real MiniLM
vectors (tests/embed_server.py) against the in-process encoder, with real Chroma and the real agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from citeqa import cli
from citeqa.config import Config
from citeqa.errors import BackendError, BackendUnreachableError, ConfigError, IndexMismatchError
from citeqa.servers import free_port
from index import ingest
from index.embedding import (BUNDLED_MODEL_NAME, MAX_PIECES, SERVER_BATCH, ServerEmbedder, embedder_for,
                             get_embedder)
from tests.conftest import ARTICLE
from tests.embed_server import EmbedServer

DOCS = [ARTICLE, ARTICLE.parents[2] / "evals" / "squad-dev" / "docs" / "1973_oil_crisis.txt"]
QUESTIONS = [row["user_input"] for row in map(json.loads, (ARTICLE.parents[2] / "evals" / "article.jsonl")
                                              .read_text(encoding="utf-8").splitlines()[:6])] + [
    "What did OPEC proclaim in October 1973?", "Which countries were targeted by the oil embargo?"]


@pytest.fixture
def server():
    s = EmbedServer()
    yield s
    s.close()


def test_a_server_retrieves_and_answers_like_the_in_process_encoder(tmp_path: Path, server: EmbedServer) -> None:
    """The same documents indexed twice, once per encoder: the same stored sentence vectors, the same
    top sentences and chunks, the same answers; and each collection opens with the other encoder."""
    from agent import Agent
    from agent.retrieve import Retriever

    local = Config.resolve(home=str(tmp_path / "local"))
    remote = Config.resolve(home=str(tmp_path / "remote"), embed_url=server.url)
    assert ingest.add(DOCS, local, progress=False).chunks_added == ingest.add(DOCS, remote, progress=False).chunks_added
    assert embedder_for(remote).name == get_embedder().name == BUNDLED_MODEL_NAME
    assert not [r for r in server.requests if r["n"] > SERVER_BATCH]
    stores = {name: ingest.open_store(cfg, create=False) for name, cfg in (("local", local), ("remote", remote))}
    sent = sum(r["n"] for r in server.requests if not r["probe"])
    assert sent == stores["remote"][0].sents.count() > 100  # every sentence went to the server, once
    vecs = {name: {h.id: v for h, v in store.scan("sents", store.ready_shas(), embeddings=True)}
            for name, (store, _) in stores.items()}
    assert vecs["local"].keys() == vecs["remote"].keys()
    assert max(float(np.abs(vecs["local"][i] - vecs["remote"][i]).max()) for i in vecs["local"]) < 1e-5

    retrievers = {name: Retriever(store, emb) for name, (store, emb) in stores.items()}
    agents = {name: Agent(config=cfg) for name, cfg in (("local", local), ("remote", remote))}
    across = Agent(config=local.with_(embed_url=server.url))  # built in process, asked through the server
    for q in QUESTIONS:
        got = {name: r.search(q) for name, r in retrievers.items()}
        assert [s.id for s in got["local"].sentences[:10]] == [s.id for s in got["remote"].sentences[:10]], q
        assert [c.id for c in got["local"].chunks[:5]] == [c.id for c in got["remote"].chunks[:5]], q
        answers = [a.ask(q).to_dict() for a in (agents["local"], agents["remote"], across)]
        for a in answers:
            a.pop("latency_ms")
        assert answers[0] == answers[1] == answers[2], q
    assert sum(not a.ask(q).refused for q in QUESTIONS for a in (agents["remote"],)) >= 5


def test_index_add_and_ask_through_the_cli(tmp_path: Path, server: EmbedServer, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CITEQA_EMBED_URL", server.url)
    assert cli.main(["index", "add", str(ARTICLE), "--json"]) == 0
    assert cli.main(["index", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["embedding_model"] == BUNDLED_MODEL_NAME
    assert cli.main(["ask", "Who retook the al-Hamdan airbase?", "--json"]) == 0
    assert "ISIL" in json.loads(capsys.readouterr().out)["answer"]


def test_another_model_on_the_server_is_an_index_mismatch(tmp_path: Path, capsys, monkeypatch) -> None:
    """A collection built in process, opened through servers that serve another model name, or the
    same name at another dimension: IndexMismatchError naming both, from the API and the CLI."""
    local = Config.resolve(home=str(tmp_path / "home"))
    ingest.add([ARTICLE], local, progress=False)
    other, wide = EmbedServer(model="BAAI/bge-small-en-v1.5"), EmbedServer()
    wide.dim = 512
    try:
        with pytest.raises(IndexMismatchError, match="built with sentence-transformers/all-MiniLM-L6-v2 \\(384-d\\), "
                                                     "not BAAI/bge-small-en-v1.5 \\(384-d\\)"):
            ingest.open_store(local.with_(embed_url=other.url, embed_model="BAAI/bge-small-en-v1.5"), create=False)
        with pytest.raises(IndexMismatchError, match="\\(384-d\\), not sentence-transformers/all-MiniLM-L6-v2 "
                                                     "\\(512-d\\)"):
            ingest.open_store(local.with_(embed_url=wide.url))
        monkeypatch.setenv("CITEQA_HOME", str(local.home))
        monkeypatch.setenv("CITEQA_EMBED_URL", other.url)
        monkeypatch.setenv("CITEQA_EMBED_MODEL", "BAAI/bge-small-en-v1.5")
        for argv in (["ask", "Who retook the al-Hamdan airbase?"], ["index", "add", str(ARTICLE)]):
            assert cli.main(argv) == IndexMismatchError.exit_code
            err = capsys.readouterr().err
            assert "was built with sentence-transformers/all-MiniLM-L6-v2" in err and "bge-small" in err, err
            assert "Fix:" in err and "Traceback" not in err
    finally:
        other.close()
        wide.close()
    assert ingest.listing(local)["documents"][0]["chunks"] > 0  # untouched


def test_a_dead_url_names_the_url_and_what_to_do(tmp_path: Path, capsys, monkeypatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendUnreachableError, match=f"cannot reach the embedding server at {url}") as exc:
        ServerEmbedder(url, retries=1).encode(["anything"])
    assert "CITEQA_EMBED_URL" in exc.value.fix
    monkeypatch.setenv("CITEQA_EMBED_URL", url)
    assert cli.main(["index", "add", str(ARTICLE)]) == BackendUnreachableError.exit_code
    err = capsys.readouterr().err
    assert f"cannot reach the embedding server at {url}" in err and "Fix:" in err and "Traceback" not in err


def test_a_server_that_changes_dimension_is_a_clear_error(server: EmbedServer) -> None:
    emb = ServerEmbedder(server.url)
    assert emb.dim == 384
    server.dim = 383
    with pytest.raises(BackendError, match=f"server at {server.url} answered 383-d vectors of {BUNDLED_MODEL_NAME}, "
                                           f"384-d of {BUNDLED_MODEL_NAME} before"):
        emb.encode(["a", "b"])


def test_one_transient_503_is_retried(server: EmbedServer) -> None:
    emb = ServerEmbedder(server.url)
    server.fail = 1
    vecs = emb.encode(["The crossing was retaken.", "Oil prices rose."])  # the probe meets the 503
    assert [r["status"] for r in server.requests] == [503, 200, 200]
    assert np.allclose(vecs, get_embedder().encode(["The crossing was retaken.", "Oil prices rose."]), atol=1e-6)
    server.fail = SERVER_BATCH  # more 503s than retries: a clear error, not a hang
    with pytest.raises(BackendError, match="answered HTTP 503"):
        emb.encode(["x"])


def test_batches_keep_the_order_of_the_texts(server: EmbedServer) -> None:
    texts = [f"Sentence {i}: the {'long ' * (i % 7)}road to al-Qaim." for i in range(3 * SERVER_BATCH + 5)]
    vecs = ServerEmbedder(server.url).encode(texts)
    assert sorted(r["n"] for r in server.requests if not r["probe"]) == [5] + [SERVER_BATCH] * 3
    assert np.allclose(vecs, get_embedder().encode(texts), atol=1e-6)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)


def test_a_huge_line_is_clipped_to_what_the_encoder_reads(server: EmbedServer) -> None:
    """A 3,000-word 'sentence' is over a server's limit (vLLM's for this model: 256 word pieces); the
    in-process encoder reads its first 256 pieces only, so citeqa sends those and gets the same vector."""
    server.max_tokens = MAX_PIECES + 2
    text = " ".join(f"crossing{i % 50}" for i in range(3000))
    assert np.allclose(ServerEmbedder(server.url).encode([text]), get_embedder().encode([text]), atol=1e-6)
    assert [r["status"] for r in server.requests] == [200, 200]


def test_server_errors_name_the_model_and_the_key(server: EmbedServer) -> None:
    with pytest.raises(BackendError, match="HTTP 404 for model 'no-such-model': The model `no-such-model` "
                                           "does not exist") as exc:
        ServerEmbedder(server.url, model="no-such-model").encode(["x"])
    assert "CITEQA_EMBED_MODEL" in exc.value.fix
    server.key = "s3cret"
    with pytest.raises(ConfigError, match="rejected the API key"):
        ServerEmbedder(server.url, api_key="wrong").encode(["x"])
    assert ServerEmbedder(server.url, api_key="s3cret").encode(["x"]).shape == (1, 384)
    assert server.requests[-1]["key"] == "s3cret"


@pytest.mark.parametrize("url", ["ftp:/nowhere", "127.0.0.1:8000", "http://"])
def test_a_url_that_is_not_http_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="CITEQA_EMBED_URL"):
        ServerEmbedder(url)


def test_without_openai_the_server_path_names_the_extra() -> None:
    code = ("import sys; sys.modules['openai'] = None\n"
            "from citeqa.config import Config; from index.embedding import embedder_for\n"
            "embedder_for(Config.resolve(embed_url='http://127.0.0.1:9/v1'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1
    assert ("ConfigError: embedding through a server (CITEQA_EMBED_URL) needs the openai package. "
            "Fix: pip install 'citeqa[openai]'") in run.stderr
