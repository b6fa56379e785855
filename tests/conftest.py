"""Shared fixtures. Real parts everywhere: a real Chroma (persistent dir, or a `chroma run` server),
the real embedder, and a real HTTP server on 127.0.0.1 standing in for OpenAI-compatible model servers.

Every test gets its own CITEQA_HOME, and sockets may only reach loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest

from citeqa import BUNDLED_ARTICLE as ARTICLE
from agent.backends.generative import GenerativeBackend
from citeqa.servers import free_port, start_chroma, stop  # noqa: F401 (free_port, start_chroma: used by tests)

ROOT = Path(__file__).resolve().parent.parent

_real_connect = socket.socket.connect


def _guarded_connect(self, address):  # network blocked in tests: loopback and unix sockets only
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
        raise OSError(f"network access blocked in tests: {address}")
    return _real_connect(self, address)


socket.socket.connect = _guarded_connect


@pytest.fixture(autouse=True)
def citeqa_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CITEQA_HOME per test and no CITEQA_*/OpenAI settings leaking in from the shell."""
    for key in list(os.environ):
        if key.startswith("CITEQA_") or key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("CITEQA_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def article_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CITEQA_HOME with the bundled article indexed once per session (read-only for tests)."""
    from index import ingest
    from citeqa.config import Config

    home = tmp_path_factory.mktemp("article-home")
    ingest.add([ARTICLE], Config.resolve(home=str(home)), progress=False)
    return home


@pytest.fixture
def indexed(article_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point CITEQA_HOME at the session's indexed article (copied, so tests may write)."""
    home = article_home.parent / f"copy-{time.monotonic_ns()}"
    shutil.copytree(article_home, home)
    monkeypatch.setenv("CITEQA_HOME", str(home))
    return home


class FunctionBackend(GenerativeBackend):
    """A generative `Backend` whose draft is `fn(question, passages)`, in process (pydantic-ai's
    FunctionModel): tests decide what "the model" writes and see what it was shown."""

    name, model = "function", "test-function"

    def __init__(self, fn: Callable[[str, list], str]) -> None:
        self.fn, self.calls = fn, []

    def draft(self, question: str, passages: list):
        self.calls.append((question, passages))
        yield self.fn(question, passages)

    def rewrite(self, question: str, history: list[dict]) -> str:
        return question


def text_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF with one page per item of `pages`, each line of it a line of Helvetica text (pypdf)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    for lines in pages:
        page = writer.add_blank_page(500, 300)
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        stream = DecodedStreamObject()
        shown = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
        stream.set_data(f"BT /F1 12 Tf 20 260 Td {shown} ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    with path.open("wb") as f:
        writer.write(f)
    return path


@pytest.fixture
def chroma_server(tmp_path: Path) -> str:
    """A real `chroma run` server on a free loopback port; yields its URL."""
    proc, url = start_chroma(tmp_path / "server")
    yield url
    stop(proc)


class ModelServer:
    """An OpenAI-compatible chat server on 127.0.0.1 whose replies come from a Python function.

    `reply(messages) -> str` decides each completion, so a test scripts the model's behaviour
    (right answer, wrong citation, refusal, garbage) while the real `openai` client talks HTTP to it.
    Streamed replies go out 12 characters an event, `chunk_delay` seconds apart.
    """

    def __init__(self, reply: Callable[[list[dict]], str], model: str = "test-model", chunk_delay: float = 0.0) -> None:
        self.reply, self.model, self.requests, self.chunk_delay = reply, model, [], chunk_delay
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [
                        {"id": server.model, "object": "model", "created": 0, "owned_by": "test"}]}).encode())
                else:
                    self._send(404, b"{}")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"body": body, "auth": self.headers.get("Authorization", "")})
                content = server.reply(body["messages"])
                if content is None:  # scripted garbage
                    self._send(200, b"<html>not json</html>", "text/html")
                    return
                if body.get("stream"):
                    chunks = [content[i:i + 12] for i in range(0, len(content), 12)] or [""]
                    events = [b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0,
                                                      "model": server.model, "choices": [{"index": 0, "delta":
                                                      {"content": piece}, "finish_reason": None}]}).encode() + b"\n\n"
                              for piece in chunks] + [b"data: [DONE]\n\n"]
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Content-Length", str(sum(map(len, events))))
                    self.end_headers()
                    for event in events:  # one event per piece, `chunk_delay` seconds apart
                        self.wfile.write(event)
                        self.wfile.flush()
                        time.sleep(server.chunk_delay)
                    return
                self._send(200, json.dumps({
                    "id": "c", "object": "chat.completion", "created": 0, "model": server.model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def model_server():
    """Factory: `model_server(reply_fn)` starts a scripted OpenAI-compatible server."""
    servers = []

    def start(reply: Callable[[list[dict]], str], model: str = "test-model", chunk_delay: float = 0.0) -> ModelServer:
        servers.append(ModelServer(reply, model, chunk_delay))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


# -- doubles for pure unit tests (tests/test_steps.py); integration tests use real Chroma and models --


class HashEmbedder:
    """A bag-of-words encoder: each stemmed content word (`agent.text.tokens`) adds to one of `dim`
    hashed dimensions. Texts that share words are close, texts that share none are orthogonal, so
    retrieval over it discriminates as lexical matching does (a constant vector would prove nothing)."""

    name, dim = "test-hash-bow", 256

    def encode(self, texts: list[str]):
        import zlib

        import numpy as np

        from agent.text import tokens

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for t in tokens(text):
                out[i, zlib.crc32(t.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


class SpanReader:
    """A reader double (`agent.reader.Reader`'s `read` and `meta`): a passage answers when it holds
    every content word of the question but one, and its answer is a number or a capitalised word (not
    opening a sentence) that the question does not contain: the first one of the sentence that shares
    most words with the question. `meta` carries the shipped judge's shape (`agent.answerable`)."""

    meta = {"name": "span-reader", "answerable": {"weights": {"reader": 1.0, "dense": 0.0, "dense_window": 0.0},
                                                 "bias": 0.0, "threshold": 0.5}}

    def read(self, question: str, passages: list[str]):
        import re

        from agent.reader import Reading
        from agent.text import content_words, tokens

        asked, qwords = set(content_words(question)), set(re.findall(r"\w+", question.lower()))
        out = []
        for p in passages:
            missing = len(asked - set(tokens(p)))
            found = []  # (question words its sentence shares, -position, match) per candidate answer
            for sent in re.finditer(r"[^.!?]+[.!?]?", p):
                shared = len(asked & set(tokens(sent.group())))
                for pattern in (r"\b\d[\d,]*\b", r"(?<=\w )[A-Z]\w+"):
                    found += [(shared, -m.start(), m) for m in re.finditer(pattern, p[:sent.end()])
                              if m.start() >= sent.start() and m.group().lower() not in qwords]
            best = max(found, key=lambda f: f[:2])[2] if found else None
            prob = 0.9 if best and missing <= 1 else 0.05
            out.append(Reading(prob, best.start(), best.end(), best.group()) if best else Reading(prob, 0, 0, ""))
        return out


class MemoryStore:
    """`index.store.Store`'s read side in memory, for pure unit tests of retrieval and answering. Records
    are made as ingest makes them (`index.ingest.prepare`, `chunk_vectors`) from texts added with `add`."""

    def __init__(self, embedder, collection: str = "memory") -> None:
        from types import SimpleNamespace

        self.cfg, self.embedder = SimpleNamespace(collection=collection), embedder
        self.records: dict[str, dict] = {"sents": {}, "chunks": {}}  # which -> id -> (Hit, vector)
        self.texts: dict[str, str] = {}
        self.shas: dict[str, str] = {}

    def add(self, doc_id: str, text: str) -> None:
        import hashlib

        from citeqa.config import Config
        from index.ids import record_id
        from index.ingest import chunk_vectors, prepare
        from index.loaders import Document
        from index.store import Hit

        sha = hashlib.sha256(text.encode()).hexdigest()
        chunks, sents = prepare(Document(doc_id, f"/docs/{doc_id}", text, sha), Config.resolve(home="/nonexistent"))
        svecs = self.embedder.encode([s["text"] for s in sents])
        for which, items, vecs, key, kind in (("sents", sents, svecs, "pos", "s"),
                                              ("chunks", chunks, chunk_vectors(chunks, sents, svecs), "chunk_index", "c")):
            for item, vec in zip(items, vecs):
                rid = record_id(doc_id, sha, kind, item[key])
                self.records[which][rid] = (Hit(rid, item["text"], {k: v for k, v in item.items() if k != "text"}), vec)
        self.texts[doc_id], self.shas[doc_id] = text, sha

    def ready_shas(self) -> dict[str, str]:
        return dict(self.shas)

    def document_text(self, doc_id: str) -> str:
        return self.texts[doc_id]

    def query(self, which: str, vector, k: int, shas: dict[str, str], docs: list[str] | None = None):
        from dataclasses import replace

        hits = [replace(h, score=float(v @ vector)) for h, v in self.records[which].values()
                if shas.get(h.meta["doc_id"]) == h.meta["sha256"] and (not docs or h.meta["doc_id"] in docs)]
        return sorted(hits, key=lambda h: -h.score)[:k]

    def get(self, which: str, ids: list[str], embeddings: bool = False):
        found = self.records[which]
        return [(found[i][0], found[i][1] if embeddings else None) for i in ids if i in found]

    def scan(self, which: str, shas: dict[str, str], embeddings: bool = False):
        return [(h, v if embeddings else None) for h, v in self.records[which].values()
                if shas.get(h.meta["doc_id"]) == h.meta["sha256"]]
