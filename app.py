"""The citeqa web chat: `python app.py [--port N] [--host H]` (see docs/chat.md).

A thin Gradio shell over `agent.answer.Agent` and `index.ingest`: it streams answers, shows each
citation's span inside its passage, and lets you upload, list and remove documents. No answering
logic lives here.

Binds to 127.0.0.1 by default; any other host requires CITEQA_AUTH=user:password.
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import re
import shutil
import sys
import unicodedata
from pathlib import Path
from typing import Any, Iterator

from citeqa import plural
from index.config import Config  # sets GRADIO_ANALYTICS_ENABLED=False and the offline flags on import
from index.errors import CiteqaError, ConfigError, IndexMissingError, InputError
from index.loaders import SUFFIXES

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent
ARTICLE = ROOT / "data" / "isil-retakes-syria-border-town.txt"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CONTEXT_CHARS = 150  # characters of the passage shown on each side of a cited span
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
mark { background: #fde68a; color: inherit; padding: 0 2px; border-radius: 3px; }
"""


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


def to_history(history: list[dict] | None) -> list[dict]:
    """Gradio chat history -> [{"role", "content"}] text turns; source accordions and files are dropped."""
    out = []
    for msg in history or []:
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            continue
        if (msg.get("metadata") or {}).get("title"):
            continue  # a source panel, not part of the conversation
        text = _text_of(msg.get("content"))
        if text.strip():
            out.append({"role": msg["role"], "content": text})
    return out


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "") if content.get("type", "text") == "text" else ""
    if isinstance(content, (list, tuple)):
        return "\n".join(t for t in (_text_of(c) for c in content) if t)
    return ""


def _md_escape(text: str) -> str:
    """Text shown as itself: no HTML, no Markdown ("1887. [1]" at a line start is not a list).

    >>> _md_escape("1887. <b>x</b> [1]")
    '1887\\\\. &lt;b&gt;x&lt;/b&gt; \\\\[1\\\\]'
    """
    text = re.sub(r"([\\`*_\[\]#|])", r"\\\1", html.escape(text, quote=False))
    return re.sub(r"(?m)^(\s*\d+)([.)])", r"\1\\\2", text)


def answer_markdown(answer: Any) -> str:
    """The short answer in bold with the reader's confidence, the cited sentence(s) under it; all escaped.

    >>> from types import SimpleNamespace as A
    >>> answer_markdown(A(answer="Mid-2014 [1]. ISIL seized it in mid-2014. [1]", short_answer="mid-2014",
    ...                   refused=False, confidence=0.91))
    '**Mid-2014** · confidence 91%\\n\\nISIL seized it in mid-2014. \\\\[1\\\\]'
    """
    if answer.refused or not answer.short_answer:
        return _md_escape(answer.answer)
    lead = re.match(re.escape(answer.short_answer) + r"\.?\s*(\[\d+\]\s*)+\.?\s*", answer.answer, re.I)
    short = answer.answer[:len(answer.short_answer)] if lead else answer.short_answer
    rest = answer.answer[lead.end():] if lead else answer.answer
    return f"**{_md_escape(short)}** · confidence {answer.confidence:.0%}\n\n{_md_escape(rest)}"


def highlight(doc_text: str, start: int, end: int, context: int = CONTEXT_CHARS) -> str:
    """text[start:end] in <mark> with about `context` characters either side, cut at word boundaries."""
    a, b = max(0, start - context), min(len(doc_text), end + context)
    if a > 0:
        space = doc_text.find(" ", a, start)
        a = space + 1 if space != -1 else a
    if b < len(doc_text):
        space = doc_text.rfind(" ", end, b)
        b = space if space != -1 else b
    before, span, after = doc_text[a:start], doc_text[start:end], doc_text[end:b]
    clean = lambda s: _md_escape(" ".join(s.split()))  # noqa: E731
    return ("…" if a > 0 else "") + clean(before) + (" " if before[-1:].isspace() else "") + \
        f"<mark>{clean(span)}</mark>" + (" " if after[:1].isspace() else "") + clean(after) + \
        ("…" if b < len(doc_text) else "")


def error_text(exc: BaseException, cfg: Config | None = None) -> str:
    """A readable chat message for an error; never a traceback, never a secret."""
    if isinstance(exc, CiteqaError):
        msg = f"⚠️ **Couldn't answer:** {exc.message}."
        if exc.fix:
            msg += f"\n\n*What to do:* {exc.fix}."
    else:
        msg = (f"⚠️ **Something went wrong** ({type(exc).__name__}). The app is still running; "
               "details are in the server log.")
    if cfg is not None and cfg.api_key:
        msg = msg.replace(cfg.api_key, "***")
    return msg


# -- the app ----------------------------------------------------------------------------------------

def build_app(agent) -> "gr.Blocks":
    """The UI: a streaming cited chat (left) and a document panel (right), plus the /chat API."""
    import gradio as gr

    from agent.answer import Answer
    from index import ingest

    cfg: Config = agent.config

    def sources(answer: Answer) -> list:
        msgs = []
        texts: dict[str, str] = {}
        for c in answer.citations:
            try:
                if c.doc_id not in texts:
                    texts[c.doc_id] = agent.store.document_text(c.doc_id)
                body = highlight(texts[c.doc_id], c.start_char, c.end_char)
            except CiteqaError:
                body = f"<mark>{_md_escape(c.text)}</mark>"
            title = f"[{c.n}] {c.doc_id}" + (f", p. {c.page}" if c.page else "")
            msgs.append(gr.ChatMessage(
                content=body,
                metadata={"title": title, "log": f"score {c.score:.2f}",
                          **({} if c.n == 1 else {"status": "done"})}))
        return msgs

    def respond(message: str, history: list[dict]) -> Iterator[Any]:
        draft = ""
        try:
            for item in agent.stream(message, history=to_history(history)):
                if isinstance(item, Answer):
                    if item.refused:
                        yield item.answer
                    else:
                        yield [gr.ChatMessage(content=answer_markdown(item)), *sources(item)]
                    return
                draft += item
                yield draft
        except Exception as exc:  # noqa: BLE001 — shown as a message; the app keeps serving
            if not isinstance(exc, CiteqaError):
                log.exception("chat failed")
            yield error_text(exc, cfg)

    def chat(message: str, history: list[dict] | None = None) -> str:
        """Answer one question; returns the verified answer text with its [n] markers."""
        try:
            return agent.ask(message, history=to_history(history)).answer
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, CiteqaError):
                log.exception("chat failed")
            return error_text(exc, cfg)

    def documents() -> tuple[str, Any]:
        try:
            docs = ingest.listing(cfg)["documents"]
        except IndexMissingError:
            docs = []
        except CiteqaError as exc:
            return error_text(exc, cfg), gr.update(choices=[], value=None)
        if not docs:
            table = "*No documents yet. Upload some above.*"
        else:
            rows = "\n".join(f"- **{_md_escape(d['doc_id'])}** — {plural(d['chunks'], 'chunk')}" for d in docs)
            total = sum(d["chunks"] for d in docs)
            table = f"{rows}\n\n<small>{plural(len(docs), 'document')}, {plural(total, 'chunk')}</small>"
        ids = [d["doc_id"] for d in docs]
        return table, gr.update(choices=ids, value=None)

    def upload(files: list[str] | None, progress=gr.Progress()) -> tuple[Any, str, str, Any]:
        files = files or []
        notes, saved, names = [], [], {}  # names: saved path -> the name it was uploaded as

        def name(path: str) -> str:
            return f"**{_md_escape(names.get(path, Path(path).name))}**"

        def failed(what: str, fix: str) -> str:  # `what` is Markdown already
            return f"✗ {what}" + (f". *{_md_escape(fix)}.*" if fix else "")

        progress(0, desc="copying")
        for f in files:
            try:
                saved.append(save_upload(f, cfg))
                names[str(saved[-1])] = Path(f).name
            except CiteqaError as exc:  # its message names the file by its uploaded name
                notes.append(failed(_md_escape(exc.message), exc.fix))
        if saved:
            done = [0]

            def on_document(doc_id: str, what: str) -> None:
                done[0] += 1
                progress(done[0] / len(saved), desc=f"indexed {doc_id}")
                notes.append(f"✓ **{_md_escape(doc_id)}** {what}")

            progress(0.05, desc=f"indexing {plural(len(saved), 'file')}")
            try:
                report = ingest.add(saved, cfg, progress=False, on_document=on_document)
                notes += [failed(f"{name(x['path'])} {_md_escape(x['reason'])}", x["fix"]) for x in report.skipped]
                notes += [f"ℹ️ {name(r['path'])} is indexed as **{_md_escape(r['doc_id'])}**: the id "
                          f"**{_md_escape(r['taken'])}** belongs to another document" for r in report.renamed]
                if report.documents_unchanged:
                    notes.append(f"{report.documents_unchanged} already indexed (unchanged)")
            except Exception as exc:  # noqa: BLE001
                if not isinstance(exc, CiteqaError):
                    log.exception("upload failed")
                notes.append(error_text(exc, cfg))
        table, choices = documents()
        return None, "\n\n".join(notes), table, choices

    def remove(doc_id: str | None) -> tuple[str, str, Any]:
        if not doc_id:
            note = "Pick a document to remove."
        else:
            try:
                r = ingest.remove(doc_id, cfg)
                note = f"Removed **{_md_escape(r['removed'])}** ({plural(r['chunks'], 'chunk')})."
            except CiteqaError as exc:
                note = error_text(exc, cfg)
        table, choices = documents()
        return note, table, choices

    model = f"**{agent.backend.name}** · {_md_escape(agent.backend.model or 'default model')}"
    with gr.Blocks(title="citeqa", fill_height=True) as demo:
        gr.Markdown("# citeqa\nAnswers from your documents, every claim cited to the sentence that "
                    "supports it.", elem_id="citeqa-header")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Chat", height=600, elem_id="citeqa-chat", layout="bubble",
                                     buttons=["copy"], placeholder="Ask a question about the indexed documents.")
                chat_ui = gr.ChatInterface(respond, chatbot=chatbot, examples=EXAMPLES, run_examples_on_click=True,
                                 cache_examples=False, api_visibility="private", api_name="chat_ui",
                                 textbox=gr.Textbox(placeholder="Ask a question…", submit_btn=True,
                                                    stop_btn=True, scale=7, elem_id="citeqa-input"),
                                 fill_height=True)
            with gr.Column(scale=1, min_width=300, elem_id="citeqa-panel"):
                gr.Markdown(f"### Answering with\n{model}  \ncollection `{_md_escape(cfg.collection)}`",
                            elem_id="citeqa-model")
                gr.Markdown("### Add documents")
                files = gr.File(file_count="multiple", file_types=list(SUFFIXES), type="filepath",
                                label="Upload files", height=140, elem_id="citeqa-upload")
                gr.Markdown(f"<small>.txt, .md, .html, .pdf or .docx, up to {cfg.max_file_mb} MB each; indexed "
                            "as soon as they arrive.</small>")
                status = gr.Markdown(elem_id="citeqa-upload-status")
                gr.Markdown("### Indexed documents")
                docs_md = gr.Markdown(elem_id="citeqa-docs")
                with gr.Group():
                    pick = gr.Dropdown(label="Remove a document", choices=[], elem_id="citeqa-pick")
                    drop = gr.Button("Remove from the index", variant="stop", size="sm", elem_id="citeqa-remove")
        files.upload(upload, files, [files, status, docs_md, pick], api_visibility="private")
        drop.click(remove, pick, [status, docs_md, pick], api_visibility="private")
        demo.load(documents, None, [docs_md, pick], api_visibility="private")
        gr.api(chat, api_name="chat")
    demo.chat_interface = chat_ui  # tests drive its streaming function directly
    return demo


def launch(demo, host: str = "127.0.0.1", port: int = 7860, auth: tuple[str, str] | None = None,
           block: bool = True, max_file_mb: int = 50, quiet: bool = False):
    import gradio as gr

    return demo.queue(default_concurrency_limit=2).launch(
        server_name=host, server_port=port, auth=auth, prevent_thread_lock=not block, show_error=False,
        quiet=quiet, css=CSS, theme=gr.themes.Soft(), max_file_size=f"{max_file_mb}mb",
        footer_links=["api"], ssr_mode=False)


def auth_from_env(host: str) -> tuple[str, str] | None:
    """Gradio auth from CITEQA_AUTH=user:password; required when not bound to loopback."""
    raw = os.environ.get("CITEQA_AUTH", "")
    if raw:
        user, sep, password = raw.partition(":")
        if not (sep and user and password):
            raise ConfigError("CITEQA_AUTH must look like user:password", fix="set CITEQA_AUTH=user:password")
        return user, password
    if host not in LOOPBACK:
        raise ConfigError(f"refusing to serve on {host} without a login",
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
    p.add_argument("--host", default=os.environ.get("CITEQA_HOST") or "127.0.0.1",
                   help="address to bind (default 127.0.0.1; env CITEQA_HOST); others need CITEQA_AUTH")
    p.add_argument("--port", type=int, default=int(os.environ.get("CITEQA_PORT") or 7860),
                   help="port (default 7860; env CITEQA_PORT)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        auth = auth_from_env(args.host)
        cfg = Config.resolve()
        ensure_indexed(cfg)
        from agent.answer import Agent

        agent = Agent(config=cfg)
        demo = build_app(agent)
    except CiteqaError as exc:
        print(f"citeqa: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"citeqa: serving on http://{args.host}:{args.port} ({agent.backend.name})", file=sys.stderr)
    launch(demo, args.host, args.port, auth, block=True, max_file_mb=cfg.max_file_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
