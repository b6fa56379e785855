"""The offline default: the reader's answer phrase, then the evidence sentence(s) verbatim, each cited.

The work of choosing them is done by retrieval, `agent.select`, the reader (`agent.read`) and the judge
(`agent.answerable`); this backend keeps the reader's best sentence when it holds an answer of the
asked-for type (`agent.answertype`), adds a second one for a second hop, and writes them out:
"How many prisoners were taken?" -> "At least 15 [1]. The ISIL-affiliated Amaq news agency ... [1]".
"""

from __future__ import annotations

from typing import Iterator

from agent.answertype import holds_answer
from agent.cite import Passage
from agent.condense import condense
from agent.read import Pick, is_heading
from agent.retrieve import Sentence
from agent.text import content_words, tokens


class ExtractiveBackend:
    name = "extractive"
    model = "all-MiniLM-L6-v2 + BM25 + citeqa reader (extractive)"
    generative = False

    def standalone(self, question: str, history: list[dict]) -> tuple[str, str]:
        return condense(question, history)  # deterministic: no model to ask

    def passages(self, question: str, kind: str, picks: list[Pick], ranking: list[Sentence],
                 threshold: float) -> list[Passage]:
        """The best believed pick, when its sentence holds an answer of type `kind`, plus a second believed
        one that covers question words the first lacks (multi-hop)."""
        believed = [p for p in picks if p.prob >= threshold]
        if not believed or not holds_answer(question, believed[0].sentence.text, kind):
            return []
        chosen = [believed[0]] + [p for p in believed[1:3] if _adds_words(question, believed[0], p)][:1]
        return [Passage(i + 1, [p.sentence], answer=p.answer) for i, p in enumerate(chosen)]

    def draft(self, question: str, passages: list[Passage]) -> Iterator[str]:
        phrase = passages[0].answer if passages else ""
        if phrase:
            yield f"{phrase[0].upper()}{phrase[1:]} [{passages[0].n}]. "
        yield " ".join(f"{p.text} [{p.n}]" for p in passages)


def _adds_words(question: str, first: Pick, other: Pick) -> bool:
    """Does `other`, which is no heading, hold question words that `first` lacks (a second hop)?"""
    if is_heading(other.sentence.text):
        return False
    q = set(content_words(question))
    return bool(q & (set(tokens(other.sentence.text)) - set(tokens(first.sentence.text))))
