"""The Gradio chat (app.py): the /chat API over a real launched app, the auth rule, upload safety."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

import app
from index.config import Config
from index.errors import CiteqaError, InputError


@pytest.fixture
def served(indexed: Path):
    """The app launched in-process on a free loopback port over the indexed article; yields its URL."""
    from agent.answer import Agent

    agent = Agent()
    demo = app.build_app(agent)
    port = free_port()
    app.launch(demo, "127.0.0.1", port, block=False, quiet=True)
    yield f"http://127.0.0.1:{port}/", agent
    demo.close()


def test_chat_api_answers_with_citation_markers(served) -> None:
    from gradio_client import Client

    url, _ = served
    client = Client(url, verbose=False, download_files=False)
    answer = client.predict("Who retook the al-Hamdan airbase?", api_name="/chat")
    assert isinstance(answer, str)
    assert "ISIL" in answer and "[1]" in answer
    refusal = client.predict("What is the capital of France?", api_name="/chat")
    assert refusal.startswith("I don't know")
    assert "[1]" not in refusal


def test_chat_errors_are_messages_and_the_app_keeps_serving(served) -> None:
    from gradio_client import Client

    url, agent = served

    class DeadBackend:
        name, model, generative = "openai-compatible", "dead", True

        def rewrite(self, question, history):
            return question

        def draft(self, question, passages):
            from index.errors import BackendUnreachableError

            raise BackendUnreachableError("cannot reach the model server at http://127.0.0.1:9/v1",
                                          fix="start the server or set CITEQA_BASE_URL")
            yield ""  # pragma: no cover

    real, agent.backend = agent.backend, DeadBackend()
    client = Client(url, verbose=False, download_files=False)
    msg = client.predict("Who retook the al-Hamdan airbase?", api_name="/chat")
    assert "cannot reach the model server" in msg and "Traceback" not in msg
    agent.backend = real
    assert "[1]" in client.predict("Who retook the al-Hamdan airbase?", api_name="/chat")


def test_streaming_chat_function_yields_answer_then_sources(indexed: Path) -> None:
    """The ChatInterface function: streamed text, then the answer with its source panels below it."""
    from agent.answer import Agent

    agent = Agent()
    demo = app.build_app(agent)
    respond = demo.chat_interface.fn
    out = list(respond("Who retook the al-Hamdan airbase?", []))
    final = out[-1]
    assert isinstance(final, list) and "\\[1\\]" in final[0].content  # escaped Markdown: shows as [1]
    assert final[0].content.startswith("**ISIL") and "confidence" in final[0].content.split("\n")[0]
    source = final[1]
    assert source.metadata["title"].startswith("[1] isil-retakes-syria-border-town.txt")
    assert "<mark>" in source.content and "ISIL fighters had recaptured the area" in source.content
    refusal = list(respond("What is the capital of France?", []))[-1]
    assert refusal == "I don't know — the indexed documents don't say."


def test_follow_up_passes_the_conversation_to_the_agent(indexed: Path) -> None:
    from agent.answer import Agent

    agent = Agent()
    seen, real = [], agent.stream

    def spy(question, history=None):
        seen.append(history)
        yield from real(question, history)

    agent.stream = spy
    respond = app.build_app(agent).chat_interface.fn
    first = list(respond("Who retook the al-Hamdan airbase?", []))[-1]
    history = [{"role": "user", "content": "Who retook the al-Hamdan airbase?"},
               *({"role": "assistant", "content": m.content, "metadata": m.metadata} for m in first)]
    list(respond("When did they first seize the crossing?", history))
    assert seen[-1] == [{"role": "user", "content": "Who retook the al-Hamdan airbase?"},
                        {"role": "assistant", "content": first[0].content}]


def test_highlight_marks_the_span_inside_its_passage() -> None:
    text = "Alpha beta gamma. " * 20 + "The *key* sentence [x]. " + "Delta epsilon zeta. " * 20
    start = text.index("The *key*")
    out = app.highlight(text, start, start + len("The *key* sentence [x]."))
    assert "<mark>The \\*key\\* sentence \\[x\\].</mark>" in out
    assert out.startswith("…") and out.endswith("…") and 250 < len(out) < 400


def test_history_conversion_keeps_turns_and_drops_sources() -> None:
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Who retook it?"}]},
        {"role": "assistant", "content": "ISIL did [1]."},
        {"role": "assistant", "content": "passage", "metadata": {"title": "[1] doc.txt"}},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/x.png"}}]},
    ]
    assert app.to_history(history) == [{"role": "user", "content": "Who retook it?"},
                                       {"role": "assistant", "content": "ISIL did [1]."}]


def test_non_loopback_host_without_auth_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "app.py"), "--host", "0.0.0.0", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "CITEQA_AUTH" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "chroma").exists()  # refused before touching the index


def test_auth_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    assert app.auth_from_env("127.0.0.1") is None
    with pytest.raises(CiteqaError):
        app.auth_from_env("192.168.1.5")
    monkeypatch.setenv("CITEQA_AUTH", "ann:s3cret:with-colon")
    assert app.auth_from_env("0.0.0.0") == ("ann", "s3cret:with-colon")
    monkeypatch.setenv("CITEQA_AUTH", "no-colon")
    with pytest.raises(CiteqaError):
        app.auth_from_env("127.0.0.1")


@pytest.mark.parametrize("name, expected", [
    ("../../evil.md", "evil.md"),
    ("..\\..\\windows\\evil.MD", "evil.md"),
    ("/etc/passwd.txt", "passwd.txt"),
    ("my report (final).pdf", "my_report_final.pdf"),
    ("..", "upload"),
    (".hidden.txt", "hidden.txt"),
])
def test_safe_name(name: str, expected: str) -> None:
    assert app.safe_name(name) == expected


def test_upload_lands_under_uploads_with_a_safe_name(citeqa_home: Path, tmp_path: Path) -> None:
    cfg = Config.resolve()
    src = tmp_path / "evil.md"
    src.write_text("The Zorblat festival is held every June in Quentown.\n")
    # Gradio hands the app a temp path whose basename is the client's name; simulate a hostile one.
    hostile = tmp_path / "a" / "b"
    hostile.mkdir(parents=True)
    dest = app.save_upload(hostile / ".." / ".." / "evil.md", cfg)
    assert dest == (citeqa_home / "uploads" / "evil.md").resolve()
    assert dest.read_text().startswith("The Zorblat festival")

    (tmp_path / "tool.exe").write_bytes(b"MZ")
    with pytest.raises(InputError, match="not a supported file type"):
        app.save_upload(tmp_path / "tool.exe", cfg)
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (1024 * 1024 + 1))
    with pytest.raises(InputError, match="over the 1 MB limit"):
        app.save_upload(big, cfg.with_(max_file_mb=1))
    assert sorted(p.name for p in (citeqa_home / "uploads").iterdir()) == ["evil.md"]


def test_upload_handler_reports_unsupported_types_readably(indexed: Path, tmp_path: Path) -> None:
    from agent.answer import Agent

    demo = app.build_app(Agent())
    upload = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "upload")
    bad = tmp_path / "tool.exe"
    bad.write_bytes(b"MZ")
    good = tmp_path / "notes.md"
    good.write_text("The Zorblat festival is held every June in Quentown.\n")
    _, status, docs, _ = upload([str(bad), str(good)], progress=lambda *a, **k: None)
    assert "not a supported file type" in status and "upload one of" in status and "Traceback" not in status
    assert "notes.md" in status and "notes.md" in docs


def test_upload_notes_a_renamed_id_and_the_list_says_1_chunk(indexed: Path, tmp_path: Path) -> None:
    """A file uploaded under the name of an indexed document gets another id (`Report.renamed`): the
    note says which, without the other document's server path; one-chunk documents read "1 chunk"."""
    from agent.answer import Agent

    demo = app.build_app(Agent())
    handler = {f.fn.__name__: f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") in ("upload", "remove")}
    same_name = tmp_path / "isil-retakes-syria-border-town.txt"
    same_name.write_text("A different text under the same name.\n")
    _, status, docs, _ = handler["upload"]([str(same_name)], progress=lambda *a, **k: None)
    assert "ℹ️ **isil-retakes-syria-border-town.txt** is indexed as **uploads/isil-retakes-syria-border-town.txt**: " \
           "the id **isil-retakes-syria-border-town.txt** belongs to another document" in status
    assert str(app.ROOT) not in status and str(indexed) not in status
    assert "**uploads/isil-retakes-syria-border-town.txt** — 1 chunk\n" in docs
    note, docs, _ = handler["remove"]("uploads/isil-retakes-syria-border-town.txt")
    assert note == "Removed **uploads/isil-retakes-syria-border-town.txt** (1 chunk)."
