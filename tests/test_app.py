"""The Gradio chat (app.py): the /chat API over a real launched app, the handlers called directly (`app.Chat`
and the module-level ones, no UI), the auth rule, upload safety."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from tests.conftest import ROOT, FunctionBackend, free_port

import app
from citeqa.config import Config
from citeqa.errors import BackendUnreachableError, CiteqaError, InputError


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

    def unreachable(question, passages):
        raise BackendUnreachableError("cannot reach the model server at http://127.0.0.1:9/v1",
                                      fix="start the server or set CITEQA_BASE_URL")

    real, agent.backend = agent.backend, FunctionBackend(unreachable)
    client = Client(url, verbose=False, download_files=False)
    msg = client.predict("Who retook the al-Hamdan airbase?", api_name="/chat")
    assert "cannot reach the model server" in msg and "Traceback" not in msg
    agent.backend = real
    assert "[1]" in client.predict("Who retook the al-Hamdan airbase?", api_name="/chat")


def test_chat_turn_renders_escaped_answer_links_and_sources(indexed: Path) -> None:
    """`Chat.reply` answers (the extractive answer at once, no draft pieces); `Chat.render` shows it: the
    short answer in bold, [n] as a link to the viewer, the time it took, and one escaped source panel each."""
    from agent.answer import Agent

    chat = app.Chat(Agent())
    out = list(chat.reply("Who retook the al-Hamdan airbase?", []))
    assert len(out) == 1 and out[0]["answer"]["citations"], out  # no draft shown for the extractive backend
    turn = out[0]
    assert "source" not in turn["answer"]["citations"][0]  # kept in the browser: no server paths
    shown = chat.render([{"role": "user", "content": "Who <b>retook</b> it?"}, turn])
    assert shown[0] == {"role": "user", "content": "Who &lt;b&gt;retook&lt;/b&gt; it?"}
    body = shown[1]["content"]
    assert body.startswith("<p><strong>ISIL") and "confidence" in body
    assert '<a class="citeqa-cite" href="#citeqa-cite-1-1"' in body and "answered in " in body
    source = shown[2]
    assert source["metadata"]["title"].startswith("[1] isil-retakes-syria-border-town.txt")
    assert "<mark>" in source["content"] and "ISIL fighters had recaptured the area" in source["content"]
    refusal = list(chat.reply("What is the capital of France?", []))[-1]
    assert refusal["content"] == "I don't know — the indexed documents don't say." and refusal["answer"]["refused"]
    assert "<a " not in chat.render([refusal])[0]["content"]


def test_hostile_document_text_is_escaped_in_panels_and_viewer(citeqa_home: Path, tmp_path: Path) -> None:
    """HTML and Markdown inside a document are shown as text in the source panel and the viewer."""
    from agent.answer import Agent
    from index import ingest

    doc = tmp_path / "hostile.md"
    doc.write_text("# Quentown\n\nThe <b>Zorblat</b> festival <img src=x onerror=alert(1)> is held every **June** "
                   "in [Quentown](http://evil.example).\n\n1887. [1] The lighthouse was built.\n")
    ingest.add([doc], Config.resolve(), progress=False)
    chat = app.Chat(Agent())
    turn = list(chat.reply("When is the Zorblat festival held?", []))[-1]
    assert not turn["answer"]["refused"], turn
    shown = chat.render([{"role": "user", "content": "When?"}, turn])
    html = "".join(m["content"] + m.get("metadata", {}).get("title", "") for m in shown)
    assert "<b>" not in html and "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    viewer = chat.open_source("1-1", [{"role": "user", "content": "When?"}, turn])
    assert '<mark id="citeqa-hit">' in viewer and "<img" not in viewer and "&lt;b&gt;Zorblat&lt;/b&gt;" in viewer
    assert "[Quentown](http://evil.example)" in viewer  # Markdown shown as typed, not a link


def test_generative_answer_streams_as_the_server_sends(indexed: Path, model_server, monkeypatch) -> None:
    """openai-compatible: the draft grows piece by piece as the server's events arrive (0.15 s apart), then
    the verified answer with its citations comes last."""
    from tests.test_agent import cite_passage_with, use_server

    from agent.answer import Agent, Answer

    claim = "ISIL fighters recaptured the airbase area on Wednesday afternoon after a counter-attack"
    server = model_server(cite_passage_with("recaptured the area", claim), chunk_delay=0.15)
    use_server(monkeypatch, "openai-compatible", {}, server.url)
    agent = Agent()
    seen = []
    for item in agent.stream("Who retook the al-Hamdan airbase?"):
        seen.append((time.perf_counter(), item))
    pieces = [(t, x) for t, x in seen if isinstance(x, str)]
    answer = seen[-1][1]
    assert isinstance(answer, Answer) and not answer.refused and answer.citations
    assert "".join(x for _, x in pieces) == f"{claim} [1]."
    assert len(pieces) >= 6 and pieces[-1][0] - pieces[0][0] > 0.15 * (len(pieces) - 2)  # as they arrived
    drafts = [x for x in app.Chat(agent).reply("Who retook the al-Hamdan airbase?", []) if isinstance(x, str)]
    assert len(drafts) >= 6 and all(b.startswith(a) for a, b in zip(drafts, drafts[1:]))  # growing text
    assert drafts[-1] == f"{claim} [1]."


def test_follow_up_passes_the_conversation_and_scope_to_the_agent(indexed: Path) -> None:
    from agent.answer import Agent

    agent = Agent()
    seen, real = [], agent.stream

    def spy(question, history=None, docs=None):
        seen.append((history, docs))
        yield from real(question, history, docs)

    agent.stream = spy
    chat = app.Chat(agent)
    first = list(chat.reply("Who retook the al-Hamdan airbase?", []))[-1]
    turns = [{"role": "user", "content": "Who retook the al-Hamdan airbase?"}, first,
             {"role": "user", "content": "x"}, {"role": "assistant", "content": "⚠️ failed", "error": True}]
    list(chat.reply("And near al-Qaim?", turns, ["isil-retakes-syria-border-town.txt"]))
    assert seen[-1] == ([{"role": "user", "content": "Who retook the al-Hamdan airbase?"},
                         {"role": "assistant", "content": first["content"]}, {"role": "user", "content": "x"}],
                        ["isil-retakes-syria-border-town.txt"])
    assert seen[0][1] is None  # no filter: every document


def test_ask_shows_a_draft_bubble_then_stores_the_answered_turn(indexed: Path) -> None:
    """`Chat.ask` (the chat event, outputs chatbot / stored turns / input box): the question and an empty draft
    bubble at once with the box cleared, then the rendered conversation and the turns to keep; stored turns
    that are not dicts are dropped; a blank question changes nothing. `Chat.chat` is the /chat API's answer."""
    from agent.answer import Agent
    from citeqa import chat_html

    chat, skip = app.Chat(Agent()), gr.skip()
    frames = list(chat.ask("Who retook the al-Hamdan airbase?", [{"role": "user", "content": "<i>earlier</i>"}, 5], None))
    assert len(frames) == 2  # extractive: no draft pieces between
    shown, turns, box = frames[0]
    assert shown == [{"role": "user", "content": "&lt;i&gt;earlier&lt;/i&gt;"},
                     {"role": "user", "content": "Who retook the al-Hamdan airbase?"},
                     {"role": "assistant", "content": chat_html.draft_html("")}]
    assert turns == skip and box == ""
    shown, turns, box = frames[1]
    assert [t["role"] for t in turns] == ["user", "user", "assistant"] and turns[-1]["answer"]["citations"]
    assert shown == chat.render(turns) and "ISIL" in shown[2]["content"] and box == skip
    assert list(chat.ask("   ", turns, None)) == [(skip, skip, skip)]
    answer = chat.chat("Who retook the al-Hamdan airbase?", [{"role": "user", "content": "x", "error": True}])
    assert "ISIL" in answer and "[1]" in answer


def test_handlers_run_only_for_a_logged_in_user_when_a_login_is_set(citeqa_home: Path) -> None:
    """With the Blocks' `auth` set (as `launch` does), ask / upload / remove do nothing for a request
    without a user name; without a login, or for a logged-in user, they run."""
    asked = []
    agent = SimpleNamespace(config=Config.resolve(), stream=lambda *a, **k: asked.append(a) or iter(()))
    locked = app.Chat(agent, blocks=SimpleNamespace(auth=[("ann", "pw")]))
    anon, ann, skip = SimpleNamespace(username=None), SimpleNamespace(username="ann"), gr.skip()
    assert list(locked.ask("q", [], None, request=anon)) == [(skip, skip, skip)] and not asked
    assert locked.remove(["doc"], request=anon) == (skip, skip, skip)
    assert locked.upload(["x.md"], progress=lambda *a, **k: None, request=anon) == (skip, skip, skip, skip)
    assert not (citeqa_home / "chroma").exists()  # nothing was opened
    assert not locked.logged_in(anon) and locked.logged_in(ann)
    note, _, _ = locked.remove(["doc"], request=ann)  # runs: the store says there is no such document
    assert note.startswith("⚠️ Couldn't answer:") and "What to do:" in note
    list(locked.ask("q", [], None, request=ann))
    assert asked == [("q",)]
    for open_door in (app.Chat(agent), app.Chat(agent, blocks=SimpleNamespace(auth=None))):
        assert open_door.logged_in(anon)


def test_document_list_filter_and_remove_handlers(indexed: Path) -> None:
    """`Chat.documents` lists what is indexed and fills the remove list; `Chat.scope_choices` keeps the
    filter's picks that are still indexed; `Chat.remove` takes one id or several and refreshes both."""
    doc = "isil-retakes-syria-border-town.txt"
    chat = app.Chat(SimpleNamespace(config=Config.resolve()))  # these handlers use only the settings
    assert chat.documents() == (f"- **{doc}** — 5 chunks\n\n<small>1 document, 5 chunks</small>",
                                gr.update(choices=[doc], value=[]))
    assert chat.scope_choices([doc, "gone.txt"]) == gr.update(choices=[doc], value=[doc])
    assert chat.remove([]) == ("Pick the documents to remove first.", *chat.documents())
    note, table, choices = chat.remove(doc)
    assert note == f"Removed **{doc}** (5 chunks)."
    assert table == "*No documents yet. Upload some above.*" and choices == gr.update(choices=[], value=[])
    assert chat.scope_choices([doc]) == gr.update(choices=[], value=[])
    note, _, _ = chat.remove([doc])
    assert note.startswith("⚠️ Couldn't answer:") and doc in note and "What to do:" in note


def test_confirm_remove_names_what_would_go_and_example_fills_the_box() -> None:
    hidden = gr.update(visible="hidden")
    assert app.confirm_remove([]) == app.confirm_remove(None) == (hidden, "Pick the documents to remove first.")
    assert app.confirm_remove(["a.md"]) == (gr.update(visible=True), "Remove 1 document from the index: **a.md**?")
    assert app.confirm_remove(["a.md", "*b*.txt"])[1] == "Remove 2 documents from the index: **a.md**, **\\*b\\*.txt**?"
    assert app.hide() == hidden and app.new_conversation() == []
    assert app.example(SimpleNamespace(value={"text": "Who retook it?"})) == "Who retook it?"


def test_main_takes_host_port_and_login_from_the_config(indexed: Path, monkeypatch, capsys) -> None:
    """`--host/--port` override CITEQA_HOST/CITEQA_PORT (through `Config.resolve`); the login is CITEQA_AUTH's;
    a bad setting is a message and exit status 2."""
    seen = []
    monkeypatch.setattr(app, "launch", lambda demo, host, port, auth, **kw: seen.append((host, port, auth)))
    monkeypatch.setattr(app, "build_app", lambda agent: None)
    monkeypatch.setenv("CITEQA_HOST", "0.0.0.0")
    monkeypatch.setenv("CITEQA_PORT", "7999")
    monkeypatch.setenv("CITEQA_AUTH", "ann:pw")
    assert app.main([]) == 0 and app.main(["--port", "8001", "--host", "127.0.0.1"]) == 0
    assert seen == [("0.0.0.0", 7999, ("ann", "pw")), ("127.0.0.1", 8001, ("ann", "pw"))]
    assert "serving on http://127.0.0.1:8001 (extractive)" in capsys.readouterr().err
    monkeypatch.setenv("CITEQA_PORT", "eighty")
    assert app.main([]) == 2 and len(seen) == 2
    err = capsys.readouterr().err
    assert "CITEQA_PORT='eighty' is not a valid int" in err and "Traceback" not in err


def test_a_stored_conversation_that_cannot_be_shown_starts_empty(indexed: Path) -> None:
    from agent.answer import Agent

    restore = app.Chat(Agent()).restore
    assert restore([{"role": "assistant", "content": "x", "answer": {"citations": [{"n": 1}]}}]) == []
    assert restore([{"role": "user", "content": "<i>q</i>"}, 7]) == [{"role": "user", "content": "&lt;i&gt;q&lt;/i&gt;"}]


def test_excerpt_marks_the_span_inside_its_passage() -> None:
    from citeqa.chat_html import excerpt_html

    text = "Alpha beta gamma. " * 20 + "The *key* <i>sentence</i> [x]. " + "Delta epsilon zeta. " * 20
    start = text.index("The *key*")
    out = excerpt_html(text, start, start + len("The *key* <i>sentence</i> [x]."))
    assert "<mark>The *key* &lt;i&gt;sentence&lt;/i&gt; [x].</mark>" in out
    assert out.startswith("…") and out.endswith("…") and 250 < len(out) < 420


def test_citation_links_name_a_stored_citation_only() -> None:
    turns = [{"role": "user", "content": "q"},
             {"role": "assistant", "content": "a", "answer": {"citations": [{"n": 1, "doc_id": "d"}]}}]
    assert app.citation_of("1-1", turns) == {"n": 1, "doc_id": "d"}
    assert app.citation_of("1-2", turns) is None and app.citation_of("0-1", turns) is None
    assert app.citation_of("9-1", turns) is None and app.citation_of("<script>", turns) is None


def test_markdown_panels_escape_everything_that_would_render() -> None:
    from citeqa.chat_html import md_escape

    assert md_escape("- item\n= h\n1887. x") == "\\- item\n\\= h\n1887\\. x"
    assert md_escape("see http://a.b and www.c.d $$x$$") == "see http\\://a.b and www\\.c.d \\$\\$x\\$\\$"


def test_non_loopback_host_without_auth_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "app.py"), "--host", "0.0.0.0", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "CITEQA_AUTH" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "chroma").exists()  # refused before touching the index


def test_auth_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    assert app.auth_of(Config.resolve()) is None  # 127.0.0.1 by default
    assert app.auth_of(Config.resolve(host="::1")) is None
    with pytest.raises(CiteqaError, match="refusing to serve on 192.168.1.5 without a login"):
        app.auth_of(Config.resolve(host="192.168.1.5"))
    monkeypatch.setenv("CITEQA_AUTH", "ann:s3cret:with-colon")
    monkeypatch.setenv("CITEQA_HOST", "0.0.0.0")
    assert app.auth_of(Config.resolve()) == ("ann", "s3cret:with-colon")
    monkeypatch.setenv("CITEQA_AUTH", "no-colon")
    with pytest.raises(CiteqaError, match="CITEQA_AUTH must look like user:password"):
        app.auth_of(Config.resolve(host="127.0.0.1"))
    with pytest.raises(CiteqaError, match="CITEQA_AUTH must look like user:password"):
        app.auth_of(Config.resolve(auth=":pw"))


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

    upload = app.Chat(Agent()).upload
    bad = tmp_path / "tool.exe"
    bad.write_bytes(b"MZ")
    good = tmp_path / "notes.md"
    good.write_text("The Zorblat festival is held every June in Quentown.\n")
    seen = []
    _, status, docs, _ = upload([str(bad), str(good)], progress=lambda *a, **k: seen.append((a[0], k.get("desc"))))
    assert "not a supported file type" in status and "upload one of" in status and "Traceback" not in status
    assert "notes.md" in status and "notes.md" in docs
    assert seen[-1][0] == pytest.approx(1.0) and seen[-1][1] == "indexing notes.md"  # ingest's byte progress


def test_upload_notes_a_renamed_id_and_the_list_says_1_chunk(indexed: Path, tmp_path: Path) -> None:
    """A file uploaded under the name of an indexed document gets another id (`Report.renamed`): the
    note says which, without the other document's server path; one-chunk documents read "1 chunk"."""
    from agent.answer import Agent

    chat = app.Chat(Agent())
    handler = {"upload": chat.upload, "remove": chat.remove}
    same_name = tmp_path / "isil-retakes-syria-border-town.txt"
    same_name.write_text("A different text under the same name.\n")
    _, status, docs, _ = handler["upload"]([str(same_name)], progress=lambda *a, **k: None)
    assert "ℹ️ **isil-retakes-syria-border-town.txt** is indexed as **uploads/isil-retakes-syria-border-town.txt**: " \
           "the id **isil-retakes-syria-border-town.txt** belongs to another document" in status
    assert str(Path(app.__file__).resolve().parent) not in status and str(indexed) not in status
    assert "**uploads/isil-retakes-syria-border-town.txt** — 1 chunk\n" in docs
    note, docs, _ = handler["remove"](["uploads/isil-retakes-syria-border-town.txt", "isil-retakes-syria-border-town.txt"])
    assert note == "Removed **uploads/isil-retakes-syria-border-town.txt** (1 chunk).\n\n" \
                   "Removed **isil-retakes-syria-border-town.txt** (5 chunks)."
    assert docs.startswith("*No documents yet")


@pytest.fixture
def served_with_login(indexed: Path):
    """The app launched with a login (ann / right-password) and a short lockout; yields (URL, demo)."""
    from agent.answer import Agent

    demo = app.build_app(Agent())
    port = free_port()
    app.launch(demo, "127.0.0.1", port, auth=("ann", "right-password"), block=False, quiet=True,
               login_limit={"max_failures": 3, "lockout_s": 2.0, "delay_s": 0.1})
    yield f"http://127.0.0.1:{port}", demo
    demo.close()


def test_failed_logins_lock_the_client_out_then_expire(served_with_login) -> None:
    import httpx

    url, _ = served_with_login
    with httpx.Client(base_url=url, timeout=30) as http:
        codes = []
        for _ in range(3):
            t0 = time.perf_counter()
            codes.append(http.post("/login", data={"username": "ann", "password": "wrong"}).status_code)
        assert codes == [400, 400, 400] and time.perf_counter() - t0 >= 0.25  # the third waited 0.3 s
        locked = http.post("/login", data={"username": "ann", "password": "right-password"})
        assert locked.status_code == 429 and "Too many failed logins" in locked.json()["detail"]
        assert int(locked.headers["retry-after"]) >= 1
        time.sleep(2.1)
        ok = http.post("/login", data={"username": "ann", "password": "right-password"})
        assert ok.status_code == 200 and ok.json() == {"success": True}
        # a success clears the count: two more failures do not lock
        assert [http.post("/login", data={"username": "ann", "password": "x"}).status_code for _ in range(2)] == [400, 400]
        assert http.post("/login", data={"username": "ann", "password": "right-password"}).status_code == 200


def test_upload_and_remove_are_unreachable_through_the_queue_without_login(served_with_login, tmp_path) -> None:
    """/gradio_api/queue/join with the private upload / remove handlers: 401 without the login cookie;
    with it, the remove handler runs (the document goes)."""
    import httpx

    from index import ingest

    url, demo = served_with_login
    index = {f.fn.__name__: i for i, f in demo.fns.items() if getattr(f.fn, "__name__", "") in ("upload", "remove", "documents")}
    doc = "isil-retakes-syria-border-town.txt"
    indexed_ids = lambda: [d["doc_id"] for d in ingest.listing(Config.resolve())["documents"]]  # noqa: E731

    def join(http, name: str, data: list) -> int:
        """Queue a call of handler `name`; when accepted, wait for it to finish. Returns the join status."""
        r = http.post("/gradio_api/queue/join", json={"data": data, "fn_index": index[name], "session_hash": "s1",
                                                      "event_data": None, "trigger_id": None})
        if r.status_code == 200:
            with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": "s1"}) as events:
                next(line for line in events.iter_lines() if '"process_completed"' in line)
        return r.status_code

    with httpx.Client(base_url=url, timeout=60) as anon:
        assert join(anon, "remove", [[doc]]) == 401
        assert join(anon, "upload", [[{"path": str(tmp_path / "x.txt"), "meta": {"_type": "gradio.FileData"}}]]) == 401
    assert doc in indexed_ids()
    with httpx.Client(base_url=url, timeout=60) as user:
        assert user.post("/login", data={"username": "ann", "password": "right-password"}).status_code == 200
        assert join(user, "documents", []) == 200  # what the page does on load: fills the remove list
        assert join(user, "remove", [[doc]]) == 200
    assert doc not in indexed_ids()
