"""What the web chat shows, as HTML built from plain data: every text from a user, a model or a
document is escaped here, so none of its HTML or Markdown reaches the page.

The chat renders these strings as HTML (its Markdown rendering is off); `md_escape` is for the
Markdown panels beside it (document list, upload notes).

>>> answer_html({"answer": "1887 [1]. Built in 1887. [1]", "short_answer": "1887", "refused": False,
...              "confidence": 0.9, "citations": [{"n": 1}], "latency_ms": 420}, turn=1)  # doctest: +NORMALIZE_WHITESPACE
'<p><strong>1887</strong> · confidence 90%</p><p>Built in 1887. <a class="citeqa-cite" href="#citeqa-cite-1-1"
 title="Show [1] in its document">[1]</a></p><p class="citeqa-time">answered in 0.4 s</p>'
"""

from __future__ import annotations

import html
import re

CONTEXT_CHARS = 150  # characters of the passage shown on each side of a cited span in a source panel
VIEWER_CHARS = 6000  # characters of the document shown on each side of the span in the viewer
LINK = "#citeqa-cite-{turn}-{n}"  # a citation link's target: the conversation turn and the citation number


def esc(text: str) -> str:
    """Text as itself inside HTML; line breaks kept."""
    return html.escape(str(text), quote=True).replace("\n", "<br>")


def md_escape(text: str) -> str:
    """Text shown as itself inside Markdown: no HTML, no emphasis, links, lists, headings or autolinks.

    >>> md_escape("1887. <b>x</b> [1] www.a.b")
    '1887\\\\. &lt;b&gt;x&lt;/b&gt; \\\\[1\\\\] www\\\\.a.b'
    """
    text = re.sub(r"([\\`*_\[\]#|~$])", r"\\\1", html.escape(str(text), quote=False))
    text = re.sub(r"(?m)^(\s*\d+)([.)])", r"\1\\\2", text)  # "1887." would start a list
    text = re.sub(r"(?m)^(\s*)([-+=])", r"\1\\\2", text)  # bullets and setext headings
    return re.sub(r"(?i)(www)\.|(\w):(//)", lambda m: f"{m[1]}\\." if m[1] else f"{m[2]}\\:{m[3]}", text)


def draft_html(draft: str) -> str:
    """A generative answer while it streams in (markers not yet verified)."""
    return f'<p class="citeqa-draft">{esc(draft)}<span class="citeqa-caret">▍</span></p>'


def linked(escaped: str, turn: int, numbers: set[int]) -> str:
    """`[n]` markers of cited passages as links that open the citation in the viewer."""
    def link(m: re.Match) -> str:
        n = int(m[1])
        if n not in numbers:
            return m[0]
        return f'<a class="citeqa-cite" href="{LINK.format(turn=turn, n=n)}" title="Show [{n}] in its document">[{n}]</a>'
    return re.sub(r"\[(\d+)\]", link, escaped)


def seconds(ms: float) -> str:
    return f'<p class="citeqa-time">answered in {ms / 1000:.1f} s</p>'


def answer_html(answer: dict, turn: int) -> str:
    """The short answer in bold with the judge's confidence, then the cited sentence(s) with `[n]` links
    (the confidence under them when there is no short answer), then the time it took. `answer`: the keys
    of `Answer.to_dict()` the chat keeps.

    >>> answer_html({"answer": "No lane is booked. [1]", "short_answer": None, "refused": False,
    ...              "confidence": 0.8, "citations": [{"n": 1}], "latency_ms": 200}, turn=2)  # doctest: +ELLIPSIS
    '<p>No lane is booked. <a ...>[1]</a></p><p class="citeqa-time">confidence 80%</p><p class="citeqa-time">answered in 0.2 s</p>'
    """
    text = answer["answer"]
    numbers = {c["n"] for c in answer.get("citations", [])}
    short = answer.get("short_answer")
    lead = None
    if short and not answer["refused"]:
        lead = re.match(re.escape(short) + r"\.?\s*(\[\d+\]\s*)+\.?\s*", text, re.I)
    confidence = f'confidence {answer.get("confidence", 0.0):.0%}'
    head = foot = ""
    if lead:
        head = f"<p><strong>{esc(text[:len(short)])}</strong> · {confidence}</p>"
        text = text[lead.end():]
    elif not answer["refused"]:  # the cited sentence is the answer (a yes/no question): confidence under it
        foot = f'<p class="citeqa-time">{confidence}</p>'
    body = f"{head}<p>{linked(esc(text), turn, numbers)}</p>{foot}"
    return body + seconds(answer.get("latency_ms", 0))


def source_title(c: dict) -> str:
    return esc(f"[{c['n']}] {c['doc_id']}" + (f", p. {c['page']}" if c.get("page") else ""))


def excerpt_html(doc_text: str, start: int, end: int, context: int = CONTEXT_CHARS) -> str:
    """doc_text[start:end] in <mark> with about `context` characters either side, cut at word boundaries,
    white space folded."""
    a, b = max(0, start - context), min(len(doc_text), end + context)
    if a > 0:
        space = doc_text.find(" ", a, start)
        a = space + 1 if space != -1 else a
    if b < len(doc_text):
        space = doc_text.rfind(" ", end, b)
        b = space if space != -1 else b
    before, span, after = doc_text[a:start], doc_text[start:end], doc_text[end:b]
    fold = lambda s: esc(" ".join(s.split()))  # noqa: E731
    return ("…" if a > 0 else "") + fold(before) + (" " if before[-1:].isspace() else "") + \
        f"<mark>{fold(span)}</mark>" + (" " if after[:1].isspace() else "") + fold(after) + \
        ("…" if b < len(doc_text) else "")


def source_html(c: dict, turn: int, doc_text: str | None) -> str:
    """A source panel's body: the passage around the cited span, its score and a link to the viewer."""
    body = excerpt_html(doc_text, c["start_char"], c["end_char"]) if doc_text is not None \
        else f"<mark>{esc(c['text'])}</mark>"
    return (f"<p>{body}</p><p class=\"citeqa-source-meta\">score {c['score']:.2f} · "
            f"<a class=\"citeqa-cite\" href=\"{LINK.format(turn=turn, n=c['n'])}\">show in the document</a></p>")


def viewer_html(c: dict, doc_text: str | None, window: int = VIEWER_CHARS) -> str:
    """The document with the cited span highlighted (`<mark id="citeqa-hit">`, scrolled to by the page's
    script); a long document is cut to `window` characters either side of the span."""
    title = f"<h4>{source_title(c)}</h4>"
    if doc_text is None:
        return (f"{title}<p class=\"citeqa-note\">This document is no longer indexed; the cited text was:</p>"
                f"<div class=\"citeqa-doc\"><mark id=\"citeqa-hit\">{esc(c['text'])}</mark></div>")
    start, end = c["start_char"], c["end_char"]
    a, b = max(0, start - window), min(len(doc_text), end + window)
    note = "" if (a, b) == (0, len(doc_text)) else \
        f"<p class=\"citeqa-note\">characters {a:,}–{b:,} of {len(doc_text):,}</p>"
    return (f"{title}{note}<div class=\"citeqa-doc\">{'…' if a else ''}{esc(doc_text[a:start])}"
            f"<mark id=\"citeqa-hit\">{esc(doc_text[start:end])}</mark>{esc(doc_text[end:b])}"
            f"{'…' if b < len(doc_text) else ''}</div>")


VIEWER_EMPTY = '<p class="citeqa-note">Click a [n] in an answer to see the cited passage in its document.</p>'
