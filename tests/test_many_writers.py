"""Many writers, one store: two `citeqa index add` processes against one real `chroma run` server,
embedding through one embedding server (tests/embed_server.py), add different documents at once."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from citeqa.config import Config
from index import ingest
from index.embedding import SERVER_BATCH, get_embedder
from index.loaders import load_file
from tests.conftest import ARTICLE, ROOT
from tests.embed_server import EmbedServer

SQUAD = ROOT / "evals" / "squad-dev" / "docs"
WAIT_S = 300  # a gate that never opens is a failure below, not a hang


def _writer(paths: list[Path], key: str, chroma_url: str, embed_url: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "CITEQA_HOME": str(home), "CITEQA_CHROMA_URL": chroma_url, "CITEQA_EMBED_URL": embed_url,
           "CITEQA_EMBED_API_KEY": key, "CITEQA_TIMEOUT_S": "600"}  # requests held at the gate below
    return subprocess.Popen([sys.executable, "-m", "citeqa.cli", "index", "add", *map(str, paths), "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_whole(store, doc_id: str, text: str, listed: dict[str, int]) -> None:
    """The committed version of `doc_id`: listed with its chunk count, every chunk and sentence of it
    stored once and equal to the source slice, the chunks covering the text without a gap."""
    rec = store.documents()[doc_id]
    assert rec.status == "ready" and not rec.pending, rec
    assert listed[doc_id] == rec.chunks > 0
    assert store.document_text(doc_id) == text
    spans = []
    for which, count, pos in ((store.chunks, rec.chunks, "chunk_index"), (store.sents, rec.sentences, "pos")):
        got = which.get(where={"doc_id": doc_id}, include=["documents", "metadatas"])
        assert {m["sha256"] for m in got["metadatas"]} == {rec.sha256}, (doc_id, which.name)
        assert sorted(m[pos] for m in got["metadatas"]) == list(range(count)), (doc_id, which.name)
        for body, m in zip(got["documents"], got["metadatas"]):
            assert text[m["start_char"]:m["end_char"]] == body, (doc_id, m)
        spans = spans or sorted((m["start_char"], m["end_char"]) for m in got["metadatas"])
    assert spans[0][0] == len(text) - len(text.lstrip()) and spans[-1][1] == len(text.rstrip())
    gaps = [text[end:nxt[0]] for (_, end), nxt in zip(spans, spans[1:]) if nxt[0] > end]
    assert all(not g.strip() for g in gaps), f"{doc_id}: the chunks leave out {gaps}"  # blank lines between sections


@pytest.mark.server
@pytest.mark.timeout(900)
def test_two_writers_keep_every_document_whole(tmp_path: Path, chroma_server: str) -> None:
    """Writer A streams a long document section by section; writer B starts while A's document is
    half written (section 1 stored, not committed) and adds three others. The embedding server makes
    them meet: A's first request of section 2 waits until B has opened the store and sends its own
    first texts, and B's probe (its first request, before it opens the store) waits until A is there."""
    long_doc = tmp_path / "long.txt"
    parts = [p.read_text(encoding="utf-8") for p in sorted(SQUAD.glob("*.txt"))]
    long_doc.write_text("\n\n".join(parts * 3), encoding="utf-8")  # 770 kB: two sections (repeated text: cached vectors)
    b_docs = [ARTICLE, SQUAD / "Oxygen.txt", SQUAD / "Harvard_University.txt"]

    cfg = Config.resolve(home=str(tmp_path / "check"), chroma_url=chroma_server)
    doc = load_file(long_doc)
    first = ingest.sections(doc.text)[0]
    assert len(ingest.sections(doc.text)) >= 2
    section1_requests = math.ceil(len(ingest.prepare(doc, cfg, first)[1]) / SERVER_BATCH)

    a_mid, b_in, lock, seen = threading.Event(), threading.Event(), threading.Lock(), {"a": 0}

    def hold(request: dict) -> None:
        if request["key"] == "writer-a" and not request["probe"]:
            with lock:
                seen["a"] += 1
                mine = seen["a"]
            if mine == section1_requests + 1:
                a_mid.set()
                b_in.wait(WAIT_S)
        elif request["key"] == "writer-b":
            if request["probe"]:
                a_mid.wait(WAIT_S)
            else:
                b_in.set()

    server = EmbedServer()
    server.hold = hold
    try:
        writers = [_writer([long_doc], "writer-a", chroma_server, server.url, tmp_path / "a"),
                   _writer(b_docs, "writer-b", chroma_server, server.url, tmp_path / "b")]
        results = [w.communicate(timeout=WAIT_S * 2) for w in writers]
    finally:
        server.close()
    for w, (out, err) in zip(writers, results):
        assert w.returncode == 0, err[-3000:]
        assert json.loads(out.strip().splitlines()[-1])["failed"] == []
    assert a_mid.is_set() and b_in.is_set(), "the two writers did not overlap"

    store, _ = ingest.open_store(cfg, create=False, embedder=get_embedder())
    listed = {d["doc_id"]: d["chunks"] for d in ingest.listing(cfg)["documents"]}  # `citeqa index list`
    assert sorted(listed) == sorted(["long.txt"] + [p.name for p in b_docs])
    assert_whole(store, "long.txt", doc.text, listed)
    for path in b_docs:
        assert_whole(store, path.name, load_file(path).text, listed)
