"""load -> chunk -> embed -> store, incremental by content hash and atomic per document.

>>> report = add([Path("notes")], Config.resolve())       # doctest: +SKIP
>>> report.to_dict()["documents_added"]                    # doctest: +SKIP
1
"""

from __future__ import annotations

import bisect
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from index.chunking import chunk_text, split_sentences
from citeqa.config import Config
from index.embedding import Embedder, ServerEmbedder, embedder_for
from citeqa.errors import UnusableFile
from index.loaders import Document, discover, load_file, unique_id
from index.store import DocRecord, Store

EMBED_GROUP = 256  # sentences embedded together across small documents
# A longer document is prepared, embedded and written one section at a time (cut at a paragraph
# break): memory stays bounded whatever its size, and progress moves within it.
SECTION_CHARS = 1 << 19


@dataclass
class Report:
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    chunks_added: int = 0
    seconds: float = 0.0
    failed: list[dict] = field(default_factory=list)  # [{"path", "error"}]: files that could not be loaded
    renamed: list[dict] = field(default_factory=list)  # [{"path", "doc_id", "taken", "by"}]: see _Ids
    # [{"path", "reason", "fix"}]: every file not indexed (the failed ones too, and what a folder walk
    # passed over: other file types, hidden entries); "reason" completes "PATH ...", "fix" may be ""
    skipped: list[dict] = field(default_factory=list)

    def skip(self, exc: UnusableFile, failed: bool = True) -> None:
        self.skipped.append({"path": exc.path, "reason": exc.reason, "fix": exc.fix})
        if failed:
            self.failed.append({"path": exc.path, "error": str(exc)})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


def open_store(cfg: Config, create: bool = True, embedder: Embedder | ServerEmbedder | None = None
               ) -> tuple[Store, Embedder | ServerEmbedder]:
    """The configured store and its embedder (`embedder`, when given, instead of `embedder_for(cfg)`)."""
    embedder = embedder or embedder_for(cfg)
    store = Store(cfg, embedder.name, embedder.dim, create=create)
    if create:
        store.recover()
    return store, embedder


def sections(text: str, size: int = SECTION_CHARS) -> list[tuple[int, int]]:
    """(start, end) stretches that cover `text`, each at most `size` characters where it can be cut at
    a paragraph break (else a line break, else a space) in its second half.

    >>> sections("Uno dos.\\n\\nTwo two.\\nThree.", size=14)
    [(0, 10), (10, 19), (19, 25)]
    """
    out, lo = [], 0
    while len(text) - lo > size:
        found = ((text.rfind(sep, lo + size // 2, lo + size - len(sep) + 1), sep) for sep in ("\n\n", "\n", " "))
        cut = next((at + len(sep) for at, sep in found if at >= 0), lo + size)
        out.append((lo, cut))
        lo = cut
    return out + [(lo, len(text))]


def prepare(doc: Document, cfg: Config, span: tuple[int, int] | None = None, first: tuple[int, int] = (0, 0)
            ) -> tuple[list[dict], list[dict]]:
    """Chunks and sentences of one document (or of its stretch `span`, a `sections` item, whose first
    chunk and sentence get the positions `first`) as Chroma records (text + metadata with offsets)."""
    lo, hi = span or (0, len(doc.text))
    part = doc.text[lo:hi] if span else doc.text
    chunks = chunk_text(part, cfg.chunk_tokens, cfg.chunk_overlap)
    sentences = split_sentences(part)
    common = {"doc_id": doc.doc_id, "source": doc.source, "sha256": doc.sha256}
    chunk_recs, sent_recs = [], []
    c = 0
    for i, s in enumerate(sentences):
        while c + 1 < len(chunks) and chunks[c].end < s.end:  # first chunk that holds the sentence's end
            c += 1
        page = {"page": doc.page_at(lo + s.start)} if doc.pages else {}  # PDFs: the page the sentence starts on
        sent_recs.append({**common, "text": s.text, "start_char": lo + s.start, "end_char": lo + s.end,
                          "pos": first[1] + i, "chunk": first[0] + c, **page})
    for i, ch in enumerate(chunks):
        chunk_recs.append({**common, "text": ch.text, "start_char": lo + ch.start, "end_char": lo + ch.end,
                           "chunk_index": first[0] + i})
    return chunk_recs, sent_recs


def chunk_vectors(chunks: list[dict], sents: list[dict], sent_vecs: np.ndarray) -> np.ndarray:
    """A chunk's vector is the normalised mean of the vectors of the sentences inside it.

    This embeds every sentence once (no 256-word-piece truncation of long chunks) instead of
    embedding each chunk and each sentence; docs/quality.md measures it against embedding chunks.
    Sentences do not overlap and come in text order, so the ones inside a chunk are a slice found by
    bisection: linear in the document (a scan of every sentence per chunk was quadratic, issue 16).
    """
    starts = [s["start_char"] for s in sents]
    ends = [s["end_char"] for s in sents]
    out = np.zeros((len(chunks), sent_vecs.shape[1]), dtype=np.float32)
    for j, ch in enumerate(chunks):
        lo, hi = bisect.bisect_right(ends, ch["start_char"]), bisect.bisect_left(starts, ch["end_char"])
        v = sent_vecs[lo:hi].mean(axis=0) if hi > lo else np.zeros(sent_vecs.shape[1], np.float32)
        out[j] = v / (np.linalg.norm(v) or 1.0)
    return out


class _Ids:
    """Who holds which document id: the store's documents, then each file of this run as it is claimed.

    The rule (docs/reliability.md, "Document ids"): a source (absolute path) keeps the id it was first
    given. A new source gets the id `discover` proposes (file name, or path inside the added folder);
    when another source holds it, the id gets the source's parent folders in front (`B/notes.txt`)
    and `Report.renamed` says so. A new source with the same content as the document holding its id
    is a copy of it: nothing is added. Nothing is ever replaced by a different source.
    """

    def __init__(self, docs: dict[str, DocRecord]) -> None:
        self.holder = {d.doc_id: (os.path.abspath(d.source), d.sha256) for d in docs.values()}
        self.of_source = {source: doc_id for doc_id, (source, _) in self.holder.items()}

    def claim(self, doc: Document, report: Report) -> Document | None:
        """`doc` under its id, or None when it is a copy of the document that holds its id."""
        doc_id = self.of_source.get(doc.source)
        if doc_id is None:
            by, sha = self.holder.get(doc.doc_id, ("", ""))
            if sha == doc.sha256:
                return None
            doc_id = unique_id(doc.doc_id, doc.source, self.holder)
            if doc_id != doc.doc_id:
                report.renamed.append({"path": doc.source, "doc_id": doc_id, "taken": doc.doc_id, "by": by})
            self.holder[doc_id], self.of_source[doc.source] = (doc.source, doc.sha256), doc_id
        return replace(doc, doc_id=doc_id)


Progress = Callable[[int, int, str], None]


def add(paths: list[Path], cfg: Config, progress: bool | Progress | None = None,
        on_document: Callable[[str, str], None] | None = None) -> Report:
    """Index files and folders. Files not indexed are listed in `Report.skipped` (the bad ones in
    `Report.failed` too); good ones are indexed.

    `progress`: True / False / None (a tqdm bar on stderr when it is a terminal), or a callable
    `progress(done_bytes, total_bytes, path)`, called after each file and each section of a long one,
    with the bytes of the run's files dealt with so far (the chat's progress). `on_document(doc_id,
    "added" | "updated")` is called after each document is committed.
    """
    t0 = time.perf_counter()
    report = Report()
    passed_over: list[UnusableFile] = []
    files = list(discover(paths, passed_over))
    for exc in {e.path: e for e in passed_over}.values():  # once each, when folders overlap
        report.skip(exc, failed=False)
    store, embedder = open_store(cfg)
    known = store.documents()
    ids = _Ids(known)
    bar = _Bar([_size(f) for f, _ in files], progress)
    group: list[tuple[Document, list[dict], list[dict]]] = []

    def written(doc: Document, chunks: int) -> None:
        updated = doc.doc_id in known and known[doc.doc_id].status == "ready"
        report.chunks_added += chunks
        if updated:
            report.documents_updated += 1
        else:
            report.documents_added += 1
        if on_document:
            on_document(doc.doc_id, "updated" if updated else "added")

    def flush() -> None:
        vecs = embedder.encode([s["text"] for _, _, sents in group for s in sents])
        at = 0
        for doc, chunks, sents in group:
            sv = vecs[at:at + len(sents)]
            at += len(sents)
            store.write_document(doc.doc_id, doc.source, doc.sha256, doc.text, chunks,
                                 chunk_vectors(chunks, sents, sv), sents, sv)
            written(doc, len(chunks))
        group.clear()

    def stream(doc: Document, file: Path) -> None:
        """A long document, one section at a time (bounded memory), committed at the end."""
        old, done = store.begin(doc.doc_id, doc.source, doc.sha256), (0, 0)
        for lo, hi in sections(doc.text, SECTION_CHARS):
            chunks, sents = prepare(doc, cfg, (lo, hi), done)
            vecs = embedder.encode([s["text"] for s in sents])
            store.add_part(doc.doc_id, doc.sha256, lo, doc.text[lo:hi], chunks, chunk_vectors(chunks, sents, vecs),
                           sents, vecs)
            done = (done[0] + len(chunks), done[1] + len(sents))
            bar.within(file, hi / len(doc.text))
        store.commit(doc.doc_id, doc.source, doc.sha256, *done, old)
        written(doc, done[0])

    for file, doc_id in files:
        try:
            doc = ids.claim(load_file(file, doc_id=doc_id, max_mb=cfg.max_file_mb), report)
        except UnusableFile as exc:
            report.skip(exc)
            bar.within(file, 1.0)
            continue
        rec = known.get(doc.doc_id) if doc else None
        if doc is None or (rec is not None and rec.status == "ready" and rec.sha256 == doc.sha256):
            report.documents_unchanged += 1
        elif len(doc.text) > SECTION_CHARS:
            if group:
                flush()
            stream(doc, file)
        else:
            chunks, sents = prepare(doc, cfg)
            group.append((doc, chunks, sents))
            if sum(len(s) for _, _, s in group) >= EMBED_GROUP:
                flush()
        bar.within(file, 1.0)
    if group:
        flush()
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Bar:
    """Progress in bytes of the run's files: a tqdm bar and/or the caller's `progress` callable."""

    def __init__(self, sizes: list[int], progress: bool | Progress | None) -> None:
        from tqdm import tqdm

        self.total, self.finished, self.done = sum(sizes), 0, 0
        self.sizes = iter(sizes)
        self.size = 0
        self.callback = progress if callable(progress) else None
        enabled = sys.stderr.isatty() if progress is None else progress is True
        self.tqdm = tqdm(total=self.total, unit="B", unit_scale=True, unit_divisor=1024, desc="indexing",
                         file=sys.stderr, disable=not enabled or (len(sizes) < 2 and self.total < 2**20))
        self.path = None

    def within(self, file: Path, share: float) -> None:
        """`share` (0..1) of `file` is dealt with; files come in the order of `sizes`."""
        if file != self.path:
            self.path, self.finished, self.size = file, self.finished + self.size, next(self.sizes, 0)
        done = self.finished + int(self.size * share)
        if done > self.done:
            self.tqdm.update(done - self.done)
            self.done = done
        if self.callback:
            self.callback(self.done, self.total, str(file))

    def close(self) -> None:
        self.tqdm.close()


def remove(doc_id: str, cfg: Config) -> dict:
    store, _ = open_store(cfg)
    rec = store.remove(doc_id)
    return {"removed": rec.doc_id, "chunks": rec.chunks}


def listing(cfg: Config) -> dict:
    store, embedder = open_store(cfg, create=False)
    docs = sorted(store.documents().values(), key=lambda d: d.doc_id)
    return {"collection": cfg.collection, "embedding_model": embedder.name,
            "documents": [{"doc_id": d.doc_id, "source": d.source, "sha256": d.sha256, "chunks": d.chunks}
                          for d in docs if d.status == "ready"]}


__all__ = ["add", "remove", "listing", "open_store", "prepare", "Report"]
