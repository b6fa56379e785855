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
from typing import Callable


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
# Markup that opens a line of a Markdown or plain-text document and is not part of its sentence: a
# heading's hashes, a quote's ">", a bullet, a list item's number ("3." or "3)") before a capital. A
# number before a lower-case word is text: in "O\n3) is usually known as ozone" the line break split "O3".
_LINE_MARKUP = re.compile(r"\s*(?:(?:#{1,6}|>|[-*+•])(?=\s)|\d{1,2}[.)](?=\s+[A-Z]))\s*")


def _is_abbreviation(line: str, dot: int) -> bool:
    if line[dot] != ".":
        return False
    word = re.search(r"([A-Za-z.]+)$", line[max(0, dot - 16):dot])  # a bounded look back: linear in the line
    if not word:
        return False
    w = word.group(1).lower()
    return w in _ABBREV or (len(w) == 1 and w.isalpha())


def split_sentences(text: str) -> list[Span]:
    """Sentences with offsets; line breaks always end a sentence (titles, list items), and the markup
    that opens a line (`_LINE_MARKUP`) is left out of it. A sentence does not end inside a curly
    quotation that it opened. Linear in the text, however long its lines.

    >>> [s.text for s in split_sentences("# Quick guide\\n1. Plug it in. Wait.\\n- hold reset for 12 s.\\n3) is ozone.")]
    ['Quick guide', 'Plug it in.', 'Wait.', 'hold reset for 12 s.', '3) is ozone.']
    """
    spans: list[Span] = []
    for line in _LINE.finditer(text):
        body, base = line.group(), line.start()
        markup = _LINE_MARKUP.match(body)
        start = markup.end() if markup else 0
        seen, open_quotes = start, 0  # curly quotes still open between `start` and `seen`
        for m in _END.finditer(body, start):
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
