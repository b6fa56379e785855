"""Read the best-ranked candidates with the reader; return the answer spans, most probable first.

Each candidate sentence is read with its neighbours (the passage the reader was trained on). The
reader's span may fall in a neighbour: the sentence that holds the span is the one cited. Pure: it
takes the selection's sentences and anything with `read(question, passages) -> [Reading]`.

>>> from agent.reader import Reading
>>> class Fake:
...     def read(self, question, passages):
...         return [Reading(0.9 if "Acme" in p else 0.1, p.find("Acme"), p.find("Acme") + 4, "Acme")
...                 for p in passages]
>>> s = [Sentence(f"d#x:s{i}", "d", "d.txt", "d#c0", i, 0, 0, t, None) for i, t in
...      enumerate(["It rained.", "Acme built the bridge.", "It opened in 1932."])]
>>> picks = read("Who built the bridge?", [s[2]], {s[2].id: s[1:]}, Fake())
>>> picks[0].sentence.text, picks[0].answer, picks[0].prob
('Acme built the bridge.', 'Acme', 0.9)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.answertype import not_a_short_answer
from agent.retrieve import Sentence
from agent.text import MARKUP, has_number
from index.chunking import SENTENCE_END

SHORT_SHARE = 0.8  # a span longer than this share of its sentence is the sentence, not a phrase
_ITEM = re.compile(r"[-*+•]\s")  # a list item's bullet
HEADING_WORDS = 10  # a title is short: the bundled article's has 8 words
_PAIRS = {'"': '"', "“": "”", "‘": "’", "(": ")", "[": "]"}
_ABBREVIATIONS = {"co", "corp", "inc", "ltd", "bros", "jr", "sr", "st", "dr", "mr", "mrs", "ms", "mt", "ft",
                  "ave", "no", "vs", "etc"}


@dataclass
class Pick:
    sentence: Sentence  # the sentence that holds the answer span
    answer: str         # the span ("" when the span is not a phrase inside the sentence)
    prob: float         # P(the passage it was read in answers): the reader's, then the judge's (agent.answerable)
    window: list[Sentence] = field(default_factory=list)  # that passage: the sentence and its neighbours


def _holder(window: list[Sentence], start: int) -> tuple[Sentence, int]:
    """The sentence of `window` (joined by single spaces) holding character `start`, and its offset."""
    at = 0
    for s in window:
        if start < at + len(s.text) + 1:
            return s, at
        at += len(s.text) + 1
    return window[-1], at - len(window[-1].text) - 1


def tidy(phrase: str) -> str:
    """The span as an answer phrase on one line (a hard-wrapped line break is a space), without the
    markup that opened its line (a Markdown heading's hashes, a bullet), the sentence's closing
    punctuation (an abbreviation's full stop stays) or a quote or bracket whose partner the span left out.

    >>> tidy('help preserve tolerance.'), tidy('shock"'), tidy('(OAPEC'), tidy('Washington, D.C.')
    ('help preserve tolerance', 'shock', 'OAPEC', 'Washington, D.C.')
    >>> tidy('"The Mask of Anarchy"'), tidy('Acme Co.'), tidy('in 1973;'), tidy('the USA.')
    ('"The Mask of Anarchy"', 'Acme Co.', 'in 1973', 'the USA')
    >>> tidy('# Nordlink R7'), tidy('- 12 seconds'), tidy('-5 degrees'), tidy('2.80\\neuros')
    ('Nordlink R7', '12 seconds', '-5 degrees', '2.80 euros')
    """
    s = MARKUP.sub("", " ".join(phrase.split()))
    while True:
        before = s
        s = s.rstrip(",;:").rstrip()
        last = s.rsplit(maxsplit=1)[-1] if s else ""
        if s.endswith(".") and "." not in last[:-1] and last[:-1].lower() not in _ABBREVIATIONS:
            s = s[:-1].rstrip()
        for open_, close in _PAIRS.items():
            if open_ == close:
                if s.count(open_) % 2:
                    s = s[1:] if s.startswith(open_) else s[:-1] if s.endswith(open_) else s
            elif s.startswith(open_) and close not in s:
                s = s[1:].lstrip()
            elif s.endswith(close) and open_ not in s:
                s = s[:-1].rstrip()
        if s == before:
            return s


def read(question: str, candidates: list[Sentence], windows: dict[str, list[Sentence]], reader) -> list[Pick]:
    """One `Pick` per sentence that holds a span, best probability first (a sentence found from
    several passages keeps its best)."""
    groups = [windows.get(c.id) or [c] for c in candidates]
    readings = reader.read(question, [" ".join(s.text for s in g) for g in groups])
    best: dict[str, Pick] = {}
    for group, r in zip(groups, readings):
        sentence, at = _holder(group, r.start)
        lo, hi = max(0, r.start - at), min(len(sentence.text), r.end - at)
        phrase = tidy(sentence.text[lo:hi]) if hi > lo else ""
        if len(phrase) > SHORT_SHARE * len(sentence.text) or not_a_short_answer(question, phrase):
            phrase = ""  # the sentence is the answer (a yes/no question's, or a why-question's date)
        if sentence.id not in best or r.prob > best[sentence.id].prob:
            best[sentence.id] = Pick(sentence, phrase, r.prob, group)
    return sorted(best.values(), key=lambda p: -p.prob)


def is_heading(text: str) -> bool:
    """A heading says nothing by itself: a Markdown heading, or a title: at most `HEADING_WORDS` words
    with no closing punctuation, no bullet, table bar, label or number, and no bracket left open. (A
    longer unpunctuated "sentence", or one with an open bracket, is a sentence cut short, as by a
    formula's subscript on the next line: "Trioxygen (O" / "3) is usually known as ozone".)

    >>> is_heading("# Brookfield Public Library"), is_heading("ISIL retakes Syria border town from US-backed rebels")
    (True, True)
    >>> is_heading("| Saturday | 10:00 to 16:00 |"), is_heading("Saturday: closed"), is_heading("It rained.")
    (False, False, False)
    >>> is_heading("- Helmets are recommended")
    False
    >>> is_heading("The Earth's crustal rock is composed in large part of oxides of silicon (silica SiO")
    False
    >>> is_heading("Trioxygen (O")
    False
    """
    text = text.strip()
    return text.startswith("#") or len(text.split()) <= HEADING_WORDS and not (
        SENTENCE_END.search(text) or has_number(text) or _ITEM.match(text) or "|" in text or ":" in text
        or text.count("(") > text.count(")"))


def believed_first(picks: list[Pick], threshold: float) -> list[Pick]:
    """`picks` (most probable first) with those at or above `threshold` first, and among them every
    heading after every statement: a title restates the text under it ("ISIL retakes Syria border town
    from US-backed rebels" read "Syria border town from US-backed rebels" for "Which border crossing did
    the rebels advance towards?"), so its span is rarely the answer. Then the rest, as they were."""
    return sorted(picks, key=lambda p: (p.prob < threshold, p.prob >= threshold and is_heading(p.sentence.text)))
