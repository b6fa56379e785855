"""The citeqa web chat: `python app.py [--port N] [--host H]` (see docs/chat.md).

A thin Gradio shell over `agent.answer.Agent` and `index.ingest`: it streams answers, links each
`[n]` to a viewer showing the cited span in its document, keeps the conversation in the browser, and
lets you upload, list and remove documents. No answering logic lives here; every shown text is
escaped by `citeqa.chat_html`. The handlers are module level (`Chat`'s methods, and plain functions
where they need no state); `build_app` only lays out the components and wires them.

Binds to 127.0.0.1 by default; any other host requires CITEQA_AUTH=user:password.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
import unicodedata
from pathlib import Path
from typing import Any, Iterator

from citeqa import BUNDLED_ARTICLE as ARTICLE, chat_html, plural
from citeqa.chat_html import md_escape
from citeqa.login_limit import LoginLimit
from citeqa.config import Config
from citeqa.errors import CiteqaError, ConfigError, IndexMissingError, InputError
from index.loaders import SUFFIXES

import gradio as gr

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
EXAMPLES = ["Who retook the al-Hamdan airbase?", "When did ISIL first seize the border crossing?",
            "How many people died in the attack?"]
log = logging.getLogger("citeqa.app")

CSS = """
.gradio-container { max-width: 1280px !important; margin: 0 auto; }
#citeqa-header h1 { margin-bottom: 0; }
#citeqa-header p { margin-top: 2px; color: var(--body-text-color-subdued); }
#citeqa-panel { border-left: 1px solid var(--border-color-primary); padding-left: 16px; }
#citeqa-panel .prose h3 { margin: 4px 0 2px; }
#citeqa-docs table { font-size: 0.9em; width: 100%; }
mark { background: #fde68a; color: #1c1917; padding: 0 2px; border-radius: 3px; }
.dark mark { background: #854d0e; color: #fefce8; }
.citeqa-hidden { display: none !important; }
#citeqa-chat .citeqa-time, #citeqa-chat .citeqa-source-meta, .citeqa-note {
  font-size: 0.8em; color: var(--body-text-color-subdued); margin: 4px 0 0; }
#citeqa-chat a.citeqa-cite { text-decoration: none; font-weight: 600; }
#citeqa-viewer .citeqa-doc { max-height: 360px; overflow-y: auto; padding: 8px 10px; line-height: 1.5;
  border: 1px solid var(--border-color-primary); border-radius: 6px; font-size: 0.92em; }
"""

# Page script: a click on a citation link ([n], "show in the document") asks the server for the viewer
# through a hidden textbox ("turn-n") and a hidden button.
PAGE_JS = """() => {
  document.addEventListener('click', (e) => {
    const a = e.target.closest && e.target.closest('a.citeqa-cite');
    if (!a) return;
    e.preventDefault(); e.stopPropagation();
    const key = (a.getAttribute('href') || '').replace('#citeqa-cite-', '');
    const box = document.querySelector('#citeqa-open textarea, #citeqa-open input');
    if (!box) return;
    box.value = key;
    box.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => document.querySelector('#citeqa-open-btn').click(), 0);
  }, true);
}"""
SCROLL_TO_HIT = """() => { const m = document.querySelector('#citeqa-viewer #citeqa-hit');
  if (m) { m.scrollIntoView({block: 'center'}); } }"""


# -- helpers (pure; tested directly) ----------------------------------------------------------------

def safe_name(name: str) -> str:
    """A file name safe to create under uploads/: basename only, no traversal, a short plain charset."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFKC", str(name)))[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = stem[:100].strip("._-") or "upload"
    return f"{stem}.{suffix.lower()}" if suffix else stem


def save_upload(src: str | Path, cfg: Config) -> Path:
    """Copy one uploaded file into $CITEQA_HOME/uploads/ under a safe name; check its type and size."""
    src = Path(src)
    name = safe_name(src.name)
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{src.name!r} is not a supported file type ({suffix or 'no extension'})",
                         fix=f"upload one of: {', '.join(SUFFIXES)}")
    try:
        size = src.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read the upload {src.name!r}: {exc.strerror}", fix="upload it again") from None
    if size > cfg.max_file_mb * 1024 * 1024:
        raise InputError(f"{src.name!r} is {size / 2**20:.1f} MB, over the {cfg.max_file_mb} MB limit",
                         fix="split it into smaller files, or raise CITEQA_MAX_FILE_MB")
    folder = (cfg.home / "uploads").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    dest = (folder / name).resolve()
    if dest.parent != folder:  # belt and braces: safe_name never yields a separator
        raise InputError(f"refusing the upload name {src.name!r}", fix="rename the file")
    shutil.copyfile(src, dest)
    return dest


def to_history(turns: list[dict] | None) -> list[dict]:
    """The chat's stored turns -> [{"role", "content"}] for the agent; error messages are dropped."""
    return [{"role": t["role"], "content": t["content"]} for t in turns or []
            if isinstance(t, dict) and t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str)
            and t["content"].strip() and not t.get("error")]


def answer_turn(answer: Any) -> dict:
    """What the chat keeps of an `Answer` (in the browser, so no server paths): text, short answer,
    confidence, timing and the citations' spans."""
    keep = ("n", "doc_id", "start_char", "end_char", "text", "score", "page")
    return {"role": "assistant", "content": answer.answer, "answer": {
        "answer": answer.answer, "short_answer": answer.short_answer, "refused": answer.refused,
        "confidence": answer.confidence, "latency_ms": answer.latency_ms,
        "citations": [{k: getattr(c, k) for k in keep} for c in answer.citations]}}


def citation_of(key: str, turns: list[dict]) -> dict | None:
    """The citation a link names ("TURN-N", as in chat_html.LINK), or None when it names none.

    >>> citation_of("1-2 17000", [{}, {"answer": {"citations": [{"n": 1}, {"n": 2}]}}])
    {'n': 2}
    """
    m = re.match(r"(\d+)-(\d+)\b", key or "")
    if not m or int(m[1]) >= len(turns or []):
        return None
    cites = ((turns[int(m[1])] or {}).get("answer") or {}).get("citations") or []
    return next((c for c in cites if isinstance(c, dict) and c.get("n") == int(m[2])), None)


def error_text(exc: BaseException, cfg: Config | None = None) -> str:
    """A readable message for an error (plain text); never a traceback, never a secret."""
    if isinstance(exc, CiteqaError):
        msg = f"⚠️ Couldn't answer: {exc.message}."
        if exc.fix:
            msg += f" What to do: {exc.fix}."
    else:
        msg = (f"⚠️ Something went wrong ({type(exc).__name__}). The app is still running; "
               "details are in the server log.")
    for secret in cfg.secrets if cfg is not None else []:
        msg = msg.replace(secret, "***")
    return msg


# -- the handlers (module level; build_app only wires them) -----------------------------------------

def example(evt: gr.SelectData) -> str:
    """An example question clicked under the chat -> the input box."""
    return evt.value["text"]


def confirm_remove(doc_ids: list[str] | None) -> tuple[Any, Any]:
    """Ask before removing: the confirmation row names what would go."""
    if not doc_ids:
        return gr.update(visible="hidden"), "Pick the documents to remove first."
    names = ", ".join(f"**{md_escape(d)}**" for d in doc_ids)
    return gr.update(visible=True), f"Remove {plural(len(doc_ids), 'document')} from the index: {names}?"


def hide() -> Any:
    """Hide a component (the removal's confirmation row)."""
    return gr.update(visible="hidden")


def new_conversation() -> list[dict]:
    """The stored turns after the chat's bin icon: none."""
    return []


class Chat:
    """The handlers that need the agent, as methods over what they share: the agent (its store, backend
    and settings) and the Blocks serving them, whose `auth` (set by `launch`) says whether a login is
    required (`blocks=None`: no login). They need no UI, so they can be called directly:

        chat = Chat(Agent())
        turn = list(chat.reply("Who retook the al-Hamdan airbase?", []))[-1]  # the assistant turn
        chat.render([{"role": "user", "content": "Who retook it?"}, turn])   # the chatbot's messages
        chat.upload(["notes.md"], progress=lambda *a, **k: None)            # (files, status, list, pick)
    """

    def __init__(self, agent: Any, blocks: gr.Blocks | None = None) -> None:
        self.agent, self.blocks = agent, blocks
        self.cfg: Config = agent.config

    def logged_in(self, request: gr.Request | None) -> bool:
        """With a login configured, a handler runs only for a logged-in user (Gradio's queue checks it too)."""
        login = self.blocks is not None and bool(self.blocks.auth)
        return not login or request is None or bool(getattr(request, "username", None))

    def document_text(self, doc_id: str, texts: dict) -> str | None:
        """The document's text (None when the store cannot give it), cached in `texts`."""
        if doc_id not in texts:
            try:
                texts[doc_id] = self.agent.store.document_text(doc_id)
            except CiteqaError:
                texts[doc_id] = None
        return texts[doc_id]

    def render(self, turns: list[dict]) -> list[dict]:
        """The chatbot's messages for the stored turns: escaped questions, answers with [n] links, and one
        source panel per citation ([1] open, the rest collapsed)."""
        shown, texts = [], {}
        for i, t in enumerate(turns or []):
            if not isinstance(t, dict) or not isinstance(t.get("content"), str):
                continue
            if t.get("role") == "user":
                shown.append({"role": "user", "content": chat_html.esc(t["content"])})
            elif "answer" in t:
                shown.append({"role": "assistant", "content": chat_html.answer_html(t["answer"], i)})
                for c in t["answer"]["citations"]:
                    shown.append({"role": "assistant", "content": chat_html.source_html(
                        c, i, self.document_text(c["doc_id"], texts)), "metadata": {
                        "title": chat_html.source_title(c), **({} if c["n"] == 1 else {"status": "done"})}})
            else:
                shown.append({"role": "assistant", "content": chat_html.esc(t["content"])})
        return shown

    def restore(self, turns: list[dict]) -> list[dict]:
        """The stored conversation on page load; one this version cannot show starts the chat empty."""
        try:
            return self.render(turns)
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("the stored conversation could not be shown; starting a new one")
            return []

    def reply(self, message: str, turns: list[dict], docs: list[str] | None = None) -> Iterator[str | dict]:
        """Answer one question: yields the draft so far while a generative backend writes it, then the
        assistant turn (`answer_turn`, or an error message)."""
        from agent.answer import Answer

        draft = ""
        try:
            for item in self.agent.stream(message, history=to_history(turns), docs=docs or None):
                if isinstance(item, Answer):
                    yield answer_turn(item)
                    return
                draft += item
                if self.agent.backend.generative:  # the extractive draft is the answer: shown once verified
                    yield draft
        except Exception as exc:  # noqa: BLE001 — shown as a message; the app keeps serving
            if not isinstance(exc, CiteqaError):
                log.exception("chat failed")
            yield {"role": "assistant", "content": error_text(exc, self.cfg), "error": True}

    def ask(self, message: str, turns: list[dict], docs: list[str] | None, request: gr.Request = None):
        """The chat event: outputs (chatbot, stored turns, input box)."""
        if not self.logged_in(request) or not (message or "").strip():
            yield gr.skip(), gr.skip(), gr.skip()
            return
        turns = [t for t in turns or [] if isinstance(t, dict)] + [{"role": "user", "content": message}]
        shown = self.render(turns)
        yield shown + [{"role": "assistant", "content": chat_html.draft_html("")}], gr.skip(), ""
        for item in self.reply(message, turns[:-1], docs):
            if isinstance(item, str):
                yield shown + [{"role": "assistant", "content": chat_html.draft_html(item)}], gr.skip(), gr.skip()
            else:
                turns.append(item)
                yield self.render(turns), turns, gr.skip()

    def chat(self, message: str, history: list[dict] | None = None) -> str:
        """Answer one question; returns the verified answer text with its [n] markers."""
        try:
            return self.agent.ask(message, history=to_history(history)).answer
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, CiteqaError):
                log.exception("chat failed")
            return error_text(exc, self.cfg)

    def open_source(self, key: str, turns: list[dict]) -> str:
        """The viewer for a clicked citation link ("TURN-N"): the cited span in its document."""
        c = citation_of(key, turns)
        if c is None:
            return chat_html.VIEWER_EMPTY
        return chat_html.viewer_html(c, self.document_text(c["doc_id"], {}))

    def documents(self) -> tuple[str, Any]:
        """The indexed documents' list (Markdown) and the remove dropdown's choices."""
        from index import ingest

        try:
            docs = ingest.listing(self.cfg)["documents"]
        except IndexMissingError:
            docs = []
        except CiteqaError as exc:
            return md_escape(error_text(exc, self.cfg)), gr.update(choices=[], value=[])
        if not docs:
            table = "*No documents yet. Upload some above.*"
        else:
            rows = "\n".join(f"- **{md_escape(d['doc_id'])}** — {plural(d['chunks'], 'chunk')}" for d in docs)
            total = sum(d["chunks"] for d in docs)
            table = f"{rows}\n\n<small>{plural(len(docs), 'document')}, {plural(total, 'chunk')}</small>"
        ids = [d["doc_id"] for d in docs]
        return table, gr.update(choices=ids, value=[])

    def scope_choices(self, picked: list[str] | None) -> Any:
        """The document filter's choices after the list changed; picks still indexed stay picked."""
        _, update = self.documents()
        ids = update.get("choices") or []
        return gr.update(choices=ids, value=[d for d in picked or [] if d in ids])

    def upload(self, files: list[str] | None, progress=gr.Progress(),
               request: gr.Request = None) -> tuple[Any, str, str, Any]:
        """Save and index uploaded files: outputs (the file box, emptied; the notes; the list; its choices)."""
        from index import ingest

        if not self.logged_in(request):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        cfg, files = self.cfg, files or []
        notes, saved, names = [], [], {}  # names: saved path -> the name it was uploaded as

        def name(path: str) -> str:
            return f"**{md_escape(names.get(path, Path(path).name))}**"

        def failed(what: str, fix: str) -> str:  # `what` is Markdown already
            return f"✗ {what}" + (f". *{md_escape(fix)}.*" if fix else "")

        progress(0, desc="copying")
        for f in files:
            try:
                saved.append(save_upload(f, cfg))
                names[str(saved[-1])] = Path(f).name
            except CiteqaError as exc:  # its message names the file by its uploaded name
                notes.append(failed(md_escape(exc.message), exc.fix))
        if saved:
            def on_bytes(done: int, total: int, path: Path) -> None:  # also within a long file's sections
                progress(0.05 + 0.95 * done / max(total, 1), desc=f"indexing {names.get(str(path), Path(path).name)}")

            def on_document(doc_id: str, what: str) -> None:
                notes.append(f"✓ **{md_escape(doc_id)}** {md_escape(what)}")

            progress(0.05, desc=f"indexing {plural(len(saved), 'file')}")
            try:
                report = ingest.add(saved, cfg, progress=on_bytes, on_document=on_document)
                notes += [failed(f"{name(x['path'])} {md_escape(x['reason'])}", x["fix"]) for x in report.skipped]
                notes += [f"ℹ️ {name(r['path'])} is indexed as **{md_escape(r['doc_id'])}**: the id "
                          f"**{md_escape(r['taken'])}** belongs to another document" for r in report.renamed]
                if report.documents_unchanged:
                    notes.append(f"{report.documents_unchanged} already indexed (unchanged)")
            except Exception as exc:  # noqa: BLE001
                if not isinstance(exc, CiteqaError):
                    log.exception("upload failed")
                notes.append(md_escape(error_text(exc, cfg)))
        table, choices = self.documents()
        return None, "\n\n".join(notes), table, choices

    def remove(self, doc_ids: list[str] | str | None, request: gr.Request = None) -> tuple[str, str, Any]:
        """Remove the picked documents: outputs (the notes, the list, its choices)."""
        from index import ingest

        if not self.logged_in(request):
            return gr.skip(), gr.skip(), gr.skip()
        doc_ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids or [])
        notes = []
        for doc_id in doc_ids:
            try:
                r = ingest.remove(doc_id, self.cfg)
                notes.append(f"Removed **{md_escape(r['removed'])}** ({plural(r['chunks'], 'chunk')}).")
            except CiteqaError as exc:
                notes.append(md_escape(error_text(exc, self.cfg)))
        table, choices = self.documents()
        return "\n\n".join(notes) or "Pick the documents to remove first.", table, choices


# -- the app ----------------------------------------------------------------------------------------

def build_app(agent) -> gr.Blocks:
    """The UI: a streaming cited chat with a document filter (left), the source viewer and the document
    panel (right), plus the /chat API, wired to a `Chat` over `agent`. The conversation lives in the
    browser (`gr.BrowserState`)."""
    chat, cfg = Chat(agent), agent.config
    model = f"**{agent.backend.name}** · {md_escape(agent.backend.model or 'default model')}"
    with gr.Blocks(title="citeqa", fill_height=True, analytics_enabled=False) as demo:
        turns = gr.BrowserState([], storage_key="citeqa-conversation")
        gr.Markdown("# citeqa\nAnswers from your documents, every claim cited to the sentence that "
                    "supports it.", elem_id="citeqa-header")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(show_label=False, height=600, elem_id="citeqa-chat", layout="bubble",
                                     render_markdown=False, latex_delimiters=[], buttons=["copy"],
                                     examples=[{"text": q} for q in EXAMPLES],
                                     placeholder="Ask a question about the indexed documents.")
                box = gr.Textbox(placeholder="Ask a question…", submit_btn=True, show_label=False,
                                 elem_id="citeqa-input", lines=1, max_lines=6)
                scope = gr.Dropdown(label="Search in", info="the documents questions search; all when empty",
                                    choices=[], value=[], multiselect=True, elem_id="citeqa-scope")
            with gr.Column(scale=2, min_width=320, elem_id="citeqa-panel"):
                gr.Markdown(f"### Answering with\n{model}  \ncollection `{md_escape(cfg.collection)}`",
                            elem_id="citeqa-model")
                gr.Markdown("### Source")
                viewer = gr.HTML(chat_html.VIEWER_EMPTY, elem_id="citeqa-viewer")
                open_key = gr.Textbox(elem_id="citeqa-open", elem_classes=["citeqa-hidden"], show_label=False,
                                      container=False)
                open_btn = gr.Button(elem_id="citeqa-open-btn", elem_classes=["citeqa-hidden"])
                gr.Markdown("### Add documents")
                files = gr.File(file_count="multiple", file_types=list(SUFFIXES), type="filepath",
                                label="Upload files", height=140, elem_id="citeqa-upload")
                gr.Markdown(f"<small>.txt, .md, .html, .pdf or .docx, up to {cfg.max_file_mb} MB each; indexed "
                            "as soon as they arrive.</small>")
                status = gr.Markdown(elem_id="citeqa-upload-status", latex_delimiters=[])
                gr.Markdown("### Indexed documents")
                docs_md = gr.Markdown(elem_id="citeqa-docs", latex_delimiters=[])
                with gr.Group():
                    pick = gr.Dropdown(label="Remove documents", choices=[], value=[], multiselect=True,
                                       elem_id="citeqa-pick")
                    drop = gr.Button("Remove from the index…", variant="stop", size="sm", elem_id="citeqa-remove")
                with gr.Group(visible="hidden", elem_id="citeqa-confirm") as confirm:  # in the page, shown on demand
                    question = gr.Markdown(latex_delimiters=[], elem_id="citeqa-confirm-text")
                    with gr.Row():
                        yes = gr.Button("Remove", variant="stop", size="sm", elem_id="citeqa-confirm-yes")
                        no = gr.Button("Cancel", size="sm", elem_id="citeqa-confirm-no")

        private = {"api_visibility": "private"}
        box.submit(chat.ask, [box, turns, scope], [chatbot, turns, box], **private)
        chatbot.example_select(example, None, box, **private).then(
            chat.ask, [box, turns, scope], [chatbot, turns, box], **private)
        chatbot.clear(new_conversation, None, turns, **private)
        open_btn.click(chat.open_source, [open_key, turns], viewer, show_progress="hidden", **private).then(
            None, js=SCROLL_TO_HIT)
        files.upload(chat.upload, files, [files, status, docs_md, pick], **private).then(
            chat.scope_choices, scope, scope, **private)
        drop.click(confirm_remove, pick, [confirm, question], **private)
        no.click(hide, None, confirm, **private)
        yes.click(hide, None, confirm, **private).then(
            chat.remove, pick, [status, docs_md, pick], **private).then(chat.scope_choices, scope, scope, **private)
        demo.load(chat.documents, None, [docs_md, pick], **private).then(chat.scope_choices, scope, scope, **private)
        demo.load(chat.restore, turns, chatbot, **private)
        gr.api(chat.chat, api_name="chat")
    chat.blocks = demo  # its `auth`, set by launch, is the login the handlers check
    return demo


def launch(demo, host: str = "127.0.0.1", port: int = 7860, auth: tuple[str, str] | None = None,
           block: bool = True, max_file_mb: int = 50, quiet: bool = False, login_limit: dict | None = None):
    """Serve the app; with a login, failed logins are slowed and locked out per client
    (`citeqa.login_limit`; `login_limit` overrides its max_failures / lockout_s / delay_s)."""
    from starlette.middleware import Middleware

    limit = {"middleware": [Middleware(LoginLimit, **(login_limit or {}))]} if auth else {}
    return demo.queue(default_concurrency_limit=2).launch(
        server_name=host, server_port=port, auth=auth, prevent_thread_lock=not block, show_error=False,
        quiet=quiet, css=CSS, js=PAGE_JS, theme=gr.themes.Soft(), max_file_size=f"{max_file_mb}mb",
        footer_links=["api"], ssr_mode=False, app_kwargs=limit)


def auth_of(cfg: Config) -> tuple[str, str] | None:
    """Gradio's login from `cfg.auth` (CITEQA_AUTH=user:password); required when `cfg.host` is not loopback.

    >>> auth_of(Config.resolve(host="0.0.0.0", auth="ann:s3cret:with-colon"))
    ('ann', 's3cret:with-colon')
    """
    if cfg.auth:
        user, sep, password = cfg.auth.partition(":")
        if not (sep and user and password):
            raise ConfigError("CITEQA_AUTH must look like user:password", fix="set CITEQA_AUTH=user:password")
        return user, password
    if cfg.host not in LOOPBACK:
        raise ConfigError(f"refusing to serve on {cfg.host} without a login",
                          fix="set CITEQA_AUTH=user:password, or bind to 127.0.0.1 (the default)")
    return None


def ensure_indexed(cfg: Config) -> None:
    """On an empty collection, index the bundled article so the chat has something to answer from."""
    from index import ingest

    try:
        if ingest.listing(cfg)["documents"]:
            return
    except IndexMissingError:
        pass
    print(f"citeqa: empty collection {cfg.collection!r}; indexing {ARTICLE.name} …", file=sys.stderr)
    report = ingest.add([ARTICLE], cfg, progress=False)
    if report.failed:
        raise InputError(f"could not index the bundled article: {report.failed[0]['error']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="app.py", description="The citeqa web chat.")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; env CITEQA_HOST); others need CITEQA_AUTH")
    p.add_argument("--port", type=int, help="port (default 7860; env CITEQA_PORT)")
    args = p.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)  # also for libraries that set their own logger to DEBUG (bm25s does)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", handlers=[handler])
    try:
        cfg = Config.resolve(host=args.host, port=args.port)
        auth = auth_of(cfg)
        ensure_indexed(cfg)
        from agent.answer import Agent

        agent = Agent(config=cfg)
        demo = build_app(agent)
    except CiteqaError as exc:
        print(f"citeqa: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"citeqa: serving on http://{cfg.host}:{cfg.port} ({agent.backend.name})", file=sys.stderr)
    launch(demo, cfg.host, cfg.port, auth, block=True, max_file_mb=cfg.max_file_mb)
    return 0

if __name__ == "__main__":
    sys.exit(main())
