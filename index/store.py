"""Chroma, and nothing else imports chromadb. A logical collection NAME is three Chroma collections:

- NAME          chunks (token-sized passages) with offsets; vector = mean of its sentence vectors
- NAME-sents    sentences with offsets (and page, for PDFs) and their own vectors (what answers are cut from)
- NAME-docs     the manifest: one record per document (sha256, counts, write state), and the document's
                text in parts of TEXT_PART characters (records with `text_of`, tagged with the sha256)

Writes are atomic per document (see `write_document`): readers only trust records whose sha256 is the
one the manifest has committed, and `recover()` removes what a killed writer left behind.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import urlparse

import numpy as np

from citeqa.config import Config
from citeqa.errors import (CiteqaError, ConfigError, IndexMismatchError, IndexMissingError,
                          StoreUnavailableError)
from index.ids import record_id

SCHEMA = 1
_DOCS, _SENTS = "-docs", "-sents"
TEXT_PART = 1 << 18  # characters of a document's text per record (one record of a 50 MB text grew without bound)
_MANIFEST = {"status": {"$in": ["ready", "pending"]}}  # the manifest records, not the text parts
# A write in progress is another writer's while its process lives and it wrote within this many seconds
# (each section of a long document renews it; `recover` leaves such a write alone).
LEASE_S = 900


@dataclass(frozen=True)
class DocRecord:
    doc_id: str
    source: str
    sha256: str
    chunks: int
    sentences: int
    status: str  # "ready" | "pending"
    pending: str  # sha256 being written, if a write is in progress or was killed
    stale: str  # sha256 of a replaced version whose records may still need deleting
    writer: str = ""  # who writes `pending`: "host:pid:thread" (`writer_id`)
    pending_at: float = 0.0  # when that writer last wrote a part (time.time())

    @classmethod
    def from_meta(cls, doc_id: str, meta: dict[str, Any]) -> "DocRecord":
        return cls(doc_id, str(meta.get("source", "")), str(meta.get("sha256", "")), int(meta.get("chunks", 0)),
                   int(meta.get("sentences", 0)), str(meta.get("status", "")), str(meta.get("pending", "")),
                   str(meta.get("stale", "")), str(meta.get("writer", "")), float(meta.get("pending_at", 0.0)))

    def meta(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("source", "sha256", "chunks", "sentences", "status", "pending", "stale",
                                              "writer", "pending_at")}


def writer_id() -> str:
    """This writer: host, process and thread (the chat writes uploads from several threads)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def writing(rec: DocRecord, now: float | None = None) -> bool:
    """Is `rec.pending` being written right now by another writer, so that `recover` must leave it?
    Yes while that writer renewed its lease within LEASE_S and, on this host, its process (and, in this
    process, its thread) still runs; a write of the calling thread itself is over.

    >>> writing(DocRecord("d", "", "", 0, 0, "pending", "abc", "", writer_id(), time.time()))
    False
    >>> writing(DocRecord("d", "", "", 0, 0, "pending", "abc", "", "elsewhere:1:1", time.time()))
    True
    >>> writing(DocRecord("d", "", "", 0, 0, "pending", "abc", "", "elsewhere:1:1", time.time() - LEASE_S - 1))
    False
    """
    if not rec.pending or not rec.writer or (now or time.time()) - rec.pending_at > LEASE_S:
        return False
    host, _, rest = rec.writer.partition(":")
    pid, _, thread = rest.partition(":")
    if host != socket.gethostname():
        return True
    if pid == str(os.getpid()):
        return thread != str(threading.get_ident()) and any(str(t.ident) == thread for t in threading.enumerate())
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: is it there?
    except ProcessLookupError:
        return False
    except PermissionError:  # there, under another user
        pass
    return True


@dataclass(frozen=True)
class Hit:
    """A chunk or sentence returned by a query; `score` is cosine similarity (dense) or None."""

    id: str
    text: str
    meta: dict[str, Any]
    score: float = 0.0


def connect(cfg: Config):
    """A Chroma client from config: HttpClient when CITEQA_CHROMA_URL is set, else a persistent dir."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    try:
        if cfg.chroma_url:
            url = urlparse(cfg.chroma_url)
            if not url.hostname:
                raise ConfigError(f"CITEQA_CHROMA_URL={cfg.chroma_url!r} has no host",
                                  fix="use a URL such as http://127.0.0.1:8000")
            client = chromadb.HttpClient(host=url.hostname, port=url.port or 8000,
                                         ssl=url.scheme == "https", settings=settings)
            client.heartbeat()
            return client
        cfg.chroma_path.mkdir(parents=True, exist_ok=True)
        _check_not_locked(cfg)
        return chromadb.PersistentClient(path=str(cfg.chroma_path), settings=settings)
    except CiteqaError:
        raise
    except Exception as exc:  # chromadb raises many types for "cannot open"; all mean the same to a user
        if not cfg.chroma_url and _read_only(cfg, exc):
            raise StoreUnavailableError(
                f"the Chroma store at {cfg.chroma_path} is read-only for this user ({type(exc).__name__}: {exc}); "
                "Chroma writes to its directory when it opens, even to read",
                fix=f"give this user write access to {cfg.home}, or copy it to a writable place and point "
                    f"CITEQA_HOME there (cp -r {cfg.home} /tmp/citeqa-home && CITEQA_HOME=/tmp/citeqa-home citeqa ...)"
            ) from None
        where = cfg.chroma_url or str(cfg.chroma_path)
        fix = ("start the server (`chroma run --path DIR --port N`) or unset CITEQA_CHROMA_URL"
               if cfg.chroma_url else
               "close other programs using it; if it is corrupt, move it aside and re-run `citeqa index add`")
        raise StoreUnavailableError(f"cannot open the Chroma store at {where} ({type(exc).__name__}: {exc})",
                                    fix=fix) from None


def _read_only(cfg: Config, exc: Exception) -> bool:
    """Did opening fail because the store's directory (or CITEQA_HOME) cannot be written?"""
    import os

    folder = cfg.chroma_path if cfg.chroma_path.exists() else cfg.home
    return "readonly database" in str(exc) or isinstance(exc, PermissionError) or getattr(exc, "errno", 0) == 30 or (
        folder.exists() and not os.access(folder, os.W_OK))


class _Remote:
    """A collection on a Chroma server. chromadb lets httpx's transport errors through (the server was
    killed or restarted mid-request: RemoteProtocolError, ConnectError, ReadError, ...); they become
    `StoreUnavailableError` naming the URL."""

    def __init__(self, col, url: str) -> None:
        import httpx

        self._col, self._url, self._dropped = col, url, httpx.TransportError

    def __getattr__(self, name: str):
        attr = getattr(self._col, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except self._dropped as exc:
                raise StoreUnavailableError(
                    f"lost the connection to the Chroma server at {self._url} ({type(exc).__name__}: {exc})",
                    fix="check the server is running (`chroma run --path DIR --port N`), then re-run the "
                        "command: `citeqa index add` resumes where it stopped") from None
        return call


LOCK_WAIT_S = 10.0


def _check_not_locked(cfg: Config) -> None:
    """Chroma's SQLite waits forever on a lock held by another process; fail after LOCK_WAIT_S instead."""
    import sqlite3

    db = cfg.chroma_path / "chroma.sqlite3"
    if not db.exists():
        return
    try:
        con = sqlite3.connect(str(db), timeout=LOCK_WAIT_S, isolation_level=None)
    except sqlite3.Error:
        return  # not openable at all: let Chroma report it (corrupt store)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreUnavailableError(
                f"the Chroma store at {cfg.chroma_path} is locked by another process (waited {LOCK_WAIT_S:.0f} s)",
                fix="wait for the other citeqa process to finish, or stop it; then retry") from None
    except sqlite3.DatabaseError:
        pass  # corrupt: Chroma's own error is clearer
    finally:
        con.close()


class Store:
    """One logical collection. `create=False` raises `IndexMissingError` when it does not exist."""

    def __init__(self, cfg: Config, model_name: str, dim: int, create: bool = True) -> None:
        self.cfg, self.model_name, self.dim = cfg, model_name, dim
        self.client = connect(cfg)
        name = cfg.collection
        meta = {"hnsw:space": "cosine", "embedding_model": model_name, "embedding_dim": dim, "citeqa_schema": SCHEMA}
        try:
            if create:
                self.chunks = self._guard(self.client.get_or_create_collection(
                    name, metadata=meta, embedding_function=None))
                self.sents = self._guard(self.client.get_or_create_collection(
                    name + _SENTS, metadata=meta, embedding_function=None))
                self.docs = self._guard(self.client.get_or_create_collection(
                    name + _DOCS, metadata={"hnsw:space": "cosine", "citeqa_schema": SCHEMA}, embedding_function=None))
            else:
                existing = {c if isinstance(c, str) else c.name for c in self.client.list_collections()}
                if not {name, name + _SENTS, name + _DOCS} <= existing:
                    raise IndexMissingError(f"collection {name!r} does not exist in {self.where}",
                                            fix="index documents first: `citeqa index add PATH`")
                self._open_collections()
        except CiteqaError:
            raise
        except Exception as exc:
            raise StoreUnavailableError(f"cannot open collection {name!r} in {self.where} ({exc})",
                                        fix="check the store is not corrupt or used by another program") from None
        stored = self.chunks.metadata or {}
        if (stored.get("embedding_model"), stored.get("embedding_dim")) != (model_name, dim):
            raise IndexMismatchError(
                f"collection {name!r} was built with {stored.get('embedding_model')} "
                f"({stored.get('embedding_dim')}-d), not {model_name} ({dim}-d)",
                fix="use the encoder that built it (the same CITEQA_EMBED_MODEL and CITEQA_EMBED_URL), "
                    "or another --collection")
        self.max_batch = int(getattr(self.client, "get_max_batch_size", lambda: 5000)())

    def _reopen(self) -> None:
        """Drop this process's cached Chroma client and open the collections again from disk."""
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()
        self.client = connect(self.cfg)
        self._open_collections()

    def _open_collections(self) -> None:
        name = self.cfg.collection
        self.chunks = self._guard(self.client.get_collection(name, embedding_function=None))
        self.sents = self._guard(self.client.get_collection(name + _SENTS, embedding_function=None))
        self.docs = self._guard(self.client.get_collection(name + _DOCS, embedding_function=None))

    def _guard(self, col):
        return _Remote(col, self.cfg.chroma_url) if self.cfg.chroma_url else col

    def _col(self, which: str):
        """The chunk or sentence collection, looked up at call time (a retry after `_reopen` sees the new one)."""
        return self.chunks if which == "chunks" else self.sents

    def _read(self, fn):
        """Run a read. When another process wrote to this persistent directory (`citeqa index add` while
        the chat serves), Chroma's cached segments no longer match the files and it raises
        InternalError ("Error finding id"): reopen once from disk and retry."""
        try:
            return fn()
        except Exception as exc:  # chromadb.errors.InternalError; imported lazily like chromadb itself
            if self.cfg.chroma_url or type(exc).__name__ != "InternalError":
                raise
            self._reopen()
            return fn()

    @property
    def where(self) -> str:
        return self.cfg.chroma_url or str(self.cfg.chroma_path)

    # -- manifest ---------------------------------------------------------------------------------
    def documents(self) -> dict[str, DocRecord]:
        got = self.docs.get(where=_MANIFEST, include=["metadatas"])
        return {i: DocRecord.from_meta(i, m or {}) for i, m in zip(got["ids"], got["metadatas"])}

    def ready_shas(self) -> dict[str, str]:
        """doc_id -> committed sha256, for the documents readers may see."""
        return {d.doc_id: d.sha256 for d in self.documents().values() if d.status == "ready"}

    def _put_record(self, rec: DocRecord) -> None:
        self.docs.upsert(ids=[rec.doc_id], embeddings=[[1.0]], metadatas=[rec.meta()], documents=[""])

    def document_text(self, doc_id: str) -> str:
        got = self.docs.get(ids=[doc_id], include=["documents", "metadatas"])
        if not got["ids"]:
            raise IndexMissingError(f"no document {doc_id!r} in collection {self.cfg.collection!r}",
                                    fix="see `citeqa index list` for the indexed documents")
        sha = got["metadatas"][0].get("sha256", "")
        parts = self.docs.get(where=_version(doc_id, sha, "text_of"), include=["documents", "metadatas"])
        if parts["ids"]:
            return "".join(d for _, d in sorted(zip((m["start_char"] for m in parts["metadatas"]), parts["documents"])))
        return got["documents"][0] or ""  # a store written before the text was kept in parts

    # -- writes -----------------------------------------------------------------------------------
    def write_document(self, doc_id: str, source: str, sha256: str, text: str, chunks: list[dict],
                       chunk_vecs: np.ndarray, sents: list[dict], sent_vecs: np.ndarray) -> None:
        """Write one document so that a crash at any point leaves it fully old, fully new, or absent:
        `begin`, one `add_part` with everything, `commit`."""
        old = self.begin(doc_id, source, sha256)
        self.add_part(doc_id, sha256, 0, text, chunks, chunk_vecs, sents, sent_vecs)
        self.commit(doc_id, source, sha256, len(chunks), len(sents), old)

    def begin(self, doc_id: str, source: str, sha256: str) -> DocRecord | None:
        """Step 1 of a write: record `pending=new` in the manifest. Returns the version it replaces."""
        old = self.documents().get(doc_id)
        lease = {"writer": writer_id(), "pending_at": time.time()}
        if old is not None and old.status == "ready":
            self.docs.update(ids=[doc_id], metadatas=[{"pending": sha256, **lease}])
        else:
            self._put_record(DocRecord(doc_id, source, "", 0, 0, "pending", sha256, "", **lease))
        return old

    def add_part(self, doc_id: str, sha256: str, at: int, text: str, chunks: list[dict], chunk_vecs: np.ndarray,
                 sents: list[dict], sent_vecs: np.ndarray) -> None:
        """Step 2, once or in parts: the chunks and sentences of a stretch of the document, and its text
        (which starts at character `at`), tagged with the new sha256; readers do not see them yet. Each
        part renews the writer's lease (`writing`)."""
        self.docs.update(ids=[doc_id], metadatas=[{"pending_at": time.time()}])
        self._add(self.chunks, [record_id(doc_id, sha256, "c", c["chunk_index"]) for c in chunks], chunk_vecs, chunks)
        self._add(self.sents, [record_id(doc_id, sha256, "s", s["pos"]) for s in sents], sent_vecs, sents)
        for i in range(0, len(text), TEXT_PART):
            self.docs.add(ids=[record_id(doc_id, sha256, "t", at + i)], embeddings=[[1.0]], documents=[text[i:i + TEXT_PART]],
                          metadatas=[{"text_of": doc_id, "sha256": sha256, "start_char": at + i}])

    def commit(self, doc_id: str, source: str, sha256: str, chunks: int, sentences: int,
               old: DocRecord | None) -> None:
        """Steps 3 and 4: the manifest points at the new sha256 (readers switch here); the old version goes."""
        stale = old.sha256 if old and old.sha256 and old.sha256 != sha256 else ""
        self._put_record(DocRecord(doc_id, source, sha256, chunks, sentences, "ready", "", stale))
        if stale:
            self._delete_version(doc_id, stale)
            self.docs.update(ids=[doc_id], metadatas=[{"stale": ""}])

    def _add(self, col, ids: list[str], vecs: np.ndarray, items: list[dict]) -> None:
        for i in range(0, len(ids), self.max_batch):
            part = items[i:i + self.max_batch]
            col.add(ids=ids[i:i + self.max_batch], embeddings=vecs[i:i + self.max_batch],
                    documents=[p["text"] for p in part],
                    metadatas=[{k: v for k, v in p.items() if k != "text"} for p in part])

    def _delete_version(self, doc_id: str, sha256: str) -> None:
        where = _version(doc_id, sha256)
        self.chunks.delete(where=where)
        self.sents.delete(where=where)
        self.docs.delete(where=_version(doc_id, sha256, "text_of"))

    def remove(self, doc_id: str) -> DocRecord:
        rec = self.documents().get(doc_id)
        if rec is None:
            raise IndexMissingError(f"no document {doc_id!r} in collection {self.cfg.collection!r}",
                                    fix="see `citeqa index list` for the doc ids")
        self.docs.delete(ids=[doc_id])  # readers stop seeing it at once; records follow
        where = {"doc_id": doc_id}
        self.chunks.delete(where=where)
        self.sents.delete(where=where)
        self.docs.delete(where={"text_of": doc_id})
        return rec

    def recover(self) -> list[str]:
        """Finish or undo writes that a killed process left half done, never one that another writer is
        still making (`writing`: two `index add` against one server). Returns the doc ids touched."""
        touched = []
        for rec in self.documents().values():
            if rec.pending and not writing(rec):
                self._delete_version(rec.doc_id, rec.pending)
                if rec.status != "ready":
                    self.docs.delete(ids=[rec.doc_id])
                else:
                    self.docs.update(ids=[rec.doc_id], metadatas=[{"pending": ""}])
                touched.append(rec.doc_id)
            if rec.stale:
                self._delete_version(rec.doc_id, rec.stale)
                self.docs.update(ids=[rec.doc_id], metadatas=[{"stale": ""}])
                touched.append(rec.doc_id)
        return touched

    # -- reads ------------------------------------------------------------------------------------
    def query(self, which: str, vector: np.ndarray, k: int, shas: dict[str, str],
              docs: list[str] | None = None) -> list[Hit]:
        """Top-k chunks or sentences by cosine similarity, keeping only committed versions, of the
        documents `docs` only when given (a Chroma `where` filter)."""
        # No count() first: Chroma returns fewer hits (or none) when the collection is smaller, and
        # count() cost 16 ms of a 24 ms query at 100k chunks (docs/benchmarks.md).
        where = {"doc_id": {"$in": list(docs)}} if docs else None
        res = self._read(lambda: self._col(which).query(
            query_embeddings=[vector], n_results=k + 8, where=where, include=["documents", "metadatas", "distances"]))
        hits = [Hit(i, d, m, 1.0 - dist) for i, d, m, dist in
                zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0])
                if shas.get(m.get("doc_id")) == m.get("sha256")]
        return hits[:k]

    def get(self, which: str, ids: list[str], embeddings: bool = False) -> list[tuple[Hit, np.ndarray | None]]:
        include = ["documents", "metadatas"] + (["embeddings"] if embeddings else [])
        got = self._read(lambda: self._col(which).get(ids=ids, include=include))
        vecs = got.get("embeddings") if embeddings else None
        out = []
        for j, (i, d, m) in enumerate(zip(got["ids"], got["documents"], got["metadatas"])):
            out.append((Hit(i, d, m), np.asarray(vecs[j], dtype=np.float32) if vecs is not None else None))
        order = {i: n for n, i in enumerate(ids)}
        return sorted(out, key=lambda hv: order[hv[0].id])

    def scan(self, which: str, shas: dict[str, str], embeddings: bool = False,
             page: int = 5000) -> Iterable[tuple[Hit, np.ndarray | None]]:
        """Every committed record of `which` (for building the BM25 index)."""
        include = ["documents", "metadatas"] + (["embeddings"] if embeddings else [])
        offset = 0
        while True:
            got = self._read(lambda: self._col(which).get(include=include, limit=page, offset=offset))
            if not got["ids"]:
                return
            vecs = got.get("embeddings") if embeddings else None
            for j, (i, d, m) in enumerate(zip(got["ids"], got["documents"], got["metadatas"])):
                if shas.get(m.get("doc_id")) == m.get("sha256"):
                    yield Hit(i, d, m), (np.asarray(vecs[j], dtype=np.float32) if vecs is not None else None)
            offset += len(got["ids"])


def _version(doc_id: str, sha256: str, key: str = "doc_id") -> dict:
    """The Chroma filter for one version's records (`key` "text_of" for its text parts)."""
    return {"$and": [{key: doc_id}, {"sha256": sha256}]}

