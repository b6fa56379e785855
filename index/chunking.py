"""Text -> sentences and chunks, each with character offsets into the text.

The invariant every caller relies on: `text[start:end] == piece` for every sentence and chunk.

>>> [s.text for s in split_sentences("Dr. Smith left. He said “yes.” Then 3.5 km on.")]
['Dr. Smith left.', 'He said “yes.”', 'Then 3.5 km on.']
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterator


def _tiktoken_cache() -> None:
    """Point tiktoken at the encodings llama-index ships, so nothing downloads. The folder is found
    without importing llama_index.core, which takes seconds: asking a question never needs it."""
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        from importlib.util import find_spec

        spec = find_spec("llama_index.core")
        root = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else ""
        os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(root, "_static", "tiktoken_cache")


@lru_cache(maxsize=1)
def tokenizer() -> Callable[[str], list[int]]:
    """The tiktoken `cl100k_base` encoder used for every token budget and chunk size."""
    _tiktoken_cache()
    import tiktoken

    return tiktoken.get_encoding("cl100k_base").encode


def count_tokens(text: str) -> int:
    return len(tokenizer()(text))


def truncate_tokens(text: str, max_tokens: int) -> str:
    """Cut `text` to at most `max_tokens` tokens (on a character boundary)."""
    import tiktoken  # noqa: F401  (cache dir already set by tokenizer())

    ids = tokenizer()(text)
    if len(ids) <= max_tokens:
        return text
    enc = tiktoken.get_encoding("cl100k_base")
    return enc.decode(ids[:max_tokens])


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str


_ABBREV = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "inc", "ltd", "co", "corp",
    "gen", "col", "lt", "sgt", "capt", "gov", "sen", "rep", "rev", "no", "fig", "al", "e.g", "i.e",
    "u.s", "u.k", "u.n", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "approx", "ca", "cf", "est", "dept", "univ",
}
# A sentence ends at . ! ? (plus closing quotes/brackets) followed by whitespace and a capital,
# digit or opening quote.
_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9])")
_LINE = re.compile(r"[^\n]+")
_LABEL = re.compile(r"\W*[A-Z][A-Za-z]*\s*:")  # "Note:", "SYSTEM:" opening a line
SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")  # a statement ends so; a heading or a label line does not
# Markup that opens a line of a Markdown or plain-text document (a heading's hashes, a quote's ">", a
# bullet, a list item's number before a capital): such a line starts anew, however the line before it
# ends. The markup stays in the sentence: `agent.injection` reads "### Instruction:" as a chat template's.
_LINE_MARKUP = re.compile(r"\s*(?:(?:#{1,6}|>|[-*+•])(?=\s)|\d{1,2}[.)](?=\s+[A-Z]))\s*")


def _is_abbreviation(line: str, dot: int) -> bool:
    if line[dot] != ".":
        return False
    word = re.search(r"([A-Za-z.]+)$", line[max(0, dot - 16):dot])  # a bounded look back: linear in the line
    if not word:
        return False
    w = word.group(1).lower()
    return w in _ABBREV or (len(w) == 1 and w.isalpha())


def _wrapped(line: str, after: str, width: int) -> bool:
    """Is the break between two lines of one paragraph a hard wrap (the sentence goes on)? Not after a
    sentence's end or a heading, nor before a list item or a label ("Note:", "SYSTEM:", which
    `agent.injection` reads as a role marker only where it opens a sentence); yes before a lower-case or
    indented word, or after a line nearly as long as the paragraph's longest (a title or a short list
    line is not)."""
    a, b = line.strip(), after.strip()
    if SENTENCE_END.search(a) or a.startswith("#") or _LINE_MARKUP.match(after) or _LABEL.match(b):
        return False
    return b[:1].islower() or after[:1].isspace() or (width >= 40 and len(a) >= 0.6 * width)


def _lines(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each line, with the lines of a hard-wrapped paragraph (a PDF's, a text file's
    wrapped at 72 columns) joined where `_wrapped` says the sentence goes on."""
    lines = [m for m in _LINE.finditer(text) if m.group().strip()]
    i = 0
    while i < len(lines):
        k = i  # the paragraph: lines i..k, one line break apart
        while k + 1 < len(lines) and lines[k + 1].start() == lines[k].end() + 1:
            k += 1
        width = max(len(m.group().strip()) for m in lines[i:k + 1])
        start = lines[i].start()
        for a, b in zip(lines[i:k], lines[i + 1:k + 1]):
            if not _wrapped(a.group(), b.group(), width):
                yield start, a.end()
                start = b.start()
        yield start, lines[k].end()
        i = k + 1


def split_sentences(text: str) -> list[Span]:
    """Sentences with offsets. A line break ends a sentence (titles, list items) unless it only wraps
    the line (`_wrapped`). A sentence does not end inside a curly quotation that it opened. Linear in
    the text, however long its lines.

    >>> [s.text for s in split_sentences("# Quick guide\\nPlug it in and wait\\n- hold reset for 12 s.")]
    ['# Quick guide', 'Plug it in and wait', '- hold reset for 12 s.']
    >>> wrapped = "Opening hours\\nThe ferry to Halden carries up to 180\\npassengers. It runs daily."
    >>> [s.text for s in split_sentences(wrapped)]
    ['Opening hours', 'The ferry to Halden carries up to 180\\npassengers.', 'It runs daily.']
    """
    spans: list[Span] = []
    for lo, hi in _lines(text):
        body, base, start = text[lo:hi], lo, 0
        seen, open_quotes = 0, 0  # curly quotes still open between `start` and `seen`
        for m in _END.finditer(body):
            open_quotes += body.count("“", seen, m.end()) - body.count("”", seen, m.end())
            seen = m.end()
            if _is_abbreviation(body, m.start()) or open_quotes > 0:
                continue
            spans.append(_trimmed(text, base + start, base + m.end()))
            start, open_quotes = m.end(), 0
        spans.append(_trimmed(text, base + start, base + len(body)))
    return [s for s in spans if s.text]


def _trimmed(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end, text[start:end])


def chunk_text(text: str, chunk_tokens: int, overlap: int) -> list[Span]:
    """Token-sized chunks from llama-index's `SentenceSplitter`, located in `text` by offset."""
    from llama_index.core.node_parser import SentenceSplitter

    splitter = SentenceSplitter(chunk_size=chunk_tokens, chunk_overlap=overlap, tokenizer=tokenizer(),
                                paragraph_separator="\n\n")
    chunks: list[Span] = []
    cursor = 0
    for piece in splitter.split_text(text):
        piece = piece.strip()
        start = text.find(piece, cursor)
        if start < 0:  # the splitter normalised whitespace: align on the first and last words
            start, end = _align(text, piece, cursor)
        else:
            end = start + len(piece)
        chunks.append(_trimmed(text, start, end))
        cursor = start + 1
    return [c for c in chunks if c.text]


def _align(text: str, piece: str, cursor: int) -> tuple[int, int]:
    words = piece.split()
    head = re.compile(r"\s+".join(map(re.escape, words[: min(8, len(words))])))
    m = head.search(text, cursor)
    start = m.start() if m else cursor
    tail = re.compile(r"\s+".join(map(re.escape, words[-min(8, len(words)):])))
    end = tail.search(text, start)  # the first match only: a scan to the end per chunk was quadratic
    return start, (end.end() if end else min(len(text), start + len(piece)))
