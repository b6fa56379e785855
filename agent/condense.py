"""Resolve a follow-up against the conversation, deterministically (generative backends ask the model).

>>> h = [{"role": "user", "content": "How many bridges cross the river near Lyon?"},
...      {"role": "assistant", "content": "Twelve [1]."}]
>>> condense("And near Paris?", h)
('How many bridges cross the river near Paris?', '')
>>> condense("What did she say about the vote?", [{"role": "user", "content": "Who chairs the council?"},
...      {"role": "assistant", "content": "Ada Moreau chairs it [1]."}])
('What did she say about the vote?', 'Ada Moreau')
"""

from __future__ import annotations

import re

from agent.cite import MARKER
from agent.text import content_words

_LEAD = re.compile(r"^\s*(and|but|so|also|then)?\s*(what|how)\s+about\s+|^\s*(and|but|also)\s+", re.I)
_PREP = ("near", "in", "at", "on", "from", "to", "during", "after", "before", "by", "for", "with", "of",
         "into", "inside", "outside", "around", "against")
_PRONOUN = re.compile(r"\b(he|she|they|him|her|them|his|hers|their|it|its|this|that|these|those|there|"
                      r"the (group|city|town|country|man|woman|organisation|organization|agency|attack))\b", re.I)
_WH = re.compile(r"^\s*(who|whom|whose|what|when|where|which|why|how|is|are|was|were|did|does|do|can|could)\b",
                 re.I)
_NAME = re.compile(r"(?:[A-Z][\w’'-]*|al-[A-Z][\w-]*)(?:\s+(?:of\s+the\s+|of\s+|for\s+)?(?:[A-Z][\w’'-]*|al-[A-Z][\w-]*))*")


def _last(history: list[dict], role: str) -> str:
    for turn in reversed(history):
        if turn.get("role") == role and turn.get("content"):
            return MARKER.sub("", str(turn["content"])).strip()
    return ""


def names(text: str) -> list[str]:
    """Capitalised phrases (a crude named-entity list), sentence-initial question words excluded."""
    out = []
    for m in _NAME.finditer(text):
        phrase = m.group()
        if _WH.match(phrase) and " " not in phrase:
            continue
        if phrase not in out:
            out.append(phrase)
    return out


def condense(question: str, history: list[dict] | None) -> tuple[str, str]:
    """Return (standalone question, context terms to add to the retrieval query)."""
    if not history:
        return question, ""
    prev_q, prev_a = _last(history, "user"), _last(history, "assistant")
    lead = _LEAD.match(question)
    body = question[lead.end():].strip() if lead else question.strip()
    if prev_q and (lead or not _WH.match(question)):
        first = body.split(maxsplit=1)[0].lower() if body else ""
        if first in _PREP:  # "And near Paris?" -> swap the phrase after the same preposition
            phrase = re.compile(rf"\b{first}\s+[^?,.;]*?(?=[?,.;]|$| and | or )", re.I)
            if phrase.search(prev_q):
                return phrase.sub(body.rstrip("?").strip(), prev_q, count=1), ""
        if lead or len(body.split()) <= 4:
            return f"{prev_q.rstrip('?')} — {body}", ""
    if len(content_words(question)) < 3 and (_PRONOUN.search(question) or len(question.split()) <= 4):
        # Too little of its own to search with: borrow the names of the previous turn.
        context = names(prev_a) or names(prev_q)
        return question, " ".join(context[:4])
    return question, ""
